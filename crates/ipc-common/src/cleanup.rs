//! One owner per named object: a guard that removes the object when dropped, and on
//! SIGINT, SIGTERM or SIGHUP, so neither a normal exit nor Ctrl-C leaves anything.
//!
//! Removal closures live in one process-wide registry; a signal-handling thread (from
//! signal-hook, so no code runs inside the signal handler itself) runs them all and
//! exits with 128 + the signal number, as shells expect.

use crate::error::{Context, Result};
use crate::narrate;
use crate::record;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

type Remover = Box<dyn FnOnce() + Send>;

static REGISTRY: Mutex<BTreeMap<u64, (String, Remover)>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static HANDLERS: Once = Once::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `--keep`: names stay until exit instead of going as soon as both sides attached.
static KEEP: AtomicBool = AtomicBool::new(false);

pub fn set_keep(on: bool) {
    KEEP.store(on, Ordering::Relaxed);
}

/// May a name go early, once both sides hold the object? Not with `--keep`, whose
/// point is to let a student see the objects (`ls`, `ipcs`) while the pair runs.
pub fn early_removal() -> bool {
    !KEEP.load(Ordering::Relaxed)
}

/// A terminating signal arrived: the handler thread is removing the objects and will
/// end the process with 128 + the signal number.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// For code that just saw one of its own objects vanish (a SysV queue removed under a
/// blocked call): if this process's signal cleanup removed it, let that cleanup end the
/// process with its exit code instead of reporting a failure of the peer.
pub fn yield_to_interrupt() {
    while interrupted() {
        std::thread::park();
    }
}

/// Removes its object when dropped (or when the process is interrupted).
#[must_use = "the object is removed when the guard is dropped"]
pub struct Guard {
    id: u64,
    /// The object's entry in this process's record, if it has one.
    rec: Option<u64>,
}

/// Register `remove` to run once: when the guard drops, or on a terminating signal.
/// `what` names the object for the interruption message.
pub fn on_exit(what: impl Into<String>, remove: impl FnOnce() + Send + 'static) -> Guard {
    install_signal_handlers();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock().insert(id, (what.into(), Box::new(remove)));
    Guard { id, rec: None }
}

/// [`on_exit`] for an object this process created: it is also written in the process's
/// record (see [`crate::record`]) until it is removed or disarmed, so `ipc-ctl` can tell
/// whose it is and remove it if the process dies without cleaning up.
pub fn on_exit_recorded(
    what: impl Into<String>,
    object: record::Object,
    remove: impl FnOnce() + Send + 'static,
) -> Guard {
    let rec = record::add(object);
    let mut guard = on_exit(what, move || {
        remove();
        record::forget(rec);
    });
    guard.rec = Some(rec);
    guard
}

impl Guard {
    /// The object is gone by other means (e.g. removed early once both sides attached).
    pub fn disarm(self) {
        lock().remove(&self.id);
        if let Some(rec) = self.rec {
            record::forget(rec);
        }
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let entry = lock().remove(&self.id);
        if let Some((_, remove)) = entry {
            remove();
        }
    }
}

/// Remove `path` only if it is still the object we made (the same device and inode),
/// not a newer one by that name. `idea` is narrated with the `unlink`.
pub fn remove_if_same(path: &Path, id: (u64, u64), idea: &str) -> bool {
    match nix::sys::stat::lstat(path) {
        Ok(st) if (st.st_dev, st.st_ino) == id => {
            let ok = std::fs::remove_file(path).is_ok();
            if ok {
                narrate::call(format_args!("unlink({path:?}) = 0"), idea);
            }
            ok
        }
        _ => false,
    }
}

/// The guard for a file-system object this process just created at `path` (a FIFO, a
/// socket file): it removes that inode, and only that one, on exit or a signal.
/// Returns the guard and the (device, inode) it removes.
pub fn remove_path_on_exit(
    object: impl Into<String>,
    path: &Path,
    idea: &'static str,
) -> Result<(Guard, (u64, u64))> {
    let object = object.into();
    let st = nix::sys::stat::lstat(path).on(&object, "stat")?;
    let id = (st.st_dev, st.st_ino);
    let p: PathBuf = path.to_path_buf();
    let remove = move || {
        remove_if_same(&p, id, idea);
    };
    // Recorded as what the file is, so every caller (FIFOs, socket files) is covered.
    let guard = match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => on_exit_recorded(
            object,
            record::Object::path(record::Kind::Fifo, path),
            remove,
        ),
        libc::S_IFSOCK => on_exit_recorded(
            object,
            record::Object::path(record::Kind::UnixSocket, path),
            remove,
        ),
        _ => on_exit(object, remove),
    };
    Ok((guard, id))
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, (String, Remover)>> {
    // A panic while holding the lock must not stop the cleanup.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the thread that turns SIGINT/SIGTERM/SIGHUP into cleanup and exit. Called by
/// [`on_exit`]; binaries call it at start too, so the exit code is the same whether or
/// not an object was registered yet.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    HANDLERS.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: cannot install signal handlers ({e}); Ctrl-C may leave IPC objects behind");
                return;
            }
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                let entries: Vec<_> = std::mem::take(&mut *lock()).into_values().collect();
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                let removed: Vec<String> = entries
                    .into_iter()
                    .map(|(what, remove)| {
                        remove();
                        what
                    })
                    // Bookkeeping (an empty name) goes quietly; the message is about IPC objects.
                    .filter(|what| !what.is_empty())
                    .collect();
                if removed.is_empty() {
                    eprintln!("interrupted by {name}");
                } else {
                    eprintln!("interrupted by {name}; removed {}", removed.join(", "));
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn guard_runs_once_on_drop_and_not_after_disarm() {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        drop(on_exit("a", move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let m = n.clone();
        on_exit("b", move || {
            m.fetch_add(1, Ordering::SeqCst);
        })
        .disarm();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_the_inode_that_was_made_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let (guard, id) = remove_path_on_exit("file f", &path, "idea").unwrap();
        let st = nix::sys::stat::lstat(&path).unwrap();
        assert_eq!(id, (st.st_dev, st.st_ino));
        // Replaced by a newer file of that name: the guard leaves the newer one.
        // (The old inode is kept under another name, so the new one differs.)
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        std::fs::write(&path, b"y").unwrap();
        assert!(!remove_if_same(&path, id, "idea"));
        drop(guard);
        assert!(path.exists(), "a newer object of the same name was removed");
        // The same inode: removed, once.
        let st = nix::sys::stat::lstat(&path).unwrap();
        let now = (st.st_dev, st.st_ino);
        assert!(remove_if_same(&path, now, "idea"));
        assert!(!path.exists());
        assert!(!remove_if_same(&path, now, "idea"));
        // A guard that is dropped removes its own file.
        std::fs::write(&path, b"z").unwrap();
        let (guard, _) = remove_path_on_exit("file f", &path, "idea").unwrap();
        assert!(path.exists());
        drop(guard);
        assert!(!path.exists());
        assert!(remove_path_on_exit("file f", &path, "idea").is_err());
    }

    #[test]
    fn keep_turns_early_removal_off() {
        assert!(early_removal());
        set_keep(true);
        assert!(!early_removal());
        set_keep(false);
        assert!(early_removal());
        assert!(!interrupted());
        yield_to_interrupt();
    }

    #[test]
    fn fifos_and_socket_files_are_recorded_as_what_they_are() {
        use crate::record;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let sock = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let plain = dir.path().join("p");
        std::fs::write(&plain, b"").unwrap();
        let mine = || -> Vec<(record::Kind, String)> {
            let pid = std::process::id();
            let start = record::start_time(pid).unwrap_or(0);
            let path = record::dir().join(format!("{pid}-{start}.json"));
            let Ok(text) = std::fs::read(&path) else {
                return Vec::new();
            };
            let r: record::Record = serde_json::from_slice(&text).unwrap();
            r.objects
                .into_iter()
                .filter(|o| o.name.starts_with(&*dir.path().to_string_lossy()))
                .map(|o| (o.kind, o.name))
                .collect()
        };
        let g1 = remove_path_on_exit("fifo f", &fifo, "idea").unwrap().0;
        let g2 = remove_path_on_exit("socket s", &sock, "idea").unwrap().0;
        let g3 = remove_path_on_exit("file p", &plain, "idea").unwrap().0;
        let mut got = mine();
        got.sort();
        let name = |p: &Path| p.display().to_string();
        assert_eq!(
            got,
            [
                (record::Kind::Fifo, name(&fifo)),
                (record::Kind::UnixSocket, name(&sock)),
            ]
        );
        drop((g1, g2, g3));
        assert!(mine().is_empty());
        assert!(!fifo.exists() && !sock.exists() && !plain.exists());
    }
}
