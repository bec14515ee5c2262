//! `-v` narration: each system call as it happens, with the lecture idea it shows.
//!
//! One global verbosity, set once from the flags, so any module can narrate without
//! threading a logger through every call. Calls on the transfer path (read, write,
//! send, receive) repeat for every message: `-v` shows the first few of each, `-vv` all.

use std::collections::HashMap;
use std::fmt::Arguments;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

static LEVEL: AtomicU8 = AtomicU8::new(1);
/// How many times each repeated call has been shown.
static SHOWN: Mutex<Option<HashMap<&'static str, u32>>> = Mutex::new(None);
const REPEATS_AT_V1: u32 = 3;

/// 0 = quiet, 1 = normal, 2 = `-v`, 3 = `-vv`.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

pub fn verbose() -> bool {
    level() >= 2
}

/// A note to the user (waiting, removed an object...): shown unless `-q`.
pub fn note(msg: Arguments<'_>) {
    if level() >= 1 {
        eprintln!("{msg}");
    }
}

/// A one-off system call, e.g. `mkfifo("/tmp/x", 0600) = 0`, and the lecture idea.
pub fn call(call: Arguments<'_>, idea: &str) {
    if verbose() {
        print_call(&call.to_string(), idea);
    }
}

/// A call that repeats per message; `key` groups the repeats (`"write"`).
pub fn repeated(key: &'static str, call: Arguments<'_>, idea: &str) {
    if !verbose() {
        return;
    }
    if level() < 3 {
        let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
        let n = shown
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_insert(0);
        *n += 1;
        if *n > REPEATS_AT_V1 {
            if *n == REPEATS_AT_V1 + 1 {
                eprintln!("  ... further {key} calls not shown (-vv shows every call)");
            }
            return;
        }
    }
    print_call(&call.to_string(), idea);
}

fn print_call(call: &str, idea: &str) {
    eprintln!("  {call:<58} [{idea}]");
}
