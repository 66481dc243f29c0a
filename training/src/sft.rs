//! SFT distillation: teacher-forced NLL of the teacher's rationale and answer, given the
//! question (method section B).

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use mario::model::{Mode, T5Model};
use mario::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::data::{load_examples, Example};
use crate::eval::{add_measures, aggregate, evaluate_model, EvalOptions};
use crate::train::loss::{nll_loss, Seq2SeqBatch, Seq2SeqExample};
use crate::train::{
    AdamWConfig, Metrics, Precision, Selection, TrainOptions, TrainTask, TrainableModel,
};

/// Settings of `mario-train sft` (the `[sft]` section of a config file; flags override it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftSettings {
    /// Peak learning rate (paper: 3e-5 for a pretrained T5; a model trained from scratch
    /// needs about 1e-3).
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Total optimizer updates; when 0, `epochs` decides.
    pub steps: u64,
    /// Passes over the training data (used when `steps` is 0).
    pub epochs: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per update.
    pub grad_accum: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Dropout (default: the model's `dropout_rate`).
    pub dropout: Option<f64>,
    /// Seed of data order and dropout.
    pub seed: u64,
    /// Evaluate every N updates (0 = at the end only).
    pub eval_every: u64,
    /// Save a resumable checkpoint every N updates (0 = at evaluations only).
    pub save_every: u64,
    /// Log training loss every N updates.
    pub log_every: u64,
    /// Dev questions decoded at each evaluation (0 = all).
    pub eval_limit: usize,
    /// Generation batch size for evaluation.
    pub eval_batch_size: usize,
    /// Most new tokens when decoding dev questions.
    pub max_new_tokens: usize,
    /// n-gram blocking when decoding dev questions (0 = plain greedy).
    pub eval_no_repeat_ngram_size: usize,
    /// Encoder inputs are cut to this many tokens.
    pub max_input_tokens: usize,
    /// Training pairs with longer targets are skipped (cutting would drop the answer).
    pub max_target_tokens: usize,
    /// `f32`, or `bf16` mixed precision (for GPUs; see [`Precision`]).
    pub precision: Precision,
}

impl Default for SftSettings {
    /// The paper's SFT settings (method section B) where they apply.
    fn default() -> Self {
        Self {
            lr: 3e-5,
            warmup_steps: 1000,
            steps: 0,
            epochs: 25.0,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 0.5,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            dropout: None,
            seed: 1,
            eval_every: 1000,
            save_every: 0,
            log_every: 20,
            eval_limit: 0,
            eval_batch_size: 32,
            max_new_tokens: 128,
            eval_no_repeat_ngram_size: 0,
            max_input_tokens: 256,
            max_target_tokens: 192,
            precision: Precision::F32,
        }
    }
}

impl SftSettings {
    /// The loop options for `n_train` examples.
    pub fn train_options(&self, n_train: usize) -> TrainOptions {
        let per_epoch = n_train.div_ceil(self.batch_size.max(1) * self.grad_accum.max(1)) as f64;
        let total = if self.steps > 0 {
            self.steps
        } else {
            (self.epochs * per_epoch).ceil().max(1.0) as u64
        };
        TrainOptions {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: total,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            max_grad_norm: self.max_grad_norm,
            optimizer: AdamWConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
            },
            dropout: self.dropout,
            seed: self.seed,
            eval_every: self.eval_every,
            save_every: self.save_every,
            log_every: self.log_every,
            stop_after: None,
            max_minutes: None,
            progress: false,
            precision: self.precision,
        }
    }
}

/// Tokenizes question → target pairs; returns them and how many were skipped for length.
pub fn encode_pairs(
    tokenizer: &TextTokenizer,
    examples: &[Example],
    max_input_tokens: usize,
    max_target_tokens: usize,
) -> Result<(Vec<Seq2SeqExample>, usize)> {
    let mut out = Vec::with_capacity(examples.len());
    let mut skipped = 0;
    for ex in examples {
        let Some(target) = ex.target() else { continue };
        let target_ids = tokenizer.encode(&target)?;
        if target_ids.len() > max_target_tokens {
            skipped += 1;
            continue;
        }
        out.push(Seq2SeqExample {
            input_ids: truncate_input(tokenizer.encode(&ex.question)?, max_input_tokens),
            prefix: Vec::new(),
            target_ids,
        });
    }
    Ok((out, skipped))
}

/// Cuts an encoder input to `max` tokens, keeping the final `</s>`.
pub fn truncate_input(mut ids: Vec<u32>, max: usize) -> Vec<u32> {
    if ids.len() > max && max > 0 {
        let eos = *ids.last().expect("non-empty");
        ids.truncate(max - 1);
        ids.push(eos);
    }
    ids
}

/// Examples of several dev files, interleaved (so a limit takes some of each).
pub fn interleave(sets: Vec<Vec<Example>>) -> Vec<Example> {
    let mut iters: Vec<_> = sets.into_iter().map(|s| s.into_iter()).collect();
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for it in &mut iters {
            if let Some(x) = it.next() {
                out.push(x);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// The SFT objective with its dev evaluation.
pub struct SftTask {
    /// Training pairs.
    pub train: Vec<Seq2SeqExample>,
    /// Dev pairs with a rationale (for the dev loss).
    pub dev_pairs: Vec<Seq2SeqExample>,
    /// Dev questions (for accuracy and format).
    pub dev: Vec<Example>,
    /// Further measures of the dev outputs: the ground truth when the dev files lie in a
    /// generated world (`dev_truth_*`), else none.
    pub measures: Vec<Box<dyn mario::rewards::Reward>>,
    /// Settings.
    pub settings: SftSettings,
    /// Decoder start id.
    pub start: u32,
    /// Padding id.
    pub pad: u32,
    /// Where tensors go.
    pub device: Device,
}

impl SftTask {
    /// Loads and tokenizes the train and dev files.
    pub fn load(
        train_files: &[PathBuf],
        dev_files: &[PathBuf],
        tokenizer: &TextTokenizer,
        settings: SftSettings,
        device: &Device,
    ) -> Result<Self> {
        let mut train_examples = Vec::new();
        for f in train_files {
            let examples = load_examples(f)?;
            crate::tokenizer::check_targets(tokenizer, f, &examples)?;
            train_examples.extend(examples);
        }
        let (train, skipped) = encode_pairs(
            tokenizer,
            &train_examples,
            settings.max_input_tokens,
            settings.max_target_tokens,
        )?;
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "training pairs skipped: target longer than max_target_tokens={}",
                settings.max_target_tokens
            );
        }
        if train.is_empty() {
            bail!("no training pair with a rationale in {train_files:?}");
        }
        let dev = interleave(
            dev_files
                .iter()
                .map(|f| load_examples(f))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let (dev_pairs, _) = encode_pairs(
            tokenizer,
            &dev,
            settings.max_input_tokens,
            settings.max_target_tokens,
        )?;
        tracing::info!(
            train = train.len(),
            dev = dev.len(),
            dev_with_rationale = dev_pairs.len(),
            "SFT data"
        );
        Ok(Self {
            train,
            dev_pairs,
            dev,
            measures: crate::world::truth::truth_rewards_for(dev_files)?,
            settings,
            start: 0,
            pad: tokenizer.pad_id(),
            device: device.clone(),
        })
    }

    fn batch(&self, rows: &[&Seq2SeqExample]) -> Result<Seq2SeqBatch> {
        Seq2SeqBatch::new(rows, self.start, self.pad, &self.device)
    }

    /// Mean NLL per target token over the dev pairs (no dropout).
    pub fn dev_loss(&self, model: &T5Model) -> Result<Option<f64>> {
        if self.dev_pairs.is_empty() {
            return Ok(None);
        }
        let (mut total, mut count) = (0f64, 0usize);
        for chunk in self.dev_pairs.chunks(self.settings.eval_batch_size.max(1)) {
            let rows: Vec<&Seq2SeqExample> = chunk.iter().collect();
            let batch = self.batch(&rows)?;
            let loss = nll_loss(model, &batch, Mode::Inference)?.to_scalar::<f32>()? as f64;
            total += loss * batch.target_tokens as f64;
            count += batch.target_tokens;
        }
        Ok(Some(total / count as f64))
    }
}

impl TrainTask for SftTask {
    fn lengths(&self) -> Vec<usize> {
        self.train
            .iter()
            .map(|e| e.target_ids.len() + e.input_ids.len())
            .collect()
    }

    fn loss(&self, model: &T5Model, indices: &[usize], mode: Mode) -> Result<(Tensor, usize)> {
        let rows: Vec<&Seq2SeqExample> = indices.iter().map(|&i| &self.train[i]).collect();
        let batch = self.batch(&rows)?;
        Ok((nll_loss(model, &batch, mode)?, batch.tokens))
    }

    fn evaluate(&self, model: &TrainableModel) -> Result<Metrics> {
        let mut m = Vec::new();
        if let Some(l) = self.dev_loss(&model.model)? {
            m.push(("dev_loss".to_string(), l));
        }
        let opts = EvalOptions {
            batch_size: self.settings.eval_batch_size,
            max_new_tokens: self.settings.max_new_tokens,
            limit: (self.settings.eval_limit > 0).then_some(self.settings.eval_limit),
            no_repeat_ngram_size: self.settings.eval_no_repeat_ngram_size,
            ..Default::default()
        };
        let (mut metrics, mut results) =
            evaluate_model(&model.model, &model.tokenizer, &self.dev, &opts)?;
        if !self.measures.is_empty() {
            add_measures(&mut results, &self.measures)?;
            metrics = aggregate(&results);
        }
        m.push(("dev_accuracy".into(), metrics.accuracy));
        m.push(("dev_format_valid".into(), metrics.format_valid_rate));
        m.push(("dev_diversity".into(), metrics.diversity));
        if let Some(x) = metrics.rationale_exact_rate {
            m.push(("dev_rationale_exact".into(), x));
        }
        for (name, mean) in &metrics.measures {
            m.push((format!("dev_{name}"), *mean));
        }
        Ok(m)
    }

    fn selection(&self) -> Selection {
        Selection {
            metric: "dev_accuracy".into(),
            higher_is_better: true,
        }
    }
}
