//! Control tokens: one token per reward, naming the quantile bin the output should fall in.
//!
//! A MaRio checkpoint ships a `mario.json` next to its weights that lists, in order, every
//! reward the model was trained with and the token of each of its bins. The decoder prefix of a
//! generation is the chosen bin's token of every reward, in that order (after the decoder
//! start token). Bins are listed best first: bin 0 is the highest-scoring quantile (the paper's
//! `_TOKEN{i}_00000`), the last bin the lowest. A binary reward (task correctness) has exactly
//! two bins, "correct" then "wrong".
//!
//! ```
//! use mario::control::{ControlTokens, ControlChoice};
//! let table = ControlTokens::quark(&[("plausibility", 5), ("diversity", 3)], &["accuracy"]);
//! let bins = table.resolve(&ControlChoice::Best).unwrap();
//! assert_eq!(table.render(&bins), vec!["_TOKEN0_00000", "_TOKEN1_00000", "CORRECT_LABEL"]);
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::ModelError;
use crate::tokenize::TextTokenizer;

/// File name of the control-token table in a checkpoint folder.
pub const CONTROL_FILE: &str = "mario.json";

/// Version of the `mario.json` format written by this crate.
pub const CONTROL_FORMAT: u32 = 1;

/// How a reward is quantized into bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// K equal-count bins of the pool's scores, best first.
    Quantile,
    /// Two bins: correct (score 1), then wrong (score 0).
    Binary,
}

/// The bins of one reward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardBins {
    /// The reward's name (e.g. `plausibility`).
    pub name: String,
    /// How scores map to bins.
    pub kind: RewardKind,
    /// One token per bin, best bin first.
    pub tokens: Vec<String>,
}

impl RewardBins {
    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.tokens.len()
    }
}

/// The control-token table of a checkpoint (`mario.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTokens {
    /// Format version ([`CONTROL_FORMAT`]).
    pub format: u32,
    /// Rewards in prefix order.
    pub rewards: Vec<RewardBins>,
}

/// Which bin to request for each reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlChoice {
    /// The best bin of every reward (the usual choice at inference).
    Best,
    /// The worst bin of every reward.
    Worst,
    /// An explicit bin per reward; rewards not named get their best bin.
    Bins(BTreeMap<String, usize>),
}

impl ControlChoice {
    /// The choices with a name: `best` and `worst` (the server's `control` string).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "best" => Some(ControlChoice::Best),
            "worst" => Some(ControlChoice::Worst),
            _ => None,
        }
    }
}

/// A control choice that is not `best`, `worst` or `reward=bin[,reward=bin]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlParseError {
    /// A part without `=`.
    #[error("expected best, worst or reward=bin[,reward=bin], got {0:?}")]
    Malformed(String),
    /// A bin that is not a number.
    #[error("bin {0:?} is not a number")]
    NotABin(String),
}

/// `best`, `worst`, or `reward=bin[,reward=bin]` (spaces around names and bins allowed), as
/// `mario-train eval --control` takes it.
impl std::str::FromStr for ControlChoice {
    type Err = ControlParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if let Some(named) = Self::named(spec) {
            return Ok(named);
        }
        let mut map = BTreeMap::new();
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ControlParseError::Malformed(part.to_string()))?;
            let bin: usize = v
                .trim()
                .parse()
                .map_err(|_| ControlParseError::NotABin(v.to_string()))?;
            map.insert(k.trim().to_string(), bin);
        }
        Ok(ControlChoice::Bins(map))
    }
}

/// The form [`FromStr`](std::str::FromStr) reads: `best`, `worst`, or `reward=bin,...` (by
/// reward name).
impl std::fmt::Display for ControlChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlChoice::Best => f.write_str("best"),
            ControlChoice::Worst => f.write_str("worst"),
            ControlChoice::Bins(map) => {
                let parts: Vec<String> = map.iter().map(|(k, b)| format!("{k}={b}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// A requested control setting that the table cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The reward is not in the table.
    #[error("unknown reward `{name}`; this model has: {known}")]
    UnknownReward {
        /// The requested name.
        name: String,
        /// The rewards the model has, comma-separated.
        known: String,
    },
    /// The bin index is too large.
    #[error("bin {bin} is out of range for reward `{name}` (bins 0..={max}, 0 = best)")]
    BinOutOfRange {
        /// The reward.
        name: String,
        /// The requested bin.
        bin: usize,
        /// The last valid bin.
        max: usize,
    },
}

impl ControlTokens {
    /// The standard table of a MaRio run: quantile rewards get `_TOKEN{i}_{bin:05}` tokens
    /// (`i` = position in the prefix), binary rewards `CORRECT_LABEL` / `WRONG_LABEL` (suffixed
    /// with their position when there are several). Binary rewards follow the quantile ones.
    pub fn quark(quantile: &[(&str, usize)], binary: &[&str]) -> Self {
        let mut rewards = Vec::new();
        for (i, (name, k)) in quantile.iter().enumerate() {
            rewards.push(RewardBins {
                name: name.to_string(),
                kind: RewardKind::Quantile,
                tokens: (0..*k).map(|b| format!("_TOKEN{i}_{b:05}")).collect(),
            });
        }
        for (j, name) in binary.iter().enumerate() {
            let i = quantile.len() + j;
            let suffix = if binary.len() > 1 {
                format!("_{i}")
            } else {
                String::new()
            };
            rewards.push(RewardBins {
                name: name.to_string(),
                kind: RewardKind::Binary,
                tokens: vec![
                    format!("CORRECT_LABEL{suffix}"),
                    format!("WRONG_LABEL{suffix}"),
                ],
            });
        }
        Self {
            format: CONTROL_FORMAT,
            rewards,
        }
    }

    /// A table with the rewards in the given order: quantile rewards get
    /// `_TOKEN{position}_{bin:05}`, binary rewards `CORRECT_LABEL` / `WRONG_LABEL` (suffixed
    /// with their position when there are several).
    pub fn ordered(rewards: &[(&str, RewardKind, usize)]) -> Self {
        let n_binary = rewards.iter().filter(|r| r.1 == RewardKind::Binary).count();
        let rewards = rewards
            .iter()
            .enumerate()
            .map(|(i, &(name, kind, k))| RewardBins {
                name: name.to_string(),
                kind,
                tokens: match kind {
                    RewardKind::Quantile => (0..k).map(|b| format!("_TOKEN{i}_{b:05}")).collect(),
                    RewardKind::Binary => {
                        let suffix = if n_binary > 1 {
                            format!("_{i}")
                        } else {
                            String::new()
                        };
                        vec![
                            format!("CORRECT_LABEL{suffix}"),
                            format!("WRONG_LABEL{suffix}"),
                        ]
                    }
                },
            })
            .collect();
        Self {
            format: CONTROL_FORMAT,
            rewards,
        }
    }

    /// Reads and validates `mario.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let table: ControlTokens =
            serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        table.validate().map_err(|problem| ModelError::BadFile {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(table)
    }

    /// Writes `mario.json` (pretty-printed).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let text = serde_json::to_string_pretty(self).expect("control table serializes");
        std::fs::write(path, text + "\n").map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Checks names, token counts and uniqueness; returns a message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != CONTROL_FORMAT {
            return Err(format!(
                "field `format` is {}, this version reads {CONTROL_FORMAT}",
                self.format
            ));
        }
        let mut names = HashSet::new();
        let mut tokens = HashSet::new();
        for (i, r) in self.rewards.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(format!("rewards[{i}].name is empty"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!("rewards[{i}].name `{}` is repeated", r.name));
            }
            match r.kind {
                RewardKind::Binary if r.tokens.len() != 2 => {
                    return Err(format!(
                        "rewards[{i}] (`{}`) is binary and needs exactly 2 tokens, has {}",
                        r.name,
                        r.tokens.len()
                    ))
                }
                RewardKind::Quantile if r.tokens.len() < 2 => {
                    return Err(format!(
                        "rewards[{i}] (`{}`) needs at least 2 bins, has {}",
                        r.name,
                        r.tokens.len()
                    ))
                }
                _ => {}
            }
            for t in &r.tokens {
                if t.trim().is_empty() || t.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "rewards[{i}].tokens has {t:?}: tokens must be non-empty without spaces"
                    ));
                }
                if !tokens.insert(t.as_str()) {
                    return Err(format!("token `{t}` is used twice"));
                }
            }
        }
        Ok(())
    }

    /// Reward names in prefix order.
    pub fn reward_names(&self) -> Vec<&str> {
        self.rewards.iter().map(|r| r.name.as_str()).collect()
    }

    /// Every control token, in prefix order then bin order.
    pub fn all_tokens(&self) -> Vec<String> {
        self.rewards
            .iter()
            .flat_map(|r| r.tokens.iter().cloned())
            .collect()
    }

    /// The bin of every reward (prefix order) for a choice.
    pub fn resolve(&self, choice: &ControlChoice) -> Result<Vec<usize>, ControlError> {
        match choice {
            ControlChoice::Best => Ok(vec![0; self.rewards.len()]),
            ControlChoice::Worst => Ok(self.rewards.iter().map(|r| r.bins() - 1).collect()),
            ControlChoice::Bins(map) => {
                for (name, &bin) in map {
                    let reward =
                        self.rewards
                            .iter()
                            .find(|r| &r.name == name)
                            .ok_or_else(|| ControlError::UnknownReward {
                                name: name.clone(),
                                known: self.reward_names().join(", "),
                            })?;
                    if bin >= reward.bins() {
                        return Err(ControlError::BinOutOfRange {
                            name: name.clone(),
                            bin,
                            max: reward.bins() - 1,
                        });
                    }
                }
                Ok(self
                    .rewards
                    .iter()
                    .map(|r| map.get(&r.name).copied().unwrap_or(0))
                    .collect())
            }
        }
    }

    /// The token strings of the given bins, in prefix order.
    ///
    /// # Panics
    /// If `bins` does not come from [`ControlTokens::resolve`] on this table.
    pub fn render(&self, bins: &[usize]) -> Vec<&str> {
        assert_eq!(bins.len(), self.rewards.len(), "one bin per reward");
        self.rewards
            .iter()
            .zip(bins)
            .map(|(r, &b)| r.tokens[b].as_str())
            .collect()
    }

    /// The token ids of the given bins, in prefix order.
    pub fn prefix_ids(&self, bins: &[usize], tokenizer: &TextTokenizer) -> Vec<u32> {
        self.render(bins)
            .into_iter()
            .map(|t| {
                tokenizer
                    .token_id(t)
                    .expect("control tokens are registered when the checkpoint loads")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_choice_is_parsed_and_written_back() {
        assert_eq!("best".parse(), Ok(ControlChoice::Best));
        assert_eq!("worst".parse(), Ok(ControlChoice::Worst));
        let bins: ControlChoice = " plausibility = 2,diversity=0".parse().unwrap();
        assert_eq!(
            bins,
            ControlChoice::Bins(BTreeMap::from([
                ("diversity".to_string(), 0),
                ("plausibility".to_string(), 2)
            ]))
        );
        assert_eq!(bins.to_string(), "diversity=0,plausibility=2");
        assert_eq!(bins.to_string().parse(), Ok(bins));
        assert_eq!(
            "nonsense".parse::<ControlChoice>(),
            Err(ControlParseError::Malformed("nonsense".into()))
        );
        assert_eq!(
            "consistency=x"
                .parse::<ControlChoice>()
                .unwrap_err()
                .to_string(),
            "bin \"x\" is not a number"
        );
        assert_eq!(ControlChoice::named("best"), Some(ControlChoice::Best));
        assert_eq!(ControlChoice::named("plausibility=1"), None);
    }
}
