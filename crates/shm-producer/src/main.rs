//! shm-producer: creates a shared-memory segment, waits for `shm-consumer` to attach,
//! and sends the workload through a ring in the segment.

use clap::Parser;
use ipc_common::args::Role;
use ipc_common::cli::{run_main, Outcome};
use ipc_common::shm::pair::{produce, ShmArgs};
use ipc_common::CommonArgs;
use std::process::ExitCode;

const PROG: &str = "shm-producer";

const EXAMPLES: &str = "\
Examples:
  shm-producer                                  terminal 1 (then `shm-consumer` in terminal 2)
  shm-producer --api sysv --sync sem -n 100000  a SysV segment (see ipcs -m), semaphores
  shm-producer --sync spin --mode pingpong      round trips with spinning sides
  shm-producer --api mmap --file /tmp/seg.bin   the lecture's memory-mapped file
  shm-producer --input big.iso --segment-size 64K   a file in rounds through a small segment
  shm-producer -v -n 3                          narrate each system call";

#[derive(Parser)]
#[command(
    name = PROG,
    version,
    about = "Shared memory, producer side: create a segment, wait for the consumer, send through a ring in it",
    long_about = "Shared memory, producer side: create a segment (POSIX, SysV or a mapped file), \
wait for shm-consumer to attach, and send the workload through a byte ring in the segment. \
No system call is made per message; the sides wait for each other with --sync.",
    after_help = ipc_common::cli::after_help(EXAMPLES)
)]
struct Cli {
    #[command(flatten)]
    shm: ShmArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli: Cli = ipc_common::cli::parse_as(Role::Send);
    run_main(PROG, &cli.common, Role::Send, || {
        Outcome::Done(produce(&cli.shm, &cli.common).map(Some))
    })
}
