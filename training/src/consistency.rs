//! The consistency reward's two answer models (method section C.4): I2O reads the question,
//! IR2O the question and a rationale; both are trained to generate the gold label. Their dev
//! accuracy ranks the choices by mean label log-likelihood, as the reward does.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use mario::model::{Mode, T5Model};
use mario::rewards::consistency::{i2o_input, ir2o_input, mean_label_log_likelihoods};
use mario::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::data::{load_examples, Example};
use crate::sft::truncate_input;
use crate::train::loss::{nll_loss, Seq2SeqBatch, Seq2SeqExample};
use crate::train::{Metrics, Selection, TrainTask, TrainableModel};

/// An answer model's dev metric (written by each evaluation, selecting its best checkpoint):
/// the share of dev questions whose gold label it scores highest.
pub const DEV_CHOICE_ACCURACY: &str = "dev_choice_accuracy";

/// Which answer model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    /// Question → answer.
    I2o,
    /// Question + rationale → answer.
    Ir2o,
}

impl AnswerMode {
    /// The model's input for an example (IR2O without a rationale reads an empty one).
    pub fn input(self, ex: &Example) -> String {
        match self {
            Self::I2o => i2o_input(&ex.question),
            Self::Ir2o => ir2o_input(&ex.question, ex.rationale.as_deref().unwrap_or("")),
        }
    }
}

/// A dev question: input, choice labels, gold index.
#[derive(Debug, Clone)]
pub struct ChoiceItem {
    /// Model input.
    pub input: String,
    /// Choice labels.
    pub labels: Vec<String>,
    /// Index of the gold label.
    pub gold: usize,
}

/// Choice accuracy: the gold label has the highest mean log-likelihood.
pub fn choice_accuracy(model: &T5Model, tok: &TextTokenizer, items: &[ChoiceItem]) -> Result<f64> {
    if items.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0;
    for it in items {
        let ll =
            &mean_label_log_likelihoods(model, tok, std::slice::from_ref(&it.input), &it.labels)?
                [0];
        let best = ll
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        correct += usize::from(best == it.gold);
    }
    Ok(correct as f64 / items.len() as f64)
}

/// Training an answer model.
pub struct AnswerTask {
    /// Training pairs (input → label).
    pub train: Vec<Seq2SeqExample>,
    /// Dev questions.
    pub dev: Vec<ChoiceItem>,
    /// Padding id.
    pub pad: u32,
    /// Tensor device.
    pub device: Device,
}

impl AnswerTask {
    /// Builds the pairs from split files.
    pub fn load(
        mode: AnswerMode,
        train_files: &[PathBuf],
        dev_files: &[PathBuf],
        tok: &TextTokenizer,
        max_input_tokens: usize,
        dev_limit: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut train = Vec::new();
        for f in train_files {
            for ex in load_examples(f)? {
                if mode == AnswerMode::Ir2o && ex.rationale.is_none() {
                    continue;
                }
                let input_ids = truncate_input(tok.encode(&mode.input(&ex))?, max_input_tokens);
                let label = ex.choices().labels
                    [ex.choices().index_of(&ex.answer).expect("validated")]
                .clone();
                train.push(Seq2SeqExample {
                    input_ids,
                    prefix: Vec::new(),
                    target_ids: tok.encode(&label)?,
                });
            }
        }
        if train.is_empty() {
            bail!("no training pairs in {train_files:?}");
        }
        let mut dev = Vec::new();
        for f in dev_files {
            for ex in load_examples(f)? {
                let choices = ex.choices();
                dev.push(ChoiceItem {
                    input: mode.input(&ex),
                    gold: choices.index_of(&ex.answer).expect("validated"),
                    labels: choices.labels,
                });
            }
        }
        if dev_limit > 0 {
            dev.truncate(dev_limit);
        }
        Ok(Self {
            train,
            dev,
            pad: tok.pad_id(),
            device: device.clone(),
        })
    }
}

impl TrainTask for AnswerTask {
    fn lengths(&self) -> Vec<usize> {
        self.train.iter().map(|e| e.input_ids.len()).collect()
    }

    fn loss(&self, model: &T5Model, indices: &[usize], mode: Mode) -> Result<(Tensor, usize)> {
        let rows: Vec<&Seq2SeqExample> = indices.iter().map(|&i| &self.train[i]).collect();
        let batch = Seq2SeqBatch::new(
            &rows,
            model.config().decoder_start(),
            self.pad,
            &self.device,
        )?;
        Ok((nll_loss(model, &batch, mode)?, batch.tokens))
    }

    fn evaluate(&self, model: &TrainableModel) -> Result<Metrics> {
        Ok(vec![(
            DEV_CHOICE_ACCURACY.into(),
            choice_accuracy(&model.model, &model.tokenizer, &self.dev)?,
        )])
    }

    fn selection(&self) -> Selection {
        Selection {
            metric: DEV_CHOICE_ACCURACY.into(),
            higher_is_better: true,
        }
    }
}
