//! The rewards of a MaRio run: building them from the reward-model folders, scoring outputs
//! with all of them, and the control-token table they give.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device};
use mario::control::{ControlTokens, RewardKind};
use mario::rewards::{
    ConsistencyScorer, Diversity, PlausibilityScorer, Reward, RewardInput, TaskAccuracy,
};

use super::settings::{MarioSettings, Variant};

/// Where the reward models are.
#[derive(Debug, Clone, Default)]
pub struct RewardModels {
    /// Folder with `consistency-i2o/` and `consistency-ir2o/`.
    pub consistency: Option<PathBuf>,
    /// Plausibility scorer folder.
    pub plausibility: Option<PathBuf>,
}

/// Instantiates the named rewards.
pub fn build_rewards(
    names: &[String],
    models: &RewardModels,
    device: &Device,
) -> Result<Vec<Box<dyn Reward>>> {
    names
        .iter()
        .map(|n| -> Result<Box<dyn Reward>> {
            Ok(match n.as_str() {
                "diversity" => Box::new(Diversity),
                "accuracy" => Box::new(TaskAccuracy),
                "consistency" => {
                    let dir = models
                        .consistency
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `consistency` needs --consistency DIR"))?;
                    Box::new(ConsistencyScorer::load(dir, DType::F32, device)?)
                }
                "plausibility" => {
                    let dir = models
                        .plausibility
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `plausibility` needs --plausibility DIR"))?;
                    Box::new(PlausibilityScorer::load(dir, DType::F32, device)?)
                }
                other => bail!(
                    "unknown reward `{other}` (diversity, accuracy, consistency, plausibility)"
                ),
            })
        })
        .collect()
}

/// The control table for the settings.
pub fn control_table(s: &MarioSettings) -> ControlTokens {
    let spec: Vec<(&str, RewardKind, usize)> = s
        .rewards
        .iter()
        .map(|n| {
            if n == "accuracy" {
                (n.as_str(), RewardKind::Binary, 2)
            } else {
                (n.as_str(), RewardKind::Quantile, s.bins)
            }
        })
        .collect();
    ControlTokens::ordered(&spec)
}

/// Rewards whose tokens are in the prefix at `round` (all for CANONICAL).
pub fn active_rewards(s: &MarioSettings, round: u32) -> usize {
    match s.variant {
        Variant::Canonical => s.rewards.len(),
        Variant::Additive => ((round / s.stage_rounds.max(1)) as usize + 1).min(s.rewards.len()),
    }
}

/// Scores outputs with every reward: `out[i][k]`.
pub fn score_all<R: std::ops::Deref<Target = dyn Reward>>(
    rewards: &[R],
    items: &[(String, String, String)],
) -> Result<Vec<Vec<Option<f64>>>> {
    let inputs: Vec<RewardInput<'_>> = items
        .iter()
        .map(|(q, text, gold)| RewardInput {
            question: q,
            output: text,
            gold: Some(gold),
        })
        .collect();
    let mut out = vec![Vec::with_capacity(rewards.len()); items.len()];
    for r in rewards {
        let scores = r.score(&inputs)?;
        for (o, s) in out.iter_mut().zip(scores) {
            o.push(s);
        }
    }
    Ok(out)
}
