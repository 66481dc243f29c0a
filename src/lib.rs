//! # mario
//!
//! Serve and train small *self-rationalizing* T5 models with MaRio (multi-reward
//! distillation, Ramnath et al., ICLR 2024). A model answers a question with a short
//! rationale followed by `So the answer is <answer>.`; control tokens in the decoder prefix
//! select the quality bin of each reward the model was trained with.
//!
//! - [`model`]: the T5 encoder-decoder (masks, relative positions, per-batch cache).
//! - [`generate`]: batched greedy / sampled generation with per-row settings.
//! - [`control`]: the control-token table (`mario.json`).
//! - [`rationale`]: building targets and parsing outputs.
//! - [`choices`]: the answer choices written in a question.
//! - [`rewards`]: the `Reward` trait and the rewards (diversity, accuracy, consistency,
//!   plausibility).
//! - [`checkpoint`]: loading a model folder.
//! - [`hub`]: Hugging Face Hub model ids (`owner/name`) as model folders, through the cache.
//!
//! ```no_run
//! use mario::checkpoint::Checkpoint;
//! use mario::control::ControlChoice;
//! use mario::generate::{generate, GenerationParams, GenerationRequest};
//! use mario::rationale::parse_output;
//! use candle_core::{DType, Device};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ckpt = Checkpoint::load("models/default".as_ref(), DType::F32, &Device::Cpu)?;
//! let prefix = match &ckpt.control {
//!     Some(table) => table.prefix_ids(&table.resolve(&ControlChoice::Best)?, &ckpt.tokenizer),
//!     None => vec![],
//! };
//! let req = GenerationRequest {
//!     input_ids: ckpt.tokenizer.encode("Would a pear sink in water?")?,
//!     prefix,
//!     params: GenerationParams { max_new_tokens: 96, ..Default::default() },
//! };
//! let out = generate(&ckpt.model, &ckpt.tokenizer, &[req])?;
//! let parsed = parse_output(&out[0].text);
//! println!("rationale: {}\nanswer: {:?}", parsed.rationale, parsed.answer);
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod choices;
pub mod control;
pub mod device;
pub mod generate;
pub mod hub;
pub mod model;
pub mod rationale;
pub mod rewards;
pub mod server;
pub mod tokenize;
