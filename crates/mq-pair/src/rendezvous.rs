//! Meeting the other side. Either side may come first: the first creates the queue and
//! waits; the second opens it and removes its name (POSIX `mq_unlink`, SysV the key
//! file), the creator's sign that both are attached. A POSIX queue then lives only as
//! long as its descriptors, so even `kill -9` leaves nothing; `IPC_RMID` destroys a SysV
//! queue at once, so both sides remove it only when done. With `--keep` no name goes
//! early: the creator sees the other side come by its held role (`role.rs`) instead.

use crate::claim::{
    self, sysv_attach, sysv_key_path, sysv_record_path, Claim, Endpoint, SysvKey, IDEA_UNLINK,
};
use crate::flags::Api;
use crate::limits::{queue_error, Limits};
use crate::posix::{self, PosixQueue, STALE_RECHECK};
use crate::role::{self, Duty};
use crate::sysv::{self as sysvq, SysvQueue};
use ipc_common::cleanup;
use ipc_common::error::{Error, Kind, Result};
use ipc_common::narrate;
use ipc_common::sysv::KeyFile;
use nix::errno::Errno;
use std::fs::File;
use std::time::{Duration, Instant};

/// How long a side waits silently before saying it waits for its peer.
const GRACE: Duration = Duration::from_millis(200);

/// How the first side waits for the second.
pub struct Rendezvous<'a> {
    pub api: Api,
    pub name: &'a str,
    pub timeout: Duration,
    pub limits: Limits,
    /// What the other side does on the queue.
    pub peer: Duty,
    /// The command to start in another terminal; `None`: say nothing (`run`).
    pub peer_cmd: Option<String>,
}

/// The data queue, whichever side comes first; `give_up` lets `run` stop waiting for
/// a child that died.
pub fn rendezvous(r: &Rendezvous<'_>, give_up: &mut dyn FnMut() -> Result<()>) -> Result<Endpoint> {
    match claim::claim(r.api, r.name, None, &r.limits, true, r.timeout)? {
        Claim::Existing(ep) => {
            if cleanup::early_removal() {
                remove_name_early(r.api, r.name, &ep);
            }
            Ok(ep)
        }
        Claim::Created(mut ep) => {
            await_opener(r, &mut ep, give_up)?;
            if !cleanup::early_removal() {
                return Ok(ep);
            }
            match r.api {
                // The name is gone; the queue lives as long as the two descriptors.
                Api::Posix => ep.disarm(),
                // Keep the key file's descriptor (and flock) open until the queue is
                // removed: while it is open the file system cannot give its inode, and
                // so ftok's key, to another run's key file.
                Api::Sysv => {
                    if let Some(k) = ep.key.as_mut() {
                        k.kf.removed_by_peer();
                    }
                }
            }
            Ok(ep)
        }
    }
}

/// The opener removes the queue's name (POSIX) or moves its key file to the pair's
/// record (SysV): the creator's sign that both sides are attached.
fn remove_name_early(api: Api, name: &str, ep: &Endpoint) {
    match (api, ep.queue.posix()) {
        (Api::Posix, Some(p)) => {
            let qname = posix::queue_name(name, None);
            narrate::step(
                format_args!("mq_unlink({qname:?}): both sides have the queue, its name can go"),
                api.look(),
            );
            posix::unlink_if_same(&qname, p.identity(), IDEA_UNLINK);
        }
        _ => {
            let path = sysv_key_path(name, None);
            narrate::step(format_args!("unlink({path:?}): both sides have the key, the key file can go (the queue stays until IPC_RMID)"), api.look());
            sysv_attach(&path, &sysv_record_path(name, None), ep.pin.as_ref());
        }
    }
}

/// Has the opener attached (removed the name this side created)?
/// With `--keep` the name stays: the peer's held role is the sign instead, or the
/// messages it left (a quick sender may have come and gone between two looks).
fn attached(r: &Rendezvous<'_>, ep: &Endpoint, qname: &str, id: Option<(u64, u64)>) -> bool {
    if !cleanup::early_removal() {
        let left = matches!(ep.queue.pending(), Ok(Some((n, _))) if n > 0);
        return left || role::held(r.api, r.name, r.peer);
    }
    match ep.queue.posix() {
        Some(p) => {
            let same = posix::name_identity(qname) == id;
            if same {
                posix::renew(p);
            }
            !same
        }
        None => r.api == Api::Sysv && ep.key.as_ref().is_none_or(SysvKey::gone),
    }
}

/// The creator waits until the opener removes the name, at most `timeout`.
fn await_opener(
    r: &Rendezvous<'_>,
    ep: &mut Endpoint,
    give_up: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + r.timeout;
    let mut said = false;
    let qname = posix::queue_name(r.name, None);
    let id = ep.queue.posix().and_then(PosixQueue::identity);
    while !attached(r, ep, &qname, id) {
        give_up()?;
        if Instant::now() >= deadline {
            return Err(no_opener(r, ep));
        }
        if let (Some(cmd), false) = (&r.peer_cmd, said) {
            if started.elapsed() >= GRACE {
                narrate::note(format_args!(
                    "waiting up to {:.0} s for a {} on {} (start `{cmd}` in another terminal)",
                    r.timeout.as_secs_f64(),
                    r.peer.side(),
                    ep.object()
                ));
                said = true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn no_opener(r: &Rendezvous<'_>, ep: &Endpoint) -> Error {
    Error::peer(
        ep.object(),
        format!(
            "no {} opened it within {:.1} s",
            r.peer.side(),
            r.timeout.as_secs_f64()
        ),
        match &r.peer_cmd {
            Some(cmd) => format!("start `{cmd}` within --timeout, or raise --timeout"),
            None => "the other side did not start; see its output".to_string(),
        },
    )
    .because(ipc_common::Cause::Timeout)
}

/// `--raw`: create the queue, or use an existing one of ours, with no handshake (the
/// other side may be any program). `owner`: remove it on exit even if it existed
/// (the receiver); a sender removes only a queue it created.
pub fn open_raw(
    api: Api,
    name: &str,
    limits: &Limits,
    owner: bool,
    timeout: Duration,
) -> Result<Endpoint> {
    let mut ep = match claim::claim(api, name, None, limits, false, timeout)? {
        Claim::Created(ep) => ep,
        Claim::Existing(ep) => ep,
    };
    if owner && ep.guard.is_none() {
        ep.guard = match (ep.queue.posix(), ep.queue.sysv()) {
            (Some(p), _) => Some(claim::posix_guard(p)),
            (_, Some(s)) => Some(claim::sysv_guard(s, None)),
            _ => None,
        };
    }
    if !owner && !ep.created {
        ep.disarm();
    }
    Ok(ep)
}

/// The sender's reply queue for pingpong, made before the hello so the receiver can
/// answer. A live one under the name means another sender uses the name.
pub fn create_reply(api: Api, name: &str, limits: &Limits) -> Result<Endpoint> {
    match claim::claim(api, name, Some("reply"), limits, true, STALE_RECHECK)? {
        Claim::Created(ep) => Ok(ep),
        Claim::Existing(ep) => Err(Error::new(
            Kind::Runtime,
            ep.object(),
            "is in use by another sender",
            "wait for it to finish, or choose another --name",
        )
        .because(ipc_common::Cause::Mismatch)),
    }
}

fn missing_reply(object: String) -> Error {
    Error::peer(
        object,
        "the sender announced pingpong but its reply queue is missing",
        "the sender ended early or is not this program; see its output",
    )
}

/// The receiver's end of the reply queue, which a pingpong sender made before its hello.
pub fn open_reply(api: Api, name: &str, limits: &Limits) -> Result<Endpoint> {
    match api {
        Api::Posix => open_posix_reply(name, limits),
        Api::Sysv => open_sysv_reply(name, limits),
    }
}

fn open_posix_reply(name: &str, limits: &Limits) -> Result<Endpoint> {
    let qname = posix::queue_name(name, Some("reply"));
    let object = posix::object_of(&qname);
    narrate::step(
        format_args!("mq_open({qname:?}, O_RDWR): open the sender's reply queue"),
        Api::Posix.look(),
    );
    let m = match posix::open(&qname) {
        Ok(m) => m,
        Err(Errno::ENOENT) => return Err(missing_reply(object)),
        Err(e) => {
            return Err(queue_error(
                Api::Posix,
                &object,
                "mq_open(O_RDWR)",
                e,
                limits,
            ))
        }
    };
    let q = PosixQueue::wrap(m, &qname, limits)?;
    q.check_owner()?;
    if cleanup::early_removal() {
        let id = q.posix().and_then(PosixQueue::identity);
        posix::unlink_if_same(&qname, id, IDEA_UNLINK);
    }
    Ok(Endpoint {
        queue: q,
        guard: None,
        key: None,
        pin: None,
        created: false,
    })
}

fn open_sysv_reply(name: &str, limits: &Limits) -> Result<Endpoint> {
    let path = sysv_key_path(name, Some("reply"));
    let kf =
        KeyFile::open(&path).map_err(|_| missing_reply(format!("key file {}", path.display())))?;
    narrate::step(
        format_args!("msgget({:#010x}, 0): open the sender's reply queue", kf.key),
        Api::Sysv.look(),
    );
    let id = sysvq::open(kf.key)
        .map_err(|_| missing_reply(format!("SysV queue key {:#010x}", kf.key)))?;
    let q = SysvQueue::wrap(id, kf.key, limits)?;
    q.check_owner()?;
    let pin = File::open(&path).ok();
    let rec = if cleanup::early_removal() {
        sysv_attach(&path, &sysv_record_path(name, Some("reply")), pin.as_ref())
    } else {
        None
    };
    let guard = claim::sysv_guard(q.sysv().expect("SysV queue"), rec);
    Ok(Endpoint {
        queue: q,
        guard: Some(guard),
        key: None,
        pin,
        created: false,
    })
}
