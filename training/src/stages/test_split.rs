//! The test split (pipeline stage 8, when the data has one: a generated world): the SFT model
//! and the best MaRio checkpoint decode every test question like the MaRio dev evaluations.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;

use crate::decoding::Decoding;
use crate::quark::dev_eval::DevEval;
use crate::quark::rewards::{build_rewards, RewardModels, RewardName};
use crate::quark::settings::MarioSettings;

/// `<out>/test/`: every test question's output and scores, of the SFT model (`sft.jsonl`) and
/// of the best MaRio round with the best control tokens (`mario.jsonl`), in the MaRio dev
/// files' layout (`-nr<N>` files for the further n-gram blocking sizes).
pub const TEST_DIR: &str = "test";

/// Decodes the test split with the SFT model and the best MaRio checkpoint (the same decoding
/// as the MaRio dev evaluations, every question) and writes `<out>/test/`.
pub fn evaluate_test(
    test_files: &[PathBuf],
    sft: &Path,
    mario_best: &Path,
    reward_models: &RewardModels,
    settings: &MarioSettings,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let test = crate::data::load_examples_of(test_files)?;
    let mario = Checkpoint::load(mario_best, DType::F32, device)?;
    let table = mario
        .control
        .clone()
        .ok_or_else(|| anyhow!("{} has no mario.json", mario_best.display()))?;
    let rewards = build_rewards(&RewardName::of_table(&table)?, reward_models, device)?;
    let settings = MarioSettings {
        eval_limit: 0,
        ..settings.clone()
    };
    let sft = Checkpoint::load(sft, DType::F32, device)?;
    let harness = DevEval {
        dev: &test,
        rewards: &rewards,
        measures: crate::world::truth::truth_rewards_for(test_files)?,
        settings: &settings,
        // as the MaRio dev evaluations: the SFT checkpoint's generation_config.json < [mario]
        decoding: Decoding::resolve(&sft.generation, &(&settings).into(), &Default::default()),
        dir: out.join(TEST_DIR),
    };
    harness.all(&sft.model, &sft.tokenizer, &[], "sft")?;
    let prefix = table.prefix_ids(&table.resolve(&ControlChoice::Best)?, &mario.tokenizer);
    harness.all(&mario.model, &mario.tokenizer, &prefix, "mario")?;
    Ok(())
}
