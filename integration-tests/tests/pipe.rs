//! pipe-pair end to end, beyond the scenarios every mechanism shares (tests/scenarios.rs):
//! the human summary, a plain writer feeding a raw receiver, flag checks, modes and
//! narration.

use integration_tests::mechanism::{Role, FIFO};
use integration_tests::scenario::transfer;
use integration_tests::*;
use predicates::str::contains;
use std::path::PathBuf;
use std::time::Duration;

const P: &str = "pipe-pair";

fn fifo(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

#[test]
fn run_human_summary_names_the_pipe() {
    tool(P)
        .args(["run", "-n", "10"])
        .assert()
        .code(0)
        .stdout(predicates::str::starts_with("pipe receiver"))
        .stdout(contains(
            "10 received, 0 lost, 0 duplicated, 0 corrupted: verified",
        ));
}

#[test]
fn raw_receiver_fed_by_a_plain_writer() {
    use std::io::Write;
    let name = unique("fifo-raw");
    let path = fifo(&name);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("raw.bin");
    let recv = start(
        cmd(P)
            .args(["recv", "--raw", "--name", &name, "--output"])
            .arg(&output),
    );
    wait_for_path(&path, Duration::from_secs(10));
    // What `cat file > fifo` does: open for writing, write, close.
    let data = random_bytes(777_777, 3);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let recv = finish(recv);
    assert_code(&recv, 0);
    assert_holds(&output, &data);
    assert!(stdout(&recv).contains("payload=raw"), "{}", stdout(&recv));
    assert_no_leftovers(&name);
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    assert_usage_errors(
        P,
        "run --size 0; run --size 12Q; run --count abc; run --count 0; \
         run --size 2G; run --bogus; recv --name a/b; run --timeout -1; \
         run --mode sideways; run --raw --mode pingpong; run --input x --seed 3; \
         send --output x --timeout 1; send --fifo /tmp/x --name y; ",
    );
}

#[test]
fn missing_input_file_is_a_runtime_error() {
    let says = ["error[os]", "input file /nonexistent/input.bin: open"];
    assert_run(P, &["run", "--input", "/nonexistent/input.bin"], 1, &says);
}

#[test]
fn help_explains_itself_with_examples() {
    assert_help(
        P,
        &["send", "recv", "run", "Examples:", "Exit codes"],
        Some("send"),
        &[
            "--count",
            "--size",
            "--seed",
            "--input",
            "--mode",
            "--name",
            "--timeout",
            "--raw",
            "--json",
            "--quiet",
            "--verbose",
            "--fifo",
        ],
    );
}

#[test]
fn fifo_is_created_with_mode_0600() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let name = unique("mode");
    let path = fifo(&name);
    let recv = start(cmd(P).args(["recv", "--name", &name, "--timeout", "2"]));
    wait_for_path(&path, Duration::from_secs(10));
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = finish(recv);
    assert_code(&out, 4);
    assert_no_leftovers(&name);
}

#[test]
fn verbose_narrates_the_system_calls() {
    let out = run(cmd(P).args(["run", "-v", "-n", "3", "--mode", "pingpong"]));
    assert_code(&out, 0);
    let err = stderr(&out);
    for call in ["pipe2(", "fork() + exec(", "writev(", "read("] {
        assert!(err.contains(call), "-v does not show {call}: {err}");
    }
    assert!(
        err.contains("[pipes:") || err.contains("[message passing:"),
        "{err}"
    );

    let ep = FIFO.endpoint("narrate");
    let p = transfer(&FIFO, &ep, Role::Receiver, &["-n", "2", "-v"], &["-v"]);
    let err = p.narration;
    assert!(err.contains("mkfifo(") && err.contains("open("), "{err}");
    assert!(
        err.contains("unlink("),
        "the name is removed once both ends are open: {err}"
    );
}
