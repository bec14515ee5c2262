//! The plots, as PNG: stream throughput and pingpong round trip against message size
//! (log axes, a tick at every measured size), and "which is fastest at each size".
//!
//! The four families are told apart by colour (pipes blue, queues green, sockets
//! orange, shared memory red); the variants of a family by marker, dash and shade. The
//! legend sits in its own panel right of the data, so it never hides a line. Text is
//! drawn with the DejaVu Sans font shipped in docs/bench, so the PNGs render the same
//! on any machine with nothing installed.

use crate::output::{size_label, Results};
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 1400;
const H: u32 = 820;
/// Width of the legend panel right of the chart.
const LEGEND_W: u32 = 380;
const FONT: &str = "sans-serif";

/// Register the shipped font once; plotters' `ab_glyph` text needs it.
fn fonts() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../../../docs/bench/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
    });
    anyhow::ensure!(
        ok,
        "the shipped font docs/bench/DejaVuSans.ttf did not load"
    );
    Ok(())
}

/// The four families of the bench, in legend order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    Pipes,
    Queues,
    Sockets,
    Shm,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Pipes, Family::Queues, Family::Sockets, Family::Shm];

    pub fn of(mech: &str) -> Family {
        if mech.starts_with("shm") {
            Family::Shm
        } else if mech.starts_with("mq") {
            Family::Queues
        } else if mech.starts_with("unix") || mech == "tcp" {
            Family::Sockets
        } else {
            Family::Pipes
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Pipes => "pipes",
            Family::Queues => "message queues",
            Family::Sockets => "sockets",
            Family::Shm => "shared memory",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Family::Pipes => RGBColor(31, 100, 200),
            Family::Queues => RGBColor(20, 140, 60),
            Family::Sockets => RGBColor(230, 120, 0),
            Family::Shm => RGBColor(200, 20, 40),
        }
    }
}

/// How one line is drawn: its family's colour (darker or lighter by variant), a
/// marker, and solid or dashed.
#[derive(Clone, Copy)]
struct Look {
    colour: RGBColor,
    marker: usize,
    dashed: bool,
}

fn look(family: Family, variant: usize) -> Look {
    let RGBColor(r, g, b) = family.colour();
    // Shades step towards black: every variant stays recognisably its family's.
    let k = 1.0 - 0.12 * (variant / 2 % 4) as f64;
    let c = |v: u8| (f64::from(v) * k) as u8;
    Look {
        colour: RGBColor(c(r), c(g), c(b)),
        marker: variant % 4,
        dashed: variant % 2 == 1,
    }
}

fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    l: Look,
    at: (i32, i32),
) -> anyhow::Result<()> {
    let st = l.colour.filled();
    let e = |x| anyhow::anyhow!("drawing a marker: {x:?}");
    match l.marker {
        0 => area.draw(&Circle::new(at, 5, st)).map_err(e)?,
        1 => area.draw(&TriangleMarker::new(at, 7, st)).map_err(e)?,
        2 => area
            .draw(&Rectangle::new(
                [(at.0 - 5, at.1 - 5), (at.0 + 5, at.1 + 5)],
                st,
            ))
            .map_err(e)?,
        _ => area
            .draw(&Cross::new(at, 6, l.colour.stroke_width(3)))
            .map_err(e)?,
    }
    Ok(())
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if lo > hi {
        (1.0, 10.0)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

fn x_range(r: &Results) -> (f64, f64) {
    let lo = *r.sizes.iter().min().unwrap_or(&64) as f64;
    let hi = *r.sizes.iter().max().unwrap_or(&1048576) as f64;
    if lo == hi {
        (lo / 2.0, hi * 2.0)
    } else {
        (lo / 1.5, hi * 1.5)
    }
}

/// One line of a chart: its label, how it is drawn, its points.
struct Line {
    label: String,
    look: Look,
    points: Vec<(f64, f64)>,
}

/// One line per mechanism with a median at some size, styled by family and variant.
fn lines(r: &Results, mode: &str, value: &dyn Fn(&crate::Sample) -> Option<f64>) -> Vec<Line> {
    let mut per_family = [0usize; 4];
    let mut out = Vec::new();
    for f in Family::ALL {
        for m in r.mechanisms.iter().filter(|m| Family::of(&m.id) == f) {
            let points: Vec<(f64, f64)> = r
                .sizes
                .iter()
                .filter_map(|&s| r.get(&m.id, s, mode).and_then(value).map(|v| (s as f64, v)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let i = &mut per_family[f as usize];
            out.push(Line {
                label: m.id.clone(),
                look: look(f, *i),
                points,
            });
            *i += 1;
        }
    }
    out
}

/// A baseline: thick, dashed, no marker; black or grey, so two baselines differ.
struct Baseline {
    label: String,
    points: Vec<(f64, f64)>,
}

fn baseline_style(i: usize) -> ShapeStyle {
    let c = if i == 0 {
        BLACK
    } else {
        RGBColor(130, 130, 130)
    };
    c.stroke_width(3)
}

type Png<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw(
    path: &Path,
    caption: &str,
    y_desc: &str,
    series: Vec<Line>,
    baselines: Vec<Baseline>,
    y_fmt: &dyn Fn(&f64) -> String,
    r: &Results,
) -> anyhow::Result<()> {
    fonts()?;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(caption, (FONT, 24))?;
    let (plot, legend) = root.split_horizontally(W - LEGEND_W);
    let (xlo, xhi) = x_range(r);
    let (ylo, yhi) = bounds(
        series
            .iter()
            .flat_map(|l| l.points.iter().map(|q| q.1))
            .chain(baselines.iter().flat_map(|b| b.points.iter().map(|q| q.1))),
    );
    let ticks: Vec<f64> = r.sizes.iter().map(|&s| s as f64).collect();
    let mut chart = ChartBuilder::on(&plot)
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (xlo..xhi).log_scale().with_key_points(ticks),
            (ylo..yhi).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log scale)")
        .y_desc(y_desc)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .x_label_formatter(&|v| bytes_label(v.round() as usize))
        .y_label_formatter(y_fmt)
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (i, b) in baselines.iter().enumerate() {
        let st = baseline_style(i);
        chart.draw_series(DashedLineSeries::new(b.points.clone(), 12, 6, st))?;
    }
    for l in &series {
        let st = l.look.colour.stroke_width(2);
        if l.look.dashed {
            chart.draw_series(DashedLineSeries::new(l.points.clone(), 9, 5, st))?;
        } else {
            chart.draw_series(LineSeries::new(l.points.clone(), st))?;
        }
        let (pts, c) = (l.points.clone(), l.look.colour);
        match l.look.marker {
            0 => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.filled())))?,
            1 => chart.draw_series(
                pts.into_iter()
                    .map(|p| TriangleMarker::new(p, 7, c.filled())),
            )?,
            2 => chart
                .draw_series(pts.into_iter().map(|p| {
                    EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], c.filled())
                }))?,
            _ => chart.draw_series(pts.into_iter().map(|p| Cross::new(p, 6, c.stroke_width(3))))?,
        };
    }
    draw_legend(&legend, &series, &baselines)?;
    root.present()?;
    Ok(())
}

/// The legend panel: the families' headings, each line as drawn, then the baselines.
fn draw_legend(area: &Png, series: &[Line], baselines: &[Baseline]) -> anyhow::Result<()> {
    let e = |x| anyhow::anyhow!("drawing the legend: {x:?}");
    let mut y = 20;
    let text = |s: &str, x, y, size, c: &RGBColor| {
        Text::new(s.to_string(), (x, y), (FONT, size).into_font().color(c))
    };
    for f in Family::ALL {
        let mine: Vec<&Line> = series
            .iter()
            .filter(|l| Family::of(&l.label) == f)
            .collect();
        if mine.is_empty() {
            continue;
        }
        area.draw(&text(f.name(), 10, y, 18, &f.colour()))
            .map_err(e)?;
        y += 24;
        for l in mine {
            legend_sample(area, l.look, y + 8)?;
            area.draw(&text(&l.label, 70, y, 15, &BLACK)).map_err(e)?;
            y += 20;
        }
        y += 6;
    }
    for (i, b) in baselines.iter().enumerate() {
        let st = baseline_style(i);
        area.draw(&PathElement::new(vec![(10, y + 8), (22, y + 8)], st))
            .map_err(e)?;
        area.draw(&PathElement::new(vec![(30, y + 8), (55, y + 8)], st))
            .map_err(e)?;
        area.draw(&text(&b.label, 70, y, 15, &BLACK)).map_err(e)?;
        y += 20;
    }
    Ok(())
}

fn legend_sample(area: &Png, l: Look, y: i32) -> anyhow::Result<()> {
    let e = |x| anyhow::anyhow!("drawing the legend: {x:?}");
    let st = l.colour.stroke_width(2);
    let pieces: &[(i32, i32)] = if l.dashed {
        &[(8, 20), (28, 40), (48, 58)]
    } else {
        &[(8, 58)]
    };
    for &(a, b) in pieces {
        area.draw(&PathElement::new(vec![(a, y), (b, y)], st))
            .map_err(e)?;
    }
    marker(area, l, (33, y))
}

pub fn throughput(r: &Results, path: &Path) -> anyhow::Result<()> {
    let series = lines(r, "stream", &|s| Some(s.mib_per_sec));
    let memcpy = Baseline {
        label: "memcpy, one core".into(),
        points: r
            .baselines
            .memcpy_mib_s
            .iter()
            .map(|(s, v)| (*s as f64, *v))
            .collect(),
    };
    let ring = Baseline {
        label: "bare ring (memcpy in, memcpy out)".into(),
        points: r
            .baselines
            .bare_ring_msgs_s
            .iter()
            .map(|(s, v)| (*s as f64, v * *s as f64 / f64::from(1 << 20)))
            .collect(),
    };
    draw(
        path,
        "Stream throughput by message size (medians; higher is better)",
        "MiB/s (log scale)",
        series,
        vec![memcpy, ring],
        &|v| format!("{v:.0}"),
        r,
    )
}

pub fn latency(r: &Results, path: &Path) -> anyhow::Result<()> {
    let series = lines(r, "pingpong", &|s| s.p50_ns.map(|v| v / 1000.0));
    let (xlo, xhi) = x_range(r);
    let flat = |label: &str, ns: u64| Baseline {
        label: label.into(),
        points: vec![(xlo, ns as f64 / 1000.0), (xhi, ns as f64 / 1000.0)],
    };
    draw(
        path,
        "Pingpong round trip p50 by message size (lower is better)",
        "round trip, µs (log scale)",
        series,
        vec![
            flat("cache-line round trip", r.baselines.atomic_rtt.p50_ns),
            flat("futex wake-up round trip", r.baselines.futex_rtt.p50_ns),
        ],
        &|v| compact(*v),
        r,
    )
}

/// The fastest of each family at each size: one bar per family, the winner's id on it.
/// Top: stream MiB/s (higher is better); bottom: round trip p50 (lower is better).
pub fn fastest(r: &Results, path: &Path) -> anyhow::Result<()> {
    fonts()?;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Which is fastest at each size? The best of each family (medians)",
        (FONT, 24),
    )?;
    let (top, bottom) = root.split_vertically((H - 40) / 2);
    let (top, key) = top.split_horizontally(W - 220);
    bars(
        &top,
        r,
        "stream",
        "stream MiB/s (log; higher is better)",
        &|s| Some(s.mib_per_sec),
    )?;
    let (bottom, _) = bottom.split_horizontally(W - 220);
    bars(
        &bottom,
        r,
        "pingpong",
        "round trip p50, µs (log; lower is better)",
        &|s| s.p50_ns.map(|v| v / 1000.0),
    )?;
    let e = |x| anyhow::anyhow!("drawing the key: {x:?}");
    for (i, f) in Family::ALL.iter().enumerate() {
        let y = 40 + 28 * i as i32;
        key.draw(&Rectangle::new(
            [(10, y), (30, y + 16)],
            f.colour().filled(),
        ))
        .map_err(e)?;
        key.draw(&Text::new(f.name(), (38, y), (FONT, 16)))
            .map_err(e)?;
    }
    root.present()?;
    Ok(())
}

/// The best mechanism of `family` at `size` in `mode`, and its value (the largest
/// for stream, the smallest round trip for pingpong).
fn best_of(
    r: &Results,
    family: Family,
    size: usize,
    mode: &str,
    value: &dyn Fn(&crate::Sample) -> Option<f64>,
) -> Option<(String, f64)> {
    let better = |a: f64, b: f64| if mode == "stream" { a > b } else { a < b };
    r.mechanisms
        .iter()
        .filter(|m| Family::of(&m.id) == family)
        .filter_map(|m| {
            r.get(&m.id, size, mode)
                .and_then(value)
                .map(|v| (m.id.clone(), v))
        })
        .fold(None, |acc: Option<(String, f64)>, (id, v)| match acc {
            Some((_, b)) if !better(v, b) => acc,
            _ => Some((id, v)),
        })
}

fn bars(
    area: &Png,
    r: &Results,
    mode: &str,
    y_desc: &str,
    value: &dyn Fn(&crate::Sample) -> Option<f64>,
) -> anyhow::Result<()> {
    let n = r.sizes.len();
    let all: Vec<(usize, usize, String, f64)> = (0..n)
        .flat_map(|i| {
            Family::ALL.iter().enumerate().filter_map(move |(k, &f)| {
                best_of(r, f, r.sizes[i], mode, value).map(|(id, v)| (i, k, id, v))
            })
        })
        .collect();
    let (ylo, yhi) = bounds(all.iter().map(|a| a.3));
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n as f64, (ylo..yhi * 4.0).log_scale())?;
    let sizes = r.sizes.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&|v| {
            // Each size's group is centred on i + 0.5.
            let i = (v - 0.5).round();
            match ((v - 0.5 - i).abs() < 0.01, sizes.get(i as usize)) {
                (true, Some(&s)) if i >= 0.0 => bytes_label(s),
                _ => String::new(),
            }
        })
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .y_label_formatter(&|v| compact(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, k, id, v) in &all {
        let x0 = *i as f64 + 0.08 + 0.21 * *k as f64;
        let c = Family::ALL[*k].colour();
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, ylo), (x0 + 0.19, *v)],
            c.filled(),
        )))?;
        let style = TextStyle::from((FONT, 12).into_font())
            .transform(FontTransform::Rotate270)
            .color(&BLACK);
        chart.draw_series(std::iter::once(
            EmptyElement::at((x0 + 0.04, *v)) + Text::new(id.clone(), (0, -4), style),
        ))?;
    }
    Ok(())
}

/// "64 B", "4 KiB", "1 MiB".
fn bytes_label(s: usize) -> String {
    let l = size_label(s);
    match l.strip_suffix('K').or_else(|| l.strip_suffix('M')) {
        Some(n) if l.ends_with('K') => format!("{n} KiB"),
        Some(n) => format!("{n} MiB"),
        None => format!("{l} B"),
    }
}

/// An axis value without needless decimals: 0.25, 2.5, 40, 12000.
fn compact(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
