//! `report.md` of a plausibility scorer.

use std::path::{Path, PathBuf};

use anyhow::Result;
use mario::rewards::likelihood::TokenPooling;

use crate::train::Metrics;

/// What the plausibility scorer's report states.
pub struct PlausibilityReport<'a> {
    /// The model it was trained from.
    pub model: &'a Path,
    /// The teacher files its examples came from.
    pub teacher_files: &'a [PathBuf],
    /// Training examples after balancing.
    pub trained_on: usize,
    /// Training examples built (before balancing).
    pub built: usize,
    /// Held-out examples.
    pub held_out: usize,
    /// `[plausibility_data] negatives_per_positive` (0: every negative built).
    pub negatives_per_positive: f64,
    /// How the scorer was made: the step of the kept checkpoint of a fine-tuned classifier,
    /// or a likelihood scorer's calibration.
    pub made: ScorerMade<'a>,
    /// Held-out AUCs, overall first.
    pub aucs: &'a Metrics,
}

/// How a plausibility scorer was made.
pub enum ScorerMade<'a> {
    /// A classifier fine-tuned; the checkpoint of this step was kept.
    FineTuned { best_step: u64 },
    /// A likelihood scorer calibrated on the training examples; its model was first fine-tuned
    /// from `finetuned_from` when that is set.
    Calibrated {
        scoring: &'a mario::rewards::likelihood::LikelihoodScoring,
        finetuned_from: Option<&'a Path>,
    },
}

/// The held-out AUCs as JSON, next to the report (`{"held_out_auc": 0.99, "auc_false_fact":
/// ...}`; `null` for an AUC that is not a number, e.g. no negative of that kind held out): what
/// the pipeline's report reads.
pub const AUCS_FILE: &str = "aucs.json";

/// The AUCs a scorer's stage wrote to `<dir>/aucs.json` (`None`: no such file, e.g. a scorer
/// trained before the file was written).
pub fn read_aucs(dir: &Path) -> Result<Option<std::collections::BTreeMap<String, Option<f64>>>> {
    crate::json_file::read_if_exists(&dir.join(AUCS_FILE), "plausibility AUCs")
}

/// Writes the report to `path`, and the AUCs to [`AUCS_FILE`] beside it.
pub fn write_plausibility_report(path: &Path, r: &PlausibilityReport<'_>) -> Result<()> {
    let aucs: std::collections::BTreeMap<&str, Option<f64>> = r
        .aucs
        .iter()
        .map(|(k, v)| (k.as_str(), Some(*v).filter(|v| v.is_finite())))
        .collect();
    crate::json_file::write_atomic(&path.with_file_name(AUCS_FILE), &aucs)?;
    let table: String = r
        .aucs
        .iter()
        .map(|(k, v)| format!("| {k} | {v:.4} |\n"))
        .collect();
    std::fs::write(
        path,
        format!(
            "# Plausibility scorer\n\n{} `{}` on {} examples ({}; {} held out, split \
             by question) from {:?}; {}.\n\nHeld-out AUC, \
             overall and of the positives against each kind of negative:\n\n| metric | AUC |\n\
             |---|---|\n{table}",
            match r.made {
                ScorerMade::FineTuned { .. } => "Trained from".to_string(),
                ScorerMade::Calibrated { scoring: c, .. } => format!(
                    "Likelihood scorer ({}) from",
                    match c.pooling {
                        TokenPooling::Min => "the least likely rationale token",
                        TokenPooling::Mean => "the mean rationale token log-probability",
                    }
                ),
            },
            r.model.display(),
            r.trained_on,
            if r.negatives_per_positive > 0.0 {
                format!(
                    "every positive and at most {} negatives per positive, of {} built",
                    r.negatives_per_positive, r.built
                )
            } else {
                "all the negatives built".to_string()
            },
            r.held_out,
            r.teacher_files,
            match r.made {
                ScorerMade::FineTuned { best_step } =>
                    format!("the checkpoint of step {best_step} was kept"),
                ScorerMade::Calibrated {
                    scoring: c,
                    finetuned_from,
                } => format!(
                    "score = sigmoid(({} log p - ({:.4})) / {:.4}), calibrated by logistic \
                     regression on those examples; {}; {}",
                    match c.pooling {
                        TokenPooling::Min => "min",
                        TokenPooling::Mean => "mean",
                    },
                    c.bias,
                    c.temperature,
                    match (&c.prompt, &c.knowledge) {
                        (Some(p), _) =>
                            format!("each rationale read after the prompt {p:?}, not its question"),
                        (None, Some(k)) => format!(
                            "each rationale read after its question, itself after the knowledge \
                             records' statements that contain a word of it found in at most {} \
                             of the {} statements",
                            k.max_statements_per_word,
                            k.statements.len()
                        ),
                        (None, None) => "each rationale read after its question".to_string(),
                    },
                    match finetuned_from {
                        Some(from) => format!(
                            "the model was first fine-tuned from `{}` as a language model on \
                             the training positives (`lm/`)",
                            from.display()
                        ),
                        None => "no weights were trained".to_string(),
                    }
                ),
            },
        ),
    )?;
    Ok(())
}
