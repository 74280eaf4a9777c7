//! The HTML report's charts, drawn as SVG by `plotters`: latency and
//! throughput over time, the latency distribution (histogram and CDF) and
//! bytes written per request, with one series per run so several runs
//! overlay on the same axes.
//!
//! Only plotters' SVG backend is used, without its font features: text is
//! written as SVG `<text>` for the browser to render, so nothing here needs
//! a font file or a C library, and plotters escapes the text it writes.

use anyhow::{anyhow, Result};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::Labelled;
use crate::report::bytes;

/// Chart size in pixels: two side by side fit a 1200-pixel-wide window.
const SIZE: (u32, u32) = (570, 330);

/// Series colours, one per run (then again from the start).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Font of captions and labels (the browser picks the face).
const FONT: &str = "sans-serif";

/// Colour of run number `i`.
pub(crate) fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The plotters error of the chart helpers (its type names the backend).
type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws into an SVG string of `size` pixels with `draw`, mapping
/// plotters' error (whose type names the backend) to a message.
fn svg<F>(size: (u32, u32), draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult<()>,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).map_err(|e| anyhow!("drawing a chart: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("drawing a chart: {e}"))?;
    }
    Ok(out)
}

/// What [`cartesian`] returns: a chart on an SVG with axes over the
/// ranges it was given, to draw the series on.
type Chart<'a, 'b, X, Y> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// The axes' settings [`cartesian`]'s `axes` completes before they are drawn.
type Mesh<'a, 'm, 'b, X, Y> = MeshStyle<
    'a,
    'm,
    <X as AsRangedCoord>::CoordDescType,
    <Y as AsRangedCoord>::CoordDescType,
    SVGBackend<'b>,
>;

/// Fills `root` white and draws on it the captioned chart every figure
/// shares: the same margins, fonts and light grid, `y_label_area` pixels
/// for the y labels and `ranges` for the axes. `axes` says what differs
/// (axis names, label count, formatter, hidden axis) before they are drawn.
fn cartesian<'a, 'b, X, Y>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    y_label_area: u32,
    ranges: (X, Y),
    axes: impl for<'m> FnOnce(&mut Mesh<'a, 'm, 'b, X, Y>),
) -> DrawResult<Chart<'a, 'b, X, Y>>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(ranges.0, ranges.1)?;
    let mut mesh = chart.configure_mesh();
    mesh.max_light_lines(2)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13));
    axes(&mut mesh);
    mesh.draw()?;
    Ok(chart)
}

/// An x label of the bytes-per-request chart.
fn bytes_label(v: &f64) -> String {
    bytes(*v)
}

/// The upper end of an axis showing values up to `max`: a little headroom,
/// and never an empty range.
fn top(max: f64) -> f64 {
    if max > 0.0 && max.is_finite() {
        max * 1.1
    } else {
        1.0
    }
}

/// p50 (thin) and p99 (thick) latency per interval, one pair per run.
/// `None` if no run has a time series.
pub(crate) fn latency_over_time(runs: &[Labelled]) -> Result<Option<String>> {
    let x_max = runs
        .iter()
        .flat_map(|r| r.run.series.iter().map(|i| i.t_s + i.width_s))
        .fold(0.0, f64::max);
    let y_max = runs
        .iter()
        .flat_map(|r| r.run.series.iter().filter_map(|i| i.p99_ms))
        .fold(0.0, f64::max);
    if runs.iter().all(|r| r.run.series.is_empty()) {
        return Ok(None);
    }
    svg(SIZE, |root| {
        let mut chart = cartesian(
            root,
            "Latency over time: p50 thin, p99 thick",
            64,
            (0.0..top(x_max) / 1.1, 0.0..top(y_max)),
            |mesh| {
                mesh.x_desc("seconds since start").y_desc("latency (ms)");
            },
        )?;
        for (i, r) in runs.iter().enumerate() {
            let c = color(i);
            let mid = |t: f64, w: f64| t + w / 2.0;
            let p50 = r
                .run
                .series
                .iter()
                .filter_map(|s| Some((mid(s.t_s, s.width_s), s.p50_ms?)));
            let p99 = r
                .run
                .series
                .iter()
                .filter_map(|s| Some((mid(s.t_s, s.width_s), s.p99_ms?)));
            chart.draw_series(LineSeries::new(p50, c.stroke_width(1)))?;
            chart
                .draw_series(LineSeries::new(p99, c.stroke_width(3)))?
                .label(r.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
    .map(Some)
}

/// Successful requests per second per interval, one line per run. A last
/// interval shorter than half the others is left out: a few requests over a
/// few milliseconds make a meaningless spike.
pub(crate) fn throughput_over_time(runs: &[Labelled]) -> Result<Option<String>> {
    let points: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let full = r.run.series.first().map_or(0.0, |i| i.width_s);
            r.run
                .series
                .iter()
                .filter(|i| i.width_s > 0.0 && i.width_s >= full / 2.0)
                .map(|i| (i.t_s + i.width_s / 2.0, i.ok as f64 / i.width_s))
                .collect()
        })
        .collect();
    if points.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let x_max = runs
        .iter()
        .flat_map(|r| r.run.series.iter().map(|i| i.t_s + i.width_s))
        .fold(0.0, f64::max);
    let y_max = points.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    svg(SIZE, |root| {
        let mut chart = cartesian(
            root,
            "Throughput over time",
            64,
            (0.0..top(x_max) / 1.1, 0.0..top(y_max)),
            |mesh| {
                mesh.x_desc("seconds since start")
                    .y_desc("successful requests/s");
            },
        )?;
        for (i, (r, pts)) in runs.iter().zip(points).enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(r.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
    .map(Some)
}

/// The latency range (ms) of all runs' histograms, for a shared log axis.
fn latency_range(runs: &[Labelled]) -> Option<(f64, f64)> {
    let lo = runs
        .iter()
        .filter_map(|r| r.run.latency_ms.as_ref().map(|l| l.min))
        .fold(f64::INFINITY, f64::min);
    let hi = runs
        .iter()
        .flat_map(|r| r.run.latency_histogram.iter().map(|b| b.le_ms))
        .fold(0.0, f64::max);
    // Log axes need a positive range; widen a single value to one around it.
    (lo.is_finite() && hi > 0.0).then(|| (lo.max(1e-3) / 1.25, hi.max(lo) * 1.25))
}

/// The latency histogram: each run's buckets as translucent bars over a log
/// latency axis, heights in percent of that run's requests so runs of
/// different lengths compare.
pub(crate) fn latency_histogram(runs: &[Labelled]) -> Result<Option<String>> {
    let Some((lo, hi)) = latency_range(runs) else {
        return Ok(None);
    };
    let bars: Vec<Vec<(f64, f64, f64)>> = runs
        .iter()
        .map(|r| {
            let total: u64 = r.run.latency_histogram.iter().map(|b| b.count).sum();
            let mut from = r.run.latency_ms.as_ref().map_or(lo, |l| l.min);
            r.run
                .latency_histogram
                .iter()
                .map(|b| {
                    let bar = (from, b.le_ms, 100.0 * b.count as f64 / total.max(1) as f64);
                    from = b.le_ms;
                    bar
                })
                .collect()
        })
        .collect();
    let y_max = bars.iter().flatten().map(|b| b.2).fold(0.0, f64::max);
    svg(SIZE, |root| {
        let mut chart = cartesian(
            root,
            "Latency distribution (histogram)",
            64,
            ((lo..hi).log_scale(), 0.0..top(y_max)),
            |mesh| {
                mesh.x_desc("latency (ms, log scale)")
                    .x_labels(16)
                    .y_desc("% of requests");
            },
        )?;
        for (i, (r, bars)) in runs.iter().zip(bars).enumerate() {
            let c = color(i);
            // A single-valued bucket (from == to) still gets a visible sliver.
            let widen = |from: f64, to: f64| {
                if to > from {
                    (from, to)
                } else {
                    (to / 1.05, to * 1.05)
                }
            };
            chart
                .draw_series(bars.iter().map(|&(from, to, pct)| {
                    let (x0, x1) = widen(from, to);
                    Rectangle::new([(x0, 0.0), (x1, pct)], c.mix(0.3).filled())
                }))?
                .label(r.label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.mix(0.5).filled())
                });
            chart.draw_series(bars.iter().map(|&(from, to, pct)| {
                let (x0, x1) = widen(from, to);
                Rectangle::new([(x0, 0.0), (x1, pct)], c.stroke_width(1))
            }))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
    .map(Some)
}

/// The latency CDF: percent of requests at most this slow, one line per run.
pub(crate) fn latency_cdf(runs: &[Labelled]) -> Result<Option<String>> {
    let Some((lo, hi)) = latency_range(runs) else {
        return Ok(None);
    };
    svg(SIZE, |root| {
        let mut chart = cartesian(
            root,
            "Latency distribution (CDF)",
            64,
            ((lo..hi).log_scale(), 0.0..100.0),
            |mesh| {
                mesh.x_desc("latency (ms, log scale)")
                    .x_labels(16)
                    .y_desc("% of requests at most this slow");
            },
        )?;
        for (i, r) in runs.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = r
                .run
                .latency_cdf
                .iter()
                .map(|p| (p.ms, p.percent))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(r.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
    .map(Some)
}

/// Bytes written to storage per successful request: one horizontal bar per
/// measured process of each run, labelled with the run, process and value.
/// `None` if no run measured a process.
pub(crate) fn bytes_per_op(runs: &[Labelled]) -> Result<Option<String>> {
    let bars: Vec<(usize, String, f64)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.run.processes.iter().filter_map(move |p| {
                let v = p.write_bytes_per_op?;
                Some((
                    i,
                    format!("{}: {} (pid {})  {}", r.label, p.name, p.pid, bytes(v)),
                    v,
                ))
            })
        })
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let x_max = bars.iter().map(|b| b.2).fold(0.0, f64::max);
    let n = bars.len() as f64;
    // A fixed height per bar, so one bar is not a slab.
    let height = 150 + 44 * u32::try_from(bars.len()).unwrap_or(u32::MAX / 64).min(64);
    svg((SIZE.0, height), |root| {
        // The bars carry their own labels: no y axis, so little room for one.
        let mut chart = cartesian(
            root,
            "Bytes written to storage per request",
            10,
            (0.0..top(x_max), 0.0..n),
            |mesh| {
                mesh.disable_y_mesh()
                    .disable_y_axis()
                    .x_desc("bytes per successful request (write_bytes)")
                    .x_label_formatter(&bytes_label);
            },
        )?;
        // The first bar at the top, as the runs are listed.
        let row = |k: usize| n - k as f64;
        chart.draw_series(bars.iter().enumerate().map(|(k, (i, _, v))| {
            Rectangle::new(
                [(0.0, row(k) - 0.8), (*v, row(k) - 0.2)],
                color(*i).mix(0.6).filled(),
            )
        }))?;
        chart.draw_series(bars.iter().enumerate().map(|(k, (_, text, _))| {
            Text::new(
                text.clone(),
                (x_max * 0.01, row(k) - 0.3),
                (FONT, 15).into_font(),
            )
        }))?;
        Ok(())
    })
    .map(Some)
}

/// Draws the legend of the series that have labels, at `position` (where
/// the chart's lines usually are not).
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}
