//! The T5 encoder-decoder, written for mario on candle.
//!
//! Compared with candle-transformers' `t5.rs` this implementation
//! - masks encoder padding in encoder self-attention and in decoder cross-attention, so a
//!   right-padded batch gives every row the result it would get alone;
//! - uses unidirectional relative-position buckets in the decoder, as transformers does;
//! - scales the decoder output by `d_model^-0.5` before a tied head (T5 v1.0);
//! - keeps a per-batch [`DecoderCache`]: cross-attention K/V computed once, self-attention K/V
//!   in a preallocated buffer, rows that can leave or join;
//! - returns logits for every decoder position ([`T5Model::decode`], teacher forcing) or only
//!   for the last one ([`T5Model::decode_step`], generation);
//! - applies dropout only in [`Mode::Training`].
//!
//! ```no_run
//! use mario::model::{load_t5, EncoderInput, Mode};
//! use candle_core::{DType, Device, Tensor};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = load_t5("models/default".as_ref(), DType::F32, &Device::Cpu)?;
//! let input = EncoderInput::from_rows(&[vec![37, 8, 1], vec![5, 1]], 0, model.device())?;
//! let enc = model.encode(&input, Mode::Inference)?;
//! let dec = Tensor::new(&[[0u32, 12], [0, 7]], model.device())?;
//! let logits = model.decode(&dec, &enc, Mode::Inference)?; // (2, 2, vocab)
//! # Ok(()) }
//! ```

mod attention;
mod cache;
mod config;
mod cpu_slice;
mod fused;
mod layers;
mod load;
pub mod position;
mod rms_norm;
mod small_matmul;
mod t5;

use std::path::PathBuf;

pub use attention::{force_tensor_attention, AttentionBias, KeyWindows, MASKED};
pub use cache::DecoderCache;
pub use config::{Activation, T5Config, TokenIds};
pub use cpu_slice::contiguous_f32;
pub use layers::{DropoutRng, DropoutRngState, Linear, Mode};
pub use load::{
    expected_tensors, load_t5, load_t5_encoder, weight_files, CONFIG_FILE, WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
};
pub use t5::{pad_rows, EncoderInput, EncoderOutput, T5Encoder, T5Model};

/// Why a model (or one of its files) could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A required file is absent.
    #[error("{}: missing; this file holds {what}", path.display())]
    MissingFile {
        /// Where it was expected.
        path: PathBuf,
        /// What it should contain.
        what: &'static str,
    },
    /// A file exists but its content is wrong.
    #[error("{}: {problem}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field or tensor.
        problem: String,
    },
    /// A tensor required by `config.json` is in none of the weight files.
    #[error("{files}: tensor `{name}` is missing (required by config.json)")]
    MissingTensor {
        /// The weight files searched.
        files: String,
        /// The tensor's name.
        name: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
