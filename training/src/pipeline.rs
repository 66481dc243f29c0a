//! The whole pipeline in one command (`mario-train pipeline`):
//! world (or datasets) → tokenizer → init → SFT → consistency models → plausibility scorer →
//! MaRio → sweep → test split, each stage ([`crate::stages`]) skipped when its output exists
//! (so the pipeline resumes stage by stage), ending in one report comparing SFT and MaRio
//! ([`crate::report::comparison`]).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::config::{DataSection, RunConfig};
use crate::consistency::AnswerMode;
use crate::quark::rewards::{RewardModels, RewardName};
use crate::report::comparison::write_comparison;
use crate::stages::answer_models::{self, train_answer_model};
use crate::stages::init::init_model_folder;
use crate::stages::mario::{finished, run_mario_stage, MarioInputs};
use crate::stages::plausibility::{self, train_plausibility};
use crate::stages::sft::{run_sft, SftInputs};
use crate::stages::sweep::sweep;
use crate::stages::test_split::{evaluate_test, TEST_DIR};
use crate::stages::tokenizer::train_tokenizer_file;
use crate::stages::world::pipeline_data;
use crate::stages::{is_model_folder, StageOptions, StageOutcome, StoppedEarly};
use crate::train::RunDir;

/// How `run_pipeline` ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineOutcome {
    /// Every stage is done and `report.md` is written.
    Finished,
    /// A training stage hit its time limit; running the pipeline again continues it.
    Stopped(StoppedEarly),
}

/// Stops the pipeline with a stage's [`StoppedEarly`].
macro_rules! or_stop {
    ($stopped:expr) => {
        if let Some(s) = $stopped {
            return Ok(PipelineOutcome::Stopped(s));
        }
    };
}

/// The pipeline's files, from its data.
struct Files {
    /// `train.jsonl` of every dataset (what MaRio samples).
    train: Vec<PathBuf>,
    /// What SFT and the answer models train on: `train.jsonl` and the training-only files
    /// that MaRio does not sample ([`DataSection::training_files`]).
    sft: Vec<PathBuf>,
    /// The training-only files (in `sft`, never sampled by MaRio).
    training_only: Vec<PathBuf>,
    dev: Vec<PathBuf>,
    teacher: Vec<PathBuf>,
    /// What the tokenizer trains on ([`DataSection::tokenizer_files`]).
    tokenizer: Vec<PathBuf>,
    test: Vec<PathBuf>,
}

impl Files {
    fn of(data: &DataSection) -> Result<Self> {
        let files = Self {
            train: data.files("train.jsonl"),
            sft: data.training_files(),
            training_only: data.training_only_files(),
            dev: data.files("dev.jsonl"),
            teacher: data.files("teacher_gpt3_train.jsonl"),
            tokenizer: data.tokenizer_files(),
            test: data.files("test.jsonl"),
        };
        if files.train.is_empty() || files.dev.is_empty() {
            bail!(
                "the configuration's [data] datasets have no train.jsonl / dev.jsonl under {}",
                data.dir().display()
            );
        }
        Ok(files)
    }
}

/// Runs every stage of a configuration into `out`, skipping stages whose output exists. A
/// training stage stopped by `o.max_minutes` ends the run there (its checkpoint kept, nothing
/// downstream started), so the next invocation resumes it instead of building on a cut stage.
pub fn run_pipeline(cfg: &RunConfig, out: &Path, o: &StageOptions) -> Result<PipelineOutcome> {
    std::fs::create_dir_all(out)?;
    // settings that would stop a later stage are refused before the first
    cfg.mario.binning()?;
    cfg.mario.check_selection_max_accuracy_drop()?;
    crate::stages::plausibility::check_scorer_settings(&cfg.plausibility_data)?;
    // 0. the data: a generated world, or the configured datasets
    let data = pipeline_data(cfg, out)?;
    let files = Files::of(&data)?;
    // 1-2. tokenizer and init, unless SFT starts from a pretrained folder
    let init = match &cfg.init.model {
        Some(arg) => pretrained_init(arg, cfg.init.revision.as_deref())?,
        None => new_model(cfg, &files, out)?,
    };
    // 3. SFT
    let sft_run = RunDir(out.join("sft"));
    // Done means the trainer state reached its last update: a standalone `sft` cut by its
    // time limit leaves `best/` behind, which must not pass for a finished stage.
    if !sft_run.completed() {
        let inputs = SftInputs {
            model: &init,
            train_files: &files.sft,
            dev_files: &files.dev,
            settings: &cfg.sft,
            out: &sft_run.0,
            stop_after: None,
        };
        let so = resuming(o, sft_run.has_checkpoint());
        let summary = run_sft(&inputs, &so)?;
        or_stop!(StoppedEarly::unless_completed(&summary, "sft", &sft_run));
        tracing::info!("stage sft: done");
    }
    let sft = sft_run.best();
    // 4-5. the reward models
    let reward_models = match reward_models(cfg, &files, &sft, out, o)? {
        StageOutcome::Done(models) => models,
        StageOutcome::Stopped(s) => return Ok(PipelineOutcome::Stopped(s)),
    };
    // 6. MaRio
    let mario_dir = out.join("mario");
    let done = finished(&mario_dir, &cfg.mario)?;
    if done != Some(true) {
        let inputs = MarioInputs {
            settings: &cfg.mario,
            sft: &sft,
            init: Some(&init),
            train_files: &files.train,
            replay_files: &files.training_only,
            teacher_files: &files.teacher,
            dev_files: &files.dev,
            reward_models: &reward_models,
            out: &mario_dir,
            stop_after: None,
        };
        let outcome = run_mario_stage(&inputs, &resuming(o, done.is_some()))?;
        or_stop!(outcome.stopped_early(&mario_dir));
        tracing::info!("stage mario: done");
    }
    // 7. sweep and report (the report first without the sweep, which takes a while)
    let sweep_dir = out.join("sweep");
    if !sweep_dir.join("sweep.json").is_file() {
        write_comparison(&mario_dir, &sweep_dir, out)?;
        sweep(
            &mario_dir.join("best"),
            &files.dev,
            &reward_models,
            &cfg.mario,
            &Default::default(),
            &sweep_dir,
            &o.device,
        )?;
    }
    // 8. the test split, when the data has one (a generated world)
    if !files.test.is_empty() && !out.join(TEST_DIR).join("mario.jsonl").is_file() {
        evaluate_test(
            &files.test,
            &sft,
            &mario_dir.join("best"),
            &reward_models,
            &cfg.mario,
            out,
            &o.device,
        )?;
        tracing::info!("stage test: done");
    }
    write_comparison(&mario_dir, &sweep_dir, out)?;
    Ok(PipelineOutcome::Finished)
}

/// The pipeline's options for one stage: resuming when it left a checkpoint.
fn resuming(o: &StageOptions, resume: bool) -> StageOptions {
    StageOptions {
        resume,
        ..o.clone()
    }
}

/// Stages 4 and 5: the consistency reward's answer models and the plausibility scorer, each
/// trained unless written (or not needed by `[mario] rewards`).
fn reward_models(
    cfg: &RunConfig,
    files: &Files,
    sft: &Path,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<RewardModels>> {
    let rm_dir = out.join("reward-models");
    let needs = |n: RewardName| cfg.mario.rewards.contains(&n);
    if needs(RewardName::Consistency) {
        for mode in [AnswerMode::I2o, AnswerMode::Ir2o] {
            let name = answer_models::folder_name(mode);
            let run = answer_models::run_dir(mode, &rm_dir);
            let stopped = unless_written(&rm_dir.join(name), &run, name, o, |so| {
                let (train, dev) = (&files.sft, &files.dev);
                train_answer_model(mode, sft, train, dev, &cfg.consistency, &rm_dir, so)
            })?;
            if let Some(s) = stopped {
                return Ok(StageOutcome::Stopped(s));
            }
        }
    }
    let pl_dir = out.join("plausibility");
    if needs(RewardName::Plausibility) {
        let run = plausibility::run_dir(&pl_dir);
        let stopped = unless_written(&pl_dir.join("scorer"), &run, "plausibility", o, |so| {
            let (settings, data) = (&cfg.plausibility, &cfg.plausibility_data);
            train_plausibility(sft, &files.teacher, settings, data, &pl_dir, so)
        })?;
        if let Some(s) = stopped {
            return Ok(StageOutcome::Stopped(s));
        }
    }
    Ok(StageOutcome::Done(RewardModels {
        consistency: needs(RewardName::Consistency).then_some(rm_dir),
        plausibility: needs(RewardName::Plausibility).then(|| pl_dir.join("scorer")),
    }))
}

/// Runs a reward-model stage unless its model folder `written` exists, resuming its `run` when
/// that left a checkpoint; returns the stage's stop when its time limit cut it.
fn unless_written<T>(
    written: &Path,
    run: &RunDir,
    name: &str,
    o: &StageOptions,
    stage: impl FnOnce(&StageOptions) -> Result<StageOutcome<T>>,
) -> Result<Option<StoppedEarly>> {
    if is_model_folder(written) {
        return Ok(None);
    }
    match stage(&resuming(o, run.has_checkpoint()))? {
        StageOutcome::Done(_) => {
            tracing::info!("stage {name}: done");
            Ok(None)
        }
        StageOutcome::Stopped(s) => Ok(Some(s)),
    }
}

/// `[init] model`: SFT starts from this folder, or Hugging Face Hub id downloaded into the
/// cache (at `revision`), instead of a new tokenizer and random weights.
fn pretrained_init(arg: &Path, revision: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or(mario::hub::DEFAULT_REVISION);
    let dir = mario::hub::resolve_model(arg, revision).map_err(|e| anyhow!("[init] model: {e}"))?;
    for f in ["config.json", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            bail!(
                "[init] model = {}: no {f} there (a Hugging Face T5 folder holds \
                 config.json, model.safetensors and tokenizer.json)",
                dir.display()
            );
        }
    }
    tracing::info!(
        "stages tokenizer and init: skipped, SFT starts from {}",
        dir.display()
    );
    Ok(dir)
}

/// Stages 1 and 2: trains `<out>/tokenizer.json` on the training questions and rationales (the
/// training-only files included) and writes `<out>/init/` with random weights of `[init]
/// arch`, each skipped when it exists.
fn new_model(cfg: &RunConfig, files: &Files, out: &Path) -> Result<PathBuf> {
    let tok_path = out.join("tokenizer.json");
    if !tok_path.is_file() {
        train_tokenizer_file(&files.tokenizer, &cfg.tokenizer, &tok_path)?;
        tracing::info!("stage tokenizer: done");
    }
    let init = out.join("init");
    if !is_model_folder(&init) {
        init_model_folder(&cfg.init.arch, cfg.init.seed, &tok_path, &init)?;
        tracing::info!("stage init: done");
    }
    Ok(init)
}
