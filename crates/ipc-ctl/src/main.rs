//! `ipc-ctl`: see, watch and clean every IPC object of this project's pairs.

mod clean;
mod inventory;
mod state;
mod watch;

use clap::{Parser, Subcommand};
use inventory::{describe, Item};
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  ipc-ctl ls                      every object of every pair, who made it, who holds it
  ipc-ctl ls --json               the same, for scripts (alive true/false per process)
  ipc-ctl watch ipc-demo          a live view of the pair named ipc-demo (q quits)
  ipc-ctl clean --dry-run         what clean would remove, and what it keeps and why
  ipc-ctl clean                   remove the objects of pairs whose processes are all gone
  ipc-ctl clean --check ipc-test- list leftovers named ipc-test-*; exit 1 if any

Exit codes: 0 done, 1 something could not be looked at or removed (or --check found
leftovers), 2 usage error.";

#[derive(Parser)]
#[command(
    name = "ipc-ctl",
    version,
    about = "See, watch and clean the IPC objects of this project's pairs: POSIX and SysV shared memory, queues and semaphores, FIFOs, socket files, key files, mapped files and TCP listeners.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every object of every pair on this machine, with creators, holders and state
    Ls {
        /// One JSON document instead of a table
        #[arg(long)]
        json: bool,
    },
    /// A live view of one running pair: throughput, fill, wake-ups, who waits on whom
    Watch {
        /// The pair's --name
        name: String,
        /// Seconds between refreshes
        #[arg(long, default_value = "0.5", value_parser = parse_interval)]
        interval: f64,
        /// Stop after this many refreshes (default: until q, Ctrl-C, or the pair is gone
        /// when the output is not a terminal)
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remove the objects whose creators are all gone (tied to a record whose lock is free)
    Clean {
        /// Say what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Only objects whose name (or pair) starts with PREFIX
        #[arg(long, value_name = "PREFIX")]
        only: Option<String>,
        /// Remove nothing: list this project's objects named PREFIX*, exit 1 if any remain
        #[arg(long, value_name = "PREFIX", conflicts_with_all = ["dry_run", "only"])]
        check: Option<String>,
    },
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=60.0).contains(&v) => Ok(v),
        _ => Err("give seconds between 0.05 and 60".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Ls { json } => ls(json),
        Cmd::Watch {
            name,
            interval,
            count,
        } => watch::run(&name, interval, count),
        Cmd::Clean {
            dry_run,
            only,
            check,
        } => match check {
            Some(prefix) => clean::check(&prefix),
            None => clean::clean(dry_run, only.as_deref()),
        },
    };
    ExitCode::from(code)
}

/// Report what could not be looked at; nonzero, since the listing is incomplete.
fn problems(p: &[String]) -> u8 {
    for p in p {
        eprintln!("ipc-ctl: error: {p}");
    }
    u8::from(!p.is_empty())
}

fn ls(json: bool) -> u8 {
    let inv = inventory::take(false, true);
    if json {
        let doc = serde_json::json!({
            "objects": inv.items,
            "records": inv.records.iter().map(|r| serde_json::json!({
                "path": r.path,
                "pid": r.record.pid,
                "program": r.record.program,
                "side": r.record.side,
                "name": r.record.name,
                "alive": r.alive,
            })).collect::<Vec<_>>(),
            "problems": inv.problems,
            "notes": inv.notes,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        return problems(&inv.problems);
    }
    if inv.items.is_empty() {
        println!("no IPC objects of this project");
    }
    for it in &inv.items {
        println!("{}", line(it));
    }
    for n in &inv.notes {
        println!("note: {n}");
    }
    problems(&inv.problems)
}

fn procs(ps: &[inventory::Proc]) -> String {
    ps.iter()
        .map(|p| {
            let side = if p.side.is_empty() {
                String::new()
            } else {
                format!(" {}", p.side)
            };
            let life = if p.alive { "alive" } else { "dead" };
            format!("{} {}{side} ({life})", p.pid, p.program)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn line(it: &Item) -> String {
    let mut s = describe(it);
    if let Some(p) = &it.pair {
        s.push_str(&format!("  pair {p}"));
    }
    if !it.exists {
        s.push_str("  [gone]");
    }
    if let Some(size) = it.size {
        s.push_str(&format!("  {size} B"));
    }
    if let Some(uid) = it.uid {
        s.push_str(&format!("  uid {uid}"));
    }
    if let Some(a) = it.age_secs {
        s.push_str(&format!("  age {a} s"));
    }
    if it.creators.is_empty() {
        s.push_str("  created by: unknown (no record)");
    } else {
        s.push_str(&format!("  created by {}", procs(&it.creators)));
    }
    if !it.holders.is_empty() {
        s.push_str(&format!("  held by {}", procs(&it.holders)));
    }
    if let Some(st) = &it.state {
        s.push_str(&format!("  [{}]", state::summary(st)));
    }
    s
}
