//! What the run found: every row next to the hardware (shared-memory streams as a
//! fraction of the bare ring, round trips as a multiple of the cache-line round trip),
//! the goals, the copy-versus-map crossover, and the tables (terminal and markdown).
//! Every number here comes from this run.

use crate::baseline::Baselines;
use crate::mechs::Mech;
use crate::{Cell, RssCheck, Sample};
use ipc_common::report::{in_thousands, COUNT, NANOS};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, Serialize)]
pub struct MechInfo {
    pub id: String,
    pub what: String,
    pub copy_based: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub target: String,
    /// What was compared, with the numbers.
    pub measured: String,
    pub ratio: Option<f64>,
    /// `None`: not measured in this run (filtered out or failed).
    pub met: Option<bool>,
    /// Where the rest of the time goes, for a goal not reached.
    pub why: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub quick: bool,
    pub runs: usize,
    pub seed: u64,
    /// (sender CPU, receiver CPU); `null`: not pinned.
    pub pinned_cpus: Option<(usize, usize)>,
    pub seconds: f64,
    pub sizes: Vec<usize>,
    pub mechanisms: Vec<MechInfo>,
    pub baselines: Baselines,
    pub cells: Vec<Cell>,
    pub rss: Option<RssCheck>,
    pub targets: Vec<Target>,
    pub crossover: Vec<String>,
}

pub fn ns(v: f64) -> String {
    in_thousands(v, NANOS, 1)
}

fn count(v: f64) -> String {
    in_thousands(v, COUNT, 0)
}

fn mib(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn size_label(s: usize) -> String {
    if s >= 1 << 20 && s.is_multiple_of(1 << 20) {
        format!("{}M", s >> 20)
    } else if s >= 1 << 10 && s.is_multiple_of(1 << 10) {
        format!("{}K", s >> 10)
    } else {
        format!("{s}")
    }
}

pub fn progress_line(c: &Cell) -> String {
    let head = format!("{:<16} {:>5} {:<8}", c.mech, size_label(c.size), c.mode);
    match (&c.median, &c.error) {
        (Some(m), _) if c.mode == "pingpong" => format!(
            "{head} p50 {} p99.9 {} ({} round trips)",
            ns(m.p50_ns.unwrap_or(0.0)),
            ns(m.p999_ns.unwrap_or(0.0)),
            c.count
        ),
        (Some(m), _) => format!(
            "{head} {} msg/s, {} MiB/s ({} messages)",
            count(m.msgs_per_sec),
            mib(m.mib_per_sec),
            c.count
        ),
        (None, Some(e)) => format!("{head} -- {e}"),
        (None, None) => format!("{head} --"),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "reached",
        Some(false) => "not yet",
        None => "not measured",
    }
}

impl Results {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mechs: &[Mech],
        sizes: &[usize],
        runs: usize,
        quick: bool,
        seed: u64,
        pinned: Option<(usize, usize)>,
        baselines: Baselines,
        cells: Vec<Cell>,
        rss: Option<RssCheck>,
        seconds: f64,
    ) -> Results {
        let mut r = Results {
            quick,
            runs,
            seed,
            pinned_cpus: pinned,
            seconds,
            sizes: sizes.to_vec(),
            mechanisms: mechs
                .iter()
                .map(|m| MechInfo {
                    id: m.id.into(),
                    what: m.what.into(),
                    copy_based: m.copy_based,
                })
                .collect(),
            baselines,
            cells,
            rss,
            targets: Vec::new(),
            crossover: Vec::new(),
        };
        r.targets = r.judge();
        r.crossover = r.crossovers();
        r
    }

    pub fn get(&self, mech: &str, size: usize, mode: &str) -> Option<&Sample> {
        self.cells
            .iter()
            .find(|c| c.mech == mech && c.size == size && c.mode == mode)
            .and_then(|c| c.median.as_ref())
    }

    fn is_copy(&self, mech: &str) -> bool {
        self.mechanisms.iter().any(|m| m.id == mech && m.copy_based)
    }

    /// The best MiB/s at `size` among mechanisms that pass `keep`.
    fn best(&self, size: usize, keep: impl Fn(&str) -> bool) -> Option<(&str, f64)> {
        self.cells
            .iter()
            .filter(|c| c.size == size && c.mode == "stream" && keep(&c.mech))
            .filter_map(|c| c.median.as_ref().map(|m| (c.mech.as_str(), m.mib_per_sec)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The messages/s of `id` and of the pipe, streaming 64 B messages.
    fn small_stream_vs_pipe(&self, id: &str) -> Option<(f64, f64)> {
        let mine = self.get(id, 64, "stream")?.msgs_per_sec;
        Some((mine, self.get("pipe", 64, "stream")?.msgs_per_sec))
    }

    fn judge(&self) -> Vec<Target> {
        let mut t = self.hardware_goals();
        // 2. spin stream against the pipe and the best copy-based mechanism.
        let name = "shm spin stream 64 B: >= 10x the pipe's messages/s";
        t.push(match self.small_stream_vs_pipe("shm-posix-spin") {
            Some((s, p)) => {
                let measured = format!("{} msg/s vs pipe {} msg/s", count(s), count(p));
                hardware_goal(name, measured, s / p, s / p >= 10.0, WHY_SMALL_VS_PIPE)
            }
            None => missing(name),
        });
        let name = "shm spin stream 64 KiB: >= 2x the best copy-based MiB/s";
        t.push(
            match (
                self.get("shm-posix-spin", 65536, "stream"),
                self.best(65536, |m| self.is_copy(m)),
            ) {
                (Some(s), Some((best, b))) => {
                    let ratio = s.mib_per_sec / b;
                    let measured =
                        format!("{} MiB/s vs {best} {} MiB/s", mib(s.mib_per_sec), mib(b));
                    goal(name, measured, ratio, ratio >= 2.0)
                }
                _ => missing(name),
            },
        );
        // 3. zero-copy against the copying ring, same sync kind, from 64 KiB.
        for (zc, copy) in [
            ("shm-zc-spin", "shm-posix-spin"),
            ("shm-zc-mutex", "shm-posix-mutex"),
        ] {
            for &size in self.sizes.iter().filter(|&&s| s >= 65536) {
                let name = format!("{zc} {}: >= 1.5x the MiB/s of {copy}", size_label(size));
                t.push(
                    match (self.get(zc, size, "stream"), self.get(copy, size, "stream")) {
                        (Some(z), Some(c)) => {
                            let ratio = z.mib_per_sec / c.mib_per_sec;
                            let measured =
                                format!("{} vs {} MiB/s", mib(z.mib_per_sec), mib(c.mib_per_sec));
                            Target {
                                why: (ratio < 1.5).then(|| WHY_ZC.to_string()),
                                ..goal(&name, measured, ratio, ratio >= 1.5)
                            }
                        }
                        _ => missing(&name),
                    },
                );
            }
        }
        // 4. The sleeping kinds against the pipe; their idle side must block.
        for sync in ["mutex", "sem"] {
            let id = format!("shm-posix-{sync}");
            let name = format!("shm {sync} pingpong 64 B: p50 no slower than the pipe's");
            t.push(
                match (
                    self.get(&id, 64, "pingpong").and_then(|s| s.p50_ns),
                    self.get("pipe", 64, "pingpong").and_then(|s| s.p50_ns),
                ) {
                    (Some(s), Some(p)) => goal(
                        &name,
                        format!("p50 {} vs pipe {}", ns(s), ns(p)),
                        p / s,
                        s <= p,
                    ),
                    _ => missing(&name),
                },
            );
            let name = format!("shm {sync} stream 64 B: >= the pipe's messages/s");
            t.push(match self.small_stream_vs_pipe(&id) {
                Some((s, p)) => {
                    let measured = format!("{} vs pipe {} msg/s", count(s), count(p));
                    goal(&name, measured, s / p, s / p >= 1.0)
                }
                None => missing(&name),
            });
            let name = format!(
                "shm {sync}: the idle side blocks (pingpong 64 B, each side busy < 50% of its wall time)"
            );
            t.push(match self.get(&id, 64, "pingpong") {
                Some(s) => {
                    let (a, b) = s.busy();
                    let worst = a.max(b.unwrap_or(0.0));
                    let measured = format!(
                        "CPU/wall: producer {:.0}%, consumer {:.0}%",
                        a * 100.0,
                        b.unwrap_or(0.0) * 100.0
                    );
                    goal(&name, measured, worst, worst < 0.5)
                }
                None => missing(&name),
            });
        }
        // 5. Memory.
        let name = "consumer peak RSS does not grow with --count (10x, within 10%)";
        t.push(match &self.rss {
            Some(r) => {
                let ratio = r.consumer_kib[1] / r.consumer_kib[0].max(1.0);
                let measured = format!(
                    "{} {}: {:.0} KiB at {} messages, {:.0} KiB at {}",
                    r.mech,
                    size_label(r.size),
                    r.consumer_kib[0],
                    r.counts[0],
                    r.consumer_kib[1],
                    r.counts[1]
                );
                goal(name, measured, ratio, ratio <= 1.10)
            }
            None => missing(name),
        });
        t
    }

    /// The bare ring's messages/s at `size`, measured in this run.
    fn bare_ring(&self, size: usize) -> Option<f64> {
        self.baselines.bare_ring_msgs_s.get(&size).copied()
    }

    /// The goals against the hardware: the spin ring's round trip against the cache
    /// line's, its streams against the bare ring's (memcpy in, memcpy out).
    fn hardware_goals(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let atomic = self.baselines.atomic_rtt.p50_ns as f64;
        let name = "shm-posix-spin pingpong 64 B: p50 <= 1.5x the cache-line round trip";
        t.push(
            match self
                .get("shm-posix-spin", 64, "pingpong")
                .and_then(|s| s.p50_ns)
            {
                Some(p) => hardware_goal(
                    name,
                    format!("p50 {} vs cache-line round trip {}", ns(p), ns(atomic)),
                    p / atomic,
                    p / atomic <= 1.5,
                    WHY_RTT,
                ),
                None => missing(name),
            },
        );
        for (size, least, why) in [
            (64, 0.8, WHY_SMALL),
            (65536, 0.6, WHY_LARGE),
            (1 << 20, 0.6, WHY_LARGE),
        ] {
            if !self.sizes.contains(&size) {
                continue;
            }
            let name = format!(
                "shm-posix-spin stream {}: >= {least}x the bare ring's messages/s",
                size_label(size)
            );
            t.push(
                match (
                    self.get("shm-posix-spin", size, "stream"),
                    self.bare_ring(size),
                ) {
                    (Some(s), Some(b)) => hardware_goal(
                        &name,
                        format!("{} vs bare ring {} msg/s", count(s.msgs_per_sec), count(b)),
                        s.msgs_per_sec / b,
                        s.msgs_per_sec / b >= least,
                        why,
                    ),
                    _ => missing(&name),
                },
            );
        }
        t
    }

    /// Sentences: from which size shared memory ("map") beats the best copy-based
    /// mechanism ("copy"), and from which size building in place beats copying.
    fn crossovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Per measured size (ascending): does `map` stream more MiB/s than `copy`?
        let wins = |map: &dyn Fn(usize) -> Option<(String, f64)>,
                    copy: &dyn Fn(usize) -> Option<(String, f64)>| {
            let mut sizes = self.sizes.clone();
            sizes.sort_unstable();
            sizes
                .into_iter()
                .filter_map(|s| match (map(s), copy(s)) {
                    (Some((_, m)), Some((_, c))) => Some((s, m > c)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let best_map = |s: usize| {
            self.best(s, |m| !self.is_copy(m))
                .map(|(m, v)| (m.to_string(), v))
        };
        let best_copy = |s: usize| {
            self.best(s, |m| self.is_copy(m))
                .map(|(m, v)| (m.to_string(), v))
        };
        let list = |v: &[(usize, bool)], won: bool| {
            v.iter()
                .filter(|x| x.1 == won)
                .map(|x| size_label(x.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let phrase = |v: Vec<(usize, bool)>, what: &str| -> Option<String> {
            if v.is_empty() {
                return None;
            }
            let flips = v.windows(2).filter(|w| w[0].1 != w[1].1).count();
            let first_win = v.iter().position(|x| x.1);
            Some(match (flips, first_win) {
                (0, Some(_)) => format!(
                    "{what} at every size measured ({} to {})",
                    size_label(v[0].0),
                    size_label(v[v.len() - 1].0)
                ),
                (0, None) => format!("{what} at no size measured"),
                (1, Some(i)) if i > 0 => format!(
                    "{what} from {} up, not at {} and below: the crossover on this machine lies between {} and {}",
                    size_label(v[i].0),
                    size_label(v[i - 1].0),
                    size_label(v[i - 1].0),
                    size_label(v[i].0)
                ),
                (1, _) => {
                    let last = v.iter().rposition(|x| x.1).unwrap_or(0);
                    format!(
                        "{what} up to {}, not from {} up",
                        size_label(v[last].0),
                        size_label(v[last + 1].0)
                    )
                }
                _ => format!(
                    "{what} at {} but not at {}",
                    list(&v, true),
                    list(&v, false)
                ),
            })
        };
        if let Some(s) = phrase(
            wins(&best_map, &best_copy),
            "Copy vs map: the best shared-memory row streams more MiB/s than the best copy-based mechanism (pipe, FIFO, queue, socket)",
        ) {
            out.push(s);
        }
        for sync in ["mutex", "sem", "spin"] {
            let id = format!("shm-posix-{sync}");
            let mine = |s: usize| {
                self.get(&id, s, "stream")
                    .map(|m| (id.clone(), m.mib_per_sec))
            };
            if let Some(s) = phrase(
                wins(&mine, &best_copy),
                &format!("{id} beats the best copy-based mechanism"),
            ) {
                out.push(s);
            }
        }
        let zc = |s: usize| {
            self.get("shm-zc-spin", s, "stream")
                .map(|m| ("zc".to_string(), m.mib_per_sec))
        };
        let cp = |s: usize| {
            self.get("shm-posix-spin", s, "stream")
                .map(|m| ("copy".to_string(), m.mib_per_sec))
        };
        if let Some(s) = phrase(
            wins(&zc, &cp),
            "Building and checking in place (--zero-copy) beats copying through the ring (both spin)",
        ) {
            out.push(s);
        }
        out
    }

    fn pin_note(&self) -> String {
        match self.pinned_cpus {
            Some((a, b)) => format!("senders pinned to CPU {a}, receivers to CPU {b}"),
            None => "NOT pinned: fewer than 2 CPUs allowed, both sides share one".into(),
        }
    }

    fn header_lines(&self) -> Vec<String> {
        let b = &self.baselines;
        vec![
            format!(
                "{} run(s) per cell after a warm-up, medians shown; {}; seed {}; {:.0} s in all.",
                self.runs,
                self.pin_note(),
                self.seed,
                self.seconds
            ),
            format!(
                "Baselines measured in this run: cache-line round trip (two processes, atomic ping-pong) p50 {}, p99.9 {}; futex wake-up round trip p50 {}, p99.9 {}; memcpy of one core {}.",
                ns(b.atomic_rtt.p50_ns as f64),
                ns(b.atomic_rtt.p999_ns as f64),
                ns(b.futex_rtt.p50_ns as f64),
                ns(b.futex_rtt.p999_ns as f64),
                b.memcpy_mib_s
                    .iter()
                    .map(|(s, v)| format!("{} {} MiB/s", size_label(*s), mib(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "Bare ring (two processes, the shm segment and ring, memcpy in and memcpy out, no generation, no check): {}.",
                b.bare_ring_msgs_s
                    .iter()
                    .map(|(s, v)| format!(
                        "{} {} msg/s = {} MiB/s",
                        size_label(*s),
                        count(*v),
                        mib(v * *s as f64 / f64::from(1 << 20))
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ]
    }

    fn cell(&self, mech: &str, size: usize, mode: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.mech == mech && c.size == size && c.mode == mode)
    }

    /// A table body: one row per mechanism, one column per size, `f` formats a cell.
    fn rows(&self, mode: &str, f: &dyn Fn(&Sample, usize) -> String) -> Vec<Vec<String>> {
        self.mechanisms
            .iter()
            .filter(|m| self.cells.iter().any(|c| c.mech == m.id && c.mode == mode))
            .map(|m| {
                let mut row = vec![m.id.clone()];
                for &s in &self.sizes {
                    row.push(match self.cell(&m.id, s, mode) {
                        Some(Cell {
                            median: Some(x), ..
                        }) => f(x, s),
                        Some(Cell { error: Some(e), .. }) if e.starts_with("stream only") => {
                            "n/a".into()
                        }
                        Some(Cell { error: Some(_), .. }) => "failed".into(),
                        _ => "-".into(),
                    });
                }
                row
            })
            .collect()
    }

    fn tables(&self) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
        let mut head = vec!["mechanism".to_string()];
        head.extend(self.sizes.iter().map(|s| size_label(*s)));
        let memcpy = |s: usize| {
            self.baselines
                .memcpy_mib_s
                .get(&s)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let atomic = self.baselines.atomic_rtt.p50_ns as f64;
        let futex = self.baselines.futex_rtt.p50_ns as f64;
        let mut t = Vec::new();
        t.push((
            "Stream: MiB/s (and the fraction of one core's memcpy at that size)".to_string(),
            head.clone(),
            self.rows("stream", &|x, s| {
                format!("{} ({:.2})", mib(x.mib_per_sec), x.mib_per_sec / memcpy(s))
            }),
        ));
        t.push((
            "Stream: messages/s (and the fraction of the bare ring's messages/s at that size)"
                .to_string(),
            head.clone(),
            self.rows("stream", &|x, s| match self.bare_ring(s) {
                Some(b) => format!("{} ({:.2})", count(x.msgs_per_sec), x.msgs_per_sec / b),
                None => count(x.msgs_per_sec),
            }),
        ));
        t.push((
            "Stream: CPU time / wall time of sender / receiver (100% = a core kept busy; `run` rows: both sides in one figure)"
                .to_string(),
            head.clone(),
            self.rows("stream", &|x, _| match x.busy() {
                (a, Some(b)) => format!("{:.0}/{:.0}%", a * 100.0, b * 100.0),
                (a, None) => format!("{:.0}% both", a * 100.0),
            }),
        ));
        t.push((
            format!(
                "Pingpong: round trip p50 (x the cache-line round trip {}; x the futex round trip {})",
                ns(atomic),
                ns(futex)
            ),
            head.clone(),
            self.rows("pingpong", &|x, _| {
                let p = x.p50_ns.unwrap_or(0.0);
                format!("{} ({:.1}x/{:.2}x)", ns(p), p / atomic, p / futex)
            }),
        ));
        t.push((
            "Pingpong: round trip p99 / p99.9".to_string(),
            head.clone(),
            self.rows("pingpong", &|x, _| {
                format!(
                    "{} / {}",
                    ns(x.p99_ns.unwrap_or(0.0)),
                    ns(x.p999_ns.unwrap_or(0.0))
                )
            }),
        ));
        t.push((
            "Pingpong: CPU time / wall time of sender / receiver".to_string(),
            head,
            self.rows("pingpong", &|x, _| match x.busy() {
                (a, Some(b)) => format!("{:.0}/{:.0}%", a * 100.0, b * 100.0),
                (a, None) => format!("{:.0}% both", a * 100.0),
            }),
        ));
        t
    }

    fn target_lines(&self) -> Vec<(String, String, String, String)> {
        self.targets
            .iter()
            .map(|t| {
                let measured = match &t.why {
                    Some(w) => format!("{}; the rest: {w}", t.measured),
                    None => t.measured.clone(),
                };
                (
                    verdict(t.met).to_string(),
                    t.target.clone(),
                    t.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    measured,
                )
            })
            .collect()
    }

    fn failures(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|c| c.median.is_none())
            .filter_map(|c| {
                c.error
                    .as_ref()
                    .map(|e| format!("{} {} {}: {e}", c.mech, size_label(c.size), c.mode))
            })
            .collect()
    }

    pub fn terminal(&self) -> String {
        let mut s = String::new();
        for l in self.header_lines() {
            let _ = writeln!(s, "\n{l}");
        }
        for (title, head, rows) in self.tables() {
            let _ = writeln!(s, "\n{title}");
            let widths: Vec<usize> = (0..head.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([head[i].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let pad = widths[i] - c.chars().count();
                        if i == 0 {
                            format!("{c}{}", " ".repeat(pad))
                        } else {
                            format!("{}{c}", " ".repeat(pad))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let _ = writeln!(s, "{}", line(&head));
            let _ = writeln!(
                s,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
            for r in &rows {
                let _ = writeln!(s, "{}", line(r));
            }
        }
        let _ = writeln!(s, "\nGoals (ratios of medians in this run):");
        for (v, t, r, m) in self.target_lines() {
            let _ = writeln!(s, "  {v:<12} {t}\n               ratio {r}: {m}");
        }
        let _ = writeln!(s);
        for c in &self.crossover {
            let _ = writeln!(s, "{c}.");
        }
        let f = self.failures();
        if !f.is_empty() {
            let _ = writeln!(s, "\nCells without a result:");
            for l in f {
                let _ = writeln!(s, "  {l}");
            }
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::from("# ipc-bench results\n\n");
        for l in self.header_lines() {
            let _ = writeln!(s, "{l}\n");
        }
        for (title, head, rows) in self.tables() {
            let _ = writeln!(s, "### {title}\n");
            let _ = writeln!(s, "| {} |", head.join(" | "));
            let _ = writeln!(
                s,
                "|{}|",
                head.iter()
                    .enumerate()
                    .map(|(i, _)| if i == 0 { "---" } else { "---:" })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for r in rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
            s.push('\n');
        }
        s += "### Goals\n\n| goal | ratio | reached? | measured |\n|---|---:|---|---|\n";
        for (v, t, r, m) in self.target_lines() {
            let _ = writeln!(s, "| {t} | {r} | {v} | {m} |");
        }
        s += "\n### Copy vs map\n\n";
        for c in &self.crossover {
            let _ = writeln!(s, "- {c}.");
        }
        let f = self.failures();
        if !f.is_empty() {
            s += "\n### Cells without a result\n\n";
            for l in f {
                let _ = writeln!(s, "- {}", l.replace('|', "\\|"));
            }
        }
        s += "\n### Mechanisms\n\n| id | what |\n|---|---|\n";
        for m in &self.mechanisms {
            let _ = writeln!(s, "| {} | {} |", m.id, m.what);
        }
        s
    }
}

/// What the ring does that the bare ring does not, per goal (see docs/bench/README.md).
const WHY_RTT: &str = "per direction two cache-line transfers one after the other (the writer's head line, then the 88-byte frame's lines, fetched together) where the cache-line ping-pong has one: about 2x is this protocol's floor, the rest is copying, generating, checking and timing; below 2x needs the frame's ready flag inside its only line (a payload of at most 40 bytes) or in each of its lines, a layout change";
const WHY_SMALL: &str = "instructions per message on each side: a 24-byte frame header copied in and out, the payload generated, the header decoded and bounded, every byte compared and the sequence counted, where the bare ring copies 64 bytes and stores a counter (its bound is that per-message publication, not bandwidth)";
const WHY_LARGE: &str = "two passes as in the bare ring (the producer generates each word into its buffer and the ring at once, the consumer compares each word as it copies it out), plus the generator's arithmetic, the producer's second store and a frame header; and where the bare ring's sides spin for ever, a spin side that waits past 50 µs yields and sleeps, which a loaded machine turns into wake-ups";

const WHY_ZC: &str = "the copying ring also makes one pass a side now (generated into the producer's buffer and the ring at once, checked as it is copied out): what building in place still saves is the two private copies' stores";

/// A goal measured in this run: `ratio` is what `met` was judged on.
/// Why the 64 B spin stream may fall short of 10x the pipe.
const WHY_SMALL_VS_PIPE: &str = "the rest: the ring's consumer is bound by its instructions per 64-byte message (the frame header decoded and bounded, every payload word compared, the sequence counted: about 460 where the bare ring's reader runs 150), as in the goal against the bare ring; near 10x, the noise between runs is larger than the margin";

fn goal(name: &str, measured: String, ratio: f64, met: bool) -> Target {
    Target {
        target: name.into(),
        measured,
        ratio: Some(ratio),
        why: None,
        met: Some(met),
    }
}

/// A goal against the hardware, which says where the time goes when it is not met.
fn hardware_goal(name: &str, measured: String, ratio: f64, met: bool, why: &str) -> Target {
    Target {
        why: (!met).then(|| why.to_string()),
        ..goal(name, measured, ratio, met)
    }
}

fn missing(name: &str) -> Target {
    Target {
        target: name.into(),
        measured: "not measured in this run (filtered out, or the run failed)".into(),
        ratio: None,
        met: None,
        why: None,
    }
}
