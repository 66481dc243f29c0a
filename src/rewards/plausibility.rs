//! Plausibility in VERA's format (Liu et al. 2023, as MaRio uses it; method section C.2).
//!
//! A T5 encoder reads the text; the hidden state at the last non-padding position (the `</s>`)
//! goes through a linear head whose weights VERA keeps in embedding rows: the weight vector in
//! one row, the bias and a calibration temperature in the first element of two others. The
//! score is `sigmoid((w·h + b) / t)`, in (0, 1), higher is more plausible. A real VERA
//! checkpoint (`T5EncoderModel`, rows 32099 / 32098 / 32097) loads as it is; a scorer trained by
//! `mario-train plausibility` stores its rows and input format in `plausibility.json`.
//!
//! A second kind of scorer reads the rationale with a whole seq2seq model and scores how
//! likely the model finds its least likely token ([`super::likelihood`]); its
//! `plausibility.json` holds a [`LikelihoodScoring`] (recognised by its `pooling` field).

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::likelihood::LikelihoodScoring;
use super::{Reward, RewardError, RewardInput};
use crate::model::{load_t5, load_t5_encoder, EncoderInput, Mode, ModelError, T5Encoder, T5Model};
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

/// What a `plausibility.json` describes: a VERA-style head, or likelihood scoring.
#[derive(Debug, Clone, PartialEq)]
pub enum PlausibilitySpec {
    /// An encoder and a linear head in embedding rows.
    Vera(PlausibilityHead),
    /// A seq2seq model's token log-probabilities, pooled and calibrated.
    Likelihood(LikelihoodScoring),
}

impl PlausibilitySpec {
    /// Parses a `plausibility.json` text: a likelihood spec has a `pooling` field, a VERA head
    /// does not.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if value.get("pooling").is_some() {
            serde_json::from_value(value)
                .map(PlausibilitySpec::Likelihood)
                .map_err(|e| format!("likelihood scoring: {e}"))
        } else {
            serde_json::from_value(value)
                .map(PlausibilitySpec::Vera)
                .map_err(|e| format!("VERA head: {e}"))
        }
    }

    /// The JSON written to `plausibility.json`.
    pub fn to_json(&self) -> String {
        let text = match self {
            PlausibilitySpec::Vera(h) => serde_json::to_string_pretty(h),
            PlausibilitySpec::Likelihood(l) => serde_json::to_string_pretty(l),
        };
        text.expect("plain structs serialise") + "\n"
    }
}

/// A loaded plausibility scorer.
#[derive(Debug, Clone)]
pub struct PlausibilityScorer {
    tokenizer: TextTokenizer,
    kind: ScorerModel,
}

#[derive(Debug, Clone)]
enum ScorerModel {
    Vera(VeraScorer),
    Likelihood {
        model: T5Model,
        scoring: LikelihoodScoring,
    },
}

#[derive(Debug, Clone)]
struct VeraScorer {
    encoder: T5Encoder,
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
        let tokenizer = TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        let head_path = dir.join(PLAUSIBILITY_FILE);
        let bad = |problem: String| ModelError::BadFile {
            path: head_path.clone(),
            problem,
        };
        let spec = if head_path.is_file() {
            let text = std::fs::read_to_string(&head_path).map_err(|e| ModelError::Io {
                path: head_path.clone(),
                source: e,
            })?;
            PlausibilitySpec::parse(&text).map_err(bad)?
        } else {
            PlausibilitySpec::Vera(PlausibilityHead::vera())
        };
        match spec {
            PlausibilitySpec::Vera(head) => {
                let encoder = load_t5_encoder(dir, dtype, device)?;
                Self::new(encoder, tokenizer, head).map_err(bad)
            }
            PlausibilitySpec::Likelihood(scoring) => {
                scoring.validate().map_err(bad)?;
                let model = load_t5(dir, dtype, device)?;
                Ok(Self::likelihood(model, tokenizer, scoring))
            }
        }
    }

    /// A likelihood scorer from a seq2seq model.
    pub fn likelihood(
        model: T5Model,
        tokenizer: TextTokenizer,
        scoring: LikelihoodScoring,
    ) -> Self {
        Self {
            tokenizer,
            kind: ScorerModel::Likelihood { model, scoring },
        }
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
            tokenizer,
            kind: ScorerModel::Vera(VeraScorer {
                encoder,
                head,
                weight,
                bias,
                temperature,
            }),
        })
    }

    /// Scores of `(question, output)` pairs, in (0, 1).
    pub fn scores(&self, items: &[(&str, &str)]) -> candle_core::Result<Vec<f64>> {
        match &self.kind {
            ScorerModel::Vera(v) => {
                let texts: Vec<String> = items.iter().map(|(q, o)| v.input_text(q, o)).collect();
                Ok(self.logits(&texts)?.into_iter().map(sigmoid).collect())
            }
            ScorerModel::Likelihood { model, scoring } => {
                let rationales: Vec<String> = items
                    .iter()
                    .map(|(_, o)| parse_output(o).rationale)
                    .collect();
                let pairs: Vec<(&str, &str)> = items
                    .iter()
                    .zip(&rationales)
                    .map(|((q, _), r)| (q.trim(), r.as_str()))
                    .collect();
                let pooled = scoring.pooled_log_probs(model, &self.tokenizer, &pairs)?;
                // an empty rationale states nothing believable
                Ok(pooled
                    .into_iter()
                    .map(|x| x.map_or(0.0, |x| scoring.score(x)))
                    .collect())
            }
        }
    }

    /// Calibrated logits `(w·h + b) / t` of texts, `(N)` (VERA-style scorers only).
    pub fn logits(&self, texts: &[String]) -> candle_core::Result<Vec<f32>> {
        let ScorerModel::Vera(v) = &self.kind else {
            candle_core::bail!("a likelihood scorer has no VERA logits");
        };
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|t| {
                    let mut ids = self
                        .tokenizer
                        .encode(t)
                        .map_err(|e| candle_core::Error::msg(e.to_string()))?;
                    if ids.len() > v.head.max_tokens {
                        let eos = *ids.last().expect("non-empty");
                        ids.truncate(v.head.max_tokens - 1);
                        ids.push(eos);
                    }
                    Ok(ids)
                })
                .collect::<candle_core::Result<_>>()?;
            let input =
                EncoderInput::from_rows(&rows, self.tokenizer.pad_id(), v.encoder.device())?;
            let enc = v.encoder.encode(&input, Mode::Inference)?;
            let last = last_token_states(&enc.hidden, &enc.lengths)?; // (B, D)
            let w = v.weight.to_dtype(last.dtype())?;
            let logit = last
                .broadcast_mul(&w)?
                .sum(D::Minus1)?
                .to_dtype(DType::F32)?;
            let logit = ((logit + v.bias as f64)? / v.temperature as f64)?;
            out.extend(logit.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

impl VeraScorer {
    /// The text the head's encoder reads for one item.
    fn input_text(&self, question: &str, output: &str) -> String {
        let rationale = parse_output(output).rationale;
        match self.head.input {
            PlausibilityInput::Rationale => rationale,
            PlausibilityInput::QuestionRationale => format!("{} {rationale}", question.trim()),
        }
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
        let pairs: Vec<(&str, &str)> = items.iter().map(|it| (it.question, it.output)).collect();
        let scores = self.scores(&pairs).map_err(|e| RewardError {
            reward: "plausibility".into(),
            message: e.to_string(),
        })?;
        Ok(scores.into_iter().map(Some).collect())
    }
}
