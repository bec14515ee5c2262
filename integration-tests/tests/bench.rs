//! ipc-bench smoke test: a `--quick` pass over one size and a few mechanisms, checking
//! the shape of what it prints and writes. No timing is asserted: this machine is shared.

use integration_tests::{cmd, finish_within, start, WATCHDOG};

#[test]
fn quick_pass_writes_tables_json_markdown_and_plots() {
    let out = tempfile::tempdir().expect("tempdir");
    let child = start(
        cmd("ipc-bench")
            .args([
                "--quick",
                "--sizes",
                "4K",
                "--mech",
                "pipe,unix-seqpacket,shm-posix-spin,shm-zc-spin",
                "--no-rss",
                "--out",
            ])
            .arg(out.path()),
    );
    let pid = child.id();
    let o = finish_within(child, WATCHDOG * 3);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "ipc-bench failed: {stderr}\n{stdout}");
    for want in [
        "Stream: MiB/s",
        "Pingpong: round trip p50",
        "Goals",
        "cache-line round trip",
        "Bare ring",
        "fraction of the bare ring",
        "futex wake-up round trip",
        "shm-posix-spin",
        "Copy vs map",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    assert_eq!(v["sizes"], serde_json::json!([4096]));
    let b = &v["baselines"];
    assert!(b["atomic_rtt"]["p50_ns"].as_u64().unwrap() > 0, "{b}");
    assert!(b["futex_rtt"]["p999_ns"].as_u64().unwrap() > 0, "{b}");
    assert!(b["memcpy_mib_s"]["4096"].as_f64().unwrap() > 0.0, "{b}");
    assert!(b["bare_ring_msgs_s"]["4096"].as_f64().unwrap() > 0.0, "{b}");
    let cells = v["cells"].as_array().expect("cells");
    // 4 mechanisms x 2 modes; zero-copy has no pingpong.
    assert_eq!(cells.len(), 8, "{cells:?}");
    for c in cells {
        let zc_pingpong = c["mech"] == "shm-zc-spin" && c["mode"] == "pingpong";
        if zc_pingpong {
            assert!(c["median"].is_null() && c["error"].is_string(), "{c}");
            continue;
        }
        let m = &c["median"];
        assert!(m["msgs_per_sec"].as_f64().unwrap() > 0.0, "{c}");
        assert!(m["cpu_send_s"].as_f64().unwrap() >= 0.0, "{c}");
        if c["mode"] == "pingpong" {
            assert!(
                m["p999_ns"].as_f64().unwrap() >= m["p50_ns"].as_f64().unwrap(),
                "{c}"
            );
        }
        if c["mech"] != "pipe" {
            assert!(m["rss_recv_kib"].as_f64().unwrap() > 0.0, "{c}");
        }
    }
    let targets = v["targets"].as_array().expect("targets");
    assert!(!targets.is_empty());
    for t in targets {
        assert!(t["target"].is_string() && t["measured"].is_string(), "{t}");
    }
    let md = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(
        md.contains("| mechanism |") && md.contains("### Goals") && !md.contains("MISSED"),
        "{md}"
    );
    assert!(!stdout.contains("MISSED"), "{stdout}");
    for png in ["throughput.png", "latency.png", "fastest.png"] {
        let b = std::fs::read(out.path().join(png)).expect(png);
        // A PNG, and not an empty canvas: a 1400x820 white image compresses to a few KiB.
        assert!(
            b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 20_000,
            "{png}: {} bytes",
            b.len()
        );
    }
    // Nothing of the bench's is left behind: its objects are ipc-bench-<pid>-<n>.
    let prefix = format!("ipc-bench-{pid}-");
    for dir in ["/dev/shm", "/dev/mqueue", "/tmp"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(&prefix), "left behind: {dir}/{name}");
            }
        }
    }
}
