//! Turning a [`RationalizeRequest`] into generation rows, or a 422 that says what is wrong.

use std::sync::Arc;

use super::api::{ControlSpec, ControlUsed, GoldSpec, Parameters, RationalizeRequest};
use super::error::ApiError;
use crate::control::{ControlChoice, ControlTokens};
use crate::generate::{GenerationParams, GenerationRequest, SamplingParams};
use crate::tokenize::TextTokenizer;

/// The limits validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct ValidationLimits {
    /// Questions per request.
    pub max_client_batch_size: usize,
    /// Tokens per question.
    pub max_input_tokens: usize,
    /// Largest `max_new_tokens`.
    pub max_new_tokens: usize,
    /// `max_new_tokens` when absent.
    pub default_max_new_tokens: usize,
    /// Stop strings per request.
    pub max_stop_sequences: usize,
    /// `no_repeat_ngram_size` when absent (the checkpoint's `generation_config.json`).
    pub default_no_repeat_ngram_size: usize,
}

/// One question ready for the engine.
#[derive(Debug, Clone)]
pub struct ValidRow {
    /// The question as sent.
    pub question: String,
    /// The generation.
    pub request: GenerationRequest,
    /// The control tokens of the prefix.
    pub control: Vec<ControlUsed>,
    /// Its gold answer, if sent.
    pub gold: Option<String>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// One row per question, in order.
    pub rows: Vec<ValidRow>,
    /// Whether to score the outputs.
    pub score: bool,
}

/// Checks requests against the model and the limits.
#[derive(Clone)]
pub struct Validator {
    tokenizer: Arc<TextTokenizer>,
    control: Option<ControlTokens>,
    limits: ValidationLimits,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Validation(msg.into())
}

impl Validator {
    /// A validator for a model's tokenizer and control table.
    pub fn new(
        tokenizer: Arc<TextTokenizer>,
        control: Option<ControlTokens>,
        limits: ValidationLimits,
    ) -> Self {
        Self {
            tokenizer,
            control,
            limits,
        }
    }

    /// The control bins and tokens a request asks for.
    fn control(
        &self,
        spec: Option<&ControlSpec>,
    ) -> Result<(Vec<u32>, Vec<ControlUsed>), ApiError> {
        let choice = match spec {
            None => ControlChoice::Best,
            Some(ControlSpec::Named(n)) if n == "best" => ControlChoice::Best,
            Some(ControlSpec::Named(n)) if n == "worst" => ControlChoice::Worst,
            Some(ControlSpec::Named(n)) => {
                return Err(invalid(format!(
                    "`control` must be \"best\", \"worst\" or an object of reward bins, not {n:?}"
                )))
            }
            Some(ControlSpec::Bins(map)) => ControlChoice::Bins(map.clone()),
        };
        let Some(table) = &self.control else {
            return match choice {
                ControlChoice::Bins(m) if !m.is_empty() => Err(invalid(
                    "this model has no control tokens (no mario.json); omit `control`",
                )),
                _ => Ok((Vec::new(), Vec::new())),
            };
        };
        let bins = table
            .resolve(&choice)
            .map_err(|e| invalid(format!("`control`: {e}")))?;
        let used = table
            .rewards
            .iter()
            .zip(&bins)
            .map(|(r, &b)| ControlUsed {
                reward: r.name.clone(),
                bin: b,
                token: r.tokens[b].clone(),
            })
            .collect();
        Ok((table.prefix_ids(&bins, &self.tokenizer), used))
    }

    fn params(&self, p: &Parameters, seed: u64) -> Result<GenerationParams, ApiError> {
        let max_new = match p.max_new_tokens {
            None => self.limits.default_max_new_tokens,
            Some(0) => return Err(invalid("`parameters.max_new_tokens` must be at least 1")),
            Some(n) if n as usize > self.limits.max_new_tokens => {
                return Err(invalid(format!(
                    "`parameters.max_new_tokens` is {n}; this server allows at most {}",
                    self.limits.max_new_tokens
                )))
            }
            Some(n) => n as usize,
        };
        let temperature = p.temperature.unwrap_or(0.0);
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(invalid(format!(
                "`parameters.temperature` must be a number >= 0 (0 = greedy), got {temperature}"
            )));
        }
        if let Some(tp) = p.top_p {
            if !(tp.is_finite() && tp > 0.0 && tp <= 1.0) {
                return Err(invalid(format!(
                    "`parameters.top_p` must be in (0, 1], got {tp}"
                )));
            }
        }
        if p.top_k == Some(0) {
            return Err(invalid("`parameters.top_k` must be at least 1"));
        }
        if p.stop.len() > self.limits.max_stop_sequences {
            return Err(invalid(format!(
                "`parameters.stop` has {} strings; at most {} are allowed",
                p.stop.len(),
                self.limits.max_stop_sequences
            )));
        }
        if p.stop.iter().any(|s| s.is_empty()) {
            return Err(invalid("`parameters.stop` strings must not be empty"));
        }
        Ok(GenerationParams {
            max_new_tokens: max_new,
            min_new_tokens: 0,
            sampling: SamplingParams {
                temperature,
                top_k: p.top_k.map(|k| k as usize),
                top_p: p.top_p,
            },
            seed,
            stop: p.stop.clone(),
            logprobs: false,
            no_repeat_ngram_size: p
                .no_repeat_ngram_size
                .map(|n| n as usize)
                .unwrap_or(self.limits.default_no_repeat_ngram_size),
        })
    }

    /// Validates and tokenizes a request.
    pub fn validate(&self, req: &RationalizeRequest) -> Result<ValidRequest, ApiError> {
        let questions: Vec<String> = match (&req.question, &req.questions) {
            (Some(_), Some(_)) => {
                return Err(invalid("send either `question` or `questions`, not both"))
            }
            (None, None) => return Err(invalid("missing `question` (or `questions`)")),
            (Some(q), None) => vec![q.clone()],
            (None, Some(qs)) => {
                if qs.is_empty() {
                    return Err(invalid("`questions` is empty"));
                }
                if qs.len() > self.limits.max_client_batch_size {
                    return Err(invalid(format!(
                        "`questions` holds {} questions; at most {} are allowed",
                        qs.len(),
                        self.limits.max_client_batch_size
                    )));
                }
                qs.clone()
            }
        };
        for (i, q) in questions.iter().enumerate() {
            if q.trim().is_empty() {
                return Err(invalid(if questions.len() == 1 && req.question.is_some() {
                    "`question` is empty".to_string()
                } else {
                    format!("`questions[{i}]` is empty")
                }));
            }
        }
        let golds: Vec<Option<String>> = match &req.gold {
            None => vec![None; questions.len()],
            Some(GoldSpec::One(g)) if questions.len() == 1 => vec![Some(g.clone())],
            Some(GoldSpec::One(_)) => {
                return Err(invalid(
                    "`gold` must be a list with one answer per question",
                ))
            }
            Some(GoldSpec::Many(gs)) if gs.len() == questions.len() => {
                gs.iter().cloned().map(Some).collect()
            }
            Some(GoldSpec::Many(gs)) => {
                return Err(invalid(format!(
                    "`gold` has {} answers for {} questions",
                    gs.len(),
                    questions.len()
                )))
            }
        };
        let (prefix, control) = self.control(req.control.as_ref())?;
        let params = req.parameters.clone().unwrap_or_default();
        let base_seed = params.seed.unwrap_or_else(rand::random);
        let mut rows = Vec::with_capacity(questions.len());
        for (i, (question, gold)) in questions.into_iter().zip(golds).enumerate() {
            let ids = self
                .tokenizer
                .encode(&question)
                .map_err(|e| invalid(format!("cannot tokenize question {i}: {e}")))?;
            if ids.len() > self.limits.max_input_tokens {
                return Err(invalid(format!(
                    "question {i} is {} tokens long; this server allows at most {}",
                    ids.len(),
                    self.limits.max_input_tokens
                )));
            }
            rows.push(ValidRow {
                request: GenerationRequest {
                    input_ids: ids,
                    prefix: prefix.clone(),
                    params: self.params(&params, base_seed.wrapping_add(i as u64))?,
                },
                question,
                control: control.clone(),
                gold,
            });
        }
        Ok(ValidRequest {
            rows,
            score: req.score,
        })
    }
}
