//! The init stage: a randomly initialised T5 (transformers' initialisation) written as a model
//! folder (`mario-train init`, pipeline stage 2).

use std::path::Path;

use anyhow::Result;

use crate::init::{init_weights, resolve_arch, write_model_folder};

/// The model the init stage wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitSummary {
    /// Parameters.
    pub params: usize,
    /// Vocabulary size (the tokenizer's).
    pub vocab_size: usize,
}

/// Writes `out` with random weights of `arch` (a preset or a `config.json`) from `seed`, the
/// vocabulary of `tokenizer` (copied into the folder).
pub fn init_model_folder(
    arch: &str,
    seed: u64,
    tokenizer: &Path,
    out: &Path,
) -> Result<InitSummary> {
    let tok = mario::tokenize::TextTokenizer::from_file(tokenizer)?;
    let model_cfg = resolve_arch(arch, tok.vocab_size())?;
    let weights = init_weights(&model_cfg, seed)?;
    write_model_folder(out, &model_cfg, &weights, tokenizer)?;
    Ok(InitSummary {
        params: weights.values().map(|t| t.elem_count()).sum(),
        vocab_size: model_cfg.vocab_size,
    })
}
