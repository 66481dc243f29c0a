//! Training a plausibility scorer in VERA's format from a teacher file (`mario-train
//! plausibility`).
//!
//! Positives are the teacher's non-empty rationales that led to the gold answer; negatives are
//! rationales that led to a wrong answer, positive rationales paired with another question,
//! and corrupted positives (words shuffled, a phrase repeated, or one word swapped for another
//! that the positives use after the same word: a fluent statement that is likely false). The scorer reads
//! `question + " " + rationale`; its head lives in three embedding rows added after the
//! vocabulary (weight, bias, temperature), as VERA keeps it, and `plausibility.json` says where.
//! Questions are split 90/10 (seeded) and the held-out AUC is reported.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, D};
use mario::model::{EncoderInput, Mode, T5Model};
use mario::rewards::knowledge_context::KnowledgeContext;
use mario::rewards::likelihood::{fit_calibration, LikelihoodScoring, TokenPooling};
use mario::rewards::plausibility::{last_token_states, PlausibilityHead, PlausibilityInput};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::TeacherRecord;
use crate::sft::truncate_input;
use crate::train::{Metrics, Selection, TrainTask, TrainableModel};

/// Tokens of a scorer input.
pub const MAX_TOKENS: usize = 128;

/// One labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// `question + " " + rationale` (what a VERA-style scorer reads).
    pub text: String,
    /// The question (what a likelihood scorer's encoder reads).
    pub question: String,
    /// The rationale (what a likelihood scorer's decoder scores).
    pub rationale: String,
    /// 1 plausible, 0 not.
    pub label: f32,
    /// Which kind of example (for reports).
    pub kind: &'static str,
}

/// `[plausibility_data] teacher_vague`: how [`build_examples`] labels a generated world's
/// teacher sample that reached the gold answer while stating no fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VagueLabel {
    /// A `teacher_vague` negative: the issue aims the vague flaw at plausibility as well as
    /// consistency.
    #[default]
    Negative,
    /// A positive, like any sample that reached the gold answer through true statements: it
    /// states nothing false. The plausibility and consistency rewards then no longer both rank
    /// vague outputs worst, so the two control tokens do not compete for the one behaviour.
    Positive,
}

/// Builds positives and negatives from teacher records; returns (train, held-out). With a
/// generated `world` (the records' `world.json`), every positive of a world question also gets
/// a `false_fact` negative: the question's rationale with one fact made false, as the teacher's
/// false-fact flaw writes it (the kind of error the issue asks the scorer to catch); and a
/// teacher sample that reached the gold answer but states a false fact is a
/// `teacher_false_fact` negative, not a positive, and one that states no fact at all a
/// `teacher_vague` negative (or a positive, with `vague` = [`VagueLabel::Positive`]).
pub fn build_examples(
    records: &[TeacherRecord],
    seed: u64,
    world: Option<&crate::world::World>,
    vague: VagueLabel,
) -> (Vec<Labelled>, Vec<Labelled>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut questions: Vec<&str> = records.iter().map(|r| r.question.as_str()).collect();
    questions.sort_unstable();
    questions.dedup();
    questions.shuffle(&mut rng);
    let held: std::collections::HashSet<&str> = questions
        .iter()
        .take(questions.len() / 10)
        .copied()
        .collect();
    let positives: Vec<&TeacherRecord> = records
        .iter()
        .filter(|r| !r.predicted_rationale.trim().is_empty() && r.predicted_label == r.gold_label)
        .collect();
    let followers = Followers::of(positives.iter().map(|r| r.predicted_rationale.as_str()));
    let truth = world.map(crate::world::truth::TruthIndex::new);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in records {
        let rat = r.predicted_rationale.trim();
        if rat.is_empty() {
            continue;
        }
        let dest = if held.contains(r.question.as_str()) {
            &mut test
        } else {
            &mut train
        };
        // in a generated world the truth is known: a teacher sample that reached the gold
        // answer through a false fact is not plausible, nor one that states no fact at all
        // (a vague guess: the issue aims that flaw at plausibility as well as consistency)
        let truth_of = truth.as_ref().and_then(|t| t.score(&r.question, rat, None));
        let right = r.predicted_label == r.gold_label;
        if right && truth_of.is_some_and(|s| s.fact_accuracy.is_some_and(|a| a < 1.0)) {
            dest.push(Labelled::new(&r.question, rat, 0.0, "teacher_false_fact"));
        } else if right
            && vague == VagueLabel::Negative
            && truth_of.is_some_and(|s| s.fact_accuracy.is_none())
        {
            dest.push(Labelled::new(&r.question, rat, 0.0, "teacher_vague"));
        } else if r.predicted_label == r.gold_label {
            dest.push(Labelled::new(&r.question, rat, 1.0, "positive"));
            // corrupted copies of the positive
            let mut words: Vec<&str> = rat.split_whitespace().collect();
            if words.len() >= 4 {
                words.shuffle(&mut rng);
                dest.push(Labelled::new(
                    &r.question,
                    &words.join(" "),
                    0.0,
                    "shuffled",
                ));
                let n = rat.split_whitespace().count();
                let take = (n / 2).max(2);
                let phrase: Vec<&str> = rat.split_whitespace().take(take).collect();
                let phrase = phrase.join(" ");
                dest.push(Labelled::new(
                    &r.question,
                    &format!("{phrase} {phrase} {phrase}"),
                    0.0,
                    "repeated",
                ));
            }
            // one word swapped for another seen after the same word: a fluent, likely false
            // statement ("made of mile." -> "made of veto.")
            if let Some(swapped) = followers.swap_one(rat, &mut rng) {
                dest.push(Labelled::new(&r.question, &swapped, 0.0, "swapped"));
            }
            if let Some(false_fact) =
                world.and_then(|w| w.false_fact_rationale(&r.question, &mut rng))
            {
                dest.push(Labelled::new(&r.question, &false_fact, 0.0, "false_fact"));
            }
            // the rationale of another question
            if positives.len() > 1 {
                let other = positives[rng.random_range(0..positives.len())];
                if other.question != r.question {
                    dest.push(Labelled::new(
                        &r.question,
                        other.predicted_rationale.trim(),
                        0.0,
                        "other_question",
                    ));
                }
            }
        } else {
            dest.push(Labelled::new(&r.question, rat, 0.0, "wrong_label"));
        }
    }
    (train, test)
}

impl Labelled {
    /// A labelled `(question, rationale)` pair.
    pub fn new(question: &str, rationale: &str, label: f32, kind: &'static str) -> Self {
        let (question, rationale) = (question.trim(), rationale.trim());
        Self {
            text: format!("{question} {rationale}"),
            question: question.to_string(),
            rationale: rationale.to_string(),
            label,
            kind,
        }
    }
}

/// For each word of the positive rationales, the distinct words seen right after it (in
/// first-seen order): what a one-word swap draws from.
struct Followers(std::collections::HashMap<String, Vec<String>>);

impl Followers {
    fn of<'a>(rationales: impl Iterator<Item = &'a str>) -> Self {
        let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in rationales {
            let words: Vec<&str> = r.split_whitespace().collect();
            for pair in words.windows(2) {
                let next = map.entry(pair[0].to_string()).or_default();
                if !next.iter().any(|w| w == pair[1]) {
                    next.push(pair[1].to_string());
                }
            }
        }
        Self(map)
    }

    /// `rationale` with one word (after the first) replaced by another word seen after the
    /// same previous word; `None` when no word has an alternative.
    fn swap_one(&self, rationale: &str, rng: &mut impl Rng) -> Option<String> {
        let mut words: Vec<String> = rationale.split_whitespace().map(String::from).collect();
        let candidates: Vec<(usize, Vec<&String>)> = (1..words.len())
            .filter_map(|i| {
                let alternatives: Vec<&String> = self
                    .0
                    .get(&words[i - 1])?
                    .iter()
                    .filter(|w| **w != words[i])
                    .collect();
                (!alternatives.is_empty()).then_some((i, alternatives))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (i, alternatives) = &candidates[rng.random_range(0..candidates.len())];
        words[*i] = alternatives[rng.random_range(0..alternatives.len())].clone();
        Some(words.join(" "))
    }
}

/// Keeps every positive and a seeded random subset of the negatives, at most
/// `negatives_per_positive` per positive (0 keeps all). `build_examples` makes about 3.5
/// negatives per positive; a scorer trained on that mix learns the prior first (its loss sat at
/// the prior's entropy on StrategyQA), and fewer negatives also make an epoch shorter. The
/// subset is drawn from all negatives alike, so every kind keeps its share.
pub fn balance(examples: Vec<Labelled>, negatives_per_positive: f64, seed: u64) -> Vec<Labelled> {
    if negatives_per_positive <= 0.0 {
        return examples;
    }
    let (pos, mut neg): (Vec<Labelled>, Vec<Labelled>) =
        examples.into_iter().partition(|l| l.label > 0.5);
    let keep = ((pos.len() as f64 * negatives_per_positive).round() as usize).min(neg.len());
    neg.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
    neg.truncate(keep);
    let mut out = pos;
    out.extend(neg);
    out.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    out
}

/// Area under the ROC curve (ties count half).
pub fn auc(scores: &[f64], labels: &[f32]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // average ranks (1-based) with ties
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    let pos = labels.iter().filter(|&&l| l > 0.5).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l > 0.5)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// `(B)` calibrated logits of token rows, differentiable through the encoder and the head rows.
pub fn head_logits(
    model: &T5Model,
    head: &PlausibilityHead,
    rows: &[Vec<u32>],
    pad: u32,
    mode: Mode,
) -> Result<Tensor> {
    let input = EncoderInput::from_rows(rows, pad, model.device())?;
    let enc = model.encode(&input, mode)?;
    let h = last_token_states(&enc.hidden, &enc.lengths)?; // (B, D)
    let emb = model.encoder().embedding();
    let w = emb.get(head.weight_row)?; // (D)
    let b = emb.get(head.bias_row)?.get(0)?;
    let t = emb.get(head.temperature_row)?.get(0)?;
    let logit = h.broadcast_mul(&w)?.sum(D::Minus1)?.broadcast_add(&b)?;
    Ok(logit.broadcast_div(&t)?)
}

/// Training the scorer.
pub struct PlausibilityTask {
    /// Token rows and labels for training.
    pub train: Vec<(Vec<u32>, f32)>,
    /// Held-out rows and labels.
    pub test: Vec<(Vec<u32>, f32)>,
    /// The kind of each held-out row (`positive`, `shuffled`, ...).
    pub test_kinds: Vec<&'static str>,
    /// The head.
    pub head: PlausibilityHead,
    /// Padding id.
    pub pad: u32,
    /// Device.
    pub device: Device,
}

impl PlausibilityTask {
    /// Tokenizes the examples and adds the head rows to `model` (weight ~ N(0, 0.02), bias 0,
    /// temperature 1).
    pub fn new(
        model: &mut TrainableModel,
        train: &[Labelled],
        test: &[Labelled],
        device: &Device,
    ) -> Result<Self> {
        if train.is_empty() || test.is_empty() {
            bail!("no plausibility examples (is the teacher file empty?)");
        }
        let ids = model.add_tokens(
            &[
                "<plausibility_w>".into(),
                "<plausibility_b>".into(),
                "<plausibility_t>".into(),
            ],
            0,
        )?;
        let head = PlausibilityHead {
            weight_row: ids[0] as usize,
            bias_row: ids[1] as usize,
            temperature_row: ids[2] as usize,
            input: PlausibilityInput::QuestionRationale,
            max_tokens: MAX_TOKENS,
        };
        {
            let data = model.varmap.data().lock().expect("varmap lock");
            let var = data.get("shared.weight").expect("shared weight");
            let w = var.as_tensor();
            let (v, d) = w.dims2()?;
            let mut all: Vec<f32> = w.flatten_all()?.to_vec1()?;
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            for k in 0..d {
                all[head.weight_row * d + k] = (rng.random::<f32>() - 0.5) * 0.04;
                all[head.bias_row * d + k] = 0.0;
                all[head.temperature_row * d + k] = if k == 0 { 1.0 } else { 0.0 };
            }
            var.set(&Tensor::from_vec(all, (v, d), w.device())?)?;
        }
        let tok = &model.tokenizer;
        let enc = |v: &[Labelled]| -> Result<Vec<(Vec<u32>, f32)>> {
            v.iter()
                .map(|l| Ok((truncate_input(tok.encode(&l.text)?, MAX_TOKENS), l.label)))
                .collect()
        };
        Ok(Self {
            train: enc(train)?,
            test: enc(test)?,
            test_kinds: test.iter().map(|l| l.kind).collect(),
            head,
            pad: tok.pad_id(),
            device: device.clone(),
        })
    }

    /// Held-out AUC of the current model: overall, then of positives against each kind of
    /// negative (`auc_<kind>`), which tells which corruptions the scorer detects.
    pub fn held_out_aucs(&self, model: &T5Model) -> Result<Metrics> {
        let mut scores = Vec::with_capacity(self.test.len());
        for chunk in self.test.chunks(64) {
            let rows: Vec<Vec<u32>> = chunk.iter().map(|r| r.0.clone()).collect();
            let l = head_logits(model, &self.head, &rows, self.pad, Mode::Inference)?;
            scores.extend(l.to_vec1::<f32>()?.into_iter().map(f64::from));
        }
        let labels: Vec<f32> = self.test.iter().map(|r| r.1).collect();
        Ok(aucs_by_kind(&scores, &labels, &self.test_kinds))
    }
}

/// AUC overall (`held_out_auc`), then of the positives against each kind of negative
/// (`auc_<kind>`, kinds in name order).
pub fn aucs_by_kind(scores: &[f64], labels: &[f32], kinds: &[&str]) -> Metrics {
    let mut out = vec![("held_out_auc".to_string(), auc(scores, labels))];
    let mut names: Vec<&str> = kinds.to_vec();
    names.sort_unstable();
    names.dedup();
    for kind in names.into_iter().filter(|k| *k != "positive") {
        let (s, l): (Vec<f64>, Vec<f32>) = scores
            .iter()
            .zip(labels)
            .zip(kinds)
            .filter(|(_, k)| **k == kind || **k == "positive")
            .map(|((s, l), _)| (*s, *l))
            .unzip();
        out.push((format!("auc_{kind}"), auc(&s, &l)));
    }
    out
}

/// `rationale` with every sentence after its first occurrence removed.
pub fn without_repeated_sentences(rationale: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    rationale
        .split_inclusive('.')
        .map(str::trim)
        .filter(|s| !s.is_empty() && seen.insert(s.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a likelihood scorer's model is fine-tuned on: every positive of `train` as
/// `(question, rationale)`, and again with its repeated sentences removed where that differs.
pub fn finetune_pairs(train: &[Labelled]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in train.iter().filter(|l| l.label > 0.5) {
        out.push((l.question.clone(), l.rationale.clone()));
        let once = without_repeated_sentences(&l.rationale);
        if once != l.rationale {
            out.push((l.question.clone(), once));
        }
    }
    out
}

/// A likelihood scorer fitted to labelled examples.
pub struct LikelihoodFit {
    /// What `plausibility.json` stores.
    pub scoring: LikelihoodScoring,
    /// Examples the calibration was fitted on.
    pub calibrated_on: usize,
    /// Held-out AUCs, overall first (see [`aucs_by_kind`]).
    pub aucs: Metrics,
}

/// Most training examples a likelihood scorer's calibration reads (a seeded subset beyond
/// this; two parameters need far fewer).
pub const MAX_CALIBRATION_EXAMPLES: usize = 4000;

/// What a likelihood scorer reads and how it pools: everything of a [`LikelihoodScoring`] but
/// its calibration.
#[derive(Debug, Clone, Default)]
pub struct ScorerReading {
    /// Read instead of each question (see [`LikelihoodScoring::prompt`]).
    pub prompt: Option<String>,
    /// Statements read before each question (see [`LikelihoodScoring::knowledge`]).
    pub knowledge: Option<KnowledgeContext>,
    /// How the token log-probabilities are pooled.
    pub pooling: TokenPooling,
}

/// Makes a likelihood scorer of `model`: pools each example's token log-probabilities as
/// `reading` says (each rationale read after its question, or what `reading` puts instead),
/// fits the calibration on (at most [`MAX_CALIBRATION_EXAMPLES`] of) `train` and reports the
/// AUCs on `test`.
pub fn fit_likelihood_scorer(
    model: &T5Model,
    tokenizer: &mario::tokenize::TextTokenizer,
    train: &[Labelled],
    test: &[Labelled],
    seed: u64,
    reading: ScorerReading,
) -> Result<LikelihoodFit> {
    if train.is_empty() || test.is_empty() {
        bail!("no plausibility examples (is the teacher file empty?)");
    }
    let mut scoring = LikelihoodScoring {
        pooling: reading.pooling,
        bias: 0.0,
        temperature: 1.0,
        max_question_tokens: MAX_TOKENS,
        max_rationale_tokens: MAX_TOKENS,
        prompt: reading.prompt,
        knowledge: reading.knowledge,
    };
    scoring
        .validate()
        .map_err(|e| anyhow::anyhow!("likelihood scorer: {e}"))?;
    // the pooling and token limits (the calibration is set below)
    let reader = scoring.clone();
    let pooled = |v: &[&Labelled]| -> Result<Vec<f64>> {
        let pairs: Vec<(&str, &str)> = v
            .iter()
            .map(|l| (l.question.as_str(), l.rationale.as_str()))
            .collect();
        // an empty rationale ranks below every other
        Ok(reader
            .pooled_log_probs(model, tokenizer, &pairs)?
            .into_iter()
            .map(|x| x.unwrap_or(-1e4))
            .collect())
    };
    let mut subset: Vec<&Labelled> = train.iter().collect();
    subset.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xca1b));
    subset.truncate(MAX_CALIBRATION_EXAMPLES);
    let xs = pooled(&subset)?;
    let labels: Vec<bool> = subset.iter().map(|l| l.label > 0.5).collect();
    let Some((bias, temperature)) = fit_calibration(&xs, &labels) else {
        bail!(
            "the model's token likelihoods do not separate plausible from implausible \
             rationales (no calibration with a positive slope): use `scorer = \"classifier\"`"
        );
    };
    scoring.bias = bias;
    scoring.temperature = temperature;
    let test_refs: Vec<&Labelled> = test.iter().collect();
    let scores = pooled(&test_refs)?;
    let labels: Vec<f32> = test.iter().map(|l| l.label).collect();
    let kinds: Vec<&str> = test.iter().map(|l| l.kind).collect();
    Ok(LikelihoodFit {
        scoring,
        calibrated_on: subset.len(),
        aucs: aucs_by_kind(&scores, &labels, &kinds),
    })
}

impl TrainTask for PlausibilityTask {
    fn lengths(&self) -> Vec<usize> {
        self.train.iter().map(|r| r.0.len()).collect()
    }

    fn loss(&self, model: &T5Model, indices: &[usize], mode: Mode) -> Result<(Tensor, usize)> {
        let rows: Vec<Vec<u32>> = indices.iter().map(|&i| self.train[i].0.clone()).collect();
        let y: Vec<f32> = indices.iter().map(|&i| self.train[i].1).collect();
        let tokens = rows.iter().map(Vec::len).sum();
        let logit = head_logits(model, &self.head, &rows, self.pad, mode)?;
        let y = Tensor::from_vec(y, indices.len(), &self.device)?;
        // binary cross-entropy with logits: max(l, 0) - l y + log(1 + exp(-|l|))
        let loss = ((logit.relu()? - (&logit * &y)?)?
            + (logit.abs()?.neg()?.exp()? + 1.0)?.log()?)?
        .mean_all()?;
        Ok((loss, tokens))
    }

    fn evaluate(&self, model: &TrainableModel) -> Result<Metrics> {
        self.held_out_aucs(&model.model)
    }

    fn selection(&self) -> Selection {
        Selection {
            metric: "held_out_auc".into(),
            higher_is_better: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_sentences_are_dropped_and_positives_are_fine_tuned_both_ways() {
        assert_eq!(
            without_repeated_sentences("A b is c. A b is c. C is hot."),
            "A b is c. C is hot."
        );
        assert_eq!(without_repeated_sentences("No period"), "No period");
        let train = [
            Labelled::new("Q1?", "A b is c. A b is c. C is hot.", 1.0, "positive"),
            Labelled::new("Q2?", "D is e.", 1.0, "positive"),
            Labelled::new("Q3?", "F is g. F is g.", 0.0, "wrong_label"),
        ];
        let pairs = finetune_pairs(&train);
        assert_eq!(
            pairs,
            vec![
                ("Q1?".into(), "A b is c. A b is c. C is hot.".into()),
                ("Q1?".into(), "A b is c. C is hot.".into()),
                ("Q2?".into(), "D is e.".into()),
            ]
        );
    }

    #[test]
    fn auc_of_perfect_random_and_tied_rankings() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[0.0, 1.0, 0.0, 1.0]), 0.5);
        assert!((auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn balance_keeps_every_positive_and_the_requested_share_of_negatives() {
        let ex = |label: f32, kind: &'static str, i: usize| {
            Labelled::new(kind, &i.to_string(), label, kind)
        };
        let mut all = Vec::new();
        for i in 0..100 {
            all.push(ex(1.0, "positive", i));
            for kind in ["shuffled", "repeated", "other_question"] {
                all.push(ex(0.0, kind, i));
            }
        }
        let b = balance(all.clone(), 1.5, 4);
        assert_eq!(b.iter().filter(|l| l.label > 0.5).count(), 100);
        assert_eq!(b.iter().filter(|l| l.label < 0.5).count(), 150);
        for kind in ["shuffled", "repeated", "other_question"] {
            let n = b.iter().filter(|l| l.kind == kind).count();
            assert!((20..=80).contains(&n), "{kind}: {n} of 150");
        }
        assert_eq!(balance(all.clone(), 0.0, 4), all, "0 keeps everything");
        assert_eq!(
            balance(all.clone(), 10.0, 4).len(),
            400,
            "never more than there are"
        );
    }

    #[test]
    fn examples_cover_every_negative_kind_and_split_by_question() {
        let rec = |q: &str, g: &str, p: &str, r: &str| TeacherRecord {
            question: q.into(),
            gold_label: g.into(),
            predicted_label: p.into(),
            predicted_rationale: r.into(),
        };
        let mut records = Vec::new();
        for i in 0..40 {
            records.push(rec(
                &format!("Q{i}?"),
                "yes",
                "yes",
                &format!("Fact number {i} is true and known."),
            ));
            records.push(rec(
                &format!("Q{i}?"),
                "yes",
                "no",
                &format!("Fact {i} is false."),
            ));
            records.push(rec(&format!("Q{i}?"), "yes", "", ""));
        }
        let (train, test) = build_examples(&records, 3, None, VagueLabel::Negative);
        let kinds: std::collections::HashSet<&str> = train.iter().map(|l| l.kind).collect();
        for k in [
            "positive",
            "wrong_label",
            "shuffled",
            "repeated",
            "swapped",
            "other_question",
        ] {
            assert!(kinds.contains(k), "{k} missing");
        }
        let q = |l: &Labelled| l.text.split('?').next().unwrap().to_string();
        let train_q: std::collections::HashSet<String> = train.iter().map(q).collect();
        assert!(!test.is_empty());
        assert!(
            test.iter().all(|l| !train_q.contains(&q(l))),
            "held-out questions are unseen"
        );
    }

    #[test]
    fn a_swap_replaces_one_word_by_one_seen_after_the_same_word() {
        let corpus = [
            "A rino is made of mile. Mile is red.",
            "A kemo is made of veto. Veto is blue.",
        ];
        let followers = Followers::of(corpus.iter().copied());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let s = followers.swap_one(corpus[0], &mut rng).unwrap();
            let (a, b): (Vec<&str>, Vec<&str>) = (
                corpus[0].split_whitespace().collect(),
                s.split_whitespace().collect(),
            );
            let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            assert_eq!(changed.len(), 1, "{s}");
            let i = changed[0];
            // the new word follows the same word somewhere in the corpus
            assert!(
                corpus
                    .iter()
                    .any(|c| c.contains(&format!("{} {}", a[i - 1], b[i]))),
                "{s}"
            );
            seen.insert(s);
        }
        // "A" -> kemo, "of" -> veto., "is" -> blue. ("Mile" and "made" have no alternative)
        assert!(
            seen.contains("A kemo is made of mile. Mile is red."),
            "{seen:?}"
        );
        assert!(
            seen.contains("A rino is made of veto. Mile is red."),
            "{seen:?}"
        );
        assert!(
            seen.contains("A rino is made of mile. Mile is blue."),
            "{seen:?}"
        );
        assert_eq!(
            Followers::of(["one two"].into_iter()).swap_one("one two", &mut rng),
            None
        );
    }
}
