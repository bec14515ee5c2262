//! The table the shared scenarios run over: for each mechanism, which programs play the
//! two sides, the flags that select it, the object it makes while a side waits, and
//! the words its survivors and refusals use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which side of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

impl Role {
    /// The side's name in the programs' messages and the test hooks (`sender`, `receiver`).
    pub fn hook(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }

    /// The words a survivor's message may use for this side (queues and sockets say
    /// sender and receiver, shared memory producer and consumer).
    pub fn words(self) -> [&'static str; 2] {
        match self {
            Role::Sender => ["sender", "producer"],
            Role::Receiver => ["receiver", "consumer"],
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }
}

/// A name made by someone else where a side wants to make its object.
#[derive(Debug)]
pub struct Squat {
    pub mode: u32,
    pub data: &'static [u8],
    /// What the refusal says (beside the object's name).
    pub says: &'static str,
}

/// One row of the table.
#[derive(Debug)]
pub struct Mechanism {
    /// A short label for messages and unique names.
    pub label: &'static str,
    /// The program of each side: `(sender, receiver)`; a pair program plays both, told
    /// by a `send`/`recv` subcommand.
    pub programs: (&'static str, &'static str),
    /// Does the program take `send`/`recv` (and so also `run`)?
    pub verbs: bool,
    /// Flags that select this mechanism, given to both sides.
    pub flags: &'static [&'static str],
    /// `mechanism` in the receiver's summary.
    pub reports_as: &'static str,
    /// `mechanism` in `run`'s summary (both sides in one command).
    pub runs_as: &'static str,
    /// Addressed by a loopback port rather than a name: no object to look for.
    pub tcp: bool,
    /// The name that exists while the creator waits, from the IPC name.
    pub object: fn(&str) -> Option<PathBuf>,
    /// The sides that make the object while they wait for their peer.
    pub creators: &'static [Role],
    /// What a side interrupted while waiting says it removed.
    pub removed: &'static str,
    /// What the survivor of a killed sender says: its error tag and words.
    pub sender_gone: (&'static str, &'static [&'static str]),
    /// What the survivor of a killed receiver says.
    pub receiver_gone: (&'static str, &'static [&'static str]),
    /// A squatter the creators refuse, if the object is a file one can make.
    pub squat: Option<Squat>,
    /// SysV: both sides narrate (`-v`), so the leak check learns the key.
    pub sysv: bool,
}

fn in_tmp(name: &str) -> Option<PathBuf> {
    Some(std::env::temp_dir().join(name))
}

fn posix_queue(name: &str) -> Option<PathBuf> {
    Some(Path::new(crate::MQUEUE_DIR).join(name))
}

fn mq_key_file(name: &str) -> Option<PathBuf> {
    Some(std::env::temp_dir().join(format!("{name}.mq.key")))
}

fn posix_shm(name: &str) -> Option<PathBuf> {
    Some(Path::new("/dev/shm").join(name))
}

fn shm_key_file(name: &str) -> Option<PathBuf> {
    Some(std::env::temp_dir().join(format!("{name}.key")))
}

fn mapped_file(name: &str) -> Option<PathBuf> {
    Some(std::env::temp_dir().join(format!("{name}.mmap")))
}

fn no_object(_: &str) -> Option<PathBuf> {
    None
}

const BOTH: &[Role] = &[Role::Receiver, Role::Sender];
const PEER_GONE: &str = "error[peer-gone]";
const TIMEOUT: &str = "error[timeout]";

const KEY_FILE_SQUAT: Squat = Squat {
    mode: 0o666,
    data: b"",
    says: "is not a key file",
};

/// A plain file of mode 0644 with `data` where the object goes, refused as `says`.
const fn plain_file(data: &'static [u8], says: &'static str) -> Squat {
    Squat {
        mode: 0o644,
        data,
        says,
    }
}

const SEGMENT_SQUAT: Squat = plain_file(b"not a segment\n", "has mode 644");

/// A row for `program`, which plays both sides (`send`, `recv`, `run`), with what rows
/// share unless they say otherwise: no flags of its own, an object in the temporary
/// directory that both sides make, a survivor that says how far the dead peer got.
const fn pair_program(
    label: &'static str,
    program: &'static str,
    reports_as: &'static str,
    runs_as: &'static str,
) -> Mechanism {
    Mechanism {
        label,
        programs: (program, program),
        verbs: true,
        flags: &[],
        reports_as,
        runs_as,
        tcp: false,
        object: in_tmp,
        creators: BOTH,
        removed: "removed",
        sender_gone: (PEER_GONE, &["after "]),
        receiver_gone: (PEER_GONE, &["after "]),
        squat: None,
        sysv: false,
    }
}

/// The System V row of a POSIX one: `--api sysv`, the object a key file (which someone
/// else can make), and both sides narrating so the leak check learns the key.
const fn sysv_of(
    posix: Mechanism,
    label: &'static str,
    key_file: fn(&str) -> Option<PathBuf>,
) -> Mechanism {
    Mechanism {
        label,
        flags: &["--api", "sysv"],
        object: key_file,
        squat: Some(KEY_FILE_SQUAT),
        sysv: true,
        ..posix
    }
}

pub const FIFO: Mechanism = Mechanism {
    removed: "removed FIFO",
    sender_gone: (PEER_GONE, &["sender", "after "]),
    receiver_gone: (PEER_GONE, &["receiver closed", "after "]),
    squat: Some(plain_file(b"not a fifo", "is not a FIFO")),
    ..pair_program("fifo", "pipe-pair", "fifo", "pipe")
};

const MQ: Mechanism = Mechanism {
    flags: &["--api", "posix"],
    object: posix_queue,
    // A queue outlives its writer: the receiver sees only that nothing comes.
    sender_gone: (TIMEOUT, &["nothing arrived", "after "]),
    receiver_gone: (TIMEOUT, &["the receiver took nothing", "after "]),
    ..pair_program("mq-posix", "mq-pair", "mq", "mq")
};

pub const MQ_POSIX: Mechanism = MQ;

pub const MQ_SYSV: Mechanism = sysv_of(MQ, "mq-sysv", mq_key_file);

const UNIX: Mechanism = Mechanism {
    flags: &["--type", "stream"],
    creators: &[Role::Receiver],
    removed: "removed socket",
    receiver_gone: (PEER_GONE, &["closed its", "after "]),
    squat: Some(plain_file(b"not a socket", "is not a socket")),
    ..pair_program("unix-stream", "socket-pair", "unix", "socketpair")
};

pub const UNIX_STREAM: Mechanism = UNIX;

pub const UNIX_DGRAM: Mechanism = Mechanism {
    label: "unix-dgram",
    flags: &["--type", "dgram"],
    // No connection: a dead sender looks like a silent one, a dead receiver is a
    // refused sendmsg.
    sender_gone: (TIMEOUT, &["no datagram arrived", "after "]),
    ..UNIX
};

pub const UNIX_SEQPACKET: Mechanism = Mechanism {
    label: "unix-seqpacket",
    flags: &["--type", "seqpacket"],
    ..UNIX
};

pub const TCP: Mechanism = Mechanism {
    label: "tcp",
    flags: &[],
    reports_as: "tcp",
    tcp: true,
    object: no_object,
    creators: &[],
    squat: None,
    ..UNIX
};

/// The producer and the consumer: one program per side, no `run`.
const SHM: Mechanism = Mechanism {
    programs: ("shm-producer", "shm-consumer"),
    verbs: false,
    flags: &["--api", "posix"],
    object: posix_shm,
    creators: &[Role::Sender],
    sender_gone: (PEER_GONE, &["producer"]),
    receiver_gone: (PEER_GONE, &["consumer"]),
    squat: Some(SEGMENT_SQUAT),
    ..pair_program("shm-posix", "shm-producer", "shm", "")
};

pub const SHM_POSIX: Mechanism = SHM;

pub const SHM_SYSV: Mechanism = sysv_of(SHM, "shm-sysv", shm_key_file);

pub const SHM_MMAP: Mechanism = Mechanism {
    label: "shm-mmap",
    flags: &["--api", "mmap"],
    object: mapped_file,
    ..SHM
};

/// Every row, for scenarios that loop rather than name a test per mechanism.
pub const ALL: [&Mechanism; 10] = [
    &FIFO,
    &MQ_POSIX,
    &MQ_SYSV,
    &UNIX_STREAM,
    &UNIX_DGRAM,
    &UNIX_SEQPACKET,
    &TCP,
    &SHM_POSIX,
    &SHM_SYSV,
    &SHM_MMAP,
];

/// The shared-memory row for `--api api`.
pub fn shm(api: &str) -> &'static Mechanism {
    match api {
        "posix" => &SHM_POSIX,
        "sysv" => &SHM_SYSV,
        "mmap" => &SHM_MMAP,
        _ => panic!("no shared-memory api {api}"),
    }
}

/// The message-queue row for `--api api`.
pub fn mq(api: &str) -> &'static Mechanism {
    match api {
        "posix" => &MQ_POSIX,
        "sysv" => &MQ_SYSV,
        _ => panic!("no message-queue api {api}"),
    }
}

/// Where one test's pair meets: its unique name, and the flags that say so.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    /// `127.0.0.1:PORT` for TCP.
    pub address: Option<String>,
    args: Vec<String>,
}

impl Endpoint {
    /// What the errors name: the address for TCP, else the IPC name.
    pub fn named(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }
}

/// A loopback port nobody listens on right now (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl Mechanism {
    /// A fresh meeting place for one test.
    pub fn endpoint(&self, tag: &str) -> Endpoint {
        self.at(&crate::unique(&format!("{}-{tag}", self.label)))
    }

    /// The meeting place of IPC name `name` (another mechanism's, say).
    pub fn at(&self, name: &str) -> Endpoint {
        let name = name.to_string();
        let mut args: Vec<String> = self.flags.iter().map(|s| s.to_string()).collect();
        let address = self.tcp.then(|| format!("127.0.0.1:{}", free_port()));
        match &address {
            Some(a) => args.extend(["--tcp".to_string(), a.clone()]),
            None => args.extend(["--name".to_string(), name.clone()]),
        }
        Endpoint {
            name,
            address,
            args,
        }
    }

    /// The program of `role`, with its subcommand, at `ep`; SysV sides narrate.
    pub fn side(&self, role: Role, ep: &Endpoint) -> Command {
        let (program, verb) = match role {
            Role::Sender => (self.programs.0, "send"),
            Role::Receiver => (self.programs.1, "recv"),
        };
        let mut c = crate::cmd(program);
        if self.verbs {
            c.arg(verb);
        }
        c.args(&ep.args);
        if self.sysv {
            c.arg("-v");
        }
        c
    }

    /// `run` (both sides in one command) with this mechanism's flags.
    pub fn run(&self, ep: &Endpoint) -> Command {
        assert!(self.verbs, "{} has no run subcommand", self.label);
        let mut c = crate::cmd(self.programs.0);
        c.arg("run").args(&ep.args);
        c
    }

    /// The object that exists while a creator waits, if it has a name.
    pub fn object(&self, ep: &Endpoint) -> Option<PathBuf> {
        (self.object)(&ep.name)
    }

    /// The object of IPC name `name` (a mechanism addressed by name only).
    pub fn object_named(&self, name: &str) -> PathBuf {
        (self.object)(name).unwrap_or_else(|| panic!("{} has no named object", self.label))
    }

    /// What a survivor says when the peer in `victim`'s role is killed.
    pub fn gone(&self, victim: Role) -> (&'static str, &'static [&'static str]) {
        match victim {
            Role::Sender => self.sender_gone,
            Role::Receiver => self.receiver_gone,
        }
    }
}
