//! PNG line charts, drawn without system fonts or graphics libraries: lines on an RGB
//! canvas, text rasterised from the embedded DejaVu Sans Mono, encoded with `png`.

use std::collections::BTreeSet;
use std::path::Path;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;

use crate::metrics_log::{self, CurveRecord, MetricValues};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

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
}

/// A white RGB canvas.
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![[255, 255, 255]; w * h],
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let p = &mut self.px[y as usize * self.w + x as usize];
        for k in 0..3 {
            p[k] = (p[k] as f32 * (1.0 - alpha) + c[k] as f32 * alpha).round() as u8;
        }
    }

    fn dot(&mut self, x: f64, y: f64, c: Rgb, r: f64) {
        let (x0, x1) = ((x - r).floor() as i64, (x + r).ceil() as i64);
        let (y0, y1) = ((y - r).floor() as i64, (y + r).ceil() as i64);
        for yy in y0..=y1 {
            for xx in x0..=x1 {
                let d = ((xx as f64 - x).powi(2) + (yy as f64 - y).powi(2)).sqrt();
                let a = (r + 0.5 - d).clamp(0.0, 1.0) as f32;
                if a > 0.0 {
                    self.blend(xx, yy, c, a);
                }
            }
        }
    }

    /// A line of the given width (antialiased by round brush stamps).
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), c: Rgb, width: f64) {
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let n = (len * 2.0).ceil().max(1.0) as usize;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.dot(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, c, width / 2.0);
        }
    }

    /// Text with its left end at `x` (or centred / right-aligned) and baseline at `y`.
    pub fn text(&mut self, x: f64, y: f64, s: &str, size: f32, c: Rgb, align: f64) {
        let font = FontRef::try_from_slice(FONT).expect("embedded font parses");
        let scaled = font.as_scaled(PxScale::from(size));
        let width: f32 = s
            .chars()
            .map(|ch| scaled.h_advance(font.glyph_id(ch)))
            .sum();
        let mut pen = x as f32 - width * align as f32;
        for ch in s.chars() {
            let id = font.glyph_id(ch);
            let glyph = id.with_scale_and_position(size, ab_glyph::point(pen, y as f32));
            if let Some(outline) = font.outline_glyph(glyph) {
                let bb = outline.px_bounds();
                outline.draw(|gx, gy, cov| {
                    self.blend(
                        bb.min.x as i64 + gx as i64,
                        bb.min.y as i64 + gy as i64,
                        c,
                        cov,
                    );
                });
            }
            pen += scaled.h_advance(id);
        }
    }

    /// Writes the canvas as a PNG file.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut enc =
            png::Encoder::new(std::io::BufWriter::new(file), self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        let data: Vec<u8> = self.px.iter().flatten().copied().collect();
        writer.write_image_data(&data)?;
        Ok(())
    }
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

/// Draws `chart` into the rectangle `(x, y, w, h)` of `canvas`.
pub fn draw_chart(canvas: &mut Canvas, chart: &Chart, x: f64, y: f64, w: f64, h: f64) {
    let (left, right, top, bottom) = (x + 70.0, x + w - 20.0, y + 36.0, y + h - 48.0);
    canvas.text(x + w / 2.0, y + 22.0, &chart.title, 16.0, [0, 0, 0], 0.5);
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        canvas.text(
            x + w / 2.0,
            y + h / 2.0,
            "no data",
            14.0,
            [120, 120, 120],
            0.5,
        );
        return;
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
    y0 -= pad;
    y1 += pad;
    let sx = |v: f64| left + (v - x0) / (x1 - x0) * (right - left);
    let sy = |v: f64| bottom - (v - y0) / (y1 - y0) * (bottom - top);
    let grid = [225, 225, 225];
    let y_ticks = ticks(y0, y1, 6);
    let y_step = step_of(&y_ticks);
    for t in y_ticks {
        canvas.line((left, sy(t)), (right, sy(t)), grid, 1.0);
        canvas.text(
            left - 6.0,
            sy(t) + 4.0,
            &fmt_tick(t, y_step),
            12.0,
            [60, 60, 60],
            1.0,
        );
    }
    let x_ticks = ticks(x0, x1, 6);
    let x_step = step_of(&x_ticks);
    for t in x_ticks {
        canvas.line((sx(t), top), (sx(t), bottom), grid, 1.0);
        canvas.text(
            sx(t),
            bottom + 16.0,
            &fmt_tick(t, x_step),
            12.0,
            [60, 60, 60],
            0.5,
        );
    }
    let axis = [80, 80, 80];
    canvas.line((left, bottom), (right, bottom), axis, 1.2);
    canvas.line((left, top), (left, bottom), axis, 1.2);
    canvas.text(
        (left + right) / 2.0,
        y + h - 10.0,
        &chart.x_label,
        13.0,
        [0, 0, 0],
        0.5,
    );
    for (i, s) in chart.series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let p: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(a, b)| (sx(a), sy(b)))
            .collect();
        for w in p.windows(2) {
            canvas.line(w[0], w[1], c, 2.0);
        }
        if chart.markers || p.len() == 1 {
            for &q in &p {
                canvas.dot(q.0, q.1, c, 3.0);
            }
        }
        // legend
        let ly = top + 8.0 + 18.0 * i as f64;
        canvas.line((right - 150.0, ly), (right - 128.0, ly), c, 3.0);
        canvas.text(right - 122.0, ly + 4.0, &s.name, 12.0, [0, 0, 0], 0.0);
    }
}

/// Draws charts in a grid of `cols` columns and writes the PNG.
pub fn save_charts(charts: &[Chart], cols: usize, path: &Path) -> Result<()> {
    if charts.is_empty() {
        return Err(anyhow!("no chart to draw"));
    }
    let (pw, ph) = (560.0, 360.0);
    let cols = cols.clamp(1, charts.len());
    let rows = charts.len().div_ceil(cols);
    let mut canvas = Canvas::new((pw as usize) * cols, (ph as usize) * rows);
    for (i, chart) in charts.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        draw_chart(&mut canvas, chart, c as f64 * pw, r as f64 * ph, pw, ph);
    }
    canvas.save_png(path)
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
    };
    let eval_keys: BTreeSet<&String> = evals.iter().flat_map(|(_, m)| m.keys()).collect();
    let mut charts = Vec::new();
    let mut others = Chart {
        title: "evaluation".into(),
        x_label: "step".into(),
        series: Vec::new(),
        markers: true,
        y_range: None,
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
        };
        save_charts(&[chart.clone(), chart], 2, &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1120, 360));
        let px: Vec<&[u8]> = buf.chunks(3).collect();
        let blue = px
            .iter()
            .filter(|p| p[0] == 31 && p[1] == 119 && p[2] == 180)
            .count();
        let dark = px
            .iter()
            .filter(|p| p[0] < 40 && p[1] < 40 && p[2] < 40)
            .count();
        assert!(blue > 200, "the line is drawn ({blue} px)");
        assert!(dark > 50, "text is drawn ({dark} px)");
    }
}
