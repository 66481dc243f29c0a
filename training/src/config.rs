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
//! # model = "models/flan-t5-small"   # or start from a pretrained folder instead,
//! # model = "google/flan-t5-small"   # or from a Hugging Face Hub model id
//! # revision = "main"                # (its branch, tag or commit)
//!
//! [sft]                            # any field of SftSettings
//! lr = 1e-3
//! epochs = 8
//!
//! [eval]
//! max_new_tokens = 128
//! ```
//! Command-line flags override the file; the file overrides the built-in defaults.
//!
//! A file may start from another one: `base = "strategyqa.toml"` (a path relative to the
//! file) takes every section of the base and lets this file replace single keys; tables merge
//! key by key, any other value (arrays included) is replaced whole.

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

    /// What SFT and the answer models train on: every dataset's `train.jsonl`, and its
    /// training-only `reading.jsonl` and `knowledge.jsonl` where it has them (MaRio samples
    /// `train.jsonl` only).
    pub fn training_files(&self) -> Vec<PathBuf> {
        let mut files = self.files("train.jsonl");
        files.extend(self.training_only_files());
        files
    }

    /// The training-only files of [`Self::training_files`] (a world's `reading.jsonl` and
    /// `knowledge.jsonl`): what MaRio never samples and can replay.
    pub fn training_only_files(&self) -> Vec<PathBuf> {
        let mut files = self.files(crate::world::READING_FILE);
        files.extend(self.files(crate::world::KNOWLEDGE_FILE));
        files
    }

    /// What a tokenizer trains on: the [`Self::training_files`] and every dataset's teacher
    /// file (`mario-train tokenizer --datasets` and the pipeline's tokenizer stage).
    pub fn tokenizer_files(&self) -> Vec<PathBuf> {
        let mut files = self.training_files();
        files.extend(self.files("teacher_gpt3_train.jsonl"));
        files
    }
}

/// `[tokenizer]`.
pub use crate::tokenizer::TokenizerSettings as TokenizerSection;

/// `[init]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitSection {
    /// Preset (`tiny`, `small`, `base`, `large`) or a `config.json` path.
    pub arch: String,
    /// Initialisation seed.
    pub seed: u64,
    /// A pretrained model folder (Hugging Face T5 layout: `config.json`, `model.safetensors`,
    /// `tokenizer.json`) for `pipeline` to start SFT from, instead of training a tokenizer and
    /// initialising random weights (`arch` and `seed` are then unused). When no such folder
    /// exists, `owner/name` is a Hugging Face Hub model id, downloaded into the Hugging Face
    /// cache (`mario::hub`).
    pub model: Option<PathBuf>,
    /// The revision (branch, tag or commit) of a Hub model id in `model` [default: main].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Default for InitSection {
    fn default() -> Self {
        Self {
            arch: "tiny".into(),
            seed: 0,
            model: None,
            revision: None,
        }
    }
}

/// `[eval]`: what `mario-train eval --config` decodes with, between the checkpoint's
/// `generation_config.json` and the flags (see [`crate::decoding`]); unset values are left to
/// the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Most new tokens per output.
    pub max_new_tokens: Option<usize>,
    /// Questions per generation batch (default 32).
    pub batch_size: Option<usize>,
    /// n-gram blocking (0 = plain decoding).
    pub no_repeat_ngram_size: Option<usize>,
}

impl EvalSection {
    /// The decoding layer these settings make.
    pub fn decoding(&self) -> crate::decoding::DecodingOverrides {
        crate::decoding::DecodingOverrides {
            max_new_tokens: self.max_new_tokens,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            ..Default::default()
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
    /// Which kind of scorer the stage makes.
    pub scorer: ScorerKind,
    /// A likelihood scorer's model is first fine-tuned (with the `[plausibility]` settings) on
    /// the training split's positives, each also with its repeated sentences removed, so that it
    /// expects facts and not the teacher's style (false: the starting model as it is).
    pub finetune: bool,
    /// A likelihood scorer reads this text instead of each question, in its fine-tuning and its
    /// scoring (see `LikelihoodScoring::prompt`): the rationale is judged as a statement on its
    /// own. A yes/no question such as "Is it true?": the fine-tuning rows answer it yes (every
    /// positive is a believed statement). Unset: the question.
    pub statement_prompt: Option<String>,
    /// A likelihood scorer reads, before each question, the statements of the generated
    /// world's training-only knowledge records (`knowledge.jsonl` beside the teacher file) that
    /// contain a word of the question found in at most this many statements: what the corpus
    /// says about the question's entities (`mario::rewards::knowledge_context`), in its scoring
    /// and calibration; its fine-tuning (`finetune`) still reads the question alone, since the
    /// teacher's positives include false facts that contradict the statements. 0: off. Not with
    /// `statement_prompt`.
    pub knowledge_context: usize,
    /// How a likelihood scorer pools a rationale's token log-probabilities (`min`: the least
    /// likely token; `mean`). Only with `scorer = "likelihood"`.
    pub pooling: mario::rewards::likelihood::TokenPooling,
    /// In a generated world, what a teacher sample that reached the gold answer while stating
    /// no fact (a vague guess) is to the scorer: `negative` (default) or `positive` (a vague
    /// rationale states nothing false; the consistency reward is then the only one that ranks
    /// it low).
    pub teacher_vague: crate::plausibility::VagueLabel,
}

/// `[plausibility_data] scorer`: how plausibility is scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorerKind {
    /// VERA's format: the encoder's last state through a linear head, fine-tuned on the
    /// positives and negatives.
    #[default]
    Classifier,
    /// The model's least likely rationale token (question in the encoder, rationale
    /// teacher-forced in the decoder), calibrated on the training examples; the model is used
    /// as it is, or first fine-tuned as a language model with `finetune = true`.
    Likelihood,
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
    /// A generated world (`mario-train world`). In a pipeline configuration its presence
    /// makes the pipeline generate its data (and `[data] datasets` must then be empty).
    pub world: Option<crate::world::WorldSettings>,
}

/// How many `base` files one configuration may chain through.
const MAX_BASE_DEPTH: usize = 8;

impl RunConfig {
    /// Reads a TOML file (and its `base` chain); unknown sections or keys are errors naming
    /// the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        if !table.contains_key("base") {
            // parse the text itself: serde's errors then carry the line and column
            return toml::from_str(&text)
                .with_context(|| format!("{}: invalid configuration", path.display()));
        }
        let merged = Self::resolve(path, table, 0)?;
        merged
            .try_into()
            .with_context(|| format!("{}: invalid configuration", path.display()))
    }

    /// `table` with its `base` chain merged underneath it (`base` removed).
    fn resolve(path: &Path, mut table: toml::Table, depth: usize) -> Result<toml::Table> {
        let Some(base) = table.remove("base") else {
            return Ok(table);
        };
        let toml::Value::String(base) = base else {
            anyhow::bail!("{}: `base` must be a file name (a string)", path.display());
        };
        if depth >= MAX_BASE_DEPTH {
            anyhow::bail!(
                "{}: more than {MAX_BASE_DEPTH} `base` files in a chain (a cycle?)",
                path.display()
            );
        }
        let base_path = path.parent().unwrap_or(Path::new(".")).join(&base);
        let text = std::fs::read_to_string(&base_path).with_context(|| {
            format!(
                "{}: reading its base {}",
                path.display(),
                base_path.display()
            )
        })?;
        let base_table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{}: invalid configuration", base_path.display()))?;
        let mut merged = Self::resolve(&base_path, base_table, depth + 1)?;
        merge_into(&mut merged, table);
        Ok(merged)
    }
}

/// Writes `over` onto `into`: tables merge key by key, other values are replaced.
fn merge_into(into: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_into(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
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
                // data from $MARIO_DATA, or a generated world, never both
                assert!(
                    cfg.data.datasets.is_empty() == cfg.world.is_some(),
                    "{}",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn a_base_file_is_merged_key_by_key_under_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "[data]\ndatasets = [\"strategyqa\"]\n[sft]\nlr = 1e-3\nepochs = 5\n\
             [mario]\nrounds = 4\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "base = \"a.toml\"\n[data]\ndatasets = [\"quarel\", \"numersense\"]\n\
             [sft]\nepochs = 2\n",
        )
        .unwrap();
        let b = RunConfig::from_file(&dir.path().join("b.toml")).unwrap();
        let a = RunConfig::from_file(&dir.path().join("a.toml")).unwrap();
        // arrays are replaced, tables merge: lr and [mario] come from the base
        assert_eq!(b.data.datasets, ["quarel", "numersense"]);
        assert_eq!((b.sft.lr, b.sft.epochs), (1e-3, 2.0));
        assert_eq!(b.mario, a.mario);
        assert_eq!(b.mario.rounds, 4);
        assert_eq!(b.init.model, None);
        // a child can start from a pretrained folder and keep the rest
        std::fs::write(
            dir.path().join("f.toml"),
            "base = \"a.toml\"\n[init]\nmodel = \"models/flan-t5-small\"\n",
        )
        .unwrap();
        let f = RunConfig::from_file(&dir.path().join("f.toml")).unwrap();
        assert_eq!(f.init.model, Some(PathBuf::from("models/flan-t5-small")));
        assert_eq!((f.init.arch.as_str(), f.sft.epochs), ("tiny", 5.0));
        // an unknown key in the child still names the child
        std::fs::write(
            dir.path().join("c.toml"),
            "base = \"a.toml\"\n[sft]\nlearning_rate = 1.0\n",
        )
        .unwrap();
        let msg = format!(
            "{:#}",
            RunConfig::from_file(&dir.path().join("c.toml")).unwrap_err()
        );
        assert!(
            msg.contains("c.toml") && msg.contains("learning_rate"),
            "{msg}"
        );
        // a missing base and a cycle are errors, not silent defaults
        std::fs::write(dir.path().join("d.toml"), "base = \"nope.toml\"\n").unwrap();
        let msg = format!(
            "{:#}",
            RunConfig::from_file(&dir.path().join("d.toml")).unwrap_err()
        );
        assert!(msg.contains("d.toml") && msg.contains("nope.toml"), "{msg}");
        std::fs::write(dir.path().join("e.toml"), "base = \"e.toml\"\n").unwrap();
        let msg = format!(
            "{:#}",
            RunConfig::from_file(&dir.path().join("e.toml")).unwrap_err()
        );
        assert!(msg.contains("cycle"), "{msg}");
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
