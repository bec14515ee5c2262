//! shm-producer: creates a shared-memory segment, waits for `shm-consumer` to attach,
//! and sends the workload through a ring in the segment.

mod produce;

use ipc_common::args::Role;
use ipc_common::cli::{run_main, Help, Outcome};
use produce::{produce, ProducerArgs};
use std::process::ExitCode;

const PROG: &str = "shm-producer";

const EXAMPLES: &str = "\
Examples (terminal 1 runs the producer, terminal 2 the consumer):
  1$ shm-producer                               2$ shm-consumer
  1$ shm-producer --api sysv --sync sem -n 100000
                                                2$ shm-consumer     (it finds the SysV segment; ipcs -m shows it)
  1$ shm-producer --sync spin --mode pingpong   2$ shm-consumer
  1$ shm-producer --api mmap --file /tmp/seg.bin
                                                2$ shm-consumer --api mmap --file /tmp/seg.bin
  1$ shm-producer --input big.iso --segment-size 64K
                                                2$ shm-consumer --output copy.iso
  1$ shm-producer --step --keep -v -n 3         2$ shm-consumer --step -v
     (pause before each create, map, unmap and removal; watch ls -l /dev/shm meanwhile)";

const HELP: Help = Help {
    name: PROG,
    about: "Shared memory, producer side: create a segment, wait for the consumer, send through a ring in it",
    long_about: "Shared memory, producer side: create a segment (POSIX, SysV or a mapped file), \
wait for shm-consumer to attach, and send the workload through a byte ring in the segment. \
No system call is made per message; the sides wait for each other with --sync. The producer \
chooses the API, sync kind, sizes and workload; the consumer learns them from the segment.",
    examples: EXAMPLES,
};

fn main() -> ExitCode {
    let cli = ipc_common::cli::parse_as::<ProducerArgs>(&HELP, Role::Send, &[]);
    run_main(PROG, &cli.common, Role::Send, || {
        Outcome::Done(produce(&cli.own, &cli.common).map(Some))
    })
}
