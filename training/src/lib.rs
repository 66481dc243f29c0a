//! # mario-training
//!
//! The MaRio training pipeline behind the `mario-train` binary:
//!
//! - [`data`]: dataset files (the paper's layout and JSON Lines), validation, choices,
//!   duplicate reports;
//! - [`tokenizer`]: a deterministic Unigram tokenizer with T5's special tokens;
//! - [`init`]: a randomly initialised T5 written as a Hugging Face folder;
//! - [`teach`]: teacher rationales from an OpenAI-compatible endpoint;
//! - [`train`]: the shared training loop (optimizer, schedule, batches, checkpoints);
//! - [`sft`]: SFT distillation;
//! - [`quark`]: quantile bins and the QUARK objective (the MaRio loop is to come);
//! - [`eval`]: evaluation of a checkpoint or of a rationale file;
//! - [`report`]: markdown tables and PNG plots;
//! - [`config`]: run configuration files.

pub mod bench;
pub mod config;
pub mod consistency;
pub mod data;
pub mod eval;
pub mod init;
pub mod pipeline;
pub mod plausibility;
pub mod quark;
pub mod report;
pub mod sft;
pub mod teach;
pub mod tokenizer;
pub mod train;
