//! PNG line charts with `plotters` (its bitmap backend and `ab_glyph` text): no system fonts,
//! the embedded DejaVu Sans Mono is registered for every label.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, KeyPointWeight};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use serde::de::DeserializeOwned;

use crate::metrics_log::{self, CurveRecord, MetricValues};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

/// The name the embedded font is registered under.
const FONT_NAME: &str = "DejaVu Sans Mono";

/// An RGB color.
pub type Rgb = [u8; 3];

/// Series colors, in order.
pub const PALETTE: [Rgb; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
];

/// Size of one chart panel, in pixels.
const PANEL: (u32, u32) = (560, 360);

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart panel.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Draw markers at the points (for sparse series such as evaluations).
    pub markers: bool,
    /// Fixed y range (e.g. `(0, 1)` for rates); fitted to the data when absent.
    pub y_range: Option<(f64, f64)>,
    /// The x values are whole numbers (bins, rounds): no tick between two of them.
    pub whole_x: bool,
}

/// Registers the embedded font with plotters (once).
fn register_embedded_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT_NAME, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded font does not parse"))
    }
}

/// The embedded font at `size` pixels in `color`.
fn text(size: u32, color: Rgb) -> TextStyle<'static> {
    (FONT_NAME, size).into_font().color(&rgb(color))
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Round tick values covering `[lo, hi]`, whole numbers only (for bins and rounds: a chart
/// over bins 0 and 1 gets ticks 0 and 1, not 0, 0.2, ..., 1).
fn whole_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let t = ticks(lo, hi, n);
    if step_of(&t) >= 1.0 {
        t
    } else {
        (lo.ceil() as i64..=hi.floor() as i64)
            .map(|k| k as f64)
            .collect()
    }
}

/// A tick label with as many decimals as the tick spacing `step` needs (so that neighbouring
/// ticks never print the same text).
fn fmt_tick(v: f64, step: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a >= 1e6 {
        return format!("{v:.3e}");
    }
    let mag = step.abs().max(1e-12).log10().floor();
    // 2.5 x 10^k steps need one more decimal than 10^k
    let extra = usize::from(((step.abs() / 10f64.powf(mag)) - 2.5).abs() < 1e-6);
    let decimals = ((-mag).max(0.0) as usize + extra).min(8);
    format!("{v:.decimals$}")
}

fn step_of(ticks: &[f64]) -> f64 {
    if ticks.len() >= 2 {
        ticks[1] - ticks[0]
    } else {
        1.0
    }
}

/// The finite points of a series.
fn finite(s: &Series) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect()
}

/// The x and y ranges of `chart` (y padded by 5 % of its span), or `None` when it has no
/// finite point.
fn ranges(chart: &Chart) -> Option<((f64, f64), (f64, f64))> {
    let pts: Vec<(f64, f64)> = chart.series.iter().flat_map(finite).collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if x1 - x0 < 1e-12 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if let Some((lo, hi)) = chart.y_range {
        (y0, y1) = (lo, hi);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    Some(((x0, x1), (y0 - pad, y1 + pad)))
}

/// A linear axis over `[lo, hi]` whose grid lines and labels stand at `ticks`.
struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickAxis {
    fn new((lo, hi): (f64, f64), whole: bool) -> Self {
        let ticks = if whole {
            whole_ticks(lo, hi, 6)
        } else {
            ticks(lo, hi, 6)
        };
        Self { lo, hi, ticks }
    }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.clone(),
            KeyPointWeight::Any => Vec::new(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// An error of plotters, as text.
fn drawing<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Draws `chart` into `area`: title, grid at round ticks, the x label, every series (with
/// markers for sparse ones) and a legend at the top right.
fn draw_chart(area: &DrawingArea<BitMapBackend<'_>, Shift>, chart: &Chart) -> Result<()> {
    let Some((x_range, y_range)) = ranges(chart) else {
        let (w, h) = area.dim_in_pixel();
        let centre = Pos::new(HPos::Center, VPos::Center);
        area.draw_text(
            &chart.title,
            &text(16, [0, 0, 0]).pos(centre),
            (w as i32 / 2, 18),
        )
        .map_err(drawing)?;
        let grey = text(14, [120, 120, 120]).pos(centre);
        area.draw_text("no data", &grey, (w as i32 / 2, h as i32 / 2))
            .map_err(drawing)?;
        return Ok(());
    };
    let (x_axis, y_axis) = (
        TickAxis::new(x_range, chart.whole_x),
        TickAxis::new(y_range, false),
    );
    let (x_labels, y_labels) = (x_axis.ticks.clone(), y_axis.ticks.clone());
    let mut cc = ChartBuilder::on(area)
        .caption(&chart.title, text(16, [0, 0, 0]))
        .margin_top(6)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(drawing)?;
    cc.configure_mesh()
        .bold_line_style(rgb([225, 225, 225]))
        .light_line_style(TRANSPARENT)
        .axis_style(rgb([80, 80, 80]))
        .label_style(text(12, [60, 60, 60]))
        .axis_desc_style(text(13, [0, 0, 0]))
        .x_desc(chart.x_label.as_str())
        .x_label_formatter(&|v| fmt_tick(*v, step_of(&x_labels)))
        .y_label_formatter(&|v| fmt_tick(*v, step_of(&y_labels)))
        .draw()
        .map_err(drawing)?;
    for (i, s) in chart.series.iter().enumerate() {
        let c = rgb(PALETTE[i % PALETTE.len()]);
        let points = finite(s);
        let markers = chart.markers || points.len() == 1;
        cc.draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(drawing)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 22, y)], c.stroke_width(3)));
        if markers {
            cc.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(drawing)?;
        }
    }
    cc.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(text(12, [0, 0, 0]))
        .background_style(WHITE.mix(0.85))
        .border_style(rgb([200, 200, 200]))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// Draws charts in a grid of `cols` columns (560 x 360 pixels each) and writes the PNG.
pub fn save_charts(charts: &[Chart], cols: usize, path: &Path) -> Result<()> {
    if charts.is_empty() {
        return Err(anyhow!("no chart to draw"));
    }
    register_embedded_font()?;
    let cols = cols.clamp(1, charts.len());
    let rows = charts.len().div_ceil(cols);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    for (chart, area) in charts.iter().zip(root.split_evenly((rows, cols))) {
        draw_chart(&area, chart)?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// The curves of a training run's `metrics.jsonl` (a log of `R`s): training loss (and dev
/// loss), and every other evaluation metric.
pub fn training_curves<R: CurveRecord + DeserializeOwned>(
    metrics: &Path,
    out: &Path,
) -> Result<()> {
    let rows: Vec<R> = metrics_log::read(metrics)?;
    let evals: Vec<(u64, &MetricValues)> = rows.iter().filter_map(|r| r.evaluation()).collect();
    let mut loss = Chart {
        title: "loss".into(),
        x_label: "step".into(),
        series: vec![Series {
            name: "train".into(),
            points: (rows.iter().filter_map(|r| r.loss()))
                .map(|(step, loss)| (step as f64, loss))
                .collect(),
        }],
        markers: false,
        y_range: None,
        whole_x: false,
    };
    let eval_keys: BTreeSet<&String> = evals.iter().flat_map(|(_, m)| m.keys()).collect();
    let mut charts = Vec::new();
    let mut others = Chart {
        title: "evaluation".into(),
        x_label: "step".into(),
        series: Vec::new(),
        markers: true,
        y_range: None,
        whole_x: false,
    };
    for k in eval_keys {
        let points = (evals.iter())
            .filter_map(|(step, m)| Some((*step as f64, (*m.get(k)?)?)))
            .collect();
        let k = k.clone();
        if k.ends_with("loss") {
            loss.series.push(Series { name: k, points });
            loss.markers = loss.series[0].points.len() < 3;
        } else {
            others.series.push(Series { name: k, points });
        }
    }
    charts.push(loss);
    let all_rates = others
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|p| (0.0..=1.0).contains(&p.1));
    if all_rates {
        others.y_range = Some((0.0, 1.0));
    }
    if !others.series.is_empty() {
        charts.push(others);
    }
    save_charts(&charts, 2, out)
}

/// A PNG's (width, height) and its RGB bytes (tests of the charts).
#[cfg(test)]
pub(crate) fn read_png(path: &Path) -> ((u32, u32), Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    ((info.width, info.height), buf)
}

/// How many pixels of RGB bytes `buf` have `color` exactly (tests of the charts).
#[cfg(test)]
pub(crate) fn count_color(buf: &[u8], color: Rgb) -> usize {
    buf.chunks(3).filter(|p| p == &color).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_tick_labels_differ() {
        for (lo, hi) in [
            (0.2093, 0.2099),
            (0.0, 1.0),
            (-0.025, -0.001),
            (0.0, 1400.0),
            (3.2, 9.9),
        ] {
            let t = ticks(lo, hi, 6);
            let labels: Vec<String> = t.iter().map(|&v| fmt_tick(v, step_of(&t))).collect();
            for w in labels.windows(2) {
                assert_ne!(w[0], w[1], "{labels:?}");
            }
        }
        assert_eq!(fmt_tick(0.25, 0.25), "0.25");
        assert_eq!(fmt_tick(400.0, 200.0), "400");
    }

    #[test]
    fn ticks_are_round() {
        let close = |a: Vec<f64>, b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
        };
        assert!(close(ticks(0.0, 1.0, 5), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
        assert!(close(ticks(3.2, 9.9, 4), &[4.0, 6.0, 8.0]));
        assert!(close(whole_ticks(0.0, 1.0, 6), &[0.0, 1.0]));
        assert!(close(
            whole_ticks(-1.0, 3.0, 6),
            &[-1.0, 0.0, 1.0, 2.0, 3.0]
        ));
        assert!(close(
            whole_ticks(0.0, 40.0, 4),
            &[0.0, 10.0, 20.0, 30.0, 40.0]
        ));
    }

    #[test]
    fn chart_png_has_the_series_color_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let chart = Chart {
            title: "loss".into(),
            x_label: "step".into(),
            series: vec![Series {
                name: "train".into(),
                points: (0..50)
                    .map(|i| (i as f64, 10.0 / (1.0 + i as f64)))
                    .collect(),
            }],
            markers: false,
            y_range: None,
            whole_x: false,
        };
        save_charts(&[chart.clone(), chart], 2, &path).unwrap();
        let (size, buf) = read_png(&path);
        assert_eq!(size, (1120, 360));
        let px: Vec<&[u8]> = buf.chunks(3).collect();
        let blue = count_color(&buf, PALETTE[0]);
        let dark = px
            .iter()
            .filter(|p| p[0] < 40 && p[1] < 40 && p[2] < 40)
            .count();
        assert!(blue > 200, "the line is drawn ({blue} px)");
        assert!(dark > 50, "text is drawn ({dark} px)");
    }
}
