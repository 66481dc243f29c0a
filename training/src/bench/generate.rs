//! Generation throughput (`mario-train bench-generate`): the workload of the peer benchmarks in
//! `../shared/bench/peers/` (greedy, a fixed number of forced new tokens, static batches of the
//! first B inputs), so that mario and transformers / CTranslate2 can be timed on the same
//! folders and inputs and compared as a ratio.
//!
//! Inputs are JSON Lines with `text` (encoded with the model folder's tokenizer, as the peer
//! scripts do) or else `ids` (token ids, used as they are); batch B uses the first B lines,
//! right-padded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::device::WeightType;
use mario::generate::{generate, GenerationParams, GenerationRequest};
use serde::Serialize;

use super::median;

/// One timed configuration.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateRow {
    /// Folder name of the model.
    pub model: String,
    /// `bf16` or `fp32`.
    pub dtype: String,
    /// Rows in the batch.
    pub batch: usize,
    /// Longest input of the batch, in tokens.
    pub src_len_max: usize,
    /// Forced new tokens per row.
    pub new_tokens: usize,
    /// Every row produced exactly `new_tokens` tokens.
    pub generated_lengths_ok: bool,
    /// Wall time of each timed repeat (encoder and every decoder step, ids back on the host).
    pub times_s: Vec<f64>,
    /// Median of `times_s`.
    pub s: f64,
    /// `batch * new_tokens / s`.
    pub tok_s: f64,
    /// `s / new_tokens`, in milliseconds.
    pub ms_per_step: f64,
}

/// What to time.
#[derive(Debug, Clone)]
pub struct GenerateBench {
    /// Batch sizes.
    pub batch_sizes: Vec<usize>,
    /// Forced new tokens per row (EOS is suppressed until then).
    pub new_tokens: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub repeats: usize,
}

/// Reads the inputs file: one JSON object per line with `text` or `ids`.
pub fn read_inputs(path: &Path, ckpt: &Checkpoint) -> Result<Vec<Vec<u32>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let ids = if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            ckpt.tokenizer.encode(t)?
        } else if let Some(ids) = v.get("ids") {
            serde_json::from_value::<Vec<u32>>(ids.clone()).with_context(|| {
                format!(
                    "{}:{}: field `ids` is not a list of token ids",
                    path.display(),
                    i + 1
                )
            })?
        } else {
            bail!(
                "{}:{}: needs a field `text` or `ids`",
                path.display(),
                i + 1
            );
        };
        if ids.is_empty() {
            bail!("{}:{}: empty input", path.display(), i + 1);
        }
        rows.push(ids);
    }
    Ok(rows)
}

/// Times greedy generation of `model_dir` in `dtype` for every batch size.
pub fn bench_generate(
    model_dir: &Path,
    inputs: &Path,
    dtype: DType,
    bench: &GenerateBench,
    device: &Device,
    mut on_row: impl FnMut(&GenerateRow),
) -> Result<Vec<GenerateRow>> {
    let ckpt = Checkpoint::load(model_dir, dtype, device)?;
    let rows = read_inputs(inputs, &ckpt)?;
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for &b in &bench.batch_sizes {
        if b == 0 || b > rows.len() {
            bail!("batch {b}: {} has {} inputs", inputs.display(), rows.len());
        }
        let requests: Vec<GenerationRequest> = rows[..b]
            .iter()
            .map(|ids| GenerationRequest {
                input_ids: ids.clone(),
                prefix: vec![],
                params: GenerationParams {
                    max_new_tokens: bench.new_tokens,
                    min_new_tokens: bench.new_tokens,
                    ..Default::default()
                },
            })
            .collect();
        for _ in 0..bench.warmup {
            generate(&ckpt.model, &ckpt.tokenizer, &requests)?;
        }
        let mut times = Vec::with_capacity(bench.repeats);
        let mut lengths_ok = true;
        for _ in 0..bench.repeats.max(1) {
            let t0 = Instant::now();
            let outs = generate(&ckpt.model, &ckpt.tokenizer, &requests)?;
            times.push(t0.elapsed().as_secs_f64());
            lengths_ok &= outs.iter().all(|o| o.token_ids.len() == bench.new_tokens);
        }
        let s = median(&times);
        let row = GenerateRow {
            model: name.clone(),
            dtype: if dtype == DType::BF16 { "bf16" } else { "fp32" }.into(),
            batch: b,
            src_len_max: rows[..b].iter().map(Vec::len).max().unwrap_or(0),
            new_tokens: bench.new_tokens,
            generated_lengths_ok: lengths_ok,
            times_s: times,
            s,
            tok_s: (b * bench.new_tokens) as f64 / s,
            ms_per_step: 1000.0 * s / bench.new_tokens as f64,
        };
        on_row(&row);
        out.push(row);
    }
    Ok(out)
}

/// [`bench_generate`] for every model and weight type (fp32 or bf16), in that order.
pub fn bench_models(
    models: &[PathBuf],
    inputs: &Path,
    dtypes: &[WeightType],
    bench: &GenerateBench,
    device: &Device,
    mut on_row: impl FnMut(&GenerateRow),
) -> Result<Vec<GenerateRow>> {
    let mut all = Vec::new();
    for model in models {
        for &d in dtypes {
            if d == WeightType::F16 {
                bail!("--dtypes f16: the benchmark runs fp32 or bf16");
            }
            let rows = bench_generate(model, inputs, d.dtype(), bench, device, &mut on_row)
                .with_context(|| format!("benchmarking {}", model.display()))?;
            all.extend(rows);
        }
    }
    Ok(all)
}

/// The rows as a markdown table (model, dtype, batch, tokens/s, ms/step).
pub fn markdown(rows: &[GenerateRow]) -> String {
    let mut s =
        "| model | dtype | batch | tokens/s | ms/step |\n|---|---|---:|---:|---:|\n".to_string();
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.3} |\n",
            r.model, r.dtype, r.batch, r.tok_s, r.ms_per_step
        ));
    }
    s
}
