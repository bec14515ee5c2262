//! The run summary every side prints: a few human lines, or with `--json` one object
//! whose snake_case keys are stable (documented in the README).

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Integrity as the checking side saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Integrity {
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
}

impl Integrity {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.corrupted == 0
    }
}

/// Round-trip latency percentiles in nanoseconds (pingpong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// e.g. `fifo`, `pipe`.
    pub mechanism: String,
    /// `sender` or `receiver`.
    pub role: &'static str,
    /// Mechanism-specific options (paths, api, sync kind...).
    pub options: BTreeMap<String, String>,
    /// Serialised as `Mode::as_str` gives it (`stream`, `pingpong`).
    pub mode: crate::args::Mode,
    /// `generated`, `file` or `raw`.
    pub payload: &'static str,
    /// Message size in bytes (the largest, for a file).
    pub size: u64,
    pub seed: Option<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mib_per_sec: f64,
    #[serde(flatten)]
    pub latency: Option<Latency>,
    /// `None` for a stream sender, which checks nothing (its receiver does).
    #[serde(flatten)]
    pub integrity: Option<Integrity>,
    /// Every message checked and nothing lost, duplicated or corrupted.
    pub verified: bool,
}

/// The keys of the latency and integrity parts, which a report may not have: null then.
const OPTIONAL_KEYS: [&str; 8] = [
    "p50_ns",
    "p99_ns",
    "p999_ns",
    "max_ns",
    "received",
    "lost",
    "duplicated",
    "corrupted",
];

impl Report {
    /// The report of a run described but not measured yet: zeros, nothing verified.
    pub fn new(
        mechanism: String,
        role: &'static str,
        options: BTreeMap<String, String>,
        mode: crate::args::Mode,
        payload: &'static str,
        size: u64,
        seed: Option<u64>,
    ) -> Report {
        Report {
            mechanism,
            role,
            options,
            mode,
            payload,
            size,
            seed,
            messages: 0,
            bytes: 0,
            seconds: 0.0,
            msgs_per_sec: 0.0,
            mib_per_sec: 0.0,
            latency: None,
            integrity: None,
            verified: false,
        }
    }

    pub fn set_timing(&mut self, messages: u64, bytes: u64, elapsed: Duration) {
        self.messages = messages;
        self.bytes = bytes;
        let secs = elapsed.as_secs_f64().max(1e-9);
        self.seconds = elapsed.as_secs_f64();
        self.msgs_per_sec = messages as f64 / secs;
        self.mib_per_sec = bytes as f64 / secs / (1 << 20) as f64;
    }

    pub fn json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a report always serialises");
        // Keep every key present, so a consumer never has to guess.
        if let Some(obj) = v.as_object_mut() {
            for key in OPTIONAL_KEYS {
                obj.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        v.to_string()
    }

    pub fn human(&self) -> String {
        let mut opts = format!("mode={} size={}", self.mode.as_str(), self.size);
        if let Some(seed) = self.seed {
            opts += &format!(" seed={seed}");
        }
        opts += &format!(" payload={}", self.payload);
        for (k, v) in &self.options {
            opts += &format!(" {k}={v}");
        }
        let mut s = format!("{} {} ({opts})\n", self.mechanism, self.role);
        s += &format!(
            "  {} messages, {} in {:.3} s: {} msg/s, {:.1} MiB/s\n",
            self.messages,
            human_bytes(self.bytes),
            self.seconds,
            human_count(self.msgs_per_sec),
            self.mib_per_sec
        );
        if let Some(l) = &self.latency {
            s += &format!(
                "  round trip: p50 {}, p99 {}, p99.9 {}, max {}\n",
                human_ns(l.p50_ns),
                human_ns(l.p99_ns),
                human_ns(l.p999_ns),
                human_ns(l.max_ns)
            );
        }
        match &self.integrity {
            Some(i) => {
                s += &format!(
                    "  integrity: {} received, {} lost, {} duplicated, {} corrupted: {}\n",
                    i.received,
                    i.lost,
                    i.duplicated,
                    i.corrupted,
                    if self.verified { "verified" } else { "FAILED" }
                );
            }
            None if self.role == "sender" => s += "  integrity: checked by the receiver\n",
            None => {
                s += "  integrity: not checked (raw bytes have no frame); compare the output with its source, e.g. with cmp\n"
            }
        }
        s
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_count(v: f64) -> String {
    in_thousands(v, COUNT, 1)
}

pub fn human_ns(ns: u64) -> String {
    in_thousands(ns as f64, NANOS, 1)
}

/// The names of one, a thousand and a million of a count, and of nanoseconds.
pub const COUNT: [&str; 3] = ["", "k", "M"];
pub const NANOS: [&str; 3] = [" ns", " µs", " ms"];

/// `v` in the largest of `units` (one, thousand, million) it reaches: millions with two
/// decimals, thousands with `k_digits`, ones whole.
pub fn in_thousands(v: f64, units: [&str; 3], k_digits: usize) -> String {
    let [one, thousand, million] = units;
    if v >= 1e6 {
        format!("{:.2}{million}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.k_digits$}{thousand}", v / 1e3)
    } else {
        format!("{v:.0}{one}")
    }
}

/// Round-trip samples, summarised as percentiles.
pub struct LatencyRecorder {
    hist: hdrhistogram::Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            // 1 ns to 1 hour at 3 significant digits: a few hundred KiB, allocated once.
            hist: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl LatencyRecorder {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    pub fn summary(&self) -> Option<Latency> {
        (!self.hist.is_empty()).then(|| Latency {
            p50_ns: self.hist.value_at_quantile(0.50),
            p99_ns: self.hist.value_at_quantile(0.99),
            p999_ns: self.hist.value_at_quantile(0.999),
            max_ns: self.hist.max(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let options = BTreeMap::from([("path".to_string(), "/tmp/x".to_string())]);
        let mode = crate::args::Mode::Stream;
        Report {
            integrity: Some(Integrity {
                received: 10,
                ..Default::default()
            }),
            verified: true,
            ..Report::new(
                "fifo".into(),
                "receiver",
                options,
                mode,
                "generated",
                64,
                Some(1),
            )
        }
    }

    #[test]
    fn mode_serialises_as_its_name() {
        let mut r = sample();
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["mode"], "stream");
        r.mode = crate::args::Mode::Pingpong;
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["mode"], crate::args::Mode::Pingpong.as_str());
        assert!(r.human().contains("mode=pingpong"), "{}", r.human());
    }

    #[test]
    fn json_has_every_documented_key() {
        let mut r = sample();
        r.set_timing(10, 640, Duration::from_millis(10));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let always = [
            "mechanism",
            "role",
            "options",
            "mode",
            "payload",
            "size",
            "seed",
            "messages",
            "bytes",
            "seconds",
            "msgs_per_sec",
            "mib_per_sec",
            "verified",
        ];
        for key in always.into_iter().chain(OPTIONAL_KEYS) {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["received"], 10);
        assert_eq!(v["msgs_per_sec"], 1000.0);
        assert!(v["p50_ns"].is_null());
    }

    #[test]
    fn thousands_scale_to_the_largest_unit_reached() {
        assert_eq!(human_ns(999), "999 ns");
        assert_eq!(human_ns(1_500), "1.5 µs");
        assert_eq!(human_ns(2_345_678), "2.35 ms");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(in_thousands(12_345.0, COUNT, 0), "12k");
    }

    #[test]
    fn latency_percentiles() {
        let mut l = LatencyRecorder::default();
        assert!(l.summary().is_none());
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary().unwrap();
        assert!((49_000..=51_000).contains(&s.p50_ns), "{s:?}");
        assert!(s.max_ns >= 99_900, "{s:?}");
    }
}
