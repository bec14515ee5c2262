//! The two plots: stream throughput and pingpong round trip against message size, log
//! axes, one line per mechanism, the baselines drawn in as dashed black lines.

use crate::output::{size_label, Results};
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 1100;
const H: u32 = 760;

fn style(i: usize, copy_based: bool) -> ShapeStyle {
    // Kernel-copy mechanisms thin, shared memory thick, so the two families separate.
    let c = Palette99::pick(i).to_rgba();
    c.stroke_width(if copy_based { 1 } else { 3 })
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
        (lo / 1.3, hi * 1.3)
    }
}

/// `(mechanism, copy_based, points)` for one mode and one value of a median.
type Line = (String, bool, Vec<(f64, f64)>);

fn lines(r: &Results, mode: &str, value: &dyn Fn(&crate::Sample) -> Option<f64>) -> Vec<Line> {
    r.mechanisms
        .iter()
        .map(|m| {
            let pts = r
                .sizes
                .iter()
                .filter_map(|&s| r.get(&m.id, s, mode).and_then(value).map(|v| (s as f64, v)))
                .collect::<Vec<_>>();
            (m.id.clone(), m.copy_based, pts)
        })
        .filter(|(_, _, p)| !p.is_empty())
        .collect()
}

fn draw(
    path: &Path,
    caption: &str,
    y_desc: &str,
    series: Vec<Line>,
    baselines: Vec<(String, Vec<(f64, f64)>)>,
    y_fmt: &dyn Fn(&f64) -> String,
    r: &Results,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (xlo, xhi) = x_range(r);
    let (ylo, yhi) = bounds(
        series
            .iter()
            .flat_map(|(_, _, p)| p.iter().map(|q| q.1))
            .chain(baselines.iter().flat_map(|(_, p)| p.iter().map(|q| q.1))),
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .right_y_label_area_size(10)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    let sizes = r.sizes.clone();
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log)")
        .y_desc(y_desc)
        .x_labels(12)
        .x_label_formatter(&|v| {
            // Label the measured sizes only.
            match sizes.iter().find(|&&s| ((s as f64) / v - 1.0).abs() < 0.15) {
                Some(&s) => size_label(s),
                None => String::new(),
            }
        })
        .y_label_formatter(y_fmt)
        .draw()?;
    for (i, (id, copy, pts)) in series.into_iter().enumerate() {
        let st = style(i, copy);
        chart
            .draw_series(LineSeries::new(pts.clone(), st))?
            .label(id)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
        chart.draw_series(pts.into_iter().map(move |p| Circle::new(p, 3, st.filled())))?;
    }
    for (label, pts) in baselines {
        let st = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(pts, 8, 5, st))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

pub fn throughput(r: &Results, path: &Path) -> anyhow::Result<()> {
    let series = lines(r, "stream", &|s| Some(s.mib_per_sec));
    let memcpy: Vec<(f64, f64)> = r
        .baselines
        .memcpy_mib_s
        .iter()
        .map(|(s, v)| (*s as f64, *v))
        .collect();
    draw(
        path,
        "Stream throughput vs message size (medians; dashed: one core's memcpy)",
        "MiB/s (log)",
        series,
        vec![("memcpy, one core".into(), memcpy)],
        &|v| format!("{v:.0}"),
        r,
    )
}

pub fn latency(r: &Results, path: &Path) -> anyhow::Result<()> {
    let series = lines(r, "pingpong", &|s| s.p50_ns.map(|v| v / 1000.0));
    let (xlo, xhi) = x_range(r);
    let flat = |ns: u64| vec![(xlo, ns as f64 / 1000.0), (xhi, ns as f64 / 1000.0)];
    draw(
        path,
        "Pingpong round trip p50 vs message size (dashed: cache-line and futex round trips)",
        "round trip, µs (log)",
        series,
        vec![
            (
                "cache-line round trip (atomics)".into(),
                flat(r.baselines.atomic_rtt.p50_ns),
            ),
            (
                "futex wake-up round trip".into(),
                flat(r.baselines.futex_rtt.p50_ns),
            ),
        ],
        &|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        },
        r,
    )
}
