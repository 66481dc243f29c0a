//! A MaRio checkpoint folder: a Hugging Face T5 (`config.json`, weights, `tokenizer.json`)
//! plus, for MaRio-trained models, the control-token table `mario.json`.

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
        })
    }
}
