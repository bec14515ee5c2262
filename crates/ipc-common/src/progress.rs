//! A progress bar on stderr for long runs, only when stderr is a terminal (never in
//! pipelines, tests or a `run` child), not with `-q`, and not with `-v`: a bar redrawn
//! between narrated lines would tear them.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total`: bytes expected, when known.
    pub fn new(label: &str, total: Option<u64>, enabled: bool) -> Progress {
        let show = enabled && crate::narrate::level() == 1 && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let (bar, template) = match total {
                Some(t) => (
                    ProgressBar::new(t),
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ),
                None => (
                    ProgressBar::no_length(),
                    "{prefix} {spinner} {bytes} {bytes_per_sec}",
                ),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid progress template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Progress { bar }
    }

    #[inline]
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
