//! Batched generation over right-padded inputs.
//!
//! Every row has its own settings ([`GenerationParams`]): greedy or temperature / top-k /
//! top-p sampling with its own seeded generator, `max_new_tokens`, `min_new_tokens`, stop
//! strings matched on the decoded text, a forced decoder prefix (the control tokens) and
//! optional per-token log-probabilities. Rows leave the batch as soon as they finish.
//!
//! [`generate`] runs a fixed set of requests to completion; [`DecodingBatch`] is the
//! step-by-step form that the server's scheduler drives (rows join and leave between steps).
//!
//! ```no_run
//! use mario::checkpoint::Checkpoint;
//! use mario::generate::{generate, GenerationParams, GenerationRequest};
//! use candle_core::{DType, Device};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ckpt = Checkpoint::load("models/default".as_ref(), DType::F32, &Device::Cpu)?;
//! let req = GenerationRequest {
//!     input_ids: ckpt.tokenizer.encode("Can pigs fly?")?,
//!     prefix: vec![],
//!     params: GenerationParams { max_new_tokens: 64, ..Default::default() },
//! };
//! let out = generate(&ckpt.model, &ckpt.tokenizer, &[req])?;
//! println!("{} ({:?})", out[0].text, out[0].finish_reason);
//! # Ok(()) }
//! ```

mod batch;
mod params;
mod sampling;

pub use batch::{check_request, find_stop, DecodingBatch, RowEvent, RowId};
pub use params::{
    banned_ngram_tokens, FinishReason, GenerationOutput, GenerationParams, GenerationRequest,
    SamplingParams, MIN_SAMPLING_TEMPERATURE,
};
pub use sampling::{argmax, log_softmax_at, Sampler};

use crate::model::T5Model;
use crate::tokenize::{TextTokenizer, TokenizeError};

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The request cannot be run (empty input, bad parameter, id out of range).
    #[error("invalid generation request: {0}")]
    InvalidRequest(String),
    /// Detokenization failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A tensor operation failed.
    #[error(transparent)]
    Model(#[from] candle_core::Error),
}

/// Generates all `requests` as one batch and returns their outputs in order.
pub fn generate(
    model: &T5Model,
    tokenizer: &TextTokenizer,
    requests: &[GenerationRequest],
) -> Result<Vec<GenerationOutput>, GenerateError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let rows = requests
        .iter()
        .enumerate()
        .map(|(i, r)| (i as RowId, r.clone()))
        .collect();
    let mut outputs: Vec<Option<GenerationOutput>> = vec![None; requests.len()];
    let (mut batch, mut events) = DecodingBatch::prefill(model, tokenizer, rows)?;
    loop {
        for ev in events {
            if let RowEvent::Finished { row, output } = ev {
                outputs[row as usize] = Some(output);
            }
        }
        if batch.is_empty() {
            break;
        }
        events = batch.step(model, tokenizer)?;
    }
    Ok(outputs
        .into_iter()
        .map(|o| o.expect("every row finishes"))
        .collect())
}
