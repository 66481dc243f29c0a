//! The checkpoint's `tokenizer.json` (Hugging Face `tokenizers` format), with T5's special
//! tokens and mario's control tokens.

use std::path::{Path, PathBuf};

use tokenizers::{AddedToken, Tokenizer};

use crate::model::ModelError;

/// File name of the tokenizer in a checkpoint folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Why a text could not be tokenized or detokenized.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizeError(String);

/// A loaded tokenizer and the ids of T5's special tokens.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    eos_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; `<pad>` and `</s>` must exist.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the tokenizer (tokenizer.json)",
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            problem: format!("not a valid tokenizers file: {e}"),
        })?;
        Self::new(inner, path)
    }

    /// Wraps an in-memory tokenizer (`path` is used in messages only).
    pub fn new(inner: Tokenizer, path: &Path) -> Result<Self, ModelError> {
        let id = |tok: &str| {
            inner.token_to_id(tok).ok_or_else(|| ModelError::BadFile {
                path: path.to_path_buf(),
                problem: format!("the vocabulary has no `{tok}` token"),
            })
        };
        Ok(Self {
            pad_id: id("<pad>")?,
            eos_id: id("</s>")?,
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of `</s>`.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes a text with the post-processor's special tokens (T5: a final `</s>`). If the
    /// tokenizer has no post-processor the `</s>` is appended here, so inputs always end with
    /// it as T5 expects.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizeError(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.last() != Some(&self.eos_id) {
            ids.push(self.eos_id);
        }
        Ok(ids)
    }

    /// Encodes many texts, one after the other.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizeError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    /// Decodes ids to text, dropping special tokens (`<pad>`, `</s>`, control tokens). The
    /// space a byte-level tokenizer puts before the first word is removed (SentencePiece
    /// tokenizers remove it themselves).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        let text = self
            .inner
            .decode(ids, true)
            .map_err(|e| TokenizeError(e.to_string()))?;
        Ok(match text.strip_prefix(' ') {
            Some(rest) => rest.to_string(),
            None => text,
        })
    }

    /// Adds tokens as special (never split, skipped when decoding) and returns their ids.
    /// Tokens already present keep their ids.
    pub fn add_special_tokens(&mut self, tokens: &[String]) -> Result<Vec<u32>, TokenizeError> {
        let missing: Vec<AddedToken> = tokens
            .iter()
            .filter(|t| self.inner.token_to_id(t).is_none())
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        if !missing.is_empty() {
            self.inner
                .add_special_tokens(missing)
                .map_err(|e| TokenizeError(e.to_string()))?;
        }
        tokens
            .iter()
            .map(|t| {
                self.inner
                    .token_to_id(t)
                    .ok_or_else(|| TokenizeError(format!("token `{t}` could not be added")))
            })
            .collect()
    }

    /// Writes the tokenizer (with any added tokens) as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.inner
            .save(path, false)
            .map_err(|e| ModelError::BadFile {
                path: path.to_path_buf(),
                problem: format!("cannot write tokenizer: {e}"),
            })
    }
}
