//! `rewards.png` of a MaRio run: each reward per round, over the round's samples and on dev.

use std::path::Path;

use anyhow::Result;
use mario::control::ControlTokens;

use super::plot::{save_charts, Chart, Series};
use crate::metrics_log::{self, MarioRecord};

/// Draws `out` (a MaRio run's `rewards.png`): one chart per reward of `table`, the mean of its
/// scores over each round's samples and its dev mean after each round (round -1: the SFT
/// start), read from the run's `metrics.jsonl`.
pub fn reward_rounds(metrics: &Path, table: &ControlTokens, out: &Path) -> Result<()> {
    let rows: Vec<MarioRecord> = metrics_log::read(metrics)?;
    let mut charts = Vec::new();
    for r in &table.rewards {
        let dev_key = format!("dev_{}", r.name);
        let sample: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|v| match v {
                MarioRecord::Sample(x) => Some((f64::from(x.round), x.rewards.mean(&r.name)?)),
                _ => None,
            })
            .collect();
        let dev: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|v| match v {
                MarioRecord::Eval(x) => Some((x.round as f64, (*x.metrics.get(&dev_key)?)?)),
                _ => None,
            })
            .collect();
        charts.push(Chart {
            title: r.name.clone(),
            x_label: "round (-1 = SFT)".into(),
            series: vec![
                Series {
                    name: "samples (mean)".into(),
                    points: sample,
                },
                Series {
                    name: "dev (mean)".into(),
                    points: dev,
                },
            ],
            markers: true,
            y_range: None,
            whole_x: true,
        });
    }
    save_charts(&charts, 2, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plot::{count_color, read_png};

    /// Two rewards give two panels side by side; the sample and dev lines are drawn.
    #[test]
    fn draws_one_panel_per_reward() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let eval = |round: i64, c: f64| {
            let model = if round < 0 { "sft" } else { "policy" };
            format!(
                r#"{{"decoding":"greedy","dev_accuracy":0.8,"dev_consistency":{c},"kind":"eval","model":"{model}","round":{round},"step":0}}"#
            )
        };
        let sample = |round: u32, c: f64| {
            format!(
                r#"{{"kind":"sample","pool":10,"round":{round},"sample_accuracy":0.9,"sample_accuracy_n":10,"sample_consistency":{c},"sample_consistency_n":10,"sampled":10,"step":0,"valid":10}}"#
            )
        };
        let lines = [
            eval(-1, 0.30),
            sample(0, 0.35),
            eval(0, 0.38),
            sample(1, 0.40),
            eval(1, 0.42),
        ];
        std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
        let table = ControlTokens::quark(&[("consistency", 5)], &["accuracy"]);
        let out = dir.path().join("rewards.png");
        reward_rounds(&metrics, &table, &out).unwrap();
        let (size, buf) = read_png(&out);
        assert_eq!(size, (1120, 360));
        // the second series' colour (the first is the samples' line)
        let red = count_color(&buf, crate::report::plot::PALETTE[1]);
        assert!(red > 100, "the dev line is drawn ({red} px)");
    }
}
