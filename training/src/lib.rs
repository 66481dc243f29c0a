//! # mario-training
//!
//! The MaRio training pipeline behind the `mario-train` binary:
//!
//! - [`data`]: dataset files (the paper's layout and JSON Lines), validation, choices,
//!   duplicate reports;
//! - [`tokenizer`]: a deterministic byte-level BPE tokenizer with T5's special tokens;
//! - [`probe`]: generated probes of a recipe (the copy task);
//! - [`world`]: a generated knowledge world with an imperfect teacher (`mario-train world`);
//! - [`init`]: a randomly initialised T5 written as a Hugging Face folder;
//! - [`teach`]: teacher rationales from an OpenAI-compatible endpoint;
//! - [`train`]: the shared training loop (optimizer, schedule, batches, checkpoints);
//! - [`sft`]: SFT distillation;
//! - [`quark`]: the multi-reward QUARK loop (MaRio): bins, pool, objective, rounds;
//! - [`eval`]: evaluation of a checkpoint or of a rationale file;
//! - [`decoding`]: decoding defaults: the checkpoint's `generation_config.json` < config < flags;
//! - [`stages`]: every stage of a run, written once and called by its subcommand and by
//!   [`pipeline`] (which runs them all, resumable stage by stage);
//! - [`report`]: markdown tables, PNG plots and every stage's report;
//! - [`config`]: run configuration files;
//! - [`jsonl`]: reading (errors name file and line) and appending JSON Lines;
//! - [`metrics_log`]: the typed records of every run's `metrics.jsonl`;
//! - [`json_file`]: whole JSON files, read when present and written atomically.

pub mod bench;
pub mod config;
pub mod consistency;
pub mod data;
pub mod decoding;
pub mod eval;
pub mod init;
pub mod json_file;
pub mod jsonl;
pub mod metrics_log;
pub mod pipeline;
pub mod plausibility;
pub mod probe;
pub mod quark;
pub mod report;
pub mod sft;
pub mod stages;
pub mod teach;
pub mod tokenizer;
pub mod train;
pub mod world;
