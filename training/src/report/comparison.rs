//! The pipeline's `report.md`: SFT against MaRio on dev (from the MaRio run's metrics), on the
//! test split when there is one, and the sweep's verdicts.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::markdown_table;
use super::paired::PairedDiff;
use crate::consistency::{AnswerMode, DEV_CHOICE_ACCURACY};
use crate::metrics_log::{
    self, CurveRecord, EvaluatedModel, MarioEvalRecord, MarioRecord, TrainRecord,
};
use crate::quark::dev_scores::{dev_scores_path, paired, read_dev_scores, DevScore};
use crate::quark::run::MarioState;
use crate::report::plausibility::{read_aucs, AUCS_FILE};
use crate::stages::answer_models;
use crate::stages::sweep::SWEEP_PARTIAL_FILE;
use crate::stages::test_split::TEST_DIR;

/// The columns of a comparison table.
const COLUMNS: [&str; 6] = [
    "metric",
    "SFT",
    "MaRio",
    "change",
    "95 % interval",
    "where it lies",
];

/// `report.md`: SFT against MaRio on dev (from the MaRio run's metrics), the sweep verdicts.
pub fn write_comparison(mario_dir: &Path, sweep_dir: &Path, out: &Path) -> Result<()> {
    let rows: Vec<MarioRecord> = metrics_log::read(&mario_dir.join("metrics.jsonl"))?;
    let evals: Vec<&MarioEvalRecord> = (rows.iter())
        .filter_map(|r| match r {
            MarioRecord::Eval(e) => Some(e),
            _ => None,
        })
        .collect();
    let sft = *evals
        .iter()
        .find(|r| r.model == EvaluatedModel::Sft)
        .ok_or_else(|| anyhow!("the MaRio log has no SFT evaluation"))?;
    let state = MarioState::load(mario_dir)?.ok_or_else(|| {
        anyhow!(
            "{}: no MaRio state (last/mario_state.json)",
            mario_dir.display()
        )
    })?;
    let best_round = state.best.map(|(_, round)| u64::from(round));
    let best = *evals
        .iter()
        .rfind(|r| {
            r.model == EvaluatedModel::Policy && best_round.is_some_and(|b| r.round == b as i64)
        })
        .ok_or_else(|| anyhow!("the MaRio log has no evaluation of the best round"))?;
    let table_rows = dev_rows(mario_dir, best_round, sft, best)?;
    let sweep_md = std::fs::read_to_string(sweep_dir.join("sweep.md")).unwrap_or_else(|_| {
        format!(
            "# Controllability sweep\n\nNot finished yet: its finished decodings are in \
             `{}`; running the same pipeline command again continues it and rewrites this \
             report.\n",
            sweep_dir.join(SWEEP_PARTIAL_FILE).display()
        )
    });
    let md = format!(
        "# MaRio vs SFT\n\nDev metrics of the SFT start and of the best MaRio round ({}), decoded \
         with the best control tokens; written by `mario-train pipeline`. The interval is the \
         95 % interval of the change, paired question by question (`mario/dev/*.jsonl`); \
         \"within noise\" means it contains 0. Decoding: {}.\n\n{}\n\
         ![rewards per round](mario/rewards.png)\n\n{}",
        best_round.map(|r| format!("round {r}")).unwrap_or_default(),
        sft.decoding
            .as_deref()
            .unwrap_or("not recorded in the MaRio log"),
        markdown_table(&COLUMNS, &table_rows),
        sweep_md.replace("](sweep.png)", "](sweep/sweep.png)")
    );
    // the reward models and the test split go between the dev table and the plots
    let sections: String = [reward_models_section(out)?, test_section(out)?]
        .into_iter()
        .flatten()
        .collect();
    let md = md.replacen(
        "\n![rewards per round]",
        &format!("{sections}\n![rewards per round]"),
        1,
    );
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

/// One row per `dev_*` metric of the SFT evaluation: SFT, the best round, and the paired
/// interval when the run wrote both decodings' per-question scores.
fn dev_rows(
    mario_dir: &Path,
    best_round: Option<u64>,
    sft: &MarioEvalRecord,
    best: &MarioEvalRecord,
) -> Result<Vec<Vec<String>>> {
    let keys = sft.metrics.keys().filter(|k| k.starts_with("dev_"));
    // per-question scores of both decodings, when the run wrote them
    let per_question = match best_round {
        Some(r) => {
            let (a, b) = (
                dev_scores_path(mario_dir, "sft"),
                dev_scores_path(mario_dir, &format!("round-{r}")),
            );
            if a.is_file() && b.is_file() {
                Some((read_dev_scores(&a)?, read_dev_scores(&b)?))
            } else {
                None
            }
        }
        None => None,
    };
    let mut table_rows = Vec::new();
    let value = |r: &MarioEvalRecord, k: &str| r.metrics.get(k).copied().flatten();
    for k in keys {
        let (a, b) = (
            value(sft, k).unwrap_or(f64::NAN),
            value(best, k).unwrap_or(f64::NAN),
        );
        let metric = k.trim_start_matches("dev_");
        let diff = match &per_question {
            Some((sa, sb)) => paired(sa, sb, metric)?,
            None => None,
        };
        let questions = per_question.as_ref().map_or(0, |(sa, _)| sa.len());
        table_rows.push(comparison_row(metric, a, b, diff, questions));
    }
    Ok(table_rows)
}

/// The `## Test split` section (starting with a newline) when `<out>/test/` holds both
/// models' scores.
fn test_section(out: &Path) -> Result<Option<String>> {
    let (sft, mario) = (
        out.join(TEST_DIR).join("sft.jsonl"),
        out.join(TEST_DIR).join("mario.jsonl"),
    );
    if !(sft.is_file() && mario.is_file()) {
        return Ok(None);
    }
    let sft = read_dev_scores(&sft)?;
    let rows = paired_rows(&sft, &read_dev_scores(&mario)?)?;
    let n = sft.len();
    let majority = match majority_answer(&sft) {
        Some((label, share)) => format!(
            " The most common gold answer, `{label}`, is {:.1} % of them (always answering it \
             scores that).",
            100.0 * share
        ),
        None => String::new(),
    };
    Ok(Some(format!(
        "\n## Test split\n\nThe SFT model and the best MaRio round (best control tokens) \
         on all {n} test questions, decoded like the dev evaluations; intervals paired \
         question by question (`{TEST_DIR}/*.jsonl`).{majority}\n\n{}",
        markdown_table(&COLUMNS, &rows)
    )))
}

/// The most common gold answer and its share of the questions (ties: the first label in
/// sorted order); `None` for no questions.
fn majority_answer(rows: &[DevScore]) -> Option<(String, f64)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in rows {
        *counts.entry(r.gold.as_str()).or_default() += 1;
    }
    // the largest count; among equal counts the first label (max_by_key keeps the last maximum)
    let (label, n) = counts.into_iter().rev().max_by_key(|&(_, n)| n)?;
    Some((label.to_string(), n as f64 / rows.len() as f64))
}

/// The `## Reward models` section (starting with a newline): each answer model's best dev
/// choice accuracy (its run's `metrics.jsonl`) and the plausibility scorer's held-out AUCs
/// (`plausibility/aucs.json`), for the models this pipeline trained; `None` when it trained
/// neither.
fn reward_models_section(out: &Path) -> Result<Option<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for mode in [AnswerMode::I2o, AnswerMode::Ir2o] {
        let log = answer_models::run_dir(mode, &out.join("reward-models")).metrics();
        if !log.is_file() {
            continue;
        }
        let records: Vec<TrainRecord> = metrics_log::read(&log)?;
        let best = records
            .iter()
            .filter_map(|r| {
                r.evaluation()?
                    .1
                    .get(DEV_CHOICE_ACCURACY)
                    .copied()
                    .flatten()
            })
            .reduce(f64::max);
        if let Some(v) = best {
            rows.push(vec![
                answer_models::folder_name(mode).to_string(),
                "dev choice accuracy (best evaluation)".into(),
                format!("{v:.4}"),
            ]);
        }
    }
    let plausibility = out.join("plausibility");
    if let Some(aucs) = read_aucs(&plausibility)? {
        for (k, v) in aucs {
            rows.push(vec![
                "plausibility".into(),
                match k.strip_prefix("auc_") {
                    Some(kind) => {
                        format!("held-out AUC against {} negatives", kind.replace('_', " "))
                    }
                    None if k == "held_out_auc" => "held-out AUC against every negative".into(),
                    None => k.replace('_', " "),
                },
                v.map_or_else(|| "- (not a number)".into(), |v| format!("{v:.4}")),
            ]);
        }
    } else if plausibility.join("report.md").is_file() {
        rows.push(vec![
            "plausibility".into(),
            "held-out AUCs".into(),
            format!(
                "in `plausibility/report.md` (no `plausibility/{AUCS_FILE}`: trained before \
                 it was written)"
            ),
        ]);
    }
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "\n## Reward models\n\nHow well the learned rewards' models do their own task on \
         held-out data (answer models: choosing the gold label on dev; plausibility: AUC of \
         the teacher's positives against each kind of negative).\n\n{}",
        markdown_table(&["model", "measure", "value"], &rows)
    )))
}

/// Rows `metric | A | B | change | 95 % interval | where it lies` over every score of two
/// decodings of the same questions (accuracy first, then by name).
fn paired_rows(a: &[DevScore], b: &[DevScore]) -> Result<Vec<Vec<String>>> {
    let mut metrics: Vec<String> = a
        .iter()
        .flat_map(|r| r.scores.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    metrics.sort_by_key(|m| (m != "accuracy", m.clone()));
    let mean = |rows: &[DevScore], m: &str| {
        let v: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.scores.get(m).copied().flatten())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut out = Vec::new();
    for m in &metrics {
        let (x, y) = (mean(a, m), mean(b, m));
        let diff = paired(a, b, m)?;
        out.push(comparison_row(m, x, y, diff, a.len()));
    }
    Ok(out)
}

/// One row `metric | A | B | change | 95 % interval | where it lies`. The change is the
/// difference of the two means (each over the questions its side scored); the interval is
/// paired over the questions both sides scored, so when that is fewer than the `questions`
/// decoded (e.g. a rationale stating no fact has no fact accuracy) the cell names that count
/// and the paired mean the interval is centred on.
fn comparison_row(
    metric: &str,
    a: f64,
    b: f64,
    diff: Option<PairedDiff>,
    questions: usize,
) -> Vec<String> {
    let interval = |d: PairedDiff| {
        let base = format!("[{:+.4}, {:+.4}]", d.low(), d.high());
        if d.n < questions {
            format!(
                "{base} over the {} of {questions} questions both scored (mean {:+.4})",
                d.n, d.mean
            )
        } else {
            base
        }
    };
    vec![
        metric.to_string(),
        format!("{a:.4}"),
        format!("{b:.4}"),
        format!("{:+.4}", b - a),
        diff.map(interval).unwrap_or_else(|| "-".into()),
        diff.map(|d| d.verdict().to_string())
            .unwrap_or_else(|| "-".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(gold: &str) -> DevScore {
        DevScore {
            question: format!("q {gold}"),
            gold: gold.into(),
            output: String::new(),
            scores: Default::default(),
        }
    }

    #[test]
    fn the_majority_answer_and_its_share() {
        let rows: Vec<DevScore> = ["no", "yes", "no", "(A)", "no"].map(scored).into();
        assert_eq!(majority_answer(&rows), Some(("no".into(), 0.6)));
        // a tie goes to the first label in sorted order
        let rows: Vec<DevScore> = ["yes", "no"].map(scored).into();
        assert_eq!(majority_answer(&rows), Some(("no".into(), 0.5)));
        assert_eq!(majority_answer(&[]), None);
    }

    #[test]
    fn the_reward_models_section_reads_each_models_own_measures() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(reward_models_section(dir.path()).unwrap(), None);
        let run = answer_models::run_dir(AnswerMode::Ir2o, &dir.path().join("reward-models"));
        std::fs::create_dir_all(&run.0).unwrap();
        std::fs::write(
            run.metrics(),
            "{\"elapsed_s\":5.0,\"epoch\":0,\"grad_norm\":0.1,\"kind\":\"train\",\"loss\":0.5,\
             \"lr\":1e-6,\"step\":10,\"tokens_per_s\":2000.0}\n\
             {\"dev_choice_accuracy\":0.875,\"kind\":\"eval\",\"step\":10}\n\
             {\"dev_choice_accuracy\":0.8125,\"kind\":\"eval\",\"step\":20}\n",
        )
        .unwrap();
        let plausibility = dir.path().join("plausibility");
        std::fs::create_dir_all(&plausibility).unwrap();
        std::fs::write(plausibility.join("report.md"), "# Plausibility scorer\n").unwrap();
        let s = reward_models_section(dir.path()).unwrap().unwrap();
        assert!(
            s.contains("| consistency-ir2o | dev choice accuracy (best evaluation) | 0.8750 |"),
            "{s}"
        );
        assert!(!s.contains("consistency-i2o"), "no I2O run: {s}");
        assert!(s.contains("no `plausibility/aucs.json`"), "{s}");
        // the scorer's stage writes its AUCs beside its report
        let aucs: crate::train::Metrics = vec![
            ("held_out_auc".into(), 0.99),
            ("auc_false_fact".into(), 0.985),
            ("auc_swapped".into(), f64::NAN),
        ];
        crate::report::plausibility::write_plausibility_report(
            &plausibility.join("report.md"),
            &crate::report::plausibility::PlausibilityReport {
                model: Path::new("sft"),
                teacher_files: &[],
                trained_on: 10,
                built: 12,
                held_out: 4,
                negatives_per_positive: 1.0,
                made: crate::report::plausibility::ScorerMade::FineTuned { best_step: 5 },
                aucs: &aucs,
            },
        )
        .unwrap();
        let s = reward_models_section(dir.path()).unwrap().unwrap();
        assert!(
            s.contains("| plausibility | held-out AUC against false fact negatives | 0.9850 |"),
            "{s}"
        );
        assert!(
            s.contains("| plausibility | held-out AUC against every negative | 0.9900 |"),
            "{s}"
        );
        // an AUC without negatives of its kind is NaN: written as null, shown as such
        assert!(
            s.contains("| held-out AUC against swapped negatives | - (not a number) |"),
            "{s}"
        );
    }

    #[test]
    fn an_interval_over_fewer_questions_than_decoded_says_so() {
        // SFT stated no fact on question 2, so fact accuracy pairs only questions 0 and 1
        let a = [Some(0.5), Some(1.0), None];
        let b = [Some(1.0), Some(1.0), Some(0.0)];
        let d = PairedDiff::of(&a, &b);
        let row = comparison_row("truth_fact_accuracy", 0.75, 2.0 / 3.0, d, 3);
        assert_eq!(row[3], "-0.0833");
        assert!(
            row[4].contains("over the 2 of 3 questions both scored (mean +0.2500)"),
            "{}",
            row[4]
        );
        let full = comparison_row("accuracy", 0.5, 1.0, PairedDiff::of(&b, &b), 3);
        assert_eq!(full[4], "[+0.0000, +0.0000]");
    }
}
