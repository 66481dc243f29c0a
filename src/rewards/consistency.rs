//! Consistency: how much the rationale raises the probability of the gold answer (Wiegreffe
//! et al. 2021, as MaRio uses it; method section C.4).
//!
//! Two answer models: I2O reads `explain <q'>`, IR2O reads `<q'> explanation: <rationale>`,
//! where `q'` is the question with `choice: ` before each answer choice. Each model scores every
//! choice label by the mean log-likelihood of its tokens (`</s>` included); a softmax over the
//! choices gives `P`. The reward is `P_IR2O(gold | q, r) − P_I2O(gold | q)`, in (−1, 1).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, D};

use super::{Reward, RewardError, RewardInput};
use crate::checkpoint::Checkpoint;
use crate::choices::{extract_choices, Choices};
use crate::model::{pad_rows, EncoderInput, EncoderOutput, Mode, ModelError, T5Model};
use crate::rationale::parse_output;
use crate::tokenize::TextTokenizer;

/// Folder names of the two answer models inside a checkpoint folder.
pub const I2O_DIR: &str = "consistency-i2o";
/// See [`I2O_DIR`].
pub const IR2O_DIR: &str = "consistency-ir2o";

/// `q'`: the question with `choice: ` before each choice; yes/no questions get
/// `": choice: no choice: yes"` appended (the released code's format).
pub fn question_with_choices(question: &str, choices: &Choices) -> String {
    if choices.texts.iter().all(String::is_empty) {
        let opts: Vec<String> = choices
            .labels
            .iter()
            .map(|l| format!("choice: {l}"))
            .collect();
        return format!("{}: {}", question.trim(), opts.join(" "));
    }
    let mut out = question.to_string();
    // insert from the end so earlier offsets stay valid
    let mut at: Vec<usize> = choices
        .labels
        .iter()
        .filter_map(|l| out.rfind(l.as_str()))
        .collect();
    at.sort_unstable();
    for pos in at.into_iter().rev() {
        out.insert_str(pos, "choice: ");
    }
    out
}

/// I2O input.
pub fn i2o_input(question: &str) -> String {
    format!(
        "explain {}",
        question_with_choices(question, &extract_choices(question))
    )
}

/// IR2O input.
pub fn ir2o_input(question: &str, rationale: &str) -> String {
    format!(
        "{} explanation: {}",
        question_with_choices(question, &extract_choices(question)),
        rationale.trim()
    )
}

/// Softmax of length-normalised log-likelihoods.
pub fn choice_probabilities(mean_log_likelihoods: &[f64]) -> Vec<f64> {
    let max = mean_log_likelihoods
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = mean_log_likelihoods
        .iter()
        .map(|x| (x - max).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Mean log-likelihood of each choice label (`</s>` included) given each input:
/// `out[i][c]` for `inputs[i]` and `labels[c]`.
pub fn mean_label_log_likelihoods(
    model: &T5Model,
    tok: &TextTokenizer,
    inputs: &[String],
    labels: &[String],
) -> candle_core::Result<Vec<Vec<f64>>> {
    let enc_err = |e: crate::tokenize::TokenizeError| candle_core::Error::msg(e.to_string());
    let label_ids: Vec<Vec<u32>> = labels
        .iter()
        .map(|l| tok.encode(l).map_err(enc_err))
        .collect::<candle_core::Result<_>>()?;
    let start = model.config().decoder_start();
    let mut out = Vec::with_capacity(inputs.len());
    let dev = model.device();
    let pad = tok.pad_id();
    for chunk in inputs.chunks(16) {
        // each input is encoded once; its encoder rows are then repeated, one per label, so
        // that the decoder reads one row per (input, label) pair
        let mut enc_rows = Vec::with_capacity(chunk.len());
        let mut dec_rows = Vec::new();
        let mut tgt_rows = Vec::new();
        for input in chunk {
            enc_rows.push(tok.encode(input).map_err(enc_err)?);
            for l in &label_ids {
                let mut d = vec![start];
                d.extend_from_slice(&l[..l.len() - 1]);
                dec_rows.push(d);
                tgt_rows.push(l.clone());
            }
        }
        // (chunk, S, D)
        let enc = model.encode(
            &EncoderInput::from_rows(&enc_rows, pad, dev)?,
            Mode::Inference,
        )?;
        let repeat: Vec<u32> = (0..chunk.len() as u32)
            .flat_map(|i| std::iter::repeat_n(i, label_ids.len()))
            .collect();
        // (chunk * labels, S, D)
        let enc = EncoderOutput {
            hidden: enc
                .hidden
                .index_select(&Tensor::new(repeat.as_slice(), dev)?, 0)?,
            lengths: repeat.iter().map(|&i| enc.lengths[i as usize]).collect(),
        };
        let (dec_flat, _) = pad_rows(&dec_rows, pad);
        let n = dec_rows.len();
        let t = dec_flat.len() / n;
        let logits = model.decode(
            &Tensor::from_vec(dec_flat, (n, t), dev)?,
            &enc,
            Mode::Inference,
        )?;
        let log_p = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
        let log_p: Vec<Vec<Vec<f32>>> = log_p.to_vec3()?;
        let mut row = 0;
        for _ in chunk {
            let mut per_label = Vec::with_capacity(labels.len());
            for _ in &label_ids {
                let target = &tgt_rows[row];
                let total: f64 = target
                    .iter()
                    .enumerate()
                    .map(|(pos, &id)| log_p[row][pos][id as usize] as f64)
                    .sum();
                per_label.push(total / target.len() as f64);
                row += 1;
            }
            out.push(per_label);
        }
    }
    Ok(out)
}

/// How many questions' I2O probabilities a [`ConsistencyScorer`] keeps; when full, the cache
/// is emptied and refilled (a long-running server cannot grow it without bound).
pub const I2O_CACHE_CAPACITY: usize = 65_536;

/// The two answer models.
#[derive(Debug)]
pub struct ConsistencyScorer {
    i2o: Checkpoint,
    ir2o: Checkpoint,
    /// I2O input (it depends on the question only) -> mean log-likelihood of each choice
    /// label. The same questions come back in every MaRio round, dev evaluation and sweep row.
    i2o_cache: Mutex<HashMap<String, Vec<f64>>>,
}

impl Clone for ConsistencyScorer {
    fn clone(&self) -> Self {
        Self {
            i2o: self.i2o.clone(),
            ir2o: self.ir2o.clone(),
            i2o_cache: Mutex::new(self.lock_cache().clone()),
        }
    }
}

impl ConsistencyScorer {
    /// Loads `consistency-i2o/` and `consistency-ir2o/` from a folder.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            i2o: Checkpoint::load(&dir.join(I2O_DIR), dtype, device)?,
            ir2o: Checkpoint::load(&dir.join(IR2O_DIR), dtype, device)?,
            i2o_cache: Mutex::new(HashMap::new()),
        })
    }

    /// From two loaded answer models.
    pub fn new(i2o: Checkpoint, ir2o: Checkpoint) -> Self {
        Self {
            i2o,
            ir2o,
            i2o_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Questions whose I2O probabilities are cached.
    pub fn cached_questions(&self) -> usize {
        self.lock_cache().len()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<f64>>> {
        // the map is only ever cleared or extended: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still usable
        self.i2o_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// I2O mean label log-likelihoods of `inputs`, from the cache where present; the others
    /// are computed in batches and cached.
    fn i2o_log_likelihoods(
        &self,
        inputs: &[String],
        labels: &[String],
    ) -> candle_core::Result<Vec<Vec<f64>>> {
        // hits copied out under the lock; each missing input listed once
        let mut out: Vec<Option<Vec<f64>>> = Vec::with_capacity(inputs.len());
        let mut missing: Vec<String> = Vec::new();
        {
            let cache = self.lock_cache();
            let mut listed = std::collections::HashSet::new();
            for input in inputs {
                let hit = cache.get(input).cloned();
                if hit.is_none() && listed.insert(input.as_str()) {
                    missing.push(input.clone());
                }
                out.push(hit);
            }
        }
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let computed =
            mean_label_log_likelihoods(&self.i2o.model, &self.i2o.tokenizer, &missing, labels)?;
        let fresh: HashMap<&str, &Vec<f64>> =
            missing.iter().map(String::as_str).zip(&computed).collect();
        let out = out
            .into_iter()
            .zip(inputs)
            .map(|(hit, input)| hit.unwrap_or_else(|| fresh[input.as_str()].clone()))
            .collect();
        let mut cache = self.lock_cache();
        if cache.len() + missing.len() > I2O_CACHE_CAPACITY {
            cache.clear();
        }
        cache.extend(missing.into_iter().zip(computed));
        Ok(out)
    }

    /// Scores every item in batches: items are grouped by their choice labels, and each
    /// answer model reads each group in batches of 16 inputs (padded batches give each row
    /// what it gets alone, so scores do not depend on the grouping).
    fn score_batched(&self, items: &[RewardInput<'_>]) -> candle_core::Result<Vec<Option<f64>>> {
        let mut out = vec![None; items.len()];
        // choice labels -> (item index, gold index)
        let mut groups: std::collections::BTreeMap<Vec<String>, Vec<(usize, usize)>> =
            std::collections::BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let Some(gold) = item.gold else { continue };
            let choices = extract_choices(item.question);
            if let Some(g) = choices.index_of(gold) {
                groups.entry(choices.labels).or_default().push((i, g));
            }
        }
        for (labels, members) in groups {
            let i2o_inputs: Vec<String> = members
                .iter()
                .map(|&(i, _)| i2o_input(items[i].question))
                .collect();
            let ir2o_inputs: Vec<String> = members
                .iter()
                .map(|&(i, _)| {
                    ir2o_input(items[i].question, &parse_output(items[i].output).rationale)
                })
                .collect();
            let a = self.i2o_log_likelihoods(&i2o_inputs, &labels)?;
            let b = mean_label_log_likelihoods(
                &self.ir2o.model,
                &self.ir2o.tokenizer,
                &ir2o_inputs,
                &labels,
            )?;
            for (k, &(i, g)) in members.iter().enumerate() {
                let p_i2o = choice_probabilities(&a[k]);
                let p_ir2o = choice_probabilities(&b[k]);
                out[i] = Some(p_ir2o[g] - p_i2o[g]);
            }
        }
        Ok(out)
    }
}

impl Reward for ConsistencyScorer {
    fn name(&self) -> &str {
        "consistency"
    }

    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        self.score_batched(items).map_err(|e| RewardError {
            reward: "consistency".into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_markers_follow_the_released_format() {
        let q = "Tommy slipped because _____ has more resistance. (A) marble floor (B) wet floor";
        assert_eq!(
            question_with_choices(q, &extract_choices(q)),
            "Tommy slipped because _____ has more resistance. choice: (A) marble floor choice: (B) wet floor"
        );
        let q = "Is Poseidon similar to Vulcan?";
        assert_eq!(
            question_with_choices(q, &extract_choices(q)),
            "Is Poseidon similar to Vulcan?: choice: no choice: yes"
        );
        assert!(i2o_input(q).starts_with("explain Is Poseidon"));
        assert!(ir2o_input(q, " r. ").ends_with(" explanation: r."));
    }

    /// A hand-computed case: mean log-likelihoods (-0.5, -1.5) for I2O and (-0.2, -2.2) for
    /// IR2O, gold = choice 0.
    #[test]
    fn consistency_arithmetic_on_a_hand_computed_case() {
        let p_i2o = choice_probabilities(&[-0.5, -1.5]);
        // softmax: e^-0.5 / (e^-0.5 + e^-1.5) = 1 / (1 + e^-1) = 0.7310585786
        assert!((p_i2o[0] - 0.731_058_578_6).abs() < 1e-9);
        let p_ir2o = choice_probabilities(&[-0.2, -2.2]);
        // 1 / (1 + e^-2) = 0.8807970780
        assert!((p_ir2o[0] - 0.880_797_078_0).abs() < 1e-9);
        let consistency = p_ir2o[0] - p_i2o[0];
        assert!((consistency - 0.149_738_499_4).abs() < 1e-9);
        assert!((p_i2o.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
