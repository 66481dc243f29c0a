//! The rewards of a MaRio run: building them from the reward-model folders, scoring outputs
//! with all of them, and the control-token table they give.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device};
use mario::control::{ControlTokens, RewardKind};
use mario::rewards::{
    ConsistencyScorer, Diversity, PlausibilityScorer, Reward, RewardInput, TaskAccuracy,
};

use serde::{Deserialize, Serialize};

use super::settings::{MarioSettings, Variant};

/// A reward MaRio can train with (`[mario] rewards`, in control-prefix order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardName {
    /// The answer models' gain from reading the rationale (I2O vs IR2O).
    Consistency,
    /// The output's answer is the gold one (binary).
    Accuracy,
    /// The plausibility scorer's probability.
    Plausibility,
    /// Share of distinct n-grams.
    Diversity,
}

impl RewardName {
    /// Every reward, in the paper's order.
    pub const ALL: [RewardName; 4] = [
        RewardName::Consistency,
        RewardName::Accuracy,
        RewardName::Plausibility,
        RewardName::Diversity,
    ];

    /// Its name in configs, control tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RewardName::Consistency => "consistency",
            RewardName::Accuracy => "accuracy",
            RewardName::Plausibility => "plausibility",
            RewardName::Diversity => "diversity",
        }
    }

    /// Binary (two bins: right, wrong) or quantile.
    pub fn kind(self) -> RewardKind {
        if self == RewardName::Accuracy {
            RewardKind::Binary
        } else {
            RewardKind::Quantile
        }
    }
}

impl std::fmt::Display for RewardName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RewardName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        RewardName::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                anyhow!("unknown reward `{s}` (consistency, accuracy, plausibility, diversity)")
            })
    }
}

impl RewardName {
    /// The names of a control table's rewards (a MaRio checkpoint's `mario.json`).
    pub fn of_table(table: &ControlTokens) -> Result<Vec<RewardName>> {
        table.rewards.iter().map(|r| r.name.parse()).collect()
    }
}

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
    names: &[RewardName],
    models: &RewardModels,
    device: &Device,
) -> Result<Vec<Box<dyn Reward>>> {
    names
        .iter()
        .map(|n| -> Result<Box<dyn Reward>> {
            Ok(match n {
                RewardName::Diversity => Box::new(Diversity),
                RewardName::Accuracy => Box::new(TaskAccuracy),
                RewardName::Consistency => {
                    let dir = models
                        .consistency
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `consistency` needs --consistency DIR"))?;
                    Box::new(ConsistencyScorer::load(dir, DType::F32, device)?)
                }
                RewardName::Plausibility => {
                    let dir = models
                        .plausibility
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `plausibility` needs --plausibility DIR"))?;
                    Box::new(PlausibilityScorer::load(dir, DType::F32, device)?)
                }
            })
        })
        .collect()
}

/// The control table for the settings.
pub fn control_table(s: &MarioSettings) -> ControlTokens {
    let spec: Vec<(&str, RewardKind, usize)> = s
        .rewards
        .iter()
        .map(|n| match n.kind() {
            RewardKind::Binary => (n.as_str(), RewardKind::Binary, 2),
            RewardKind::Quantile => (n.as_str(), RewardKind::Quantile, s.bins),
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

/// Whether every reward's tokens are in the prefix at `round` (always for CANONICAL; for
/// ADDITIVE from the round that switches the last reward on).
pub fn trains_every_reward(s: &MarioSettings, round: u32) -> bool {
    active_rewards(s, round) == s.rewards.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_additive_variant_trains_every_reward_from_the_round_that_switches_the_last_on() {
        let canonical = MarioSettings::default();
        assert!((0..4).all(|r| trains_every_reward(&canonical, r)));
        let additive = MarioSettings {
            variant: Variant::Additive,
            stage_rounds: 1,
            ..MarioSettings::default()
        };
        // four rewards, one more each round: rounds 0-2 hold 1-3 of them
        assert_eq!(
            (0..5)
                .map(|r| trains_every_reward(&additive, r))
                .collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
    }

    #[test]
    fn reward_names_parse_from_configs_and_refuse_unknown_ones() {
        for r in RewardName::ALL {
            assert_eq!(r.as_str().parse::<RewardName>().unwrap(), r);
            let toml: MarioSettings = toml::from_str(&format!("rewards = [\"{r}\"]")).unwrap();
            assert_eq!(toml.rewards, vec![r]);
        }
        let e = "fluency".parse::<RewardName>().unwrap_err().to_string();
        assert!(e.contains("fluency") && e.contains("plausibility"), "{e}");
        assert!(toml::from_str::<MarioSettings>("rewards = [\"fluency\"]").is_err());
        assert_eq!(RewardName::Accuracy.kind(), RewardKind::Binary);
        let table = control_table(&MarioSettings::default());
        assert_eq!(
            RewardName::of_table(&table).unwrap(),
            MarioSettings::default().rewards
        );
    }
}
