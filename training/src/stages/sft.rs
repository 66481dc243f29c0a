//! The SFT stage: distillation of the teacher's rationales into a T5 (`mario-train sft`,
//! pipeline stage 3). Its run folder holds the checkpoints (`last/`, `best/`), `metrics.jsonl`,
//! `curves.png` and `report.md`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::StageOptions;
use crate::report::sft::{write_sft_report, SftReport};
use crate::sft::{SftSettings, SftTask};
use crate::train::{train, RunDir, TrainSummary, TrainableModel};

/// What an SFT run trains.
#[derive(Debug, Clone, Copy)]
pub struct SftInputs<'a> {
    /// The initial model folder.
    pub model: &'a Path,
    /// Training files.
    pub train_files: &'a [PathBuf],
    /// Dev files.
    pub dev_files: &'a [PathBuf],
    /// Settings (`[sft]` with the flags applied).
    pub settings: &'a SftSettings,
    /// The run folder.
    pub out: &'a Path,
    /// Stop with a checkpoint after this many updates of this invocation.
    pub stop_after: Option<u64>,
}

/// Runs (with `o.resume`: continues) SFT into `i.out` and writes its `report.md`, whether the
/// run reached its last update or was stopped (see [`TrainSummary::completed`]).
pub fn run_sft(i: &SftInputs<'_>, o: &StageOptions) -> Result<TrainSummary> {
    let mut model = TrainableModel::load(i.model, &o.device)
        .with_context(|| format!("loading the initial model {}", i.model.display()))?;
    let task = SftTask::load(
        i.train_files,
        i.dev_files,
        &model.tokenizer,
        i.settings.clone(),
        &o.device,
    )?;
    let mut opts = o.train_options(i.settings, task.train.len());
    opts.stop_after = i.stop_after;
    tracing::info!(
        params = model.num_params(),
        steps = opts.total_steps,
        batch = opts.batch_size,
        lr = opts.lr,
        "SFT"
    );
    let run = RunDir(i.out.to_path_buf());
    let summary = train(&task, &mut model, &opts, &run, o.resume)?;
    write_sft_report(
        &i.out.join("report.md"),
        &SftReport {
            model: i.model,
            out: i.out,
            settings: i.settings,
            train_files: i.train_files,
            dev_files: i.dev_files,
            training_pairs: task.train.len(),
            dev_questions: task.dev.len(),
            params: model.num_params(),
            summary: &summary,
        },
    )?;
    Ok(summary)
}
