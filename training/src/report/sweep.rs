//! `sweep.md` and `sweep.png` of a controllability sweep ([`crate::stages::sweep`]).

use std::path::Path;

use anyhow::Result;

use super::markdown_table;
use super::paired::PairedDiff;
use super::plot::{save_charts, Chart, Series};
use crate::quark::rewards::RewardName;
use crate::stages::sweep::SweepRow;
use crate::world::truth::TruthMeasure;

/// What the sweep report shows.
pub struct SweepReport<'a> {
    /// The swept checkpoint.
    pub model: &'a Path,
    /// The decoding, described.
    pub decoding: &'a str,
    /// The checkpoint's rewards, in prefix order.
    pub rewards: &'a [RewardName],
    /// Every column scored (the rewards, then the ground-truth measures).
    pub measured: &'a [String],
    /// One row per reward and bin, bin 0 first.
    pub rows: &'a [SweepRow],
}

/// Writes `<out>/sweep.md` (every row's means, then each reward's best-vs-worst verdict) and
/// `<out>/sweep.png` (each reward's mean against its bin, with its ground truth's in a world).
pub fn write_sweep_report(out: &Path, r: &SweepReport<'_>) -> Result<()> {
    let mut header = vec!["varied reward", "bin"];
    header.extend(r.measured.iter().map(String::as_str));
    let table_rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|r| {
            let mut v = vec![r.reward.clone(), r.bin.to_string()];
            v.extend(r.means.iter().map(|(_, m)| format!("{m:.4}")));
            v
        })
        .collect();
    let mut md = format!(
        "# Controllability sweep of `{}`\n\nEach row decodes the dev questions with one reward's \
         control token at the given bin (0 = best) and every other reward at its best bin, then \
         scores the outputs with every reward (means), and in a generated world with every ground-truth \
         measure (`truth_*`). Decoding: {}.\n\n{}",
        r.model.display(),
        r.decoding,
        markdown_table(&header, &table_rows)
    );
    md.push_str(
        "\nThe last two columns pair the best and the worst bin's outputs question by question: \
         the mean of best - worst with its 95 % interval, and where that interval lies; in a generated world a second row judges the reward's ground \
         truth (plausibility: `truth_fact_accuracy`, consistency: `truth_entailed`, diversity: \
         `truth_no_repetition`) over the same decodings.\n\n\
         | reward | best-bin mean | worst-bin mean | best > worst | best - worst [95 %] | \
         where it lies |\n|---|---:|---:|---|---:|---|\n",
    );
    let mut charts = Vec::new();
    for &reward in r.rewards {
        let (lines, series) = verdicts(r, reward);
        md.push_str(&lines);
        charts.push(Chart {
            title: format!("{reward}: means vs its bin"),
            x_label: "bin (0 = best)".into(),
            series,
            markers: true,
            y_range: None,
            whole_x: true,
        });
    }
    md.push_str("\n![sweep](sweep.png)\n");
    std::fs::write(out.join("sweep.md"), md)?;
    save_charts(&charts, 2, &out.join("sweep.png"))
}

/// The verdict lines of one varied reward (the reward itself, then its ground truth when the
/// world has one) and the mean per bin of each judged column, as chart lines.
fn verdicts(r: &SweepReport<'_>, reward: RewardName) -> (String, Vec<Series>) {
    let name = reward.to_string();
    let own_rows: Vec<&SweepRow> = r.rows.iter().filter(|row| row.reward == name).collect();
    let mut judged = vec![name.clone()];
    judged.extend(
        TruthMeasure::counterpart(reward)
            .map(|m| m.name().to_string())
            .filter(|m| r.measured.contains(m)),
    );
    let mut md = String::new();
    let mut series = Vec::new();
    for (j, column) in judged.iter().enumerate() {
        let k = r
            .measured
            .iter()
            .position(|m| m == column)
            .expect("judged columns are measured");
        if let Some((line, means)) = best_vs_worst(&own_rows, k) {
            let label = if j == 0 {
                name.clone()
            } else {
                format!("{name} (ground truth: {column})")
            };
            md.push_str(&format!("| {label} | {line} |\n"));
            series.push(Series {
                name: column.clone(),
                points: means,
            });
        }
    }
    (md, series)
}

/// The best-vs-worst verdict of one measured column (`k`) over a varied reward's rows (bin 0
/// first): the table cells after the reward's name, and the column's mean per bin as chart
/// points (bin, mean).
fn best_vs_worst(own_rows: &[&SweepRow], k: usize) -> Option<(String, Vec<(f64, f64)>)> {
    let (best, worst) = (own_rows.first()?, own_rows.last()?);
    let diff = PairedDiff::of(&worst.per_question[k], &best.per_question[k])
        .filter(|_| own_rows.len() > 1);
    let (diff_text, verdict) = diff
        .map(|d| (d.describe(), d.verdict()))
        .unwrap_or_else(|| ("-".into(), "-"));
    // a row's means and per-question scores share the measured columns' order (stages::sweep)
    let means: Vec<(f64, f64)> = own_rows
        .iter()
        .map(|r| (r.bin as f64, r.means.get(k).map_or(f64::NAN, |m| m.1)))
        .collect();
    let (first, last) = (means.first()?.1, means.last()?.1);
    let line = format!(
        "{first:.4} | {last:.4} | {} | {diff_text} | {verdict}",
        if first > last { "yes" } else { "no" }
    );
    Some((line, means))
}
