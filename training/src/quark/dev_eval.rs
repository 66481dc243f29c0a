//! The evaluation harness of a MaRio run: decode a split with a control prefix, score every
//! output with the rewards and the further measures, write the per-question file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use mario::rewards::Reward;

use super::dev_scores::{write_dev_scores, DevScore};
use super::rewards::score_all;
use super::settings::MarioSettings;
use crate::data::Example;
use crate::decoding::Decoding;
use crate::eval::{evaluate_model, EvalOptions};

/// The evaluation harness of a MaRio run on one split (dev during the run, test in the
/// pipeline's last stage): the questions, the rewards, the further measures (the ground truth
/// of a generated world, empty elsewhere) and the folder the per-question files go to.
pub struct DevEval<'a> {
    /// The questions (with gold answers).
    pub dev: &'a [Example],
    /// The rewards (their means, and `dev_reward_mean` over the non-accuracy ones).
    pub rewards: &'a [Box<dyn Reward>],
    /// Further measures, scored and averaged but never part of `dev_reward_mean`.
    pub measures: Vec<Box<dyn Reward>>,
    /// `eval_limit`, and `eval_no_repeat_ngram_sizes` past the first.
    pub settings: &'a MarioSettings,
    /// The decoding (see [`crate::decoding`]): its n-gram blocking is the one reported as
    /// `dev_*`.
    pub decoding: Decoding,
    /// Where `<name>.jsonl` files go (see [`super::dev_scores`]).
    pub dir: PathBuf,
}

impl DevEval<'_> {
    /// Dev metrics with the given prefix, once per entry of `eval_no_repeat_ngram_sizes` (the
    /// first unsuffixed, the others as `dev_*_nr<N>`); each evaluation's outputs and scores go
    /// to `dev/<name>.jsonl` (`<name>-nr<N>.jsonl` for the others).
    pub fn all(
        &self,
        model: &mario::model::T5Model,
        tok: &mario::tokenize::TextTokenizer,
        prefix: &[u32],
        name: &str,
    ) -> Result<Vec<(String, f64)>> {
        let further = self.settings.eval_no_repeat_ngram_sizes.iter().skip(1);
        let sizes: Vec<usize> = std::iter::once(self.decoding.no_repeat_ngram_size.value)
            .chain(further.copied())
            .collect();
        let mut all = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let (file, suffix) = if i == 0 {
                (name.to_string(), String::new())
            } else {
                (format!("{name}-nr{n}"), format!("_nr{n}"))
            };
            let m = self.one(
                model,
                tok,
                prefix.to_vec(),
                n,
                &self.dir.join(format!("{file}.jsonl")),
            )?;
            all.extend(m.into_iter().map(|(k, v)| (format!("{k}{suffix}"), v)));
        }
        Ok(all)
    }

    /// Dev metrics with the given prefix and n-gram blocking: accuracy, format, diversity,
    /// every other reward's mean and every measure's mean. Every question's output and
    /// scores go to `save` (see [`super::dev_scores`]).
    fn one(
        &self,
        model: &mario::model::T5Model,
        tok: &mario::tokenize::TextTokenizer,
        prefix: Vec<u32>,
        no_repeat_ngram_size: usize,
        save: &Path,
    ) -> Result<Vec<(String, f64)>> {
        let s = self.settings;
        let opts = EvalOptions {
            max_new_tokens: self.decoding.max_new_tokens.value,
            limit: (s.eval_limit > 0).then_some(s.eval_limit),
            prefix,
            no_repeat_ngram_size,
            ..Default::default()
        };
        let (m, results) = evaluate_model(model, tok, self.dev, &opts)?;
        let mut out = vec![
            ("dev_accuracy".to_string(), m.accuracy),
            ("dev_format_valid".to_string(), m.format_valid_rate),
            ("dev_rationale_words".to_string(), m.rationale_words),
        ];
        let items: Vec<(String, String, String)> = results
            .iter()
            .map(|r| (r.question.clone(), r.output.clone(), r.gold.clone()))
            .collect();
        let scorers: Vec<&(dyn Reward + 'static)> = self
            .rewards
            .iter()
            .chain(&self.measures)
            .map(|r| r.as_ref())
            .collect();
        let scores = score_all(&scorers, &items)?;
        let rows: Vec<DevScore> = results
            .iter()
            .zip(&scores)
            .map(|(r, sc)| {
                let mut m: std::collections::BTreeMap<String, Option<f64>> = scorers
                    .iter()
                    .zip(sc)
                    .map(|(rw, v)| (rw.name().to_string(), *v))
                    .collect();
                m.insert("accuracy".into(), Some(f64::from(u8::from(r.correct))));
                DevScore {
                    question: r.question.clone(),
                    gold: r.gold.clone(),
                    output: r.output.clone(),
                    scores: m,
                }
            })
            .collect();
        write_dev_scores(save, &rows)?;
        let mut quantile_means = Vec::new();
        for (k, r) in scorers.iter().enumerate() {
            if r.name() == "accuracy" {
                continue;
            }
            let v: Vec<f64> = scores.iter().filter_map(|s| s[k]).collect();
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            if k < self.rewards.len() {
                quantile_means.push(mean);
            }
            out.push((format!("dev_{}", r.name()), mean));
        }
        if !quantile_means.is_empty() {
            out.push((
                "dev_reward_mean".into(),
                quantile_means.iter().sum::<f64>() / quantile_means.len() as f64,
            ));
        }
        Ok(out)
    }
}
