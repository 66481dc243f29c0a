//! Evaluation (`mario-train eval`): a checkpoint decoded on a split, or an existing rationale
//! file scored, into `metrics.json`, `metrics.md` and `examples.jsonl`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;
use serde_json::json;

use crate::config::EvalSection;
use crate::data::{load_examples, load_teacher};
use crate::decoding::{Decoding, DecodingOverrides};
use crate::eval::{
    add_measures, aggregate, evaluate_model, evaluate_rationale_file, write_eval, EvalMetrics,
    EvalOptions, ExampleResult,
};
use crate::world::truth::truth_rewards_for;

/// A checkpoint evaluation.
#[derive(Debug, Clone)]
pub struct CheckpointEval {
    /// The checkpoint folder.
    pub model: PathBuf,
    /// Questions with gold answers.
    pub data: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// The configuration's `[eval]` table (a decoding layer, and the batch size).
    pub config: EvalSection,
    /// Questions per generation batch (over the config's, else 32).
    pub batch_size: Option<usize>,
    /// Samples per question (1 = greedy; more = majority vote).
    pub samples: usize,
    /// Seed of the sampling.
    pub seed: u64,
    /// Only the first N questions.
    pub limit: Option<usize>,
    /// The control tokens of a MaRio checkpoint.
    pub control: ControlChoice,
    /// The flags' decoding layer.
    pub flags: DecodingOverrides,
    /// Progress bar.
    pub progress: bool,
}

/// Decodes `e.data` with the checkpoint (decoding: its `generation_config.json` < `[eval]` <
/// flags), scores every output (with the ground truth when the data lies in a generated
/// world), writes the evaluation folder and returns the metrics.
pub fn evaluate_checkpoint(e: &CheckpointEval, device: &Device) -> Result<EvalMetrics> {
    let ckpt = Checkpoint::load(&e.model, DType::F32, device)?;
    let examples = load_examples(&e.data)?;
    let prefix = match &ckpt.control {
        Some(table) => {
            let bins = table.resolve(&e.control)?;
            table.prefix_ids(&bins, &ckpt.tokenizer)
        }
        None if e.control != ControlChoice::Best => {
            bail!("--control: {} has no mario.json", e.model.display())
        }
        None => Vec::new(),
    };
    let decoding = Decoding::resolve(&ckpt.generation, &e.config.decoding(), &e.flags);
    tracing::info!("decoding: {}", decoding.describe(e.samples));
    let opts = EvalOptions {
        batch_size: e.batch_size.or(e.config.batch_size).unwrap_or(32),
        samples: e.samples,
        seed: e.seed,
        limit: e.limit,
        prefix,
        progress: e.progress,
        ..Default::default()
    }
    .with_decoding(&decoding);
    let started = std::time::Instant::now();
    let (mut metrics, mut results) =
        evaluate_model(&ckpt.model, &ckpt.tokenizer, &examples, &opts)?;
    add_world_truth(&e.data, &mut metrics, &mut results)?;
    let extra = json!({
        "model": e.model, "data": e.data,
        "decoding": if e.samples > 1 { "sampled, majority vote" } else { "greedy" },
        "samples": e.samples, "control": e.control.to_string(),
        "max_new_tokens": opts.max_new_tokens, "no_repeat_ngram_size": opts.no_repeat_ngram_size,
        "decoding_settings": decoding,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let title = format!(
        "{} on {}\n\nDecoding: {}.",
        e.model.display(),
        e.data.display(),
        decoding.describe(e.samples)
    );
    write_eval(&e.out, &title, &metrics, &extra, &results)?;
    Ok(metrics)
}

/// Scores an existing rationale file (teacher layout) and writes the evaluation folder.
pub fn evaluate_rationales(path: &Path, out: &Path) -> Result<EvalMetrics> {
    let records = load_teacher(path)?;
    let (mut metrics, mut results) = evaluate_rationale_file(&records);
    add_world_truth(path, &mut metrics, &mut results)?;
    let title = format!("Rationale file {}", path.display());
    write_eval(out, &title, &metrics, &json!({"source": path}), &results)?;
    Ok(metrics)
}

/// When `data` lies in a generated world, scores every output with the ground-truth measures.
fn add_world_truth(
    data: &Path,
    metrics: &mut EvalMetrics,
    results: &mut [ExampleResult],
) -> Result<()> {
    let measures = truth_rewards_for(&[data.to_path_buf()])?;
    if !measures.is_empty() {
        add_measures(results, &measures)?;
        *metrics = aggregate(results);
    }
    Ok(())
}
