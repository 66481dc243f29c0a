//! Plausibility in VERA's format (Liu et al. 2023, as MaRio uses it; method section C.2).
//!
//! A T5 encoder reads the text; the hidden state at the last non-padding position (the `</s>`)
//! goes through a linear head whose weights VERA keeps in embedding rows: the weight vector in
//! one row, the bias and a calibration temperature in the first element of two others. The
//! score is `sigmoid((w·h + b) / t)`, in (0, 1), higher is more plausible. A real VERA
//! checkpoint (`T5EncoderModel`, rows 32099 / 32098 / 32097) loads as it is; a scorer trained by
//! `mario-train plausibility` stores its rows and input format in `plausibility.json`.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::{Reward, RewardError, RewardInput};
use crate::model::{load_t5_encoder, EncoderInput, Mode, ModelError, T5Encoder};
use crate::rationale::parse_output;
use crate::tokenize::{TextTokenizer, TOKENIZER_FILE};

/// File name of the head description next to the scorer's weights.
pub const PLAUSIBILITY_FILE: &str = "plausibility.json";

/// What the scorer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlausibilityInput {
    /// The rationale alone (VERA as MaRio uses it).
    Rationale,
    /// `question + " " + rationale`.
    QuestionRationale,
}

/// Where the head lives in the embedding, and the input format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlausibilityHead {
    /// Row holding the weight vector.
    pub weight_row: usize,
    /// Row whose first element is the bias.
    pub bias_row: usize,
    /// Row whose first element is the calibration temperature.
    pub temperature_row: usize,
    /// What the scorer reads.
    pub input: PlausibilityInput,
    /// Inputs are cut to this many tokens.
    pub max_tokens: usize,
}

impl PlausibilityHead {
    /// VERA's layout (`liujch1998/vera`).
    pub fn vera() -> Self {
        Self {
            weight_row: 32099,
            bias_row: 32098,
            temperature_row: 32097,
            input: PlausibilityInput::Rationale,
            max_tokens: 128,
        }
    }
}

/// A loaded plausibility scorer.
#[derive(Debug, Clone)]
pub struct PlausibilityScorer {
    encoder: T5Encoder,
    tokenizer: TextTokenizer,
    head: PlausibilityHead,
    /// `(D)`.
    weight: Tensor,
    bias: f32,
    temperature: f32,
}

impl PlausibilityScorer {
    /// Loads a scorer folder (`config.json`, weights, `tokenizer.json`, optional
    /// `plausibility.json`; without it VERA's layout is assumed).
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let encoder = load_t5_encoder(dir, dtype, device)?;
        let tokenizer = TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        let head_path = dir.join(PLAUSIBILITY_FILE);
        let head = if head_path.is_file() {
            let text = std::fs::read_to_string(&head_path).map_err(|e| ModelError::Io {
                path: head_path.clone(),
                source: e,
            })?;
            serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
                path: head_path.clone(),
                problem: e.to_string(),
            })?
        } else {
            PlausibilityHead::vera()
        };
        Self::new(encoder, tokenizer, head).map_err(|problem| ModelError::BadFile {
            path: head_path,
            problem,
        })
    }

    /// A scorer from an encoder whose embedding holds the head rows.
    pub fn new(
        encoder: T5Encoder,
        tokenizer: TextTokenizer,
        head: PlausibilityHead,
    ) -> Result<Self, String> {
        let emb = encoder.embedding();
        let rows = emb.dim(0).map_err(|e| e.to_string())?;
        for (what, r) in [
            ("weight_row", head.weight_row),
            ("bias_row", head.bias_row),
            ("temperature_row", head.temperature_row),
        ] {
            if r >= rows {
                return Err(format!(
                    "`{what}` {r} is outside the embedding ({rows} rows)"
                ));
            }
        }
        let row = |r: usize| -> Result<Vec<f32>, String> {
            emb.get(r)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1())
                .map_err(|e| e.to_string())
        };
        let weight = emb
            .get(head.weight_row)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| e.to_string())?;
        let bias = row(head.bias_row)?[0];
        let temperature = row(head.temperature_row)?[0];
        if !(temperature.is_finite() && temperature != 0.0) {
            return Err(format!("the calibration temperature is {temperature}"));
        }
        Ok(Self {
            encoder,
            tokenizer,
            head,
            weight,
            bias,
            temperature,
        })
    }

    /// The text the scorer reads for one item.
    pub fn input_text(&self, question: &str, output: &str) -> String {
        let rationale = parse_output(output).rationale;
        match self.head.input {
            PlausibilityInput::Rationale => rationale,
            PlausibilityInput::QuestionRationale => format!("{} {rationale}", question.trim()),
        }
    }

    /// Calibrated logits `(w·h + b) / t` of texts, `(N)`.
    pub fn logits(&self, texts: &[String]) -> candle_core::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|t| {
                    let mut ids = self
                        .tokenizer
                        .encode(t)
                        .map_err(|e| candle_core::Error::msg(e.to_string()))?;
                    if ids.len() > self.head.max_tokens {
                        let eos = *ids.last().expect("non-empty");
                        ids.truncate(self.head.max_tokens - 1);
                        ids.push(eos);
                    }
                    Ok(ids)
                })
                .collect::<candle_core::Result<_>>()?;
            let input =
                EncoderInput::from_rows(&rows, self.tokenizer.pad_id(), self.encoder.device())?;
            let enc = self.encoder.encode(&input, Mode::Inference)?;
            let last = last_token_states(&enc.hidden, &enc.lengths)?; // (B, D)
            let w = self.weight.to_dtype(last.dtype())?;
            let logit = last
                .broadcast_mul(&w)?
                .sum(D::Minus1)?
                .to_dtype(DType::F32)?;
            let logit = ((logit + self.bias as f64)? / self.temperature as f64)?;
            out.extend(logit.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// `(B, S, D)` hidden states -> `(B, D)` at each row's last real position.
pub fn last_token_states(hidden: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
    let (b, s, d) = hidden.dims3()?;
    let idx: Vec<u32> = lengths
        .iter()
        .enumerate()
        .map(|(r, &l)| (r * s + l.max(1) - 1) as u32)
        .collect();
    let idx = Tensor::from_vec(idx, b, hidden.device())?;
    hidden.reshape((b * s, d))?.index_select(&idx, 0)
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

impl Reward for PlausibilityScorer {
    fn name(&self) -> &str {
        "plausibility"
    }

    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        let texts: Vec<String> = items
            .iter()
            .map(|it| self.input_text(it.question, it.output))
            .collect();
        let logits = self.logits(&texts).map_err(|e| RewardError {
            reward: "plausibility".into(),
            message: e.to_string(),
        })?;
        Ok(logits.into_iter().map(|l| Some(sigmoid(l))).collect())
    }
}
