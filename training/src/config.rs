//! Run configuration files (`training/configs/<dataset>.toml`).
//!
//! ```toml
//! [data]
//! datasets = ["strategyqa"]        # folders under $MARIO_DATA
//!
//! [tokenizer]
//! vocab_size = 8000
//!
//! [init]
//! arch = "tiny"
//! seed = 0
//!
//! [sft]                            # any field of SftSettings
//! lr = 1e-3
//! epochs = 8
//!
//! [eval]
//! max_new_tokens = 128
//! ```
//! Command-line flags override the file; the file overrides the built-in defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::data_dir;
use crate::sft::SftSettings;

/// `[data]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Dataset folder names under the data directory.
    pub datasets: Vec<String>,
    /// The data directory (default `$MARIO_DATA`, else `../shared/data/mario`).
    pub dir: Option<PathBuf>,
}

impl DataSection {
    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(data_dir)
    }

    /// `<dir>/<dataset>/<file>` for every dataset that has the file.
    pub fn files(&self, file: &str) -> Vec<PathBuf> {
        self.datasets
            .iter()
            .map(|d| self.dir().join(d).join(file))
            .filter(|p| p.is_file())
            .collect()
    }
}

/// `[tokenizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSection {
    /// Pieces in the vocabulary (specials included).
    pub vocab_size: usize,
}

impl Default for TokenizerSection {
    fn default() -> Self {
        Self { vocab_size: 8000 }
    }
}

/// `[init]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitSection {
    /// Preset (`tiny`, `small`, `base`, `large`) or a `config.json` path.
    pub arch: String,
    /// Initialisation seed.
    pub seed: u64,
}

impl Default for InitSection {
    fn default() -> Self {
        Self {
            arch: "tiny".into(),
            seed: 0,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Most new tokens per output.
    pub max_new_tokens: usize,
    /// Questions per generation batch.
    pub batch_size: usize,
    /// n-gram blocking (0 = plain decoding).
    pub no_repeat_ngram_size: usize,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            batch_size: 32,
            no_repeat_ngram_size: 0,
        }
    }
}

/// `[plausibility_data]`: which examples the plausibility scorer trains on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlausibilityDataSection {
    /// Negatives kept per positive in the training split (0 = all, about 3.5); the held-out
    /// split keeps all of them.
    pub negatives_per_positive: f64,
}

/// A whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Which data.
    pub data: DataSection,
    /// Tokenizer training.
    pub tokenizer: TokenizerSection,
    /// Initialisation.
    pub init: InitSection,
    /// SFT.
    pub sft: SftSettings,
    /// The consistency reward's answer models (I2O, IR2O).
    pub consistency: SftSettings,
    /// The plausibility scorer's training.
    pub plausibility: SftSettings,
    /// The plausibility scorer's examples.
    pub plausibility_data: PlausibilityDataSection,
    /// The multi-reward QUARK loop.
    pub mario: crate::quark::run::MarioSettings,
    /// Evaluation.
    pub eval: EvalSection,
}

impl RunConfig {
    /// Reads a TOML file; unknown sections or keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let cfg = RunConfig::from_file(&path).unwrap();
                assert!(!cfg.data.datasets.is_empty(), "{}", path.display());
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "[sft]\nlearning_rate = 1.0\n").unwrap();
        let msg = format!("{:#}", RunConfig::from_file(&p).unwrap_err());
        assert!(
            msg.contains("x.toml") && msg.contains("learning_rate"),
            "{msg}"
        );
    }
}
