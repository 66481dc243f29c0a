//! The tokenizer stage: a byte-level BPE tokenizer trained on the training questions and
//! rationales (`mario-train tokenizer`, pipeline stage 1).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::tokenizer::{corpus_from_files, save_tokenizer, train_tokenizer, TokenizerSettings};

/// What the tokenizer learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerSummary {
    /// Data files read.
    pub files: usize,
    /// Distinct texts of the corpus.
    pub strings: usize,
    /// Pieces of the vocabulary (specials included).
    pub pieces: usize,
}

/// Trains a tokenizer on the questions and rationales of `files` (split or teacher layout) and
/// writes it to `out` (a `tokenizer.json`).
pub fn train_tokenizer_file(
    files: &[PathBuf],
    settings: &TokenizerSettings,
    out: &Path,
) -> Result<TokenizerSummary> {
    let texts = corpus_from_files(files)?;
    tracing::info!(
        files = files.len(),
        strings = texts.len(),
        vocab = settings.vocab_size,
        min_frequency = settings.min_frequency,
        "training tokenizer"
    );
    let tok = train_tokenizer(&texts, settings)?;
    save_tokenizer(&tok, out)?;
    Ok(TokenizerSummary {
        files: files.len(),
        strings: texts.len(),
        pieces: tok.get_vocab_size(true),
    })
}
