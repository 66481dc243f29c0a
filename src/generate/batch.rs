//! A running batch of generations that advance in lockstep over one [`DecoderCache`].

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};

use super::params::{
    banned_ngram_tokens, FinishReason, GenerationOutput, GenerationParams, GenerationRequest,
};
use super::sampling::{log_softmax_at, Sampler};
use super::GenerateError;
use crate::model::{DecoderCache, EncoderInput, Mode, T5Model};
use crate::tokenize::TextTokenizer;

/// The caller's key for a row.
pub type RowId = u64;

/// What happened to a row during one step.
#[derive(Debug, Clone, PartialEq)]
pub enum RowEvent {
    /// A new token (also sent for the token that finishes the row).
    Token {
        /// The row.
        row: RowId,
        /// The token id.
        token: u32,
        /// Its log-probability, when the row asked for them.
        logprob: Option<f32>,
    },
    /// The row is done and has left the batch.
    Finished {
        /// The row.
        row: RowId,
        /// Its result.
        output: GenerationOutput,
    },
}

#[derive(Debug, Clone)]
struct Row {
    id: RowId,
    params: GenerationParams,
    sampler: Sampler,
    generated: Vec<u32>,
    logprobs: Vec<f32>,
}

/// Rows being generated together, with their cache.
///
/// Rows join with [`DecodingBatch::merge`] (after their own [`DecodingBatch::prefill`]),
/// leave when they finish, or are removed with [`DecodingBatch::cancel`].
#[derive(Debug)]
pub struct DecodingBatch {
    rows: Vec<Row>,
    cache: DecoderCache,
}

/// Whether the engine can run a request on `model` (input, `max_new_tokens`, token ids within
/// the vocabulary, sampling parameters); [`DecodingBatch::prefill`] checks every row with it.
pub fn check_request(model: &T5Model, req: &GenerationRequest) -> Result<(), GenerateError> {
    let vocab = model.config().vocab_size;
    if req.input_ids.is_empty() {
        return Err(GenerateError::InvalidRequest("empty input".into()));
    }
    if req.params.max_new_tokens == 0 {
        return Err(GenerateError::InvalidRequest(
            "max_new_tokens must be at least 1".into(),
        ));
    }
    if let Some(&bad) = req
        .input_ids
        .iter()
        .chain(&req.prefix)
        .find(|&&id| id as usize >= vocab)
    {
        return Err(GenerateError::InvalidRequest(format!(
            "token id {bad} is not below the model's vocab_size {vocab}"
        )));
    }
    let s = &req.params.sampling;
    if !s.temperature.is_finite() || s.temperature < 0.0 {
        return Err(GenerateError::InvalidRequest(
            "temperature must be a finite number >= 0".into(),
        ));
    }
    if let Some(p) = s.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(GenerateError::InvalidRequest(
                "top_p must be in (0, 1]".into(),
            ));
        }
    }
    if s.top_k == Some(0) {
        return Err(GenerateError::InvalidRequest(
            "top_k must be at least 1".into(),
        ));
    }
    Ok(())
}

impl DecodingBatch {
    /// Encodes the inputs, feeds the start token and the forced prefix, and chooses every
    /// row's first token. Rows whose prefixes differ in length are prefilled separately and
    /// then merged.
    pub fn prefill(
        model: &T5Model,
        tokenizer: &TextTokenizer,
        requests: Vec<(RowId, GenerationRequest)>,
    ) -> Result<(Self, Vec<RowEvent>), GenerateError> {
        for (_, r) in &requests {
            check_request(model, r)?;
        }
        let mut groups: BTreeMap<usize, Vec<(RowId, GenerationRequest)>> = BTreeMap::new();
        for (id, r) in requests {
            groups.entry(r.prefix.len()).or_default().push((id, r));
        }
        let mut batch: Option<DecodingBatch> = None;
        let mut events = Vec::new();
        for (_, group) in groups {
            let (b, ev) = Self::prefill_group(model, tokenizer, group)?;
            events.extend(ev);
            match &mut batch {
                None => batch = Some(b),
                Some(acc) => acc.merge(b)?,
            }
        }
        let batch = match batch {
            Some(b) => b,
            None => return Err(GenerateError::InvalidRequest("no rows to generate".into())),
        };
        Ok((batch, events))
    }

    fn prefill_group(
        model: &T5Model,
        tokenizer: &TextTokenizer,
        group: Vec<(RowId, GenerationRequest)>,
    ) -> Result<(Self, Vec<RowEvent>), GenerateError> {
        let dev = model.device();
        let inputs: Vec<Vec<u32>> = group.iter().map(|(_, r)| r.input_ids.clone()).collect();
        let enc = model.encode(
            &EncoderInput::from_rows(&inputs, model.config().pad_token_id, dev)?,
            Mode::Inference,
        )?;
        let prefix_len = group[0].1.prefix.len();
        let capacity = group
            .iter()
            .map(|(_, r)| 1 + prefix_len + r.params.max_new_tokens)
            .max()
            .unwrap_or(1);
        let mut cache = model.new_cache(&enc, capacity)?;
        let start = model.config().decoder_start();
        let mut dec_ids = Vec::with_capacity(group.len() * (1 + prefix_len));
        for (_, r) in &group {
            dec_ids.push(start);
            dec_ids.extend_from_slice(&r.prefix);
        }
        let dec = Tensor::from_vec(dec_ids, (group.len(), 1 + prefix_len), dev)?;
        let logits = model.decode_step(&dec, &mut cache)?;
        let rows = group
            .into_iter()
            .map(|(id, r)| Row {
                id,
                sampler: Sampler::new(r.params.sampling, r.params.seed),
                params: r.params,
                generated: Vec::new(),
                logprobs: Vec::new(),
            })
            .collect();
        let mut batch = DecodingBatch { rows, cache };
        let events = batch.advance(model, tokenizer, &logits)?;
        Ok((batch, events))
    }

    /// Rows still running.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when every row has finished.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Ids of the running rows, in batch order.
    pub fn row_ids(&self) -> Vec<RowId> {
        self.rows.iter().map(|r| r.id).collect()
    }

    /// The batch's cache (e.g. to inspect slot usage).
    pub fn cache(&self) -> &DecoderCache {
        &self.cache
    }

    /// Adds the rows of another batch (prefilled with [`DecodingBatch::prefill`]).
    pub fn merge(&mut self, other: DecodingBatch) -> Result<(), GenerateError> {
        self.cache.merge(other.cache)?;
        self.rows.extend(other.rows);
        Ok(())
    }

    /// Removes rows (e.g. whose client went away); unknown ids are ignored.
    pub fn cancel(&mut self, ids: &[RowId]) -> Result<(), GenerateError> {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&i| !ids.contains(&self.rows[i].id))
            .collect();
        self.retain(&keep)
    }

    fn retain(&mut self, keep: &[usize]) -> Result<(), GenerateError> {
        if keep.len() == self.rows.len() {
            return Ok(());
        }
        if keep.is_empty() {
            self.rows.clear();
            return Ok(());
        }
        self.cache.retain_rows(keep)?;
        let mut old: Vec<Option<Row>> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(Some)
            .collect();
        self.rows = keep
            .iter()
            .map(|&i| old[i].take().expect("row kept once"))
            .collect();
        Ok(())
    }

    /// Feeds every row's last token and chooses the next one. Finished rows leave the batch.
    pub fn step(
        &mut self,
        model: &T5Model,
        tokenizer: &TextTokenizer,
    ) -> Result<Vec<RowEvent>, GenerateError> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let last: Vec<u32> = self
            .rows
            .iter()
            .map(|r| {
                *r.generated
                    .last()
                    .expect("a running row has generated a token")
            })
            .collect();
        let ids = Tensor::from_vec(last, (self.rows.len(), 1), model.device())?;
        let logits = model.decode_step(&ids, &mut self.cache)?;
        self.advance(model, tokenizer, &logits)
    }

    /// Chooses each row's next token from `logits (B, V)`, records it, and removes the rows
    /// that finished.
    fn advance(
        &mut self,
        model: &T5Model,
        tokenizer: &TextTokenizer,
        logits: &Tensor,
    ) -> Result<Vec<RowEvent>, GenerateError> {
        let eos = model.config().eos_ids();
        let host_needed = self.rows.iter().any(|r| {
            !r.params.sampling.is_greedy() || r.params.logprobs || r.params.no_repeat_ngram_size > 0
        });
        let suppress_eos: Vec<bool> = self
            .rows
            .iter()
            .map(|r| r.generated.len() < r.params.min_new_tokens)
            .collect();
        // Greedy rows without log-probs only need the argmax: compute it on the device, and
        // a second one with EOS masked for the rows still under their `min_new_tokens`
        // (only B ids cross to the host, never the (B, V) logits).
        let (host, argmaxes) = if host_needed {
            (Some(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?), None)
        } else {
            let plain = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let chosen = if suppress_eos.iter().any(|&s| s) {
                let masked = logits
                    .broadcast_add(&model.eos_logit_mask()?)?
                    .argmax(D::Minus1)?
                    .to_vec1::<u32>()?;
                plain
                    .into_iter()
                    .zip(masked)
                    .zip(&suppress_eos)
                    .map(|((p, m), &s)| if s { m } else { p })
                    .collect()
            } else {
                plain
            };
            (None, Some(chosen))
        };
        let mut events = Vec::with_capacity(self.rows.len());
        let mut keep = Vec::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter_mut().enumerate() {
            let (token, logprob) = match (&host, &argmaxes) {
                (_, Some(a)) => (a[i], None),
                (Some(h), None) => {
                    let mut l = h[i].clone();
                    let lp_source = if row.params.logprobs {
                        Some(l.clone())
                    } else {
                        None
                    };
                    if suppress_eos[i] {
                        for &e in eos {
                            l[e as usize] = f32::NEG_INFINITY;
                        }
                    }
                    for t in banned_ngram_tokens(&row.generated, row.params.no_repeat_ngram_size) {
                        l[t as usize] = f32::NEG_INFINITY;
                    }
                    let t = row.sampler.choose(&l);
                    (t, lp_source.map(|src| log_softmax_at(&src, t)))
                }
                (None, None) => unreachable!("logits were read one way or the other"),
            };
            row.generated.push(token);
            if let Some(lp) = logprob {
                row.logprobs.push(lp);
            }
            events.push(RowEvent::Token {
                row: row.id,
                token,
                logprob,
            });
            match finish(row, token, eos, tokenizer)? {
                Some(output) => events.push(RowEvent::Finished {
                    row: row.id,
                    output,
                }),
                None => keep.push(i),
            }
        }
        self.retain(&keep)?;
        Ok(events)
    }
}

/// The row's output if `token` ends it.
fn finish(
    row: &Row,
    token: u32,
    eos: &[u32],
    tokenizer: &TextTokenizer,
) -> Result<Option<GenerationOutput>, GenerateError> {
    let logprobs = row.params.logprobs.then(|| row.logprobs.clone());
    let output = |text: String, reason| GenerationOutput {
        token_ids: row.generated.clone(),
        text,
        finish_reason: reason,
        logprobs: logprobs.clone(),
    };
    if !row.params.stop.is_empty() {
        let text = tokenizer.decode(&row.generated)?;
        if let Some(at) = find_stop(&text, &row.params.stop) {
            return Ok(Some(output(text[..at].to_string(), FinishReason::Stop)));
        }
    }
    let reason = if eos.contains(&token) {
        FinishReason::Eos
    } else if row.generated.len() >= row.params.max_new_tokens {
        FinishReason::Length
    } else {
        return Ok(None);
    };
    Ok(Some(output(tokenizer.decode(&row.generated)?, reason)))
}

/// Byte offset of the earliest stop string in `text`.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::find_stop;

    #[test]
    fn earliest_stop_string_wins() {
        let stops = vec!["answer".to_string(), "So".to_string(), String::new()];
        assert_eq!(find_stop("x. So the answer is", &stops), Some(3));
        assert_eq!(find_stop("nothing here", &stops), None);
    }
}
