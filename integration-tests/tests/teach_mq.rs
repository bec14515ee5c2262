//! mq-pair as a teaching tool: one sender and one receiver per queue (a second one is
//! refused, naming the first), `-v` narration of split messages and of who created the
//! queue, and `--help` that offers each side only its own flags.

use integration_tests::mechanism::mq;
use integration_tests::*;
use std::time::Duration;

const P: &str = "mq-pair";
const APIS: [&str; 2] = ["posix", "sysv"];

/// `mq-pair VERB --api API --name NAME --timeout 20 ARGS`, stderr watched.
fn side(verb: &str, api: &str, name: &str, args: &[&str]) -> Watched {
    let mut c = cmd(P);
    c.args([verb, "--api", api, "--name", name, "--timeout", "20"])
        .args(args);
    start_watched(&mut c)
}

/// The first `verb` waits; a second `verb` on the same queue is refused at once with
/// exit 1, naming the first one's pid; then the pair completes as if nothing happened.
fn second_is_refused(api: &str, verb: &str) {
    let name = unique(&format!("teach-2{verb}"));
    let mut first = side(verb, api, &name, &["-n", "5"]);
    first.wait_for("waiting up to", Duration::from_secs(20));
    let second = side(verb, api, &name, &["-n", "5"]).finish_within(Duration::from_secs(20));
    assert_code(&second, 1);
    let err = stderr(&second);
    let role = if verb == "send" { "sends" } else { "receives" };
    let expect = format!(
        "another mq-pair {verb} (pid {}) already {role} on this queue",
        first.id()
    );
    assert!(
        err.contains(&expect) && err.contains("error[mismatch]"),
        "{api}: expected {expect:?}; stderr: {err}"
    );
    let other = if verb == "send" { "recv" } else { "send" };
    let peer = side(other, api, &name, &["-n", "5"]).finish();
    let first = first.finish();
    assert_both_ok(&peer, &first);
    let summary = if verb == "recv" { &first } else { &peer };
    assert_verified_line(summary, 5);
    assert_no_leftovers(&name);
}

tests_over!(APIS =>
    a_second_sender_is_refused: second_is_refused("send"),
    a_second_receiver_is_refused: second_is_refused("recv"),
);

/// `run -v` with messages larger than the queue's: each part narrated with its number,
/// the creator's and the opener's queue calls told apart, and the child said to open
/// the queue by name (it inherits no descriptor).
#[test]
fn run_narrates_parts_creator_and_opener() {
    for api in APIS {
        let name = unique("teach-narr");
        let m = mq(api);
        let out =
            run(m
                .run(&m.at(&name))
                .args(["-v", "-n", "2", "-s", "20000", "--timeout", "20"]));
        assert_code(&out, 0);
        let err = stderr(&out);
        let (send, recv) = if api == "sysv" {
            ("msgsnd(", "msgrcv(")
        } else {
            ("mq_timedsend(", "mq_timedreceive(")
        };
        for call in [send, recv] {
            for part in ["part 1/3", "part 2/3", "part 3/3"] {
                assert!(
                    err.lines().any(|l| l.contains(call) && l.contains(part)),
                    "{api}: no {call} line for {part}; stderr:\n{err}"
                );
            }
        }
        let creator = if api == "sysv" {
            "IPC_CREAT|IPC_EXCL|0600) = "
        } else {
            "O_CREAT|O_EXCL|O_RDWR, 0600"
        };
        let open = if api == "sysv" {
            "msgget(0x"
        } else {
            "mq_open("
        };
        assert!(
            err.lines()
                .any(|l| l.starts_with("[send ") && l.contains(creator) && l.contains("[creator]")),
            "{api}: the sender's create is not tagged [creator]; stderr:\n{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with("[recv ") && l.contains(open) && l.contains("[opener]")),
            "{api}: the receiver's open is not tagged [opener]; stderr:\n{err}"
        );
        assert!(
            !err.contains("inherits the parent's descriptors")
                && err.contains("opens the object by name"),
            "{api}: the child opens the queue by name; stderr:\n{err}"
        );
        assert_no_leftovers(&name);
    }
}

/// Each side's `--help` offers only its own flags, and shows both terminals' commands.
#[test]
fn help_offers_each_side_its_own_flags() {
    let flag = |help: &str, f: &str| help.lines().any(|l| l.trim_start().starts_with(f));
    let recv = stdout(&run(cmd(P).args(["recv", "--help"])));
    for f in ["--priority", "-n, --count", "--input", "--interval"] {
        assert!(!flag(&recv, f), "recv --help offers {f}:\n{recv}");
    }
    assert!(
        flag(&recv, "--output") && recv.contains("terminal 2: mq-pair send"),
        "{recv}"
    );
    let send = stdout(&run(cmd(P).args(["send", "--help"])));
    assert!(
        !flag(&send, "--output"),
        "send --help offers --output:\n{send}"
    );
    for f in ["--priority", "-n, --count", "--interval"] {
        assert!(flag(&send, f), "send --help lacks {f}:\n{send}");
    }
    assert!(send.contains("terminal 1: mq-pair recv"), "{send}");
}

/// `--keep`: once both sides are attached the queue's name (POSIX) or key file (SysV)
/// is still there for `ls` and `ipcs` to show; it goes at exit all the same. The
/// receiver is stopped meanwhile, so the pair is surely still running when looked at.
#[test]
fn keep_leaves_the_name_while_the_pair_runs() {
    use nix::sys::signal::Signal;
    for api in APIS {
        let name = unique("teach-keep");
        let mut recv = side("recv", api, &name, &["--keep"]);
        recv.wait_for("waiting up to", Duration::from_secs(20));
        signal(recv.child(), Signal::SIGSTOP);
        let mut send = side("send", api, &name, &["--keep", "-v", "-n", "20"]);
        let first_send = if api == "sysv" {
            "msgsnd("
        } else {
            "mq_timedsend("
        };
        send.wait_for(first_send, Duration::from_secs(20));
        let present = if api == "sysv" {
            std::env::temp_dir().join(format!("{name}.mq.key")).exists()
        } else {
            queue_exists(&format!("/{name}"))
        };
        signal(recv.child(), Signal::SIGCONT);
        let (send, recv) = (send.finish(), recv.finish());
        assert!(present, "{api}: --keep removed the name while the pair ran");
        assert_both_ok(&send, &recv);
        assert_verified_line(&recv, 20);
        assert_no_leftovers(&name);
    }
}
