//! `watch NAME`: one pair, refreshed in place. On a terminal a ratatui screen (q or
//! Ctrl-C quits); otherwise one line per refresh.

use crate::inventory::{self, Item};
use crate::state::State;
use crossterm::event::{self, Event, KeyCode, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Gauge, Paragraph};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One refresh: what is shown.
struct View {
    lines: Vec<String>,
    /// (label, fraction full) per ring or queue.
    gauges: Vec<(String, f64)>,
    /// The one-line form, for a pipe.
    brief: String,
    found: bool,
}

/// What the previous refresh saw: ring tails and wake counters, for rates.
#[derive(Default)]
struct Before {
    at: Option<Instant>,
    counters: BTreeMap<String, u64>,
}

fn of_pair(it: &Item, name: &str) -> bool {
    it.exists && (it.pair.as_deref() == Some(name) || inventory::base_name(&it.name) == name)
}

fn rate(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B/s", "KB/s", "MB/s", "GB/s"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn look(name: &str, before: &mut Before) -> View {
    let inv = inventory::take(false, true);
    let now = Instant::now();
    let dt = before
        .at
        .map(|t| now.duration_since(t).as_secs_f64())
        .filter(|&d| d > 0.0);
    let mut counters = BTreeMap::new();
    let mut lines = Vec::new();
    let mut gauges = Vec::new();
    let mut brief = Vec::new();
    let mut procs: BTreeMap<u32, String> = BTreeMap::new();
    let items: Vec<&Item> = inv.items.iter().filter(|i| of_pair(i, name)).collect();
    for it in &items {
        lines.push(inventory::describe(it));
        for p in it.creators.iter().chain(&it.holders) {
            let life = if p.alive { "alive" } else { "DEAD" };
            let side = if p.side.is_empty() { "" } else { &p.side };
            let w = p.wchan.as_deref().unwrap_or("-");
            let e = procs.entry(p.pid).or_default();
            if e.is_empty() || !side.is_empty() {
                *e = format!(
                    "pid {} {} {side} {life}, in the kernel at: {w}",
                    p.pid, p.program
                );
            }
        }
        match &it.state {
            Some(State::Segment(seg)) => {
                lines.push(format!(
                    "  {} api, sync {}, {}, ring of {} B{}{}",
                    seg.api,
                    seg.sync,
                    seg.phase,
                    seg.capacity,
                    if seg.zero_copy { ", zero-copy" } else { "" },
                    if seg.pool > 0 {
                        format!(", pool of {}", seg.pool)
                    } else {
                        String::new()
                    }
                ));
                for (i, r) in seg.rings.iter().enumerate() {
                    let (writer, reader) = if i == 0 {
                        ("producer", "consumer")
                    } else {
                        ("consumer", "producer")
                    };
                    let key = format!("{}#{i}", it.name);
                    let wakes = u64::from(r.data_wakes) + u64::from(r.space_wakes);
                    let thr = dt
                        .zip(before.counters.get(&format!("{key}.tail")))
                        .map(|(d, &t)| rate(r.tail.saturating_sub(t) as f64 / d))
                        .unwrap_or_else(|| "-".into());
                    let wk = dt
                        .zip(before.counters.get(&format!("{key}.wakes")))
                        .map(|(d, &w)| format!("{:.0}/s", wakes.wrapping_sub(w) as f64 / d))
                        .unwrap_or_else(|| "-".into());
                    counters.insert(format!("{key}.tail"), r.tail);
                    counters.insert(format!("{key}.wakes"), wakes);
                    let waits = match (r.writer_waiting, r.reader_waiting) {
                        (true, _) => format!("{writer} waits for {reader} (ring full)"),
                        (_, true) => format!("{reader} waits for {writer} (ring empty)"),
                        _ => "nobody asleep".into(),
                    };
                    let frac = match r.fill {
                        Some(f) if seg.capacity > 0 => f as f64 / seg.capacity as f64,
                        _ => 0.0,
                    };
                    lines.push(format!(
                        "  ring {i} ({writer} -> {reader}): {thr}, {} B moved, futex wake-ups {wk}, {waits}",
                        r.tail
                    ));
                    gauges.push((
                        format!(
                            "ring {i} fill {}",
                            r.fill.map_or("corrupt".into(), |f| format!("{f} B"))
                        ),
                        frac,
                    ));
                    brief.push(format!(
                        "ring{i} fill {:.0}% {thr} wakes {wk} {}",
                        frac * 100.0,
                        waits.replace(' ', "-")
                    ));
                }
            }
            Some(State::Queue {
                depth, capacity, ..
            }) => {
                let waits = match capacity {
                    Some(c) if depth >= c => "producer waits for consumer (queue full)",
                    _ if *depth == 0 => "consumer waits for producer (queue empty)",
                    _ => "messages in flight",
                };
                lines.push(format!("  {depth} messages waiting: {waits}"));
                if let Some(c) = capacity.filter(|&c| c > 0) {
                    gauges.push((
                        format!("{} depth {depth}/{c}", it.name),
                        (*depth as f64 / c as f64).clamp(0.0, 1.0),
                    ));
                }
                brief.push(format!("{} depth {depth}", it.name));
            }
            Some(State::Unreadable { why }) => lines.push(format!("  state unreadable: {why}")),
            _ => {}
        }
    }
    lines.push(String::new());
    lines.push("processes (who waits on whom: where each sleeps in the kernel):".into());
    lines.extend(procs.values().map(|p| format!("  {p}")));
    before.at = Some(now);
    before.counters = counters;
    if items.is_empty() {
        lines = vec![format!(
            "no objects of pair {name}: not running (yet), or gone; `ipc-ctl ls` lists every pair"
        )];
    }
    View {
        lines,
        gauges,
        brief: if items.is_empty() {
            format!("{name}: no objects")
        } else {
            format!("{name}: {}", brief.join(" | "))
        },
        found: !items.is_empty(),
    }
}

pub fn run(name: &str, interval: f64, count: Option<u64>) -> u8 {
    let every = Duration::from_secs_f64(interval);
    let mut before = Before::default();
    if !std::io::stdout().is_terminal() {
        let mut seen = false;
        let mut n = 0;
        loop {
            let v = look(name, &mut before);
            println!("{}", v.brief);
            n += 1;
            if count.is_some_and(|c| n >= c) {
                return 0;
            }
            if !v.found {
                if !seen {
                    eprintln!("ipc-ctl: error: no pair named {name} is running (see ipc-ctl ls)");
                    return 1;
                }
                return 0;
            }
            seen = true;
            std::thread::sleep(every);
        }
    }
    match tui(name, every, count, &mut before) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ipc-ctl: error: terminal: {e}");
            1
        }
    }
}

fn tui(
    name: &str,
    every: Duration,
    count: Option<u64>,
    before: &mut Before,
) -> std::io::Result<()> {
    terminal::enable_raw_mode()?;
    crossterm::execute!(std::io::stdout(), EnterAlternateScreen)?;
    let restore = || {
        let _ = terminal::disable_raw_mode();
        let _ = crossterm::execute!(std::io::stdout(), LeaveAlternateScreen);
    };
    let mut term =
        match ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
    let mut n = 0;
    let r = (|| -> std::io::Result<()> {
        loop {
            let v = look(name, before);
            term.draw(|f| {
                let area = f.area();
                let mut rows = vec![Constraint::Length(3); v.gauges.len()];
                rows.push(Constraint::Min(1));
                let parts = Layout::vertical(rows).split(area);
                for (i, (label, frac)) in v.gauges.iter().enumerate() {
                    let g = Gauge::default()
                        .block(Block::default().borders(Borders::ALL).title(label.as_str()))
                        .gauge_style(Style::default().fg(Color::Cyan))
                        .ratio(frac.clamp(0.0, 1.0));
                    f.render_widget(g, parts[i]);
                }
                let text: Vec<Line> = v.lines.iter().map(|l| Line::from(l.as_str())).collect();
                let title = format!(" ipc-ctl watch {name}  (q quits) ");
                let p =
                    Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title));
                f.render_widget(p, parts[v.gauges.len()]);
            })?;
            n += 1;
            if count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            let deadline = Instant::now() + every;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if !event::poll(left)? {
                    break;
                }
                if let Event::Key(k) = event::read()? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.code == KeyCode::Char('q') || k.code == KeyCode::Esc || ctrl_c {
                        return Ok(());
                    }
                }
            }
        }
    })();
    restore();
    r
}
