//! shm-consumer: finds the segment `shm-producer` published, attaches to it, checks
//! every byte it receives through the ring, and prints the summary.

mod consume;

use consume::{consume, ConsumerArgs};
use ipc_common::args::Role;
use ipc_common::cli::{run_main, Help, Outcome};
use std::process::ExitCode;

const PROG: &str = "shm-consumer";

const EXAMPLES: &str = "\
Examples (terminal 1 runs the producer, terminal 2 the consumer):
  1$ shm-producer                               2$ shm-consumer
  1$ shm-producer --api sysv --sync sem         2$ shm-consumer     (finds the SysV segment)
  1$ shm-producer --api mmap --file /tmp/seg.bin
                                                2$ shm-consumer --api mmap --file /tmp/seg.bin
  1$ shm-producer --input big.iso               2$ shm-consumer --output copy.iso
  1$ shm-producer -n 100                        2$ shm-consumer --json
  1$ shm-producer --step --keep -v -n 3         2$ shm-consumer --step -v
     (pause before each attach, unmap and removal; watch ls -l /dev/shm or ipcs -m)

The consumer learns the API (it looks under all three), the sync kind, the sizes, the
mode and the workload from the segment and the producer's hello: give those to the
producer only.";

const HELP: Help = Help {
    name: PROG,
    about: "Shared memory, consumer side: attach to the producer's segment, check every byte",
    long_about: "Shared memory, consumer side: find the segment shm-producer published (POSIX, SysV \
or a mapped file, waiting for it if need be), attach to it, check its header, and receive and verify \
the workload from the ring in it.",
    examples: EXAMPLES,
};

fn main() -> ExitCode {
    let cli =
        ipc_common::cli::parse_as::<ConsumerArgs>(&HELP, Role::Recv, &["count", "size", "mode"]);
    run_main(PROG, &cli.common, Role::Recv, || {
        Outcome::Done(consume(&cli.own, &cli.common).map(Some))
    })
}
