//! The stages of a MaRio run, each written once and called both by its `mario-train`
//! subcommand and by `mario-train pipeline` (which skips a stage whose output exists):
//!
//! - [`world`]: a generated knowledge world as the pipeline's data;
//! - [`tokenizer`]: a tokenizer trained on the training questions and rationales;
//! - [`init`]: a randomly initialised T5 model folder;
//! - [`sft`]: SFT distillation (its run folder and `report.md`);
//! - [`answer_models`]: the consistency reward's answer models (I2O, IR2O);
//! - [`plausibility`]: the plausibility scorer (and its `report.md`);
//! - [`mario`]: the multi-reward QUARK loop;
//! - [`sweep`]: the controllability sweep of a MaRio checkpoint;
//! - [`test_split`]: the SFT and MaRio models on the test split;
//! - [`eval`], [`export`]: evaluating and shipping a checkpoint.
//!
//! Every stage reports a training run cut by its time limit the same way
//! ([`StageOutcome::Stopped`]): its checkpoint is kept and nothing downstream takes it as done.

pub mod answer_models;
pub mod eval;
pub mod export;
pub mod init;
pub mod mario;
pub mod plausibility;
pub mod sft;
pub mod sweep;
pub mod test_split;
pub mod tokenizer;
pub mod world;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;

use crate::sft::SftSettings;
use crate::train::{RunDir, TrainOptions, TrainSummary};

/// Options shared by the training stages.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Continue an interrupted stage.
    pub resume: bool,
    /// Stop a stage after this many minutes.
    pub max_minutes: Option<f64>,
    /// Progress bars.
    pub progress: bool,
    /// Device.
    pub device: Device,
}

impl StageOptions {
    /// The training loop's options for `settings` over `n_train` examples, with this stage's
    /// time limit and progress bar.
    pub fn train_options(&self, settings: &SftSettings, n_train: usize) -> TrainOptions {
        let mut opts = settings.train_options(n_train);
        opts.max_minutes = self.max_minutes;
        opts.progress = self.progress;
        opts
    }
}

/// A training stage that hit its time limit (`--max-minutes`) before its last update. Its
/// checkpoint is kept, and nothing downstream treats the stage as done.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedEarly {
    /// The stage (`sft`, `consistency-i2o`, ...).
    pub stage: String,
    /// Updates done so far.
    pub steps: u64,
    /// Its run folder (`last/` resumes, `best/` is the best checkpoint so far).
    pub run: PathBuf,
}

impl std::fmt::Display for StoppedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {} stopped by its time limit after {} updates; its best checkpoint so far is \
             {}/best; rerun with --resume (the pipeline: the same command) to finish it",
            self.stage,
            self.steps,
            self.run.display()
        )
    }
}

impl StoppedEarly {
    /// `Some` when `summary` ended before the stage's last update.
    pub fn unless_completed(summary: &TrainSummary, stage: &str, run: &RunDir) -> Option<Self> {
        (!summary.completed).then(|| Self {
            stage: stage.to_string(),
            steps: summary.steps,
            run: run.0.clone(),
        })
    }
}

/// How a training stage ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome<T> {
    /// It ran to its last update and wrote its output.
    Done(T),
    /// It hit its time limit; no final output was written.
    Stopped(StoppedEarly),
}

/// Copies the files of a folder (not recursive), leaving out a run's optimizer and trainer
/// state.
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name();
            if name == "optimizer.safetensors" || name == "trainer_state.json" {
                continue;
            }
            std::fs::copy(entry.path(), dst.join(name))?;
        }
    }
    Ok(())
}

/// A stage's model folder is written (its `config.json` exists).
pub fn is_model_folder(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}
