//! Everything both sides of every pair agree on.
//!
//! - [`args`]: the common command-line flags.
//! - [`frame`]: the message frame and the sender's hello.
//! - [`link`]: the channel trait a pair implements; [`stream`]: it over a byte stream.
//! - [`workload`]: the sender and receiver loops, payload generation and checking.
//! - [`report`]: the summary (human or JSON); [`progress`]: the progress bar.
//! - [`error`]: one error type and the exit codes; [`cleanup`]: removal on exit and signals.
//! - [`shm`]: shared-memory segments, their layout, and the ring over them.
//! - [`wait`]: waiting for the peer (the grace, the note, the deadline).
//! - [`child`]: `run`, the receiver as a child process; [`cli`]: every `main`'s frame.
//! - [`narrate`]: `-v`, each system call with the lecture idea it shows.
//! - [`sysv`]: System V keys from `ftok` on a key file.
//! - [`record`]: which process created which objects, for `ipc-ctl`.
#![forbid(unsafe_code)]

pub mod args;
pub mod child;
pub mod cleanup;
pub mod cli;
pub mod error;
pub mod frame;
pub mod link;
pub mod narrate;
pub mod progress;
pub mod record;
pub mod report;
pub mod shm;
pub mod stream;
pub mod sysv;
pub mod wait;
pub mod workload;

pub use args::{CommonArgs, Mode};
pub use error::{Cause, Error, Kind, Result};
pub use link::Link;
pub use workload::Describe;
