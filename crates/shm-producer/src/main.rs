//! shm-producer: creates a shared-memory segment, waits for `shm-consumer` to attach,
//! and sends the workload through a ring in the segment.

use clap::Parser;
use ipc_common::args::{validate, Role};
use ipc_common::shm::pair::{produce, ShmArgs};
use ipc_common::{workload, CommonArgs};
use std::process::ExitCode;

const PROG: &str = "shm-producer";

const EXAMPLES: &str = "\
Examples:
  shm-producer                                  terminal 1 (then `shm-consumer` in terminal 2)
  shm-producer --api sysv --sync sem -n 100000  a SysV segment (see ipcs -m), semaphores
  shm-producer --sync spin --mode pingpong      round trips with spinning sides
  shm-producer --api mmap --file /tmp/seg.bin   the lecture's memory-mapped file
  shm-producer --input big.iso --segment-size 64K   a file in rounds through a small segment
  shm-producer -v -n 3                          narrate each system call

Exit codes: 0 done and verified, 1 runtime error, 2 usage error,
3 data failed verification, 4 peer gone or timed out.";

#[derive(Parser)]
#[command(
    name = PROG,
    version,
    about = "Shared memory, producer side: create a segment, wait for the consumer, send through a ring in it",
    long_about = "Shared memory, producer side: create a segment (POSIX, SysV or a mapped file), \
wait for shm-consumer to attach, and send the workload through a byte ring in the segment. \
No system call is made per message; the sides wait for each other with --sync.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    shm: ShmArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.common.init_narration();
    ipc_common::cleanup::install_signal_handlers();
    let result =
        validate(&cli.common, Role::Send).and_then(|()| produce(&cli.shm, &cli.common).map(Some));
    ExitCode::from(u8::try_from(workload::finish(PROG, &cli.common, result)).unwrap_or(1))
}
