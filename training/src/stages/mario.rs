//! The MaRio stage: the multi-reward QUARK loop from the SFT checkpoint (`mario-train mario`,
//! pipeline stage 6). The loop itself is [`crate::quark::run`].

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{StageOptions, StoppedEarly};
use crate::quark::rewards::RewardModels;
use crate::quark::run::{run_mario, MarioOutcome, MarioRun, MarioSettings, MarioState};

/// What a MaRio run trains.
#[derive(Debug, Clone, Copy)]
pub struct MarioInputs<'a> {
    /// `[mario]`.
    pub settings: &'a MarioSettings,
    /// The SFT checkpoint (reference model and, by default, the policy's start).
    pub sft: &'a Path,
    /// The policy's start when `policy_from_sft` is false.
    pub init: Option<&'a Path>,
    /// Training files (the questions sampled, and the silver rationales).
    pub train_files: &'a [PathBuf],
    /// Training-only files (never sampled) that `[mario] replay_examples` draws from.
    pub replay_files: &'a [PathBuf],
    /// Teacher files that `[mario] sample_unsolved` reads.
    pub teacher_files: &'a [PathBuf],
    /// Dev files.
    pub dev_files: &'a [PathBuf],
    /// The reward models' folders.
    pub reward_models: &'a RewardModels,
    /// The run folder.
    pub out: &'a Path,
    /// Stop with a checkpoint after this many updates of this invocation.
    pub stop_after: Option<u64>,
}

/// Runs (with `o.resume`: continues) the MaRio loop into `i.out`; `o.max_minutes` counts this
/// invocation.
pub fn run_mario_stage(i: &MarioInputs<'_>, o: &StageOptions) -> Result<MarioOutcome> {
    run_mario(MarioRun {
        settings: i.settings.clone(),
        sft: i.sft.to_path_buf(),
        init: i.init.map(Path::to_path_buf),
        train_files: i.train_files.to_vec(),
        replay_files: i.replay_files.to_vec(),
        teacher_files: i.teacher_files.to_vec(),
        dev_files: i.dev_files.to_vec(),
        reward_models: i.reward_models.clone(),
        out: i.out.to_path_buf(),
        resume: o.resume,
        max_minutes: o.max_minutes,
        stop_after: i.stop_after,
        device: &o.device,
        progress: o.progress,
    })
}

/// Where the run in `out` stands: `None` when nothing was saved, else whether every round of
/// `settings` is done.
pub fn finished(out: &Path, settings: &MarioSettings) -> Result<Option<bool>> {
    Ok(MarioState::load(out)?.map(|st| st.rounds_done >= settings.rounds))
}

impl MarioOutcome {
    /// A run stopped before its last round, as a stopped stage.
    pub fn stopped_early(&self, out: &Path) -> Option<StoppedEarly> {
        match self {
            MarioOutcome::Finished(_) => None,
            MarioOutcome::Stopped { step, .. } => Some(StoppedEarly {
                stage: "mario".into(),
                steps: *step,
                run: out.to_path_buf(),
            }),
        }
    }
}
