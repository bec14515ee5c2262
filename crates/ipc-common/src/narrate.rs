//! `-v` narration: each system call as it happens, with the lecture idea it shows.
//!
//! One global verbosity, set once from the flags, so any module can narrate without
//! threading a logger through every call. Calls on the transfer path (read, write,
//! send, receive) repeat for every message: `-v` shows the first few of each, `-vv` all.
//!
//! Each line goes out whole, in one write(2): in `run` the two processes share one
//! stderr, and a line written in pieces would interleave with the other side's. There
//! each line also starts with its side and pid (`[send 1234] `).

use std::collections::HashMap;
use std::fmt::Arguments;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

static LEVEL: AtomicU8 = AtomicU8::new(1);
/// How many times each repeated call has been shown.
static SHOWN: Mutex<Option<HashMap<&'static str, u32>>> = Mutex::new(None);
const REPEATS_AT_V1: u32 = 3;
/// `[send 1234] ` in `run`; unset elsewhere (one process per terminal needs no tag).
static SIDE: OnceLock<String> = OnceLock::new();

/// `--step`: pause before each lifecycle call.
static STEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_step(on: bool) {
    STEP.store(on, Ordering::Relaxed);
}

/// `--step`: before a lifecycle call (create, attach, detach, remove), say what comes
/// and what to look at meanwhile (`look`, e.g. "ipcs -m" or "ls -l /dev/shm"), then wait
/// for Enter on the terminal. The terminal, not stdin: stdin may carry `--input -`.
/// Without a terminal it says so once and goes on, so a scripted run never hangs.
pub fn step(next: Arguments<'_>, look: &str) {
    if !STEP.load(Ordering::Relaxed) {
        return;
    }
    emit("", format_args!("[step] next: {next}"));
    emit(
        "",
        format_args!("[step] meanwhile, in another terminal: {look}; press Enter to go on"),
    );
    let tty = std::fs::File::open("/dev/tty");
    let got = tty.and_then(|t| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(t), &mut line)
    });
    if got.is_err() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| emit("", format_args!("[step] no terminal to wait on: going on")));
    }
}

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

/// Tag every narrated line of this process with `side` and its pid: for the two
/// processes of `run`, which write to the same stderr. Only the first call counts.
pub fn set_side(side: &str) {
    let _ = SIDE.set(format!("[{side} {}] ", std::process::id()));
}

/// Write `text` as one line, prefixed by the side if set, in a single write: the line is
/// built first, so neither another thread nor the peer process can split it (a pipe
/// keeps writes of up to PIPE_BUF bytes whole; a line is far shorter).
fn emit(indent: &str, text: Arguments<'_>) {
    let mut line = String::with_capacity(128);
    match SIDE.get() {
        Some(side) => line.push_str(side),
        None => line.push_str(indent),
    }
    let _ = std::fmt::Write::write_fmt(&mut line, text);
    line.push('\n');
    // Stderr is unbuffered: one write_all of the whole line is one write(2) unless the
    // kernel takes part of it, and the lock keeps this process's threads out meanwhile.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A note to the user (waiting, removed an object...): shown unless `-q`.
pub fn note(msg: Arguments<'_>) {
    if level() >= 1 {
        emit("", msg);
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
    if verbose() && first_few(key) {
        print_call(&call.to_string(), idea);
    }
}

/// Whether the `key`ed repeat about to be shown is one of the first few (or `-vv`);
/// says once when the rest are left out.
fn first_few(key: &'static str) -> bool {
    if level() >= 3 {
        return true;
    }
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    let n = shown
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert(0);
    *n += 1;
    if *n == REPEATS_AT_V1 + 1 {
        emit(
            "  ",
            format_args!("... further {key} calls not shown (-vv shows every call)"),
        );
    }
    *n <= REPEATS_AT_V1
}

fn print_call(call: &str, idea: &str) {
    emit("  ", format_args!("{call:<58} [{idea}]"));
}
