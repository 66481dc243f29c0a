//! `mario-train mario`: the multi-reward QUARK loop (method section D).
//!
//! Each round: sample outputs for the training questions (round 0 from the SFT reference
//! without control tokens, later from the policy with the best control tokens), keep those
//! with "So the answer is", score every reward, add them to the pool (round 0 also adds the
//! silver training data), cut every reward's scores over the whole pool into quantile bins,
//! then train the policy on the pool with the bins' control tokens as its decoder prefix and
//! the loss NLL + β·KL(policy ‖ reference) − α·entropy over response tokens. The policy starts
//! from the SFT model (the released code's README forgets `--init-model`; see method G.2.1).
//! After each round the policy is evaluated on dev with the best control tokens; `best/` keeps
//! the round with the best dev criterion, `last/` (with the pool) lets a run resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use mario::checkpoint::{Checkpoint, GENERATION_CONFIG_FILE};
use mario::control::{ControlTokens, RewardKind, CONTROL_FILE};
use mario::generate::{generate, GenerationParams, GenerationRequest, SamplingParams};
use mario::model::{DropoutRng, DropoutRngState, Mode};
use mario::rationale::ANSWER_PHRASE;
use mario::rewards::{
    ConsistencyScorer, Diversity, PlausibilityScorer, Reward, RewardInput, TaskAccuracy,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dev_scores::{dev_scores_dir, write_dev_scores, DevScore};
use super::loss::quark_loss;
use super::pool::{DataPool, PoolItem, Source};
use super::schedule::{on_policy_share, round_steps, PoolPlan};
use crate::data::{load_examples, Example};
use crate::decoding::Decoding;
use crate::eval::{evaluate_model, EvalOptions};
use crate::report::plot::{save_charts, Chart, Series};
use crate::sft::truncate_input;
use crate::train::loss::{forward, Seq2SeqBatch, Seq2SeqExample};
use crate::train::optim::clip_factor;
use crate::train::{AdamW, AdamWConfig, LinearSchedule, TrainableModel};

/// How rewards enter the control prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Every reward's token from the first round.
    Canonical,
    /// Rewards switched on one at a time, every `stage_rounds` rounds, in order.
    Additive,
}

/// Settings of the MaRio stage (the `[mario]` section of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarioSettings {
    /// Rewards in control-prefix order: `diversity`, `accuracy`, `consistency`,
    /// `plausibility`.
    pub rewards: Vec<String>,
    /// Bins of each quantile reward.
    pub bins: usize,
    /// Sampling rounds.
    pub rounds: u32,
    /// Policy updates after each sampling round; 0 = sized from the pool, so that every pool
    /// item is drawn `passes_per_round` times on average (see [`round_steps`]).
    pub steps_per_round: u64,
    /// Mean draws of each pool item per round when `steps_per_round` is 0 (the released
    /// code's schedule draws each about 2.3 times).
    pub passes_per_round: f64,
    /// Questions sampled per round (0 = every unique training question, so that on-policy
    /// samples outgrow the silver data; see [`on_policy_share`]).
    pub questions_per_round: usize,
    /// Samples per question per round.
    pub rollouts: usize,
    /// Nucleus sampling mass (paper: 0.7).
    pub top_p: f64,
    /// Sampling temperature.
    pub temperature: f64,
    /// Most new tokens of a sample and of a dev evaluation [the SFT checkpoint's
    /// generation_config.json, else 128] (see [`crate::decoding`]).
    pub max_new_tokens: Option<usize>,
    /// n-gram blocking while sampling the pool (0 = plain nucleus sampling, the default:
    /// blocking makes the samples off-policy and removes the repetition the diversity reward
    /// exists to score).
    pub sample_no_repeat_ngram_size: usize,
    /// n-gram blocking of each dev evaluation: the first entry is the one reported as
    /// `dev_*` and used for selection, the others are logged as `dev_*_nr<N>` [empty: the SFT
    /// checkpoint's generation_config.json, else 0].
    pub eval_no_repeat_ngram_sizes: Vec<usize>,
    /// Encoder inputs are cut to this many tokens.
    pub max_input_tokens: usize,
    /// Pool items with longer outputs are not trained on.
    pub max_target_tokens: usize,
    /// Pool items per update.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up updates.
    pub warmup_steps: u64,
    /// Gradient-norm clip (paper: 1.0).
    pub max_grad_norm: f64,
    /// β, the KL weight (paper: 0.1).
    pub kl_coef: f64,
    /// α, the entropy weight (paper: 0).
    pub entropy_coef: f64,
    /// Dropout of the policy while training (default 0, as the released policy trains: with
    /// dropout the KL term is never 0 and the control tokens compete with noise).
    pub dropout: f64,
    /// CANONICAL or ADDITIVE.
    pub variant: Variant,
    /// ADDITIVE: rounds between switching on the next reward.
    pub stage_rounds: u32,
    /// Start the policy from the SFT model (true, default) or from `--init`.
    pub policy_from_sft: bool,
    /// Dev metric that picks `best/` (higher is better), e.g. `dev_accuracy`,
    /// `dev_plausibility`, or `dev_reward_mean` (mean of the quantile rewards' dev means).
    pub selection: String,
    /// Dev questions per evaluation (0 = all).
    pub eval_limit: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for MarioSettings {
    fn default() -> Self {
        Self {
            rewards: vec![
                "consistency".into(),
                "accuracy".into(),
                "plausibility".into(),
                "diversity".into(),
            ],
            bins: 5,
            rounds: 13,
            steps_per_round: 0,
            passes_per_round: 2.0,
            questions_per_round: 0,
            rollouts: 1,
            top_p: 0.7,
            temperature: 1.0,
            max_new_tokens: None,
            sample_no_repeat_ngram_size: 0,
            eval_no_repeat_ngram_sizes: Vec::new(),
            max_input_tokens: 256,
            max_target_tokens: 192,
            batch_size: 4,
            lr: 3e-5,
            warmup_steps: 1000,
            max_grad_norm: 1.0,
            kl_coef: 0.1,
            entropy_coef: 0.0,
            dropout: 0.0,
            variant: Variant::Canonical,
            stage_rounds: 1,
            policy_from_sft: true,
            selection: "dev_accuracy".into(),
            eval_limit: 0,
            seed: 1,
        }
    }
}

/// Where the reward models are.
#[derive(Debug, Clone, Default)]
pub struct RewardModels {
    /// Folder with `consistency-i2o/` and `consistency-ir2o/`.
    pub consistency: Option<PathBuf>,
    /// Plausibility scorer folder.
    pub plausibility: Option<PathBuf>,
}

/// Instantiates the named rewards.
pub fn build_rewards(
    names: &[String],
    models: &RewardModels,
    device: &Device,
) -> Result<Vec<Box<dyn Reward>>> {
    names
        .iter()
        .map(|n| -> Result<Box<dyn Reward>> {
            Ok(match n.as_str() {
                "diversity" => Box::new(Diversity),
                "accuracy" => Box::new(TaskAccuracy),
                "consistency" => {
                    let dir = models
                        .consistency
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `consistency` needs --consistency DIR"))?;
                    Box::new(ConsistencyScorer::load(dir, DType::F32, device)?)
                }
                "plausibility" => {
                    let dir = models
                        .plausibility
                        .as_ref()
                        .ok_or_else(|| anyhow!("reward `plausibility` needs --plausibility DIR"))?;
                    Box::new(PlausibilityScorer::load(dir, DType::F32, device)?)
                }
                other => bail!(
                    "unknown reward `{other}` (diversity, accuracy, consistency, plausibility)"
                ),
            })
        })
        .collect()
}

/// The control table for the settings.
pub fn control_table(s: &MarioSettings) -> ControlTokens {
    let spec: Vec<(&str, RewardKind, usize)> = s
        .rewards
        .iter()
        .map(|n| {
            if n == "accuracy" {
                (n.as_str(), RewardKind::Binary, 2)
            } else {
                (n.as_str(), RewardKind::Quantile, s.bins)
            }
        })
        .collect();
    ControlTokens::ordered(&spec)
}

/// Rewards whose tokens are in the prefix at `round` (all for CANONICAL).
pub fn active_rewards(s: &MarioSettings, round: u32) -> usize {
    match s.variant {
        Variant::Canonical => s.rewards.len(),
        Variant::Additive => ((round / s.stage_rounds.max(1)) as usize + 1).min(s.rewards.len()),
    }
}

/// Scores outputs with every reward: `out[i][k]`.
pub fn score_all<R: std::ops::Deref<Target = dyn Reward>>(
    rewards: &[R],
    items: &[(String, String, String)],
) -> Result<Vec<Vec<Option<f64>>>> {
    let inputs: Vec<RewardInput<'_>> = items
        .iter()
        .map(|(q, text, gold)| RewardInput {
            question: q,
            output: text,
            gold: Some(gold),
        })
        .collect();
    let mut out = vec![Vec::with_capacity(rewards.len()); items.len()];
    for r in rewards {
        let scores = r.score(&inputs)?;
        for (o, s) in out.iter_mut().zip(scores) {
            o.push(s);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MarioState {
    /// Rounds completed (sampled, trained and evaluated).
    rounds_done: u32,
    step: u64,
    best: Option<(f64, u32)>,
    dropout: DropoutRngState,
    settings: MarioSettings,
}

/// Inputs of a run.
pub struct MarioRun<'a> {
    /// Settings.
    pub settings: MarioSettings,
    /// The SFT checkpoint (reference, and the policy's start).
    pub sft: PathBuf,
    /// Another starting point when `policy_from_sft` is false.
    pub init: Option<PathBuf>,
    /// Training split files.
    pub train_files: Vec<PathBuf>,
    /// Dev split files.
    pub dev_files: Vec<PathBuf>,
    /// Reward models.
    pub reward_models: RewardModels,
    /// Run directory.
    pub out: PathBuf,
    /// Continue a run.
    pub resume: bool,
    /// Device.
    pub device: &'a Device,
    /// Progress messages.
    pub progress: bool,
}

/// Copies the SFT checkpoint's decoding defaults (`generation_config.json`), when it has them,
/// into a saved MaRio checkpoint, so that the sweep and the server decode it like its dev
/// evaluations.
fn copy_generation_config(sft: &Checkpoint, dir: &Path) -> Result<()> {
    let gen = sft.dir.join(GENERATION_CONFIG_FILE);
    if gen.is_file() {
        std::fs::copy(&gen, dir.join(GENERATION_CONFIG_FILE))
            .with_context(|| format!("copying {}", gen.display()))?;
    }
    Ok(())
}

fn sample_outputs(
    model: &mario::model::T5Model,
    tok: &mario::tokenize::TextTokenizer,
    questions: &[&Example],
    prefix: &[u32],
    s: &MarioSettings,
    max_new_tokens: usize,
    seed: u64,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for chunk in questions.chunks(32) {
        let mut reqs = Vec::new();
        for (i, ex) in chunk.iter().enumerate() {
            let ids = truncate_input(tok.encode(&ex.question)?, s.max_input_tokens);
            for r in 0..s.rollouts.max(1) {
                reqs.push(GenerationRequest {
                    input_ids: ids.clone(),
                    prefix: prefix.to_vec(),
                    params: GenerationParams {
                        max_new_tokens,
                        sampling: SamplingParams {
                            temperature: s.temperature,
                            top_k: None,
                            top_p: Some(s.top_p),
                        },
                        seed: seed
                            .wrapping_mul(1_000_003)
                            .wrapping_add((out.len() + i * s.rollouts.max(1) + r) as u64),
                        no_repeat_ngram_size: s.sample_no_repeat_ngram_size,
                        ..Default::default()
                    },
                });
            }
        }
        let gens = generate(model, tok, &reqs)?;
        let mut g = gens.into_iter();
        for ex in chunk {
            for _ in 0..s.rollouts.max(1) {
                let o = g.next().expect("one output per request");
                out.push((ex.question.clone(), o.text, ex.answer.clone()));
            }
        }
    }
    Ok(out)
}

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

fn log_line(path: &Path, v: serde_json::Value) -> Result<()> {
    crate::jsonl::append_one(path, &v)
}

/// The QUARK loss of one batch of pool rows: the policy reads each row's control prefix (its
/// first `active` tokens) in `mode`, the frozen reference reads the same rows without it, in
/// inference mode.
#[allow(clippy::too_many_arguments)]
pub fn step_loss(
    policy: &mario::model::T5Model,
    reference: &mario::model::T5Model,
    rows: &[&Seq2SeqExample],
    active: usize,
    s: &MarioSettings,
    mode: Mode<'_>,
    start_id: u32,
    pad: u32,
) -> Result<super::loss::QuarkLoss> {
    let device = policy.device();
    let batch = Seq2SeqBatch::new(rows, start_id, pad, device)?;
    let (_, pol_logits) = forward(policy, &batch, mode)?;
    let plain: Vec<Seq2SeqExample> = rows
        .iter()
        .map(|e| Seq2SeqExample {
            prefix: Vec::new(),
            ..(*e).clone()
        })
        .collect();
    let plain_refs: Vec<&Seq2SeqExample> = plain.iter().collect();
    let ref_batch = Seq2SeqBatch::new(&plain_refs, start_id, pad, device)?;
    let (_, ref_logits) = forward(reference, &ref_batch, Mode::Inference)?;
    let t = ref_batch.labels.dim(1)?;
    let labels = batch.labels.narrow(1, active, t)?;
    let mask = batch.loss_mask.narrow(1, active, t)?;
    quark_loss(
        &pol_logits,
        &ref_logits.detach(),
        &labels,
        &mask,
        active,
        s.kl_coef,
        s.entropy_coef,
    )
}

/// Runs (or resumes) the loop; returns the metrics log path.
pub fn run_mario(run: MarioRun<'_>) -> Result<PathBuf> {
    let s = run.settings.clone();
    let out = &run.out;
    std::fs::create_dir_all(out)?;
    let (last, best, pool_path, metrics_path) = (
        out.join("last"),
        out.join("best"),
        out.join("pool.jsonl"),
        out.join("metrics.jsonl"),
    );
    let state_path = last.join("mario_state.json");
    let dev_ = run.device;
    let table = control_table(&s);
    let rewards = build_rewards(&s.rewards, &run.reward_models, dev_)?;
    let reference = Checkpoint::load(&run.sft, DType::F32, dev_)
        .with_context(|| format!("loading the SFT reference {}", run.sft.display()))?;
    let mut train_examples: Vec<Example> = Vec::new();
    for f in &run.train_files {
        train_examples.extend(load_examples(f)?);
    }
    let mut dev: Vec<Example> = Vec::new();
    for f in &run.dev_files {
        dev.extend(load_examples(f)?);
    }
    // the SFT checkpoint's generation_config.json < [mario]
    let decoding = Decoding::resolve(&reference.generation, &(&s).into(), &Default::default());
    tracing::info!("dev decoding: {}", decoding.describe(1));
    let dev_eval = DevEval {
        dev: &dev,
        rewards: &rewards,
        measures: crate::world::truth::truth_rewards_for(&run.dev_files)?,
        settings: &s,
        decoding,
        dir: dev_scores_dir(out),
    };
    // unique questions, in file order
    let mut seen = std::collections::HashSet::new();
    let questions: Vec<&Example> = train_examples
        .iter()
        .filter(|e| seen.insert(e.question.clone()))
        .collect();

    let (policy, mut state, mut pool) = if run.resume {
        if !state_path.is_file() {
            bail!("--resume: {} has no checkpoint", state_path.display());
        }
        let state: MarioState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)?;
        let policy = TrainableModel::load(&last, dev_)?;
        let mut pool = DataPool::load(&pool_path)?;
        pool.items.retain(|it| it.round < state.rounds_done);
        crate::jsonl::write(&pool_path, &pool.items)?;
        (policy, state, pool)
    } else {
        if state_path.is_file() {
            bail!(
                "{} already holds a run: pass --resume or choose another --out",
                out.display()
            );
        }
        for p in [&pool_path, &metrics_path] {
            if p.exists() {
                std::fs::remove_file(p)?;
            }
        }
        let start = if s.policy_from_sft {
            run.sft.clone()
        } else {
            run.init
                .clone()
                .ok_or_else(|| anyhow!("policy_from_sft = false needs --init DIR"))?
        };
        let mut policy = TrainableModel::load(&start, dev_)?;
        policy.add_tokens(&table.all_tokens(), s.seed)?;
        let state = MarioState {
            rounds_done: 0,
            step: 0,
            best: None,
            dropout: DropoutRngState {
                seed: s.seed,
                word_pos: 0,
            },
            settings: s.clone(),
        };
        // the SFT model's own dev metrics, in the same harness (the round-0 baseline)
        let m = dev_eval.all(&reference.model, &reference.tokenizer, &[], "sft")?;
        let mut line = json!({"round": -1, "step": 0, "kind": "eval", "model": "sft",
            "decoding": dev_eval.decoding.describe(1)});
        for (k, v) in &m {
            line[k] = json!(v);
        }
        log_line(&metrics_path, line)?;
        tracing::info!("SFT reference on dev: {m:?}");
        (policy, state, DataPool::default())
    };
    std::fs::write(
        out.join(CONTROL_FILE),
        serde_json::to_string_pretty(&table)? + "\n",
    )?;

    let plan = PoolPlan {
        silver: train_examples
            .iter()
            .filter(|e| e.rationale.is_some())
            .count(),
        questions: questions.len(),
    };
    let steps = round_steps(&s, plan);
    let total_steps: u64 = steps.iter().sum();
    tracing::info!(
        rounds = s.rounds,
        total_steps,
        "plan: {} samples a round; on-policy share of the pool {:.0} % after round 0, {:.0} % \
         after the last; updates per round {steps:?}",
        plan.sampled_per_round(&s),
        100.0 * on_policy_share(&s, plan, 0),
        100.0 * on_policy_share(&s, plan, s.rounds.saturating_sub(1)),
    );
    let schedule = LinearSchedule {
        peak: s.lr,
        warmup_steps: s.warmup_steps,
        total_steps,
    };
    let mut opt = AdamW::new(
        policy.vars(),
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    if run.resume {
        opt.load(&last.join("optimizer.safetensors"))?;
    }
    let dropout = DropoutRng::restore(s.dropout, state.dropout);
    let prefix_of = |bins: &[usize],
                     active: usize,
                     tok: &mario::tokenize::TextTokenizer|
     -> Vec<u32> { table.prefix_ids(bins, tok)[..active].to_vec() };

    for round in state.rounds_done..s.rounds {
        let t_round = Instant::now();
        let active = active_rewards(&s, round);
        // 1. sample
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed.wrapping_add(round as u64));
        let mut qs = questions.clone();
        qs.shuffle(&mut rng);
        if s.questions_per_round > 0 {
            qs.truncate(s.questions_per_round);
        }
        let best_bins = vec![0usize; table.rewards.len()];
        // the previous stage's prefix length is used for sampling when a new reward switches on
        let sample_active = if round > 0 {
            active_rewards(&s, round - 1)
        } else {
            active
        };
        let sampled = if round == 0 {
            sample_outputs(
                &reference.model,
                &reference.tokenizer,
                &qs,
                &[],
                &s,
                dev_eval.decoding.max_new_tokens.value,
                s.seed,
            )?
        } else {
            let prefix = prefix_of(&best_bins, sample_active, &policy.tokenizer);
            sample_outputs(
                &policy.model,
                &policy.tokenizer,
                &qs,
                &prefix,
                &s,
                dev_eval.decoding.max_new_tokens.value,
                s.seed.wrapping_add(round as u64),
            )?
        };
        let n_sampled = sampled.len();
        let mut items: Vec<(String, String, String)> = sampled
            .into_iter()
            .filter(|(_, t, _)| t.contains(ANSWER_PHRASE))
            .collect();
        let n_valid = items.len();
        let source = if round == 0 {
            Source::Reference
        } else {
            Source::Policy
        };
        let mut sources = vec![source; items.len()];
        if round == 0 {
            for ex in &train_examples {
                if let Some(t) = ex.target() {
                    items.push((ex.question.clone(), t, ex.answer.clone()));
                    sources.push(Source::Silver);
                }
            }
        }
        // 2. score and add to the pool
        let scores = score_all(&rewards, &items)?;
        let new: Vec<PoolItem> = items
            .into_iter()
            .zip(scores)
            .zip(sources)
            .map(|(((q, text, gold), scores), source)| PoolItem {
                question: q,
                gold,
                text,
                scores,
                round,
                source,
            })
            .collect();
        pool.extend(new, &pool_path)?;
        let means = pool.round_means(round, table.rewards.len());
        let mut line = json!({"round": round, "step": state.step, "kind": "sample",
            "sampled": n_sampled, "valid": n_valid, "pool": pool.items.len()});
        for (r, (m, n)) in table.rewards.iter().zip(&means) {
            line[format!("sample_{}", r.name)] = json!(m);
            line[format!("sample_{}_n", r.name)] = json!(n);
        }
        log_line(&metrics_path, line)?;
        tracing::info!(
            round,
            sampled = n_sampled,
            valid = n_valid,
            pool = pool.items.len(),
            "sampled"
        );

        // 3. bins over the whole pool -> training examples
        let bins = pool.bins(&table, s.seed.wrapping_add(u64::from(round)));
        let mut line = json!({"round": round, "step": state.step, "kind": "bins"});
        for (name, c) in bins.rewards.iter().zip(&bins.counts) {
            line[format!("bins_{name}")] = json!(c);
        }
        log_line(&metrics_path, line)?;
        tracing::info!(
            round,
            "items per bin (best first): {}",
            bins.rewards
                .iter()
                .zip(&bins.counts)
                .map(|(n, c)| format!("{n} {c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        bins.ensure_no_empty_bin()
            .with_context(|| format!("round {round}"))?;
        let mut train: Vec<Seq2SeqExample> = Vec::new();
        let mut cache: HashMap<String, Vec<u32>> = HashMap::new();
        for (it, b) in pool.items.iter().zip(&bins.items) {
            let Some(b) = b else { continue };
            let input_ids = match cache.get(&it.question) {
                Some(ids) => ids.clone(),
                None => {
                    let ids =
                        truncate_input(policy.tokenizer.encode(&it.question)?, s.max_input_tokens);
                    cache.insert(it.question.clone(), ids.clone());
                    ids
                }
            };
            let target_ids = policy.tokenizer.encode(&it.text)?;
            if target_ids.len() > s.max_target_tokens {
                continue;
            }
            train.push(Seq2SeqExample {
                input_ids,
                prefix: prefix_of(b, active, &policy.tokenizer),
                target_ids,
            });
        }
        if train.is_empty() {
            bail!("round {round}: no pool item has every reward's score");
        }
        // 4. train
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let mut cursor = 0;
        let (mut sum_nll, mut sum_kl, mut n_log) = (0f64, 0f64, 0usize);
        let pad = policy.tokenizer.pad_id();
        let start_id = policy.config.decoder_start();
        let t_train = std::time::Instant::now();
        let (mut window_tokens, mut t_window) = (0usize, std::time::Instant::now());
        for _ in 0..steps[round as usize] {
            let mut rows = Vec::with_capacity(s.batch_size);
            for _ in 0..s.batch_size.max(1) {
                if cursor == order.len() {
                    order.shuffle(&mut rng);
                    cursor = 0;
                }
                rows.push(&train[order[cursor]]);
                cursor += 1;
            }
            window_tokens += rows.iter().map(|e| e.tokens()).sum::<usize>();
            let l = step_loss(
                &policy.model,
                &reference.model,
                &rows,
                active,
                &s,
                Mode::Training(&dropout),
                start_id,
                pad,
            )?;
            if !l.nll.is_finite() || !l.kl.is_finite() {
                bail!(
                    "round {round}: the loss became non-finite at step {} (nll {}, kl {})",
                    state.step,
                    l.nll,
                    l.kl
                );
            }
            let grads = l.total.backward()?;
            let norm = opt.grad_norm(&grads)?;
            opt.step(
                &grads,
                schedule.lr(state.step),
                clip_factor(norm, s.max_grad_norm),
            )?;
            state.step += 1;
            sum_nll += l.nll;
            sum_kl += l.kl;
            n_log += 1;
            if state.step % 20 == 0 {
                log_line(
                    &metrics_path,
                    json!({"round": round, "step": state.step, "kind": "train",
                        "loss": (sum_nll + s.kl_coef * sum_kl) / n_log as f64,
                        "nll": sum_nll / n_log as f64, "kl": sum_kl / n_log as f64,
                        "lr": schedule.lr(state.step),
                        "train_s": t_train.elapsed().as_secs_f64(),
                        "updates_per_s": n_log as f64 / t_window.elapsed().as_secs_f64(),
                        "tokens_per_s": window_tokens as f64 / t_window.elapsed().as_secs_f64()}),
                )?;
                if run.progress {
                    eprintln!(
                        "round {round} step {} nll {:.4} kl {:.4}",
                        state.step,
                        sum_nll / n_log as f64,
                        sum_kl / n_log as f64
                    );
                }
                (sum_nll, sum_kl, n_log) = (0.0, 0.0, 0);
                (window_tokens, t_window) = (0, std::time::Instant::now());
            }
        }
        // 5. evaluate with the best control tokens
        let prefix = prefix_of(&best_bins, active, &policy.tokenizer);
        let m = dev_eval.all(
            &policy.model,
            &policy.tokenizer,
            &prefix,
            &format!("round-{round}"),
        )?;
        let mut line =
            json!({"round": round, "step": state.step, "kind": "eval", "model": "policy"});
        for (k, v) in &m {
            line[k] = json!(v);
        }
        log_line(&metrics_path, line)?;
        let value = m
            .iter()
            .find(|(k, _)| *k == s.selection)
            .map(|(_, v)| *v)
            .ok_or_else(|| anyhow!("selection metric `{}` is not among {m:?}", s.selection))?;
        let better = state.best.is_none_or(|(b, _)| value > b);
        tracing::info!(
            round,
            secs = t_round.elapsed().as_secs_f64(),
            "eval {m:?}{}",
            if better { " (best)" } else { "" }
        );
        state.rounds_done = round + 1;
        state.dropout = dropout.state(s.seed);
        if better {
            state.best = Some((value, round));
            policy.save(&best)?;
            std::fs::write(
                best.join(CONTROL_FILE),
                serde_json::to_string_pretty(&table)? + "\n",
            )?;
            copy_generation_config(&reference, &best)?;
        }
        policy.save(&last)?;
        std::fs::write(
            last.join(CONTROL_FILE),
            serde_json::to_string_pretty(&table)? + "\n",
        )?;
        copy_generation_config(&reference, &last)?;
        opt.save(&last.join("optimizer.safetensors"))?;
        std::fs::write(&state_path, serde_json::to_string_pretty(&state)?)?;
    }
    if let Err(e) = draw_reward_rounds(&metrics_path, &table, &out.join("rewards.png")) {
        tracing::warn!("could not draw rewards.png: {e:#}");
    }
    if let Err(e) = crate::report::plot::training_curves(&metrics_path, &out.join("curves.png")) {
        tracing::warn!("could not draw curves.png: {e:#}");
    }
    Ok(metrics_path)
}

/// Per-round mean of each reward over the round's samples, and the dev means per round.
fn draw_reward_rounds(metrics: &Path, table: &ControlTokens, out: &Path) -> Result<()> {
    let rows: Vec<serde_json::Value> = crate::jsonl::read(metrics)?;
    let mut charts = Vec::new();
    for r in &table.rewards {
        let key = format!("sample_{}", r.name);
        let dev_key = format!("dev_{}", r.name);
        let sample: Vec<(f64, f64)> = rows
            .iter()
            .filter(|v| v["kind"] == "sample")
            .filter_map(|v| Some((v["round"].as_f64()?, v[&key].as_f64()?)))
            .collect();
        let dev: Vec<(f64, f64)> = rows
            .iter()
            .filter(|v| v["kind"] == "eval")
            .filter_map(|v| Some((v["round"].as_f64()?, v[&dev_key].as_f64()?)))
            .collect();
        charts.push(Chart {
            title: r.name.clone(),
            x_label: "round (-1 = SFT)".into(),
            series: vec![
                Series {
                    name: "samples (mean)".into(),
                    points: sample,
                },
                Series {
                    name: "dev (mean)".into(),
                    points: dev,
                },
            ],
            markers: true,
            y_range: None,
        });
    }
    save_charts(&charts, 2, out)
}
