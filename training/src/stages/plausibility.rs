//! The plausibility scorer, made from the SFT model with a teacher file's rationales and their
//! corruptions (`mario-train plausibility`, pipeline stage 5): a VERA-format classifier
//! fine-tuned on them, or (`[plausibility_data] scorer = "likelihood"`) the model's own token
//! likelihoods calibrated on them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use mario::rewards::knowledge_context::KnowledgeContext;
use mario::rewards::likelihood::TokenPooling;
use mario::rewards::plausibility::{PlausibilitySpec, PLAUSIBILITY_FILE};

use super::{copy_dir, StageOptions, StageOutcome, StoppedEarly};
use crate::config::{PlausibilityDataSection, ScorerKind};
use crate::data::{load_examples, load_teacher};
use crate::plausibility::{
    balance, build_examples, finetune_pairs, fit_likelihood_scorer, Labelled, PlausibilityTask,
    ScorerReading,
};
use crate::report::plausibility::{write_plausibility_report, PlausibilityReport, ScorerMade};
use crate::sft::SftSettings;
use crate::sft::SftTask;
use crate::train::{train, RunDir, TrainableModel};
use crate::world::{World, KNOWLEDGE_FILE};

/// The run folder under the stage's output folder.
pub fn run_dir(out: &Path) -> RunDir {
    RunDir(out.join("run"))
}

/// Trains a plausibility scorer; once training has run to its end, writes it (with
/// `plausibility.json`) to `out/scorer` and `out/report.md`, and returns that folder and the
/// held-out AUC.
pub fn train_plausibility(
    model: &Path,
    teacher_files: &[PathBuf],
    settings: &SftSettings,
    data: &PlausibilityDataSection,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<(PathBuf, f64)>> {
    // checked before any work
    check_scorer_settings(data)?;
    let knowledge = knowledge_context(teacher_files, data)?;
    let mut records = Vec::new();
    for f in teacher_files {
        records.extend(load_teacher(f)?);
    }
    // a generated world next to the teacher file gives false-fact negatives
    let world = match teacher_files.iter().find_map(|f| f.parent()) {
        Some(dir) => World::load(dir)?,
        None => None,
    };
    let (train_ex, test_ex) =
        build_examples(&records, settings.seed, world.as_ref(), data.teacher_vague);
    let built = train_ex.len();
    let train_ex = balance(train_ex, data.negatives_per_positive, settings.seed);
    if data.scorer == ScorerKind::Likelihood {
        let answers: std::collections::HashMap<&str, &str> = records
            .iter()
            .map(|r| (r.question.as_str(), r.gold_label.as_str()))
            .collect();
        let scorer_model = if data.finetune {
            let prompt = data.statement_prompt.as_deref();
            match finetune_scorer_model(model, &train_ex, &answers, prompt, settings, out, o)? {
                StageOutcome::Done(dir) => dir,
                StageOutcome::Stopped(s) => return Ok(StageOutcome::Stopped(s)),
            }
        } else {
            model.to_path_buf()
        };
        let examples = ScorerExamples {
            train: &train_ex,
            test: &test_ex,
            built,
            teacher_files,
        };
        let reading = ScorerReading {
            prompt: data.statement_prompt.clone(),
            knowledge,
            pooling: data.pooling,
        };
        let finetuned_from = data.finetune.then_some(model);
        return likelihood_scorer(
            &scorer_model,
            finetuned_from,
            data,
            reading,
            out,
            o,
            &examples,
        )
        .map(StageOutcome::Done);
    }
    let mut m = TrainableModel::load(model, &o.device)?;
    let task = PlausibilityTask::new(&mut m, &train_ex, &test_ex, &o.device)?;
    tracing::info!(
        train = task.train.len(),
        built,
        held_out = task.test.len(),
        "plausibility data"
    );
    let opts = o.train_options(settings, task.train.len());
    let run = run_dir(out);
    let summary = train(&task, &mut m, &opts, &run, o.resume)?;
    if let Some(s) = StoppedEarly::unless_completed(&summary, "plausibility", &run) {
        return Ok(StageOutcome::Stopped(s));
    }
    let dest = out.join("scorer");
    copy_dir(&run.best(), &dest)?;
    std::fs::write(
        dest.join(PLAUSIBILITY_FILE),
        PlausibilitySpec::Vera(task.head.clone()).to_json(),
    )?;
    let best = TrainableModel::load(&dest, &o.device)?;
    let aucs = task.held_out_aucs(&best.model)?;
    let auc = aucs[0].1;
    write_plausibility_report(
        &out.join("report.md"),
        &PlausibilityReport {
            model,
            teacher_files,
            trained_on: task.train.len(),
            built,
            held_out: task.test.len(),
            negatives_per_positive: data.negatives_per_positive,
            made: ScorerMade::FineTuned {
                best_step: summary.best.map(|b| b.1).unwrap_or(0),
            },
            aucs: &aucs,
        },
    )?;
    Ok(StageOutcome::Done((dest, auc)))
}

/// Fine-tunes `model` as a language model on the positives of `examples` (each also without its
/// repeated sentences: [`finetune_pairs`]; after `prompt`, answered yes, instead of the
/// question when given)
/// with the `[plausibility]` settings, in `out/lm` (resumable); returns the last checkpoint.
fn finetune_scorer_model(
    model: &Path,
    examples: &[Labelled],
    answers: &std::collections::HashMap<&str, &str>,
    prompt: Option<&str>,
    settings: &SftSettings,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<PathBuf>> {
    let dir = out.join("lm");
    std::fs::create_dir_all(&dir)?;
    let rows = lm_rows(examples, answers, prompt);
    let data = dir.join("train.jsonl");
    crate::jsonl::write(&data, &rows)?;
    // the run's evaluations read a small slice (the loss on it, no selection)
    let dev = dir.join("dev.jsonl");
    crate::jsonl::write(&dev, &rows[..rows.len().min(64)])?;
    let mut m = TrainableModel::load(model, &o.device)?;
    // no dev decoding: the run keeps its last checkpoint
    let lm_settings = SftSettings {
        eval_every: 0,
        eval_limit: 1,
        ..settings.clone()
    };
    let task = SftTask::load(
        std::slice::from_ref(&data),
        std::slice::from_ref(&dev),
        &m.tokenizer,
        lm_settings.clone(),
        &o.device,
    )?;
    tracing::info!(
        rows = rows.len(),
        "fine-tuning the likelihood scorer's model"
    );
    let opts = o.train_options(&lm_settings, task.train.len());
    let run = RunDir(dir.join("run"));
    let summary = train(&task, &mut m, &opts, &run, o.resume)?;
    if let Some(s) = StoppedEarly::unless_completed(&summary, "plausibility", &run) {
        return Ok(StageOutcome::Stopped(s));
    }
    Ok(StageOutcome::Done(run.last()))
}

/// The rows a likelihood scorer's model is fine-tuned on (see [`finetune_pairs`]): each
/// positive after its question with the question's gold answer, or after `prompt` answered
/// yes (every positive is a believed statement; the answer sentence is never scored).
fn lm_rows(
    examples: &[Labelled],
    answers: &std::collections::HashMap<&str, &str>,
    prompt: Option<&str>,
) -> Vec<serde_json::Value> {
    finetune_pairs(examples)
        .into_iter()
        .filter_map(|(q, r)| {
            let answer = answers.get(q.as_str())?;
            let (question, answer) = match prompt {
                Some(p) => (p, "yes"),
                None => (q.as_str(), *answer),
            };
            Some(serde_json::json!({"question": question, "rationale": r, "answer": answer}))
        })
        .collect()
}

/// Refuses `[plausibility_data]` settings that conflict, naming them (the pipeline checks them
/// before its first stage).
pub fn check_scorer_settings(data: &PlausibilityDataSection) -> Result<()> {
    let likelihood_only = [
        ("knowledge_context", data.knowledge_context > 0),
        ("pooling = \"mean\"", data.pooling != TokenPooling::Min),
        ("statement_prompt", data.statement_prompt.is_some()),
        ("finetune", data.finetune),
    ];
    if data.scorer != ScorerKind::Likelihood {
        if let Some((name, _)) = likelihood_only.iter().find(|(_, set)| *set) {
            bail!(
                "[plausibility_data] {name} needs scorer = \"likelihood\" (scorer = \"classifier\" \
                 is set or the default)"
            );
        }
    }
    if data.knowledge_context > 0 && data.statement_prompt.is_some() {
        bail!(
            "[plausibility_data] knowledge_context and statement_prompt cannot both be set (the \
             statements are read before each question, which a prompt replaces)"
        );
    }
    Ok(())
}

/// The knowledge a likelihood scorer reads before each question when `[plausibility_data]
/// knowledge_context` is set: every statement of the knowledge records beside the teacher
/// files (`knowledge.jsonl`), each once, sorted. An error names the file it did not find or
/// that states nothing.
fn knowledge_context(
    teacher_files: &[PathBuf],
    data: &PlausibilityDataSection,
) -> Result<Option<KnowledgeContext>> {
    if data.knowledge_context == 0 {
        return Ok(None);
    }
    let mut statements = std::collections::BTreeSet::new();
    for f in teacher_files {
        let path = f.parent().unwrap_or(Path::new(".")).join(KNOWLEDGE_FILE);
        if !path.is_file() {
            bail!(
                "[plausibility_data] knowledge_context: no {} beside the teacher file {} (a \
                 generated world with knowledge_repeats > 0 writes it)",
                path.display(),
                f.display()
            );
        }
        let read: Vec<String> = load_examples(&path)?
            .into_iter()
            .filter_map(|e| e.rationale)
            .filter(|r| !r.trim().is_empty())
            .collect();
        if read.is_empty() {
            bail!(
                "[plausibility_data] knowledge_context: {} has no rationale to read",
                path.display()
            );
        }
        statements.extend(read);
    }
    // non-empty, and N > 0: valid (`KnowledgeContext::validate`)
    Ok(Some(KnowledgeContext {
        max_statements_per_word: data.knowledge_context,
        statements: statements.into_iter().collect(),
    }))
}

/// A plausibility scorer's examples.
struct ScorerExamples<'a> {
    /// The training split, after balancing.
    train: &'a [Labelled],
    /// The held-out split.
    test: &'a [Labelled],
    /// Training examples built before balancing.
    built: usize,
    /// The teacher files they were built from.
    teacher_files: &'a [PathBuf],
}

/// The likelihood scorer: `model` (fine-tuned from `finetuned_from`, when set) with
/// `plausibility.json` holding the calibration fitted on the training examples (a fit, not a
/// training run: nothing to resume); writes `out/scorer` and `out/report.md`.
fn likelihood_scorer(
    model: &Path,
    finetuned_from: Option<&Path>,
    data: &PlausibilityDataSection,
    reading: ScorerReading,
    out: &Path,
    o: &StageOptions,
    examples: &ScorerExamples<'_>,
) -> Result<(PathBuf, f64)> {
    let ScorerExamples {
        train,
        test,
        built,
        teacher_files,
    } = *examples;
    let m = TrainableModel::load(model, &o.device)?;
    tracing::info!(
        train = train.len(),
        built,
        held_out = test.len(),
        "plausibility data (likelihood scorer)"
    );
    let fit = fit_likelihood_scorer(&m.model, &m.tokenizer, train, test, 0, reading)?;
    let dest = out.join("scorer");
    copy_dir(model, &dest)?;
    std::fs::write(
        dest.join(PLAUSIBILITY_FILE),
        PlausibilitySpec::Likelihood(fit.scoring.clone()).to_json(),
    )?;
    write_plausibility_report(
        &out.join("report.md"),
        &PlausibilityReport {
            model,
            teacher_files,
            trained_on: fit.calibrated_on,
            built,
            held_out: test.len(),
            negatives_per_positive: data.negatives_per_positive,
            made: ScorerMade::Calibrated {
                scoring: &fit.scoring,
                finetuned_from,
            },
            aucs: &fit.aucs,
        },
    )?;
    Ok((dest, fit.aucs[0].1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorer_lm_rows_read_the_question_or_the_prompt() {
        let examples = [
            Labelled::new("Which? (A) x (B) y", "X is so.", 1.0, "positive"),
            Labelled::new("Which? (A) x (B) y", "X is not.", 0.0, "swapped"),
        ];
        let answers = [("Which? (A) x (B) y", "(b)")].into_iter().collect();
        let plain = lm_rows(&examples, &answers, None);
        assert_eq!(
            plain,
            [
                serde_json::json!({"question": "Which? (A) x (B) y", "rationale": "X is so.", "answer": "(b)"})
            ]
        );
        let prompted = lm_rows(&examples, &answers, Some("Is it true?"));
        assert_eq!(
            prompted,
            [
                serde_json::json!({"question": "Is it true?", "rationale": "X is so.", "answer": "yes"})
            ]
        );
    }

    #[test]
    fn knowledge_context_reads_the_knowledge_file_beside_the_teacher_file() {
        let dir = tempfile::tempdir().unwrap();
        let teacher = [dir.path().join("teacher_gpt3_train.jsonl")];
        let mut data = PlausibilityDataSection {
            scorer: ScorerKind::Likelihood,
            ..Default::default()
        };
        // off: nothing read, nothing needed
        assert!(knowledge_context(&teacher, &data).unwrap().is_none());
        data.knowledge_context = 3;
        let err = knowledge_context(&teacher, &data).unwrap_err();
        assert!(err.to_string().contains("knowledge.jsonl"), "{err}");
        let record = |r: &str| {
            format!(
                "{{\"question\": \"Where? (A) p (B) q\", \"rationale\": \"{r}\", \"answer\": \"(A)\"}}\n"
            )
        };
        let path = dir.path().join(KNOWLEDGE_FILE);
        std::fs::write(&path, record("")).unwrap();
        let err = knowledge_context(&teacher, &data).unwrap_err();
        assert!(err.to_string().contains("no rationale"), "{err}");
        let lines = [record("B is b."), record("A is a."), record("B is b.")].concat();
        std::fs::write(&path, lines).unwrap();
        let k = knowledge_context(&teacher, &data).unwrap().unwrap();
        assert_eq!(k.max_statements_per_word, 3);
        assert_eq!(k.statements, ["A is a.", "B is b."]);
    }

    #[test]
    fn conflicting_scorer_settings_are_refused_by_name() {
        let likelihood = PlausibilityDataSection {
            scorer: ScorerKind::Likelihood,
            knowledge_context: 3,
            finetune: true,
            ..Default::default()
        };
        assert!(check_scorer_settings(&likelihood).is_ok());
        assert!(check_scorer_settings(&PlausibilityDataSection::default()).is_ok());
        let refused =
            |d: PlausibilityDataSection| check_scorer_settings(&d).unwrap_err().to_string();
        let both = refused(PlausibilityDataSection {
            statement_prompt: Some("Is it true?".into()),
            ..likelihood.clone()
        });
        assert!(
            both.contains("knowledge_context and statement_prompt"),
            "{both}"
        );
        let classifier = PlausibilityDataSection {
            scorer: ScorerKind::Classifier,
            ..Default::default()
        };
        for (d, name) in [
            (
                PlausibilityDataSection {
                    knowledge_context: 2,
                    ..classifier.clone()
                },
                "knowledge_context",
            ),
            (
                PlausibilityDataSection {
                    pooling: TokenPooling::Mean,
                    ..classifier.clone()
                },
                "pooling",
            ),
            (
                PlausibilityDataSection {
                    finetune: true,
                    ..classifier.clone()
                },
                "finetune",
            ),
        ] {
            let msg = refused(d);
            assert!(msg.contains(name) && msg.contains("scorer"), "{msg}");
        }
    }

    #[test]
    fn scorer_settings_parse_from_a_config() {
        let cfg: crate::config::RunConfig = toml::from_str(
            "[plausibility_data]\nscorer = \"likelihood\"\nknowledge_context = 3\npooling = \"mean\"\n",
        )
        .unwrap();
        assert_eq!(cfg.plausibility_data.knowledge_context, 3);
        assert_eq!(cfg.plausibility_data.pooling, TokenPooling::Mean);
        assert!(toml::from_str::<crate::config::RunConfig>(
            "[plausibility_data]\npooling = \"median\"\n"
        )
        .is_err());
    }
}
