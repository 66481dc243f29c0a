//! The consistency reward's answer models: I2O (question → answer) and IR2O (question +
//! rationale → answer), trained from the SFT model (`mario-train consistency`, pipeline stage 4).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{copy_dir, StageOptions, StageOutcome, StoppedEarly};
use crate::consistency::{AnswerMode, AnswerTask};
use crate::sft::SftSettings;
use crate::train::{train, RunDir, TrainableModel};

/// The folder name of an answer model under the reward-model folder
/// (`consistency-i2o`, `consistency-ir2o`).
pub fn folder_name(mode: AnswerMode) -> &'static str {
    match mode {
        AnswerMode::I2o => mario::rewards::consistency::I2O_DIR,
        AnswerMode::Ir2o => mario::rewards::consistency::IR2O_DIR,
    }
}

/// The run folder of an answer model under the reward-model folder `out` (`runs/<name>`).
pub fn run_dir(mode: AnswerMode, out: &Path) -> RunDir {
    RunDir(out.join("runs").join(folder_name(mode)))
}

/// Trains I2O or IR2O from `model` (usually the SFT model) and writes the best checkpoint to
/// `<out>/consistency-i2o` or `<out>/consistency-ir2o` once training has run to its end.
pub fn train_answer_model(
    mode: AnswerMode,
    model: &Path,
    train_files: &[PathBuf],
    dev_files: &[PathBuf],
    settings: &SftSettings,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<PathBuf>> {
    let name = folder_name(mode);
    let mut m = TrainableModel::load(model, &o.device)?;
    let task = AnswerTask::load(
        mode,
        train_files,
        dev_files,
        &m.tokenizer,
        settings.max_input_tokens,
        settings.eval_limit,
        &o.device,
    )?;
    let opts = o.train_options(settings, task.train.len());
    let run = run_dir(mode, out);
    let summary = train(&task, &mut m, &opts, &run, o.resume)?;
    tracing::info!("{name}: {:?}", summary.best);
    if let Some(s) = StoppedEarly::unless_completed(&summary, name, &run) {
        return Ok(StageOutcome::Stopped(s));
    }
    let dest = out.join(name);
    copy_dir(&run.best(), &dest)?;
    Ok(StageOutcome::Done(dest))
}
