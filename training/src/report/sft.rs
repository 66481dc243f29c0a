//! `report.md` of an SFT run.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{markdown_table, utc_now};
use crate::sft::SftSettings;
use crate::train::TrainSummary;

/// What the SFT report states.
pub struct SftReport<'a> {
    /// The initial model.
    pub model: &'a Path,
    /// The run folder.
    pub out: &'a Path,
    /// The settings.
    pub settings: &'a SftSettings,
    /// Training files.
    pub train_files: &'a [PathBuf],
    /// Dev files.
    pub dev_files: &'a [PathBuf],
    /// Training pairs.
    pub training_pairs: usize,
    /// Dev questions.
    pub dev_questions: usize,
    /// Parameters of the model.
    pub params: usize,
    /// How the run went.
    pub summary: &'a TrainSummary,
}

/// Writes the report to `path`.
pub fn write_sft_report(path: &Path, r: &SftReport<'_>) -> Result<()> {
    let summary = r.summary;
    let mut rows = vec![
        vec!["initial model".into(), r.model.display().to_string()],
        vec![
            "parameters".into(),
            format!("{:.2}M", r.params as f64 / 1e6),
        ],
        vec!["train files".into(), list(r.train_files)],
        vec!["dev files".into(), list(r.dev_files)],
        vec!["training pairs".into(), r.training_pairs.to_string()],
        vec!["dev questions".into(), r.dev_questions.to_string()],
        vec![
            "updates".into(),
            format!(
                "{} ({})",
                summary.steps,
                if summary.completed {
                    "completed"
                } else {
                    "stopped early"
                }
            ),
        ],
        vec![
            "training time".into(),
            format!("{:.1} min", summary.elapsed_s / 60.0),
        ],
        vec![
            "throughput (this invocation)".into(),
            format!("{:.0} tokens/s", summary.tokens_per_s),
        ],
    ];
    if let Some((v, step)) = summary.best {
        rows.push(vec![
            "best dev accuracy".into(),
            format!("{:.2} % at update {step}", 100.0 * v),
        ]);
    }
    for (k, v) in &summary.last_eval {
        rows.push(vec![format!("final {k}"), format!("{v:.4}")]);
    }
    let md = format!(
        "# SFT run `{}`\n\nWritten by mario-train's SFT stage on {}.\n\n{}\n## Settings\n\n```json\n{}\n```\n\n![curves](curves.png)\n",
        r.out.display(),
        utc_now(),
        markdown_table(&["", ""], &rows),
        serde_json::to_string_pretty(r.settings)?
    );
    std::fs::write(path, md)?;
    Ok(())
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
