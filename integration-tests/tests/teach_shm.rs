//! Teaching the shared-memory pair: a consumer given no `--api` finds the producer's
//! segment under whichever API it was made with; `--api` that names another API than
//! the live producer's is refused at once as a mismatch; each side's `--help` lists
//! its own flags only; `--keep` keeps the name while the pair runs.

use integration_tests::*;
use std::collections::BTreeSet;
use std::time::Duration;

const PROD: &str = "shm-producer";
const CONS: &str = "shm-consumer";
const LIMIT: Duration = Duration::from_secs(60);

/// The long flags `--help` defines (its option lines), not those its examples mention.
fn defined_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let long = l.split_whitespace().find(|w| w.starts_with("--"))?;
            Some(long.trim_end_matches(',').to_string())
        })
        .collect()
}

#[test]
fn a_plain_consumer_attaches_to_a_sysv_or_mapped_file_producer() {
    for api in ["sysv", "mmap"] {
        let name = unique(&format!("learn-{api}"));
        // -v: the SysV key shows in the narration, and the consumer's look is narrated.
        let prod = start_watched(cmd(PROD).args([
            "--api",
            api,
            "--name",
            &name,
            "-n",
            "40",
            "-v",
            "--json",
            "--timeout",
            "30",
        ]));
        let cons = start(cmd(CONS).args(["--name", &name, "--json", "-v", "--timeout", "30"]));
        let cons = finish_within(cons, LIMIT);
        let pid = prod.id();
        let prod = prod.finish_within(LIMIT);
        assert_code(&cons, 0);
        assert_code(&prod, 0);
        let v = summary(&cons);
        assert_verified(&v, 40);
        assert_eq!(v["options"]["api"], api, "{v}");
        let open = if api == "sysv" {
            "shmat("
        } else {
            ".mmap\", O_RDWR"
        };
        assert!(stderr(&cons).contains(open), "{api}: {}", stderr(&cons));
        assert_no_leftovers(&name);
        // A SysV segment is known by its key (narrated) and its creator's pid.
        let keys = sysv_keys_in(&stderr(&prod));
        assert_eq!(keys.is_empty(), api != "sysv", "{}", stderr(&prod));
        let left: Vec<SysvShm> = sysv_shm_segments()
            .into_iter()
            .filter(|s| keys.contains(&s.key) && s.cpid == pid)
            .collect();
        assert!(left.is_empty(), "SysV segments left behind: {left:?}");
    }
}

#[test]
fn a_consumer_given_another_api_than_the_live_producers_is_told_which() {
    let name = unique("api-mismatch");
    let mut prod = start_watched(cmd(PROD).args([
        "--api",
        "mmap",
        "--name",
        &name,
        "-n",
        "20",
        "--timeout",
        "30",
    ]));
    prod.wait_for("waiting", Duration::from_secs(20));
    let wrong = finish_within(
        start(cmd(CONS).args(["--api", "posix", "--name", &name, "--timeout", "20"])),
        LIMIT,
    );
    assert_code(&wrong, 2);
    let err = stderr(&wrong);
    assert!(
        err.contains("error[mismatch]") && err.contains("--api mmap"),
        "names the producer's api: {err}"
    );
    // The producer still waits; a consumer without --api completes the pair.
    let right = finish_within(
        start(cmd(CONS).args(["--name", &name, "--json", "--timeout", "20"])),
        LIMIT,
    );
    let prod = prod.finish_within(LIMIT);
    assert_code(&right, 0);
    assert_code(&prod, 0);
    assert_verified(&summary(&right), 20);
    assert_no_leftovers(&name);
}

#[test]
fn each_side_help_lists_its_own_flags_only() {
    let producer_only = [
        "--sync",
        "--segment-size",
        "--segments",
        "--zero-copy",
        "--count",
        "--size",
        "--input",
        "--interval",
        "--mode",
    ];
    let cons = run(cmd(CONS).arg("--help"));
    assert_code(&cons, 0);
    let flags = defined_flags(&stdout(&cons));
    for f in [
        "--api",
        "--file",
        "--name",
        "--output",
        "--seed",
        "--timeout",
        "--step",
        "--keep",
    ] {
        assert!(flags.contains(f), "consumer --help lacks {f}: {flags:?}");
    }
    for f in producer_only {
        assert!(!flags.contains(f), "consumer --help lists {f}: {flags:?}");
    }
    let prod = run(cmd(PROD).arg("--help"));
    assert_code(&prod, 0);
    let flags = defined_flags(&stdout(&prod));
    for f in producer_only {
        assert!(flags.contains(f), "producer --help lacks {f}: {flags:?}");
    }
    assert!(
        !flags.contains("--output"),
        "producer --help lists --output"
    );
    // The examples show both terminals' commands.
    for s in [stdout(&cons), stdout(&prod)] {
        assert!(
            s.contains("1$ shm-producer") && s.contains("2$ shm-consumer"),
            "{s}"
        );
    }
}
