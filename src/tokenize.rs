//! The checkpoint's `tokenizer.json` (Hugging Face `tokenizers` format), with T5's special
//! tokens and mario's control tokens.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokenizers::{AddedToken, Tokenizer};

use crate::model::ModelError;

/// File name of the tokenizer in a checkpoint folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Why a text could not be tokenized or detokenized.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizeError(String);

/// Why text a user sent was not encoded ([`TextTokenizer::encode_plain`]).
#[derive(Debug, thiserror::Error)]
pub enum PlainTextError {
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A part of the text is read as a special or control token.
    #[error("{}", special_message(.text, .token))]
    SpecialToken {
        /// The token.
        token: String,
        /// The part of the text that became it.
        text: String,
    },
}

fn special_message(text: &str, token: &str) -> String {
    if text == token {
        format!("contains the special token `{token}`")
    } else {
        format!("contains {text:?}, which the tokenizer reads as the special token `{token}`")
    }
}

/// A loaded tokenizer and the ids of T5's special tokens.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    eos_id: u32,
    /// Ids that user text must not become (see [`TextTokenizer::is_special`]).
    special: HashSet<u32>,
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
        let (pad_id, eos_id) = (id("<pad>")?, id("</s>")?);
        let unk_id = inner.token_to_id("<unk>");
        let special = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .chain([pad_id, eos_id])
            .filter(|&id| Some(id) != unk_id)
            .collect();
        Ok(Self {
            pad_id,
            eos_id,
            special,
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

    /// Whether `id` is a special or control token that text from a user must never become:
    /// `<pad>`, `</s>`, and every token added as special (T5's `<extra_id_*>`, mario's control
    /// tokens). `<unk>` is not: characters the vocabulary lacks become it anyway.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Encodes a text with the post-processor's special tokens (T5: a final `</s>`). If the
    /// tokenizer has no post-processor the `</s>` is appended here, so inputs always end with
    /// it as T5 expects.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        Ok(self.with_eos(&self.encoding(text)?))
    }

    /// [`encode`](Self::encode) for text a user sent, which must stay text: a part of it that
    /// the tokenizer reads as a special or control token ([`is_special`](Self::is_special)),
    /// e.g. `</s>`, `_TOKEN0_00004`, or `＜/s＞` after NFKC, is refused with the token and
    /// that part of the text. Other texts get the same ids as from `encode`.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, PlainTextError> {
        let enc = self.encoding(text)?;
        // tokens the post-processor added (the final `</s>`) are marked; the text's are not
        let found = enc
            .get_ids()
            .iter()
            .zip(enc.get_special_tokens_mask())
            .position(|(&id, &added)| added == 0 && self.is_special(id));
        if let Some(i) = found {
            let token = enc.get_tokens()[i].clone();
            let (start, end) = enc.get_offsets()[i];
            let part = text.get(start..end).filter(|p| !p.is_empty());
            return Err(PlainTextError::SpecialToken {
                text: part.unwrap_or(&token).to_string(),
                token,
            });
        }
        Ok(self.with_eos(&enc))
    }

    fn encoding(&self, text: &str) -> Result<tokenizers::Encoding, TokenizeError> {
        self.inner
            .encode(text, true)
            .map_err(|e| TokenizeError(e.to_string()))
    }

    fn with_eos(&self, enc: &tokenizers::Encoding) -> Vec<u32> {
        let mut ids = enc.get_ids().to_vec();
        if ids.last() != Some(&self.eos_id) {
            ids.push(self.eos_id);
        }
        ids
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
        let ids = tokens
            .iter()
            .map(|t| {
                self.inner
                    .token_to_id(t)
                    .ok_or_else(|| TokenizeError(format!("token `{t}` could not be added")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // tokens that were already there count as special too, however they were added
        self.special.extend(&ids);
        Ok(ids)
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
