//! shm-consumer: attaches to the segment `shm-producer` created, checks every byte it
//! receives through the ring, and prints the summary.

use clap::Parser;
use ipc_common::args::Role;
use ipc_common::cli::{run_main, Outcome};
use ipc_common::shm::pair::{consume, ShmArgs};
use ipc_common::CommonArgs;
use std::process::ExitCode;

const PROG: &str = "shm-consumer";

const EXAMPLES: &str = "\
Examples:
  shm-consumer                                  terminal 2 (with `shm-producer` in terminal 1)
  shm-consumer --api sysv                       attach to a SysV segment
  shm-consumer --output copy.iso                write the received bytes to a file
  shm-consumer --json                           the summary as one JSON object

The consumer learns the sync kind, mode and sizes from the segment and the sender.";

#[derive(Parser)]
#[command(
    name = PROG,
    version,
    about = "Shared memory, consumer side: attach to the producer's segment, check every byte",
    long_about = "Shared memory, consumer side: attach to the segment shm-producer created (waiting for it \
if need be), check its header, and receive and verify the workload from the ring in it.",
    after_help = ipc_common::cli::after_help(EXAMPLES)
)]
struct Cli {
    #[command(flatten)]
    shm: ShmArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli: Cli = ipc_common::cli::parse_as(Role::Recv);
    run_main(PROG, &cli.common, Role::Recv, || {
        Outcome::Done(consume(&cli.shm, &cli.common).map(Some))
    })
}
