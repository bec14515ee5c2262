//! What the two sides of the shared-memory pair share: the default names and sizes, the
//! segment named by the flags both take, and the summary's description. Each side's
//! own flow lives in its crate: `shm-producer` creates and publishes, `shm-consumer`
//! finds, attaches and checks.

use super::layout::{Api, Checked};
use super::pool::Pool;
use super::Spec;
use crate::args::CommonArgs;
use crate::error::{Error, Result};
use crate::workload::Describe;
use std::path::PathBuf;

pub const DEFAULT_NAME: &str = "ipc-shm";

/// Where the segment is, beside --name: flags both sides take (the consumer words their
/// help as the one who looks, not the one who makes).
#[derive(clap::Args, Clone, Debug)]
pub struct Place {
    /// How the segment is made [default: posix]
    #[arg(long, value_enum)]
    pub api: Option<Api>,

    /// --api mmap: the file to map [default: /tmp/NAME.mmap]
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl Place {
    /// The segment these flags and --name give (POSIX unless told).
    pub fn spec(&self, common: &CommonArgs) -> Result<Spec> {
        spec(self.api.unwrap_or(Api::Posix), self.file.as_ref(), common)
    }
}
pub const DEFAULT_SEGMENT_SIZE: usize = 1 << 20;

/// The segment `--api`, `--file` and `--name` name; `--file` only with `--api mmap`.
pub fn spec(api: Api, file: Option<&PathBuf>, common: &CommonArgs) -> Result<Spec> {
    if file.is_some() && api != Api::Mmap {
        return Err(Error::usage(
            "--file without --api mmap",
            "--file names the mapped file of --api mmap",
        ));
    }
    Ok(Spec {
        api,
        name: common.name_or(DEFAULT_NAME).to_string(),
        file: file.cloned(),
    })
}

/// The flags that name the same segment, for "start `shm-consumer ...`" hints.
pub fn naming_flags(place: &Place, common: &CommonArgs) -> String {
    let mut s = String::new();
    if let Some(api) = place.api {
        s += &format!(" --api {}", api.as_str());
    }
    if let Some(f) = &place.file {
        s += &format!(" --file {}", f.display());
    }
    if let Some(n) = &common.name {
        s += &format!(" --name {n}");
    }
    s
}

/// The summary's description of a ring pair.
pub fn describe(spec: &Spec, c: &Checked, segment_size: usize) -> Describe {
    Describe::new("shm")
        .with("api", c.api.as_str())
        .with("sync", c.sync.as_str())
        .with("segment_size", segment_size)
        .with("ring_capacity", c.capacity)
        .with("name", &spec.name)
        .with("zero_copy", c.zero_copy)
}

/// The summary's description of a pool.
pub fn describe_pool(spec: &Spec, pool: &Pool) -> Describe {
    Describe::new("shm")
        .with("api", spec.api.as_str())
        .with("sync", "mq")
        .with("segments", pool.members.len())
        .with(
            "segment_size",
            pool.members.first().map_or(0, |m| m.map.len()),
        )
        .with("name", &spec.name)
}
