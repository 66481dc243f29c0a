//! Training throughput (`mario-train bench-train`): the two updates the paper's recipe is made
//! of, timed on synthetic batches so that `bench/train_throughput/torch_train.py` can time
//! transformers on the same folder, batch and lengths and the two be compared as a ratio.
//!
//! - **SFT**: teacher-forced NLL over the target, backward, global-norm clip, AdamW; exactly
//!   what `mario-train sft` does per update ([`nll_loss`] then [`Updater::update`]).
//! - **MaRio**: the policy reads `controls` control tokens before the target, the frozen
//!   reference (the folder loaded again, in the compute type) reads the target alone; NLL + KL (+ entropy) over
//!   the target, backward, clip, AdamW; exactly what `mario-train mario` does per update
//!   ([`step_loss`] with the default [`MarioSettings`]).
//!
//! Batches: every example has `src` encoder tokens and `tgt` target tokens (the last one EOS),
//! ids drawn uniformly from `[3, vocab)` with a fixed seed; the control ids are the first
//! `controls` ids of that range (the cost of a step does not depend on which ids they are, and
//! the folder's vocabulary stays as it is, so the peer runs the same shapes). Tokens per update
//! are `batch * (src + tgt)` for both steps, as the peer counts them.
//!
//! Precision: `fp32`, or `bf16` as mixed precision ([`TrainableModel::cast_network`]: the
//! forward and backward passes run on bf16 casts of the f32 variables, rebuilt before every
//! update and timed as part of its forward phase; losses, variables and AdamW stay f32), as
//! the peer's `torch.autocast` does.
//!
//! Timing: `warmup` untimed updates, then `repeats` timed ones; the device is synchronised at
//! the end of each phase (forward and loss, backward, clip and AdamW), so the phases add up to
//! the update and GPU times are not cut short by asynchronous launches.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use mario::model::{DropoutRng, Mode, T5Model};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::median;
use crate::quark::run::{step_loss, MarioSettings};
use crate::train::loss::{nll_loss, Seq2SeqBatch, Seq2SeqExample};
use crate::train::{AdamWConfig, LinearSchedule, TrainableModel, Updater};

/// Which update is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainStep {
    /// One SFT update.
    Sft,
    /// One MaRio (QUARK) update: policy with control tokens, frozen reference, KL term.
    Mario,
}

impl FromStr for TrainStep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sft" => Ok(Self::Sft),
            "mario" | "quark" => Ok(Self::Mario),
            other => Err(format!("unknown step `{other}`: use sft or mario")),
        }
    }
}

impl TrainStep {
    fn name(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Mario => "mario",
        }
    }
}

/// What to time.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Compute types, in order: `F32`, or `BF16` (mixed precision).
    pub dtypes: Vec<DType>,
    /// Updates to time, in order.
    pub steps: Vec<TrainStep>,
    /// Examples per update.
    pub batch_sizes: Vec<usize>,
    /// Encoder tokens per example.
    pub src: usize,
    /// Target tokens per example (the last one is EOS).
    pub tgt: usize,
    /// Control tokens the MaRio policy reads before the target (one per reward).
    pub controls: usize,
    /// Untimed updates first.
    pub warmup: usize,
    /// Timed updates; medians are reported.
    pub repeats: usize,
    /// Dropout of the policy during the updates.
    pub dropout: f64,
    /// Learning rate (constant).
    pub lr: f64,
    /// Seed of the synthetic batches and of dropout.
    pub seed: u64,
}

impl Default for TrainBench {
    fn default() -> Self {
        Self {
            dtypes: vec![DType::F32],
            steps: vec![TrainStep::Sft, TrainStep::Mario],
            batch_sizes: vec![4, 32],
            src: 32,
            tgt: 48,
            controls: 4,
            warmup: 2,
            repeats: 10,
            dropout: 0.1,
            lr: 1e-4,
            seed: 0,
        }
    }
}

impl TrainBench {
    /// Refuses settings that cannot make a batch.
    pub fn validate(&self) -> Result<()> {
        if self.src < 1 || self.tgt < 2 {
            bail!(
                "--src {} --tgt {}: need at least 1 encoder and 2 target tokens",
                self.src,
                self.tgt
            );
        }
        if self.batch_sizes.is_empty() || self.batch_sizes.contains(&0) {
            bail!("--batch-sizes: every batch size must be at least 1");
        }
        if self.dtypes.is_empty() {
            bail!("--dtypes: name at least one of fp32, bf16");
        }
        if let Some(d) = self
            .dtypes
            .iter()
            .find(|d| !matches!(d, DType::F32 | DType::BF16))
        {
            bail!("--dtypes: {d:?} is not a training type (use fp32 or bf16)");
        }
        if self.steps.is_empty() {
            bail!("--steps: name at least one of sft, mario");
        }
        if self.repeats == 0 {
            bail!("--repeats: at least 1 timed update");
        }
        if self.steps.contains(&TrainStep::Mario) && self.controls == 0 {
            bail!("--controls 0: the MaRio update reads at least one control token");
        }
        Ok(())
    }
}

/// One timed (model, step, batch) configuration.
#[derive(Debug, Clone, Serialize)]
pub struct TrainRow {
    /// Always `mario` (the peer writes `torch`).
    pub engine: String,
    /// Folder name of the model.
    pub model: String,
    /// Trainable parameters.
    pub params: usize,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Compute type: `fp32`, or `bf16` (mixed precision: f32 variables and optimizer).
    pub dtype: String,
    /// The update timed.
    pub step: TrainStep,
    /// Examples per update.
    pub batch: usize,
    /// Encoder tokens per example.
    pub src: usize,
    /// Target tokens per example.
    pub tgt: usize,
    /// Control tokens read by the MaRio policy (0 for SFT).
    pub controls: usize,
    /// Wall time of each timed update.
    pub times_s: Vec<f64>,
    /// Median of `times_s`.
    pub step_s_median: f64,
    /// `1 / step_s_median`.
    pub updates_per_s: f64,
    /// `batch * (src + tgt) / step_s_median`.
    pub tokens_per_s: f64,
    /// Median time of the forward passes and the loss.
    pub forward_s: f64,
    /// Median time of backpropagation.
    pub backward_s: f64,
    /// Median time of clipping and AdamW.
    pub optimizer_s: f64,
    /// The loss (NLL for SFT, the QUARK objective for MaRio) of the first and the last update,
    /// warm-up included: on a fixed batch it falls when the updates work.
    pub loss_first: f64,
    /// See `loss_first`.
    pub loss_last: f64,
}

/// `batch` synthetic examples of `src` + `tgt` tokens (see the module docs), the same for a
/// given seed on every machine.
pub fn synthetic_examples(
    vocab: usize,
    batch: usize,
    src: usize,
    tgt: usize,
    controls: usize,
    seed: u64,
) -> Result<Vec<Seq2SeqExample>> {
    if vocab < 4 + controls {
        bail!("a vocabulary of {vocab} ids is too small for {controls} control tokens");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids = |n: usize| -> Vec<u32> {
        let mut v: Vec<u32> = (0..n - 1)
            .map(|_| rng.random_range(3..vocab as u32))
            .collect();
        v.push(1);
        v
    };
    Ok((0..batch)
        .map(|_| {
            let input_ids = ids(src);
            let target_ids = ids(tgt);
            Seq2SeqExample {
                input_ids,
                prefix: (3..3 + controls as u32).collect(),
                target_ids,
            }
        })
        .collect())
}

/// Times every step and batch size of `bench` on the model folder `dir`, calling `on_row`
/// as each row is ready.
pub fn bench_train(
    dir: &Path,
    bench: &TrainBench,
    device: &Device,
    mut on_row: impl FnMut(&TrainRow),
) -> Result<Vec<TrainRow>> {
    bench.validate()?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let policy =
        TrainableModel::load(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    let settings = MarioSettings::default();
    let (start, pad) = (policy.config.decoder_start(), policy.tokenizer.pad_id());
    let dropout = DropoutRng::new(bench.dropout, bench.seed);
    let mut rows = Vec::new();
    for &dtype in &bench.dtypes {
        // the frozen reference in the compute type, loaded as the MaRio stage loads it
        let reference: Option<T5Model> = if bench.steps.contains(&TrainStep::Mario) {
            Some(mario::model::load_t5(dir, dtype, device)?)
        } else {
            None
        };
        for &step in &bench.steps {
            for &b in &bench.batch_sizes {
                let controls = if step == TrainStep::Mario {
                    bench.controls
                } else {
                    0
                };
                let examples = synthetic_examples(
                    policy.config.vocab_size,
                    b,
                    bench.src,
                    bench.tgt,
                    controls,
                    bench.seed,
                )?;
                let refs: Vec<&Seq2SeqExample> = examples.iter().collect();
                let sft_batch = Seq2SeqBatch::new(&refs, start, pad, device)?;
                // a fresh optimizer per row, so that no row starts from another's moments
                let mut updater = Updater::new(
                    &policy,
                    AdamWConfig {
                        weight_decay: 0.01,
                        ..Default::default()
                    },
                    LinearSchedule {
                        peak: bench.lr,
                        warmup_steps: 0,
                        total_steps: u64::MAX,
                    },
                    1.0,
                )?;
                let mode = Mode::Training(&dropout);
                let (mut fwd, mut bwd, mut opt, mut total) = (vec![], vec![], vec![], vec![]);
                let (mut loss_first, mut loss_last) = (f64::NAN, f64::NAN);
                for i in 0..bench.warmup + bench.repeats {
                    let t0 = Instant::now();
                    let cast;
                    let net: &T5Model = if dtype == DType::F32 {
                        &policy.model
                    } else {
                        cast = policy.cast_network(dtype)?;
                        &cast
                    };
                    let (loss, value) = match step {
                        TrainStep::Sft => {
                            let l = nll_loss(net, &sft_batch, mode)?;
                            let v = l.to_scalar::<f32>()? as f64;
                            (l, v)
                        }
                        TrainStep::Mario => {
                            let reference = reference.as_ref().expect("loaded for MaRio rows");
                            let l = step_loss(
                                net, reference, &refs, controls, &settings, mode, start, pad,
                            )?;
                            let v = l.total.to_scalar::<f32>()? as f64;
                            (l.total, v)
                        }
                    };
                    device.synchronize()?;
                    let t1 = Instant::now();
                    let grads = loss.backward()?;
                    device.synchronize()?;
                    let t2 = Instant::now();
                    updater.apply(&grads, i as u64)?;
                    device.synchronize()?;
                    let t3 = Instant::now();
                    if i == 0 {
                        loss_first = value;
                    }
                    loss_last = value;
                    if !value.is_finite() {
                        bail!("{name}, {} batch {b}: the loss is {value}", step.name())
                    }
                    if i >= bench.warmup {
                        fwd.push((t1 - t0).as_secs_f64());
                        bwd.push((t2 - t1).as_secs_f64());
                        opt.push((t3 - t2).as_secs_f64());
                        total.push((t3 - t0).as_secs_f64());
                    }
                }
                let step_s = median(&total);
                let row = TrainRow {
                    engine: "mario".into(),
                    model: name.clone(),
                    params: policy.num_params(),
                    device: if device.is_cuda() { "cuda" } else { "cpu" }.into(),
                    dtype: if dtype == DType::BF16 { "bf16" } else { "fp32" }.into(),
                    step,
                    batch: b,
                    src: bench.src,
                    tgt: bench.tgt,
                    controls,
                    step_s_median: step_s,
                    updates_per_s: 1.0 / step_s,
                    tokens_per_s: (b * (bench.src + bench.tgt)) as f64 / step_s,
                    forward_s: median(&fwd),
                    backward_s: median(&bwd),
                    optimizer_s: median(&opt),
                    times_s: total,
                    loss_first,
                    loss_last,
                };
                on_row(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// The rows as a markdown table.
pub fn markdown(rows: &[TrainRow]) -> String {
    let mut s =
        "| model | device | step | batch | updates/s | tokens/s | forward s | backward s | \
                 optimizer s |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n"
            .to_string();
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.4} | {:.4} | {:.4} |\n",
            r.model,
            r.device,
            r.step.name(),
            r.batch,
            r.updates_per_s,
            r.tokens_per_s,
            r.forward_s,
            r.backward_s,
            r.optimizer_s
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_examples_have_the_asked_shape_and_are_seeded() {
        let a = synthetic_examples(100, 3, 5, 7, 2, 9).unwrap();
        assert_eq!(a.len(), 3);
        for e in &a {
            assert_eq!(e.input_ids.len(), 5);
            assert_eq!(e.target_ids.len(), 7);
            assert_eq!(e.prefix, vec![3, 4]);
            assert_eq!(*e.target_ids.last().unwrap(), 1, "targets end with EOS");
            assert!(e.input_ids[..4].iter().all(|&t| (3..100).contains(&t)));
        }
        let b = synthetic_examples(100, 3, 5, 7, 2, 9).unwrap();
        assert_eq!(a[2].target_ids, b[2].target_ids);
        let c = synthetic_examples(100, 3, 5, 7, 2, 10).unwrap();
        assert_ne!(a[2].target_ids, c[2].target_ids);
        assert!(synthetic_examples(5, 1, 2, 2, 2, 0).is_err());
    }

    #[test]
    fn settings_that_cannot_make_a_batch_are_refused_by_name() {
        let ok = TrainBench::default();
        assert!(ok.validate().is_ok());
        let e = TrainBench {
            tgt: 1,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("--tgt 1"), "{e}");
        let e = TrainBench {
            batch_sizes: vec![4, 0],
            ..ok.clone()
        };
        assert!(e
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--batch-sizes"));
        let e = TrainBench {
            controls: 0,
            ..ok.clone()
        };
        assert!(e.validate().unwrap_err().to_string().contains("--controls"));
        let sft_only = TrainBench {
            controls: 0,
            steps: vec![TrainStep::Sft],
            ..ok
        };
        assert!(sft_only.validate().is_ok());
        assert_eq!("MaRio".parse::<TrainStep>(), Ok(TrainStep::Mario));
        assert!("ppo".parse::<TrainStep>().is_err());
    }
}
