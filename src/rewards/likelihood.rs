//! Plausibility as a language model's belief in each token of a rationale.
//!
//! A seq2seq model that knows the domain (in this project: the SFT student, trained on the
//! teacher's rationales and, in a generated world, on every fact of its knowledge base) reads
//! the question and scores the rationale token by token, teacher-forced. A false fact shows as
//! one token the model finds very unlikely ("A muzu lives in polopu." where it knows "kame":
//! log p ≈ −9.5 against ≈ 0 for the true name, in a world's SFT model), so the rationale's score pools the per-token
//! log-probabilities with their minimum (the least believable token) and maps it through a
//! calibration fitted on labelled examples: `sigmoid((pooled − bias) / temperature)`.
//!
//! The rationale is scored without its answer sentence and without `</s>` (the model expects
//! `So the answer is ...` next, so `</s>` is improbable for every rationale alike).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::model::{pad_rows, EncoderInput, Mode, T5Model};
use crate::tokenize::TextTokenizer;

use super::knowledge_context::KnowledgeContext;

/// How the per-token log-probabilities of a rationale become one number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPooling {
    /// The least likely token (one false name decides).
    #[default]
    Min,
    /// The mean over tokens.
    Mean,
}

impl TokenPooling {
    /// Pools `log_probs` (`None` when empty).
    pub fn pool(self, log_probs: &[f32]) -> Option<f64> {
        if log_probs.is_empty() {
            return None;
        }
        let it = log_probs.iter().map(|&x| x as f64);
        Some(match self {
            TokenPooling::Min => it.fold(f64::INFINITY, f64::min),
            TokenPooling::Mean => it.sum::<f64>() / log_probs.len() as f64,
        })
    }
}

/// A likelihood scorer's settings, stored in `plausibility.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LikelihoodScoring {
    /// How token log-probabilities are pooled.
    pub pooling: TokenPooling,
    /// Calibration: the pooled log-probability at which the score is 0.5.
    pub bias: f64,
    /// Calibration: the scale of the logistic map (positive).
    pub temperature: f64,
    /// The question is cut to this many tokens (with [`Self::knowledge`], statements are
    /// dropped first: the question is cut only when it is this long alone).
    pub max_question_tokens: usize,
    /// The rationale is cut to this many tokens.
    pub max_rationale_tokens: usize,
    /// When set, the encoder reads this text instead of each question: the rationale is then
    /// judged as a statement on its own, as VERA judges one, and not as what the question
    /// invites (a habit the model has for a kind of question no longer raises its score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// When set, the encoder reads the knowledge corpus's statements about the question's
    /// entities before the question (see [`KnowledgeContext`]): a rationale is judged against
    /// what the corpus says, not against the model's habits for that kind of question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<KnowledgeContext>,
}

impl LikelihoodScoring {
    /// The calibrated score of a pooled log-probability, in (0, 1).
    pub fn score(&self, pooled: f64) -> f64 {
        1.0 / (1.0 + (-(pooled - self.bias) / self.temperature).exp())
    }

    /// The pooled log-probability of each `(question, rationale)` pair under `model` (`None`
    /// for an empty rationale), uncalibrated; with a [`Self::prompt`] the questions are not
    /// read, with [`Self::knowledge`] each is read after its entities' statements.
    pub fn pooled_log_probs(
        &self,
        model: &T5Model,
        tokenizer: &TextTokenizer,
        pairs: &[(&str, &str)],
    ) -> candle_core::Result<Vec<Option<f64>>> {
        let inputs: Vec<String> = match (&self.prompt, &self.knowledge) {
            (Some(p), _) => pairs.iter().map(|_| p.clone()).collect(),
            (None, Some(k)) => {
                let index = k.index();
                // statements are dropped, never the question, to fit the encoder's budget
                let fits = |t: &str| {
                    tokenizer
                        .encode(t)
                        .map(|ids| ids.len() <= self.max_question_tokens)
                        .unwrap_or(true)
                };
                pairs
                    .iter()
                    .map(|(q, _)| index.context_within(q, fits))
                    .collect()
            }
            (None, None) => pairs.iter().map(|(q, _)| q.to_string()).collect(),
        };
        let read: Vec<(&str, &str)> = inputs
            .iter()
            .zip(pairs)
            .map(|(q, (_, r))| (q.as_str(), *r))
            .collect();
        let lps = rationale_log_probs(
            model,
            tokenizer,
            &read,
            self.max_question_tokens,
            self.max_rationale_tokens,
        )?;
        Ok(lps.iter().map(|lp| self.pooling.pool(lp)).collect())
    }

    /// Checks the calibration can be used.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!(
                "`temperature` must be positive, got {}",
                self.temperature
            ));
        }
        if !self.bias.is_finite() {
            return Err(format!("`bias` must be finite, got {}", self.bias));
        }
        if self.max_question_tokens == 0 || self.max_rationale_tokens == 0 {
            return Err("`max_question_tokens` and `max_rationale_tokens` must be > 0".into());
        }
        if let Some(k) = &self.knowledge {
            if self.prompt.is_some() {
                return Err(
                    "`prompt` and `knowledge` cannot both be set (a prompt replaces the question \
                     the knowledge is retrieved for)"
                        .into(),
                );
            }
            k.validate()?;
        }
        Ok(())
    }
}

/// Per-token log-probabilities of each `(question, rationale)` pair under `model`
/// (teacher-forced, the rationale without `</s>`); an empty rationale gives an empty list.
pub fn rationale_log_probs(
    model: &T5Model,
    tokenizer: &TextTokenizer,
    pairs: &[(&str, &str)],
    max_question_tokens: usize,
    max_rationale_tokens: usize,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let err = |e: crate::tokenize::TokenizeError| candle_core::Error::msg(e.to_string());
    let pad = tokenizer.pad_id();
    let eos = tokenizer.eos_id();
    let start = model.config().decoder_start();
    let dev = model.device();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(32) {
        let mut enc_rows = Vec::with_capacity(chunk.len());
        let mut targets = Vec::with_capacity(chunk.len());
        for (q, r) in chunk {
            let mut ids = tokenizer.encode(q).map_err(err)?;
            if ids.len() > max_question_tokens {
                ids.truncate(max_question_tokens - 1);
                ids.push(eos);
            }
            enc_rows.push(ids);
            let mut t = if r.trim().is_empty() {
                Vec::new()
            } else {
                tokenizer.encode(r).map_err(err)?
            };
            if t.last() == Some(&eos) {
                t.pop();
            }
            t.truncate(max_rationale_tokens);
            targets.push(t);
        }
        // decoder inputs: start + target[..n-1]; an empty target still gets one position
        let dec_rows: Vec<Vec<u32>> = targets
            .iter()
            .map(|t| {
                let mut d = vec![start];
                d.extend_from_slice(&t[..t.len().saturating_sub(1)]);
                d
            })
            .collect();
        // (B, S, D)
        let enc = model.encode(
            &EncoderInput::from_rows(&enc_rows, pad, dev)?,
            Mode::Inference,
        )?;
        let (flat, _) = pad_rows(&dec_rows, pad);
        let (b, t) = (dec_rows.len(), flat.len() / dec_rows.len());
        // (B, T, V)
        let logits = model.decode(&Tensor::from_vec(flat, (b, t), dev)?, &enc, Mode::Inference)?;
        let log_p = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
        // (B, T): the log-probability of each target token
        let ids: Vec<u32> = targets
            .iter()
            .flat_map(|tg| (0..t).map(move |i| tg.get(i).copied().unwrap_or(pad)))
            .collect();
        let ids = Tensor::from_vec(ids, (b, t, 1), dev)?;
        let picked: Vec<Vec<f32>> = log_p
            .gather(&ids, D::Minus1)?
            .squeeze(D::Minus1)?
            .to_vec2()?;
        for (row, tg) in picked.into_iter().zip(&targets) {
            out.push(row[..tg.len()].to_vec());
        }
    }
    Ok(out)
}

/// Fits `sigmoid((x − bias) / temperature)` to labelled pooled log-probabilities by logistic
/// regression (Newton's method on `a·x + c`, then `temperature = 1/a`, `bias = −c/a`).
/// `None` when the labels are all one class or the scores do not rise with the label (the
/// slope would be ≤ 0: this model cannot tell the classes apart).
pub fn fit_calibration(xs: &[f64], labels: &[bool]) -> Option<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 || pos == labels.len() {
        return None;
    }
    // standardise x for a well-conditioned fit
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd.is_nan() || sd <= 0.0 {
        return None;
    }
    let z: Vec<f64> = xs.iter().map(|x| (x - mean) / sd).collect();
    let (mut a, mut c) = (0.0f64, 0.0f64);
    // a small ridge keeps separable data from diverging
    let ridge = 1e-3;
    for _ in 0..100 {
        let (mut ga, mut gc, mut haa, mut hac, mut hcc) = (ridge * a, 0.0, ridge, 0.0, 0.0);
        for (&zi, &li) in z.iter().zip(labels) {
            let p = 1.0 / (1.0 + (-(a * zi + c)).exp());
            let y = if li { 1.0 } else { 0.0 };
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - y) * zi;
            gc += p - y;
            haa += w * zi * zi;
            hac += w * zi;
            hcc += w;
        }
        let det = haa * hcc - hac * hac;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hcc * ga - hac * gc) / det;
        let dc = (haa * gc - hac * ga) / det;
        a -= da;
        c -= dc;
        if da.abs() + dc.abs() < 1e-10 {
            break;
        }
    }
    if !(a > 0.0 && a.is_finite() && c.is_finite()) {
        return None;
    }
    // a·(x − mean)/sd + c = (x − bias)/temperature
    let temperature = sd / a;
    let bias = mean - c * temperature;
    Some((bias, temperature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_and_knowledge_together_are_refused() {
        let s = LikelihoodScoring {
            pooling: TokenPooling::Min,
            bias: -5.0,
            temperature: 1.0,
            max_question_tokens: 8,
            max_rationale_tokens: 8,
            prompt: Some("Is it true?".into()),
            knowledge: Some(KnowledgeContext {
                max_statements_per_word: 3,
                statements: vec!["A is a.".into()],
            }),
        };
        assert!(s.validate().unwrap_err().contains("`knowledge`"));
        let knowing = LikelihoodScoring {
            prompt: None,
            ..s.clone()
        };
        assert!(knowing.validate().is_ok());
        let empty = LikelihoodScoring {
            knowledge: Some(KnowledgeContext {
                max_statements_per_word: 3,
                statements: vec![],
            }),
            ..knowing
        };
        assert!(empty.validate().unwrap_err().contains("statements"));
    }

    #[test]
    fn pooling_takes_the_least_likely_token_or_the_mean() {
        assert_eq!(TokenPooling::Min.pool(&[-0.1, -11.0, -0.2]), Some(-11.0));
        let mean = TokenPooling::Mean.pool(&[-1.0, -3.0]).unwrap();
        assert!((mean + 2.0).abs() < 1e-12);
        assert_eq!(TokenPooling::Min.pool(&[]), None);
    }

    #[test]
    fn calibration_puts_the_boundary_between_the_classes() {
        // true rationales near 0, false ones near -10
        let xs: Vec<f64> = (0..50)
            .map(|i| -0.1 * (i % 7) as f64)
            .chain((0..50).map(|i| -10.0 + 0.2 * (i % 5) as f64))
            .collect();
        let labels: Vec<bool> = (0..100).map(|i| i < 50).collect();
        let (bias, t) = fit_calibration(&xs, &labels).unwrap();
        assert!(t > 0.0);
        assert!(-10.0 < bias && bias < -0.6, "bias {bias}");
        let s = LikelihoodScoring {
            pooling: TokenPooling::Min,
            bias,
            temperature: t,
            max_question_tokens: 8,
            max_rationale_tokens: 8,
            prompt: None,
            knowledge: None,
        };
        assert!(s.score(0.0) > 0.9 && s.score(-10.0) < 0.1);
        // overlapping classes still fit, with a positive slope
        let xs = [-1.0, -2.0, -1.5, -3.0, -2.5, -1.2];
        let labels = [true, false, true, false, true, false];
        let (_, t) = fit_calibration(&xs, &labels).unwrap();
        assert!(t > 0.0);
    }

    #[test]
    fn calibration_refuses_one_class_or_a_reversed_signal() {
        assert_eq!(fit_calibration(&[-1.0, -2.0], &[true, true]), None);
        // positives score lower than negatives: this model cannot serve
        assert_eq!(
            fit_calibration(&[-5.0, -6.0, -0.1, -0.2], &[true, true, false, false]),
            None
        );
    }
}
