//! `clean`: remove exactly the objects that are provably this project's and whose
//! owners are all gone, i.e. listed in a record whose lock is free, still the very
//! object the record names (same inode, same SysV key and id), ours, and held by no
//! live process. Everything else is kept, with the reason.

use crate::inventory::{self, describe, matches_prefix, Inventory, Item};
use ipc_common::record::Kind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Why an object is kept, or None if it may go.
fn verdict(inv: &Inventory, it: &Item, me: u32) -> Result<(), String> {
    let Some(ri) = it.record else {
        let how = if it.kind.is_sysv() {
            "its key carries this project's ftok id, but no record ties it to a process of ours"
        } else {
            "named like this project's, but no record ties it to a process of ours"
        };
        return Err(format!(
            "{how}; if it is a leftover, remove it yourself ({})",
            manual(it)
        ));
    };
    let rf = &inv.records[ri];
    if rf.alive {
        return Err(format!(
            "in use: its creator {} {} (pid {}) is alive",
            rf.record.program, rf.record.side, rf.record.pid
        ));
    }
    if it.kind == Kind::TcpListener {
        return Err("closed with its process; nothing to remove".into());
    }
    if !it.exists {
        return Err("already gone".into());
    }
    match it.uid {
        Some(u) if u == me => {}
        Some(u) => return Err(format!("belongs to uid {u}, not to us: never touched")),
        None => return Err("its owner cannot be read: not touched".into()),
    }
    if let Some(h) = it.holders.first() {
        return Err(format!(
            "held by live pid {} ({}): a running process still uses it",
            h.pid, h.program
        ));
    }
    if let Some(other) = inv.items.iter().find(|o| {
        o.kind == it.kind && o.name == it.name && o.record.is_some_and(|r| inv.records[r].alive)
    }) {
        let c = &other.creators[0];
        return Err(format!(
            "a live process recorded an object of that name too (pid {} {})",
            c.pid, c.program
        ));
    }
    let o = it
        .object
        .as_ref()
        .expect("recorded items carry their object");
    if it.kind.is_path() {
        let m = std::fs::symlink_metadata(&it.name).map_err(|e| format!("lstat: {e}"))?;
        let ft = m.file_type();
        let right_type = match it.kind {
            Kind::Fifo => ft.is_fifo(),
            Kind::UnixSocket => ft.is_socket(),
            _ => ft.is_file(),
        };
        if !right_type {
            return Err("not the kind of file the record names: not ours".into());
        }
        match (o.dev, o.ino) {
            (Some(d), Some(i)) if (d, i) == (m.dev(), m.ino()) => {}
            (Some(_), Some(_)) => {
                return Err(
                    "a newer file of that name (another inode): not the one the record names"
                        .into(),
                )
            }
            _ => return Err("the record has no inode to prove it is the same file".into()),
        }
    }
    if it.kind == Kind::SysvShm {
        let row = inv.sysv.row(Kind::SysvShm, it.id.unwrap_or(-1));
        if row.and_then(|r| r.get("nattch")).is_some_and(|&n| n > 0) {
            return Err("still attached by a process".into());
        }
    }
    if it.kind.is_sysv() {
        let row = inv.sysv.row(it.kind, it.id.unwrap_or(-1));
        if row
            .and_then(|r| r.get("cuid"))
            .is_some_and(|&c| c != i64::from(me))
        {
            return Err("created by another user: never touched".into());
        }
    }
    if it.kind == Kind::SysvSem {
        return Err("this project makes no semaphore sets: not touched".into());
    }
    Ok(())
}

/// How a person would remove it.
fn manual(it: &Item) -> String {
    match it.kind {
        Kind::PosixShm => format!("rm {}", inventory::shm_path(&it.name).display()),
        Kind::PosixMq => format!(
            "mount -t mqueue none /dev/mqueue; rm /dev/mqueue{}",
            it.name
        ),
        Kind::SysvShm => format!("ipcrm -m {}", it.id.unwrap_or(-1)),
        Kind::SysvMsg => format!("ipcrm -q {}", it.id.unwrap_or(-1)),
        Kind::SysvSem => format!("ipcrm -s {}", it.id.unwrap_or(-1)),
        Kind::TcpListener => "stop the process".into(),
        _ => format!("rm {}", it.name),
    }
}

fn remove(it: &Item) -> Result<(), String> {
    let o = it.object.as_ref().expect("recorded");
    match it.kind {
        Kind::PosixShm => {
            nix::sys::mman::shm_unlink(it.name.as_str()).map_err(|e| format!("shm_unlink: {e}"))
        }
        Kind::PosixMq => {
            nix::mqueue::mq_unlink(it.name.as_str()).map_err(|e| format!("mq_unlink: {e}"))
        }
        Kind::SysvShm => {
            ipc_sys::shm::shm_rmid(o.id.unwrap_or(-1)).map_err(|e| format!("shmctl(IPC_RMID): {e}"))
        }
        Kind::SysvMsg => ipc_sys::mq::msgctl_rmid(o.id.unwrap_or(-1))
            .map_err(|e| format!("msgctl(IPC_RMID): {e}")),
        _ if it.kind.is_path() => {
            let id = (o.dev.unwrap_or(0), o.ino.unwrap_or(0));
            // Checked once more right at the unlink: the same inode, or nothing.
            if ipc_common::cleanup::remove_if_same(std::path::Path::new(&it.name), id, "clean") {
                Ok(())
            } else {
                Err("unlink: the file changed or could not be removed".into())
            }
        }
        _ => Err("nothing to remove".into()),
    }
}

pub fn clean(dry_run: bool, only: Option<&str>) -> u8 {
    if let Some(p) = only {
        if p.len() <= inventory::PREFIX.len() || !p.starts_with(inventory::PREFIX) {
            eprintln!(
                "ipc-ctl: usage: --only takes a prefix longer than {} (e.g. ipc-demo)",
                inventory::PREFIX
            );
            return 2;
        }
    }
    let me = nix::unistd::geteuid().as_raw();
    let inv = inventory::take(true, false);
    let mut failed = false;
    let mut removed = 0;
    // Per dead record: may its file go (every object gone or removed)?
    let mut record_done = vec![true; inv.records.len()];
    for it in &inv.items {
        if only.is_some_and(|p| !matches_prefix(it, p)) {
            if let Some(r) = it.record {
                record_done[r] = false;
            }
            continue;
        }
        match verdict(&inv, it, me) {
            Ok(()) if dry_run => {
                println!("would remove {}: {}", describe(it), owners(it));
                removed += 1;
            }
            Ok(()) => match remove(it) {
                Ok(()) => {
                    println!("removed {}: {}", describe(it), owners(it));
                    removed += 1;
                }
                Err(e) => {
                    eprintln!("ipc-ctl: error: could not remove {}: {e}", describe(it));
                    failed = true;
                    if let Some(r) = it.record {
                        record_done[r] = false;
                    }
                }
            },
            Err(why) => {
                let gone = why == "already gone" || why.starts_with("closed with");
                if let Some(r) = it.record {
                    if !gone {
                        record_done[r] = false;
                    }
                }
                if !gone {
                    println!("kept {}: {why}", describe(it));
                }
            }
        }
    }
    // A dead record whose objects are all gone is itself a leftover.
    for (rf, done) in inv.records.iter().zip(&record_done) {
        if rf.alive || !done {
            continue;
        }
        if dry_run {
            println!("would remove record {}", rf.path.display());
        } else if std::fs::remove_file(&rf.path).is_ok() {
            println!(
                "removed record {} ({} {} pid {}, dead)",
                rf.path.display(),
                rf.record.program,
                rf.record.side,
                rf.record.pid
            );
        }
    }
    if !dry_run {
        if let Some(d) = rf_dir(&inv) {
            // Goes only if empty.
            let _ = std::fs::remove_dir(d);
        }
    }
    if removed == 0 {
        println!("no objects to remove");
    }
    for n in &inv.notes {
        println!("note: {n}");
    }
    let p = crate::problems(&inv.problems);
    if failed {
        1
    } else {
        p
    }
}

fn rf_dir(inv: &Inventory) -> Option<std::path::PathBuf> {
    inv.records
        .first()
        .and_then(|r| r.path.parent().map(|p| p.to_path_buf()))
}

fn owners(it: &Item) -> String {
    match it.creators.first() {
        Some(c) => format!(
            "made by {} {} pid {}, which is gone",
            c.program, c.side, c.pid
        ),
        None => String::new(),
    }
}

/// `--check PREFIX`: the test suite's leak check.
pub fn check(prefix: &str) -> u8 {
    let inv = inventory::take(false, false);
    let mut left = 0;
    for it in &inv.items {
        if !it.exists || !matches_prefix(it, prefix) {
            continue;
        }
        left += 1;
        let who = if it.alive { "in use" } else { "left behind" };
        println!("{who}: {}", describe(it));
    }
    if crate::problems(&inv.problems) != 0 {
        eprintln!("ipc-ctl: the check is incomplete, so it fails");
        return 1;
    }
    if left > 0 {
        eprintln!(
            "ipc-ctl: {left} object(s) named {prefix}* remain: a cleanup bug (ipc-ctl clean removes those of dead processes)"
        );
        return 1;
    }
    println!("no IPC objects named {prefix}*");
    0
}
