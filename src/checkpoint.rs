//! A MaRio checkpoint folder: a Hugging Face T5 (`config.json`, weights, `tokenizer.json`)
//! plus, for MaRio-trained models, the control-token table `mario.json`, and optionally the
//! example questions `examples.json` that the server's playground offers.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::control::{ControlTokens, CONTROL_FILE};
use crate::model::{load_t5, ModelError, T5Model};
use crate::tokenize::{TextTokenizer, TOKENIZER_FILE};

/// Everything needed to generate with a checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// The network.
    pub model: T5Model,
    /// The tokenizer, with the control tokens registered.
    pub tokenizer: TextTokenizer,
    /// The control-token table, when the folder has a `mario.json`.
    pub control: Option<ControlTokens>,
    /// Decoding defaults from the folder's `generation_config.json`, if any.
    pub generation: GenerationDefaults,
    /// Example questions from the folder's `examples.json` (empty without one).
    pub examples: Vec<Example>,
}

/// File name of the decoding defaults (Hugging Face's `generation_config.json`).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// The decoding defaults a checkpoint ships (the fields of transformers'
/// `generation_config.json` that mario uses; others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerationDefaults {
    /// Block repeated n-grams of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_repeat_ngram_size: Option<usize>,
    /// Default number of new tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

impl GenerationDefaults {
    /// Reads `generation_config.json` from a folder (defaults when absent).
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Io {
            path: path.clone(),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
            path,
            problem: e.to_string(),
        })
    }
}

/// File name of a checkpoint's example questions.
pub const EXAMPLES_FILE: &str = "examples.json";

/// Most examples an `examples.json` may hold.
pub const MAX_EXAMPLES: usize = 100;

/// One example question a checkpoint ships (an entry of `examples.json`, a JSON array:
/// `[{"question": "Would a pear sink in water?", "gold": "no"}]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The question, written as the model was trained to read it (answer choices inline).
    pub question: String,
    /// Its gold answer, if known (for the task-accuracy score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<String>,
}

impl Example {
    /// Reads `examples.json` from a folder (none when absent). Every question must have a
    /// visible character, and a gold answer, when given, too.
    pub fn from_dir(dir: &Path) -> Result<Vec<Self>, ModelError> {
        let path = dir.join(EXAMPLES_FILE);
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let bad = |problem: String| ModelError::BadFile {
            path: path.clone(),
            problem,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Io {
            path: path.clone(),
            source: e,
        })?;
        let examples: Vec<Self> = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "{e} (expected an array of {{\"question\": ..., \"gold\": ...}})"
            ))
        })?;
        if examples.len() > MAX_EXAMPLES {
            return Err(bad(format!(
                "{} examples; at most {MAX_EXAMPLES} are allowed",
                examples.len()
            )));
        }
        for (i, ex) in examples.iter().enumerate() {
            if ex.question.trim().is_empty() {
                return Err(bad(format!("example {i}: the question is empty")));
            }
            if ex.gold.as_deref().is_some_and(|g| g.trim().is_empty()) {
                return Err(bad(format!(
                    "example {i}: `gold` is empty (leave it out when unknown)"
                )));
            }
        }
        Ok(examples)
    }
}

/// Every id the tokenizer can produce must have an embedding row: otherwise one question
/// that contains such a token fails at generation time (and, batched, fails its neighbours).
fn check_tokenizer_ids(tokenizer: &TextTokenizer, vocab: usize) -> Result<(), ModelError> {
    let beyond = tokenizer
        .inner()
        .get_vocab(true)
        .into_iter()
        .filter(|&(_, id)| id as usize >= vocab)
        .max_by_key(|&(_, id)| id);
    match beyond {
        None => Ok(()),
        Some((token, id)) => Err(ModelError::BadFile {
            path: tokenizer.path().to_path_buf(),
            problem: format!(
                "token `{token}` has id {id}, but the model has only {vocab} embedding rows \
                 (vocab_size in config.json): the tokenizer does not belong to these weights"
            ),
        }),
    }
}

impl Checkpoint {
    /// Loads a folder. Every file is checked; errors name the file and the problem.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.to_path_buf(),
                what: "a model folder (config.json, model.safetensors, tokenizer.json)",
            });
        }
        let model = load_t5(dir, dtype, device)?;
        let tok_path = dir.join(TOKENIZER_FILE);
        let mut tokenizer = TextTokenizer::from_file(&tok_path)?;
        let vocab = model.config().vocab_size;
        check_tokenizer_ids(&tokenizer, vocab)?;
        if tokenizer.pad_id() as usize >= vocab || tokenizer.eos_id() as usize >= vocab {
            return Err(ModelError::BadFile {
                path: tok_path,
                problem: format!(
                    "`<pad>`/`</s>` ids ({}/{}) are not below the model's vocab_size {vocab}",
                    tokenizer.pad_id(),
                    tokenizer.eos_id()
                ),
            });
        }
        let control_path = dir.join(CONTROL_FILE);
        let control = if control_path.exists() {
            let table = ControlTokens::from_file(&control_path)?;
            let ids = tokenizer
                .add_special_tokens(&table.all_tokens())
                .map_err(|e| ModelError::BadFile {
                    path: control_path.clone(),
                    problem: e.to_string(),
                })?;
            if let Some((tok, id)) = table
                .all_tokens()
                .iter()
                .zip(&ids)
                .find(|(_, &id)| id as usize >= vocab)
            {
                return Err(ModelError::BadFile {
                    path: control_path,
                    problem: format!(
                        "control token `{tok}` gets id {id}, but the model has only {vocab} \
                         embedding rows (the checkpoint was not trained with this table)"
                    ),
                });
            }
            Some(table)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            control,
            generation: GenerationDefaults::from_dir(dir)?,
            examples: Example::from_dir(dir)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples_of(json: Option<&str>) -> Result<Vec<Example>, String> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(json) = json {
            std::fs::write(dir.path().join(EXAMPLES_FILE), json).unwrap();
        }
        Example::from_dir(dir.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn examples_are_read_when_present_and_checked() {
        assert_eq!(examples_of(None).unwrap(), vec![]);
        assert_eq!(
            examples_of(Some(
                r#"[{"question": "Is ice cold?", "gold": "yes"}, {"question": "Q?"}]"#
            ))
            .unwrap(),
            vec![
                Example {
                    question: "Is ice cold?".into(),
                    gold: Some("yes".into())
                },
                Example {
                    question: "Q?".into(),
                    gold: None
                }
            ]
        );
        for (bad, says) in [
            (r#"["Is ice cold?"]"#, "expected an array of"),
            (r#"[{"question": "Q?", "answer": "no"}]"#, "unknown field"),
            (r#"[{"question": " "}]"#, "example 0: the question is empty"),
            (r#"[{"question": "Q?", "gold": ""}]"#, "`gold` is empty"),
        ] {
            let e = examples_of(Some(bad)).unwrap_err();
            assert!(e.contains(EXAMPLES_FILE) && e.contains(says), "{bad}: {e}");
        }
        let many = format!(
            "[{}]",
            vec![r#"{"question": "Q?"}"#; MAX_EXAMPLES + 1].join(",")
        );
        assert!(examples_of(Some(&many)).unwrap_err().contains("at most"));
    }
}
