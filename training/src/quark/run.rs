//! `mario-train mario`: the multi-reward QUARK loop (method section D).
//!
//! Each round, in named steps ([`MarioLoop`]):
//! 1. **sample** outputs for the training questions (round 0 from the SFT reference without
//!    control tokens, later from the policy with the best control tokens), keeping those with
//!    "So the answer is";
//! 2. **score and pool**: score every reward and add the outputs to the pool (round 0 also adds
//!    the silver training data);
//! 3. **build examples**: cut every reward's scores over the whole pool into quantile bins and
//!    give each item its bins' control tokens as its decoder prefix;
//! 4. **train** the policy with the loss NLL + β·KL(policy ‖ reference) − α·entropy over
//!    response tokens, through the same update step and checkpoint writer as every other stage
//!    ([`crate::train::Updater`]);
//! 5. **evaluate and save**: dev with the best control tokens; `best/` keeps the round with the
//!    best dev criterion, `last/` (with the pool) lets a run resume.
//!
//! The policy starts from the SFT model (the released code's README forgets `--init-model`;
//! see method G.2.1). `last/` is also written every `save_every` updates inside a round and
//! when a time limit stops the run, so a run resumes in the middle of a round exactly: the
//! round's samples are in the pool, its bins are recomputed, and its data order is replayed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use mario::checkpoint::{Checkpoint, GENERATION_CONFIG_FILE};
use mario::control::{ControlTokens, CONTROL_FILE};
use mario::generate::{generate, GenerationParams, GenerationRequest, SamplingParams};
use mario::model::{DropoutRng, DropoutRngState, Mode};
use mario::rationale::ANSWER_PHRASE;
use mario::rewards::Reward;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::metrics_log::{
    self, metric_values, BinsRecord, EvaluatedModel, MarioEvalRecord, MarioRecord,
    MarioTrainRecord, RewardSample, RewardSamples, SampleRecord,
};

use super::bins::Binning;
use super::dev_scores::dev_scores_dir;
use super::loss::quark_loss;
use super::pool::{DataPool, PoolBins, PoolItem, Source};
use super::schedule::{on_policy_share, round_steps, PoolPlan};
use super::selection::RoundRank;
use super::teacher_data::{silver_examples, teacher_wrong_samples, unsolved_questions};
use crate::data::{load_examples_of, Example};
use crate::decoding::Decoding;
use crate::report::rounds::reward_rounds;
use crate::sft::truncate_input;
use crate::train::loss::{forward, Seq2SeqBatch, Seq2SeqExample};
use crate::train::{
    ensure_finite, save_checkpoint, LinearSchedule, Precision, TrainableModel, Updater,
};

pub use super::dev_eval::DevEval;
pub use super::rewards::{
    active_rewards, build_rewards, control_table, score_all, trains_every_reward, RewardModels,
    RewardName,
};
pub use super::settings::{MarioSettings, Variant};

/// The loop's state file in `last/`.
const STATE_FILE: &str = "mario_state.json";
/// A training line in the metrics log every this many updates.
const LOG_EVERY: u64 = 20;

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarioState {
    /// Rounds completed (sampled, trained and evaluated).
    pub rounds_done: u32,
    /// Updates done in all.
    pub step: u64,
    /// Updates done in round `rounds_done` (0 when its training has not begun): a state saved
    /// in the middle of a round, whose samples are already in the pool.
    #[serde(default)]
    pub round_step: u64,
    /// The training losses summed since the last logged line of the round (so that a run
    /// resumed inside a round logs the same means).
    #[serde(default)]
    pub window: LossWindow,
    /// Best selection value and its round (with `selection_max_accuracy_drop`, the dev
    /// accuracy instead when `best_within_floor` is false).
    pub best: Option<(f64, u32)>,
    /// Whether the best round's dev accuracy is within the accuracy floor (true without one,
    /// and in states written before the floor existed).
    #[serde(default = "within_floor_by_default")]
    pub best_within_floor: bool,
    /// Dropout generator state.
    pub dropout: DropoutRngState,
    /// The settings the run was started with.
    pub settings: MarioSettings,
}

/// The SFT start's dev accuracy, from the run's log (its round -1 evaluation).
fn sft_dev_accuracy(metrics: &Path) -> Result<f64> {
    let rows: Vec<MarioRecord> = metrics_log::read(metrics)?;
    rows.iter()
        .find_map(|r| match r {
            MarioRecord::Eval(e) if e.model == EvaluatedModel::Sft => {
                e.metrics.get("dev_accuracy").copied().flatten()
            }
            _ => None,
        })
        .ok_or_else(|| {
            anyhow!(
                "{}: no SFT dev accuracy logged, which selection_max_accuracy_drop needs",
                metrics.display()
            )
        })
}

fn within_floor_by_default() -> bool {
    true
}

impl MarioState {
    /// How the best round so far ranks (`None`: no round evaluated yet).
    pub fn best_rank(&self) -> Option<RoundRank> {
        self.best.map(|(value, round)| RoundRank {
            all_rewards: trains_every_reward(&self.settings, round),
            within_floor: self.best_within_floor,
            value,
        })
    }

    /// Records `round` as the best round, ranked `rank`.
    fn set_best(&mut self, rank: RoundRank, round: u32) {
        self.best = Some((rank.value, round));
        self.best_within_floor = rank.within_floor;
    }
}

/// Sums of the losses of the updates since the last training line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossWindow {
    /// Sum of the NLL terms.
    pub nll: f64,
    /// Sum of the KL terms.
    pub kl: f64,
    /// Updates summed.
    pub updates: usize,
}

impl MarioState {
    /// Reads `<mario dir>/last/mario_state.json`; `Ok(None)` when there is none.
    pub fn load(mario_dir: &Path) -> Result<Option<Self>> {
        let path = mario_dir.join("last").join(STATE_FILE);
        crate::json_file::read_if_exists(&path, "a MaRio state file")
    }
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
    /// Training-only files whose examples `replay_examples` draws from.
    pub replay_files: Vec<PathBuf>,
    /// Teacher files (`teacher_gpt3_train.jsonl`) that `sample_unsolved` reads.
    pub teacher_files: Vec<PathBuf>,
    /// Dev split files.
    pub dev_files: Vec<PathBuf>,
    /// Reward models.
    pub reward_models: RewardModels,
    /// Run directory.
    pub out: PathBuf,
    /// Continue a run.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many minutes of this invocation.
    pub max_minutes: Option<f64>,
    /// Stop (with a checkpoint) after this many updates of this invocation.
    pub stop_after: Option<u64>,
    /// Device.
    pub device: &'a Device,
    /// Draw a progress bar.
    pub progress: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum MarioOutcome {
    /// Every round done; the metrics log.
    Finished(PathBuf),
    /// Stopped by `max_minutes` or `stop_after` with `last/` saved: resume to finish.
    Stopped {
        /// Updates done.
        step: u64,
        /// The round it stopped in.
        round: u32,
    },
}

/// The outputs of one sampling step: `(question, output, gold)` with their origin.
struct Sampled {
    /// Outputs asked for.
    requested: usize,
    /// Outputs that state an answer (the others are dropped).
    valid: usize,
    /// The items to score: the valid samples, then (round 0) the silver data.
    items: Vec<(String, String, String)>,
    /// The origin of each item.
    sources: Vec<Source>,
}

/// A round's data order: a seeded shuffle of the round's examples, reshuffled whenever it runs
/// out, so that replaying `n` batches puts a resumed run where the stopped one was.
struct RoundOrder {
    order: Vec<usize>,
    cursor: usize,
}

impl RoundOrder {
    fn new(n: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        Self { order, cursor: 0 }
    }

    /// The next `batch_size` example indices.
    fn next_batch(&mut self, batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut rows = Vec::with_capacity(batch_size);
        for _ in 0..batch_size.max(1) {
            if self.cursor == self.order.len() {
                self.order.shuffle(rng);
                self.cursor = 0;
            }
            rows.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        rows
    }
}

/// Where a run's files go.
struct RunPaths {
    out: PathBuf,
    last: PathBuf,
    best: PathBuf,
    pool: PathBuf,
    metrics: PathBuf,
}

impl RunPaths {
    fn new(out: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
            last: out.join("last"),
            best: out.join("best"),
            pool: out.join("pool.jsonl"),
            metrics: out.join("metrics.jsonl"),
        }
    }
}

/// Limits on one invocation.
struct Limits {
    started: Instant,
    max_minutes: Option<f64>,
    stop_after: Option<u64>,
    steps_at_start: u64,
}

impl Limits {
    fn reached(&self, step: u64) -> bool {
        self.max_minutes
            .is_some_and(|m| self.started.elapsed().as_secs_f64() >= m * 60.0)
            || self
                .stop_after
                .is_some_and(|n| step - self.steps_at_start >= n)
    }
}

/// A run in progress: what every step of a round reads and writes.
struct MarioLoop<'a> {
    s: &'a MarioSettings,
    paths: RunPaths,
    table: ControlTokens,
    /// How each reward's scores are cut into bins ([`MarioSettings::bins_within_question`],
    /// [`MarioSettings::tied_scores`]).
    binning: Binning,
    /// The dev accuracy a round must keep to compete for `best/` on the selection metric
    /// ([`MarioSettings::selection_max_accuracy_drop`] below the SFT start's; `None`: no floor).
    accuracy_floor: Option<f64>,
    rewards: &'a [Box<dyn Reward>],
    dev_eval: &'a DevEval<'a>,
    /// The pool's silver data: the training split's examples, then any replayed training-only
    /// examples.
    silver: &'a [Example],
    /// The teacher's wrong samples put into the pool at round 0
    /// ([`MarioSettings::teacher_wrong_answers`]; empty when off).
    teacher_wrong: &'a [(String, String, String)],
    /// Unique training questions, in file order.
    questions: Vec<&'a Example>,
    reference: Checkpoint,
    /// The reference in bf16 for the loss's KL term under `precision = "bf16"`.
    reference_cast: Option<mario::model::T5Model>,
    policy: TrainableModel,
    updater: Updater,
    dropout: DropoutRng,
    state: MarioState,
    pool: DataPool,
    /// Updates of each round.
    steps: Vec<u64>,
}

/// Keeps the log lines a resumed run stands on: those of completed rounds, and of the current
/// round up to the saved update when the run stopped inside it.
fn truncate_log(path: &Path, state: &MarioState) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let mut rows: Vec<MarioRecord> = metrics_log::read(path)?;
    let done = i64::from(state.rounds_done);
    rows.retain(|r| {
        r.round() < done || (state.round_step > 0 && r.round() == done && r.step() <= state.step)
    });
    metrics_log::write(path, &rows)
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

impl MarioLoop<'_> {
    /// The control prefix of `bins`, cut to the first `active` rewards.
    fn prefix(&self, bins: &[usize], active: usize) -> Vec<u32> {
        self.table.prefix_ids(bins, &self.policy.tokenizer)[..active].to_vec()
    }

    /// The round's seeded generator, and the questions it samples (shuffled by it).
    fn round_questions(&self, round: u32) -> (ChaCha8Rng, Vec<&Example>) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.s.seed.wrapping_add(round as u64));
        let mut qs = self.questions.clone();
        qs.shuffle(&mut rng);
        if self.s.questions_per_round > 0 {
            qs.truncate(self.s.questions_per_round);
        }
        (rng, qs)
    }

    /// Step 1: sample `qs` (round 0: the reference without a prefix; later: the policy with
    /// the best tokens of the rewards active in the previous round) and keep the outputs that
    /// state an answer; round 0 adds the silver data.
    fn sample(&self, round: u32, qs: &[&Example]) -> Result<Sampled> {
        let s = self.s;
        let max_new_tokens = self.dev_eval.decoding.max_new_tokens.value;
        let outputs = if round == 0 {
            sample_outputs(
                &self.reference.model,
                &self.reference.tokenizer,
                qs,
                &[],
                s,
                max_new_tokens,
                s.seed,
            )?
        } else {
            // the previous stage's prefix length is used when a new reward switches on
            let best = vec![0usize; self.table.rewards.len()];
            let prefix = self.prefix(&best, active_rewards(s, round - 1));
            let seed = s.seed.wrapping_add(round as u64);
            sample_outputs(
                &self.policy.model,
                &self.policy.tokenizer,
                qs,
                &prefix,
                s,
                max_new_tokens,
                seed,
            )?
        };
        let requested = outputs.len();
        let mut items: Vec<(String, String, String)> = outputs
            .into_iter()
            .filter(|(_, t, _)| t.contains(ANSWER_PHRASE))
            .collect();
        let valid = items.len();
        let source = if round == 0 {
            Source::Reference
        } else {
            Source::Policy
        };
        let mut sources = vec![source; items.len()];
        if round == 0 {
            for ex in self.silver {
                if let Some(t) = ex.target() {
                    items.push((ex.question.clone(), t, ex.answer.clone()));
                    sources.push(Source::Silver);
                }
            }
            items.extend(self.teacher_wrong.iter().cloned());
            sources.extend(std::iter::repeat_n(
                Source::Teacher,
                self.teacher_wrong.len(),
            ));
        }
        Ok(Sampled {
            requested,
            valid,
            items,
            sources,
        })
    }

    /// Step 2: score every item with every reward and add it to the pool (and its file).
    fn score_into_pool(&mut self, round: u32, sampled: Sampled) -> Result<()> {
        let scores = score_all(self.rewards, &sampled.items)?;
        let new: Vec<PoolItem> = sampled
            .items
            .into_iter()
            .zip(scores)
            .zip(sampled.sources)
            .map(|(((question, text, gold), scores), source)| PoolItem {
                question,
                gold,
                text,
                scores,
                round,
                source,
            })
            .collect();
        self.pool.extend(new, &self.paths.pool)?;
        let means = self.pool.round_means(round, self.table.rewards.len());
        let rewards = self.table.rewards.iter().zip(&means);
        let line = MarioRecord::Sample(SampleRecord {
            round,
            step: self.state.step,
            sampled: sampled.requested,
            valid: sampled.valid,
            pool: self.pool.items.len(),
            rewards: RewardSamples(
                rewards
                    .map(|(r, &(mean, n))| RewardSample {
                        name: r.name.clone(),
                        mean,
                        n,
                    })
                    .collect(),
            ),
        });
        metrics_log::append(&self.paths.metrics, &line)?;
        tracing::info!(
            round,
            sampled = sampled.requested,
            valid = sampled.valid,
            pool = self.pool.items.len(),
            "sampled"
        );
        Ok(())
    }

    /// Step 3: cut the whole pool into bins (logged unless `resumed`: the log has them) and
    /// build a training example per item that has every score and fits `max_target_tokens`.
    fn build_examples(
        &self,
        round: u32,
        active: usize,
        resumed: bool,
    ) -> Result<Vec<Seq2SeqExample>> {
        let s = self.s;
        let bins = self.pool.bins(
            &self.table,
            s.seed.wrapping_add(u64::from(round)),
            &self.binning,
        );
        if !resumed {
            let line = MarioRecord::Bins(BinsRecord {
                round,
                step: self.state.step,
                counts: (bins.rewards.iter().zip(&bins.counts))
                    .map(|(name, c)| (format!("bins_{name}"), c.clone()))
                    .collect(),
            });
            metrics_log::append(&self.paths.metrics, &line)?;
        }
        log_bins(round, &bins);
        bins.ensure_no_empty_bin()
            .with_context(|| format!("round {round}"))?;
        let tok = &self.policy.tokenizer;
        let mut examples = Vec::new();
        let mut inputs: HashMap<&str, Vec<u32>> = HashMap::new();
        for (it, b) in self.pool.items.iter().zip(&bins.items) {
            let Some(b) = b else { continue };
            let input_ids = match inputs.get(it.question.as_str()) {
                Some(ids) => ids.clone(),
                None => {
                    let ids = truncate_input(tok.encode(&it.question)?, s.max_input_tokens);
                    inputs.insert(&it.question, ids.clone());
                    ids
                }
            };
            let target_ids = tok.encode(&it.text)?;
            if target_ids.len() > s.max_target_tokens {
                continue;
            }
            examples.push(Seq2SeqExample {
                input_ids,
                prefix: self.prefix(b, active),
                target_ids,
            });
        }
        if examples.is_empty() {
            bail!("round {round}: no pool item has every reward's score");
        }
        Ok(examples)
    }

    /// Step 4: the round's updates (from `state.round_step`, the order replayed up to there).
    /// `Ok(false)` when `limits` stopped the run (with `last/` saved).
    fn train_round(
        &mut self,
        round: u32,
        active: usize,
        examples: &[Seq2SeqExample],
        rng: &mut ChaCha8Rng,
        limits: &Limits,
        pb: &ProgressBar,
    ) -> Result<bool> {
        let s = self.s;
        let mut order = RoundOrder::new(examples.len(), rng);
        for _ in 0..self.state.round_step {
            order.next_batch(s.batch_size, rng);
        }
        let (pad, start_id) = (
            self.policy.tokenizer.pad_id(),
            self.policy.config.decoder_start(),
        );
        let t_train = Instant::now();
        let LossWindow {
            nll: mut sum_nll,
            kl: mut sum_kl,
            updates: mut n_log,
        } = self.state.window;
        let (mut window_tokens, mut t_window) = (0usize, Instant::now());
        while self.state.round_step < self.steps[round as usize] {
            let rows: Vec<&Seq2SeqExample> = order
                .next_batch(s.batch_size, rng)
                .into_iter()
                .map(|i| &examples[i])
                .collect();
            window_tokens += rows.iter().map(|e| e.tokens()).sum::<usize>();
            let mode = Mode::Training(&self.dropout);
            let net = self.policy.network(s.precision)?;
            let l = step_loss(
                &net,
                self.reference_cast
                    .as_ref()
                    .unwrap_or(&self.reference.model),
                &rows,
                active,
                s,
                mode,
                start_id,
                pad,
            )?;
            let what = format!("round {round}: the loss");
            ensure_finite(&what, self.state.step, &[("nll", l.nll), ("kl", l.kl)])?;
            self.updater.update(&l.total, self.state.step)?;
            self.state.step += 1;
            self.state.round_step += 1;
            pb.set_position(self.state.step);
            (sum_nll, sum_kl, n_log) = (sum_nll + l.nll, sum_kl + l.kl, n_log + 1);
            if self.state.step % LOG_EVERY == 0 {
                let secs = t_window.elapsed().as_secs_f64();
                let (nll, kl) = (sum_nll / n_log as f64, sum_kl / n_log as f64);
                let line = MarioRecord::Train(MarioTrainRecord {
                    round,
                    step: self.state.step,
                    loss: (sum_nll + s.kl_coef * sum_kl) / n_log as f64,
                    nll,
                    kl,
                    lr: self.updater.schedule.lr(self.state.step),
                    train_s: t_train.elapsed().as_secs_f64(),
                    updates_per_s: n_log as f64 / secs,
                    tokens_per_s: window_tokens as f64 / secs,
                });
                metrics_log::append(&self.paths.metrics, &line)?;
                pb.set_message(format!("round {round} nll {nll:.4} kl {kl:.4}"));
                (sum_nll, sum_kl, n_log) = (0.0, 0.0, 0);
                (window_tokens, t_window) = (0, Instant::now());
            }
            let unfinished = self.state.round_step < self.steps[round as usize];
            self.state.window = LossWindow {
                nll: sum_nll,
                kl: sum_kl,
                updates: n_log,
            };
            if unfinished && limits.reached(self.state.step) {
                self.save_last()?;
                pb.suspend(|| {
                    tracing::warn!(step = self.state.step, round, "limit reached; stopping")
                });
                return Ok(false);
            }
            if unfinished && s.save_every > 0 && self.state.round_step % s.save_every == 0 {
                self.save_last()?;
            }
        }
        Ok(true)
    }

    /// Step 5: dev with the best control tokens; `best/` when the selection metric improved,
    /// then `last/` with the round counted as done.
    fn evaluate_and_save(&mut self, round: u32, active: usize, t_round: Instant) -> Result<()> {
        let s = self.s;
        let best_bins = vec![0usize; self.table.rewards.len()];
        let prefix = self.prefix(&best_bins, active);
        let name = format!("round-{round}");
        let m = self
            .dev_eval
            .all(&self.policy.model, &self.policy.tokenizer, &prefix, &name)?;
        let line = MarioRecord::Eval(MarioEvalRecord {
            round: round.into(),
            step: self.state.step,
            model: EvaluatedModel::Policy,
            decoding: None,
            metrics: metric_values(&m),
        });
        metrics_log::append(&self.paths.metrics, &line)?;
        let metric = |name: &str| {
            m.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| anyhow!("the dev evaluation reports no `{name}`: {m:?}"))
        };
        let rank = RoundRank::of(
            metric(&s.selection.to_string())?,
            metric("dev_accuracy")?,
            self.accuracy_floor,
            trains_every_reward(s, round),
        );
        let better = self.state.best_rank().is_none_or(|best| rank.beats(best));
        tracing::info!(
            round,
            secs = t_round.elapsed().as_secs_f64(),
            "eval {m:?}{}",
            if better { " (best)" } else { "" }
        );
        self.state.rounds_done = round + 1;
        self.state.round_step = 0;
        self.state.window = LossWindow::default();
        if better {
            self.state.set_best(rank, round);
            self.policy.save(&self.paths.best)?;
            self.write_control(&self.paths.best)?;
        }
        self.save_last()
    }

    /// Writes `last/`: the policy, its control table, the optimizer and the state (last).
    fn save_last(&mut self) -> Result<()> {
        self.state.dropout = self.dropout.state(self.s.seed);
        let last = &self.paths.last;
        std::fs::create_dir_all(last).with_context(|| format!("creating {}", last.display()))?;
        self.write_control(last)?;
        save_checkpoint(
            last,
            &self.policy,
            &self.updater.opt,
            STATE_FILE,
            &self.state,
        )
    }

    /// Writes the control table and, when the SFT checkpoint has one, its decoding defaults
    /// (`generation_config.json`), so that the sweep and the server decode a MaRio checkpoint
    /// like its dev evaluations.
    fn write_control(&self, dir: &Path) -> Result<()> {
        std::fs::write(
            dir.join(CONTROL_FILE),
            serde_json::to_string_pretty(&self.table)? + "\n",
        )
        .with_context(|| format!("writing {}", dir.join(CONTROL_FILE).display()))?;
        let gen = self.reference.dir.join(GENERATION_CONFIG_FILE);
        if gen.is_file() {
            std::fs::copy(&gen, dir.join(GENERATION_CONFIG_FILE))
                .with_context(|| format!("copying {}", gen.display()))?;
        }
        Ok(())
    }
}

fn log_bins(round: u32, bins: &PoolBins) {
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

/// The policy, state and pool a run starts from: a fresh start (the policy from the SFT model
/// or `init` with the control tokens added, and the SFT model's own dev metrics logged as the
/// baseline), or the saved `last/` with the pool and log cut back to it.
fn start_or_resume(
    run: &MarioRun<'_>,
    paths: &RunPaths,
    table: &ControlTokens,
    reference: &Checkpoint,
    dev_eval: &DevEval<'_>,
) -> Result<(TrainableModel, MarioState, DataPool)> {
    let s = &run.settings;
    if run.resume {
        let state = MarioState::load(&paths.out)?.ok_or_else(|| {
            anyhow!(
                "--resume: {} has no checkpoint",
                paths.last.join(STATE_FILE).display()
            )
        })?;
        let policy = TrainableModel::load(&paths.last, run.device)?;
        let mut pool = DataPool::load(&paths.pool)?;
        // a run stopped inside a round keeps that round's samples: it trains on them
        let keep = state.rounds_done + u32::from(state.round_step > 0);
        pool.items.retain(|it| it.round < keep);
        crate::jsonl::write(&paths.pool, &pool.items)?;
        truncate_log(&paths.metrics, &state)?;
        tracing::info!(
            step = state.step,
            rounds_done = state.rounds_done,
            round_step = state.round_step,
            "resuming from {}",
            paths.last.display()
        );
        return Ok((policy, state, pool));
    }
    if paths.last.join(STATE_FILE).is_file() {
        bail!(
            "{} already holds a run: pass --resume or choose another --out",
            paths.out.display()
        );
    }
    for p in [&paths.pool, &paths.metrics] {
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
    let mut policy = TrainableModel::load(&start, run.device)?;
    policy.add_tokens(&table.all_tokens(), s.seed)?;
    let state = MarioState {
        rounds_done: 0,
        step: 0,
        round_step: 0,
        window: LossWindow::default(),
        best: None,
        best_within_floor: true,
        dropout: DropoutRngState {
            seed: s.seed,
            word_pos: 0,
        },
        settings: s.clone(),
    };
    // the SFT model's own dev metrics, in the same harness (the round-0 baseline)
    let m = dev_eval.all(&reference.model, &reference.tokenizer, &[], "sft")?;
    let line = MarioRecord::Eval(MarioEvalRecord {
        round: -1,
        step: 0,
        model: EvaluatedModel::Sft,
        decoding: Some(dev_eval.decoding.describe(1)),
        metrics: metric_values(&m),
    });
    metrics_log::append(&paths.metrics, &line)?;
    tracing::info!("SFT reference on dev: {m:?}");
    Ok((policy, state, DataPool::default()))
}

fn progress_bar(show: bool, total: u64, at: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} updates {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_position(at);
    pb
}

/// Runs (or resumes) the loop.
pub fn run_mario(run: MarioRun<'_>) -> Result<MarioOutcome> {
    let s = &run.settings;
    let paths = RunPaths::new(&run.out);
    std::fs::create_dir_all(&paths.out)?;
    let table = control_table(s);
    let binning = s.binning()?;
    s.check_selection_max_accuracy_drop()?;
    let rewards = build_rewards(&s.rewards, &run.reward_models, run.device)?;
    let reference = Checkpoint::load(&run.sft, DType::F32, run.device)
        .with_context(|| format!("loading the SFT reference {}", run.sft.display()))?;
    s.precision.warn_if_slow_on(run.device);
    let reference_cast = match s.precision {
        Precision::F32 => None,
        p => Some(
            mario::model::load_t5(&run.sft, p.dtype(), run.device)
                .with_context(|| format!("loading the SFT reference {}", run.sft.display()))?,
        ),
    };
    let mut train_examples = load_examples_of(&run.train_files)?;
    if s.sample_unsolved {
        if run.teacher_files.is_empty() {
            bail!(
                "[mario] sample_unsolved = true, but the data has no teacher file \
                 (teacher_gpt3_train.jsonl) to find the unsolved questions in"
            );
        }
        let unsolved = unsolved_questions(&run.teacher_files, &train_examples)?;
        tracing::info!(
            unsolved = unsolved.len(),
            "questions no teacher sample answered right, sampled with the training questions"
        );
        train_examples.extend(unsolved);
    }
    let dev = load_examples_of(&run.dev_files)?;
    // the SFT checkpoint's generation_config.json < [mario]
    let decoding = Decoding::resolve(&reference.generation, &s.into(), &Default::default());
    tracing::info!("dev decoding: {}", decoding.describe(1));
    let dev_eval = DevEval {
        dev: &dev,
        rewards: &rewards,
        measures: crate::world::truth::truth_rewards_for(&run.dev_files)?,
        settings: s,
        decoding,
        dir: dev_scores_dir(&paths.out),
    };
    let (policy, state, pool) = start_or_resume(&run, &paths, &table, &reference, &dev_eval)?;
    // the log holds the SFT start's evaluation now (written by a fresh start, kept by a resume)
    let accuracy_floor = match s.selection_max_accuracy_drop {
        Some(drop) => Some(sft_dev_accuracy(&paths.metrics)? - drop),
        None => None,
    };
    std::fs::write(
        paths.out.join(CONTROL_FILE),
        serde_json::to_string_pretty(&table)? + "\n",
    )?;
    let mut seen = std::collections::HashSet::new();
    let questions: Vec<&Example> = train_examples
        .iter()
        .filter(|e| seen.insert(e.question.clone()))
        .collect();
    let silver = silver_examples(
        &train_examples,
        &run.replay_files,
        s.replay_examples,
        s.seed,
    )?;
    let teacher_wrong = if s.teacher_wrong_answers {
        if run.teacher_files.is_empty() {
            bail!(
                "[mario] teacher_wrong_answers = true, but the data has no teacher file \
                 (teacher_gpt3_train.jsonl) to take the wrong samples from"
            );
        }
        let asked: std::collections::HashSet<&str> =
            questions.iter().map(|e| e.question.as_str()).collect();
        let wrong = teacher_wrong_samples(&run.teacher_files, &asked)?;
        tracing::info!(
            teacher_wrong = wrong.len(),
            "teacher samples with a wrong answer join the pool at round 0"
        );
        wrong
    } else {
        Vec::new()
    };
    let plan = PoolPlan {
        silver: silver.iter().filter(|e| e.rationale.is_some()).count() + teacher_wrong.len(),
        questions: questions.len(),
    };
    let steps = round_steps(s, plan);
    let total_steps: u64 = steps.iter().sum();
    tracing::info!(
        rounds = s.rounds,
        total_steps,
        "plan: {} samples a round; on-policy share of the pool {:.0} % after round 0, {:.0} % \
         after the last; updates per round {steps:?}",
        plan.sampled_per_round(s),
        100.0 * on_policy_share(s, plan, 0),
        100.0 * on_policy_share(s, plan, s.rounds.saturating_sub(1)),
    );
    let schedule = LinearSchedule {
        peak: s.lr,
        warmup_steps: s.warmup_steps,
        total_steps,
    };
    let mut updater = Updater::new(&policy, s.optimizer(), schedule, s.max_grad_norm)?;
    if run.resume {
        updater
            .opt
            .load(&paths.last.join(crate::train::update::OPTIMIZER_FILE))?;
    }
    let dropout = DropoutRng::restore(s.dropout, state.dropout);
    let limits = Limits {
        started: Instant::now(),
        max_minutes: run.max_minutes,
        stop_after: run.stop_after,
        steps_at_start: state.step,
    };
    let pb = progress_bar(run.progress, total_steps, state.step);
    let mut lp = MarioLoop {
        s,
        paths,
        table,
        binning,
        accuracy_floor,
        rewards: &rewards,
        dev_eval: &dev_eval,
        silver: &silver,
        teacher_wrong: &teacher_wrong,
        questions,
        reference,
        reference_cast,
        policy,
        updater,
        dropout,
        state,
        pool,
        steps,
    };
    for round in lp.state.rounds_done..s.rounds {
        let t_round = Instant::now();
        let active = active_rewards(s, round);
        let (mut rng, qs) = lp.round_questions(round);
        let resumed = lp.state.round_step > 0;
        if !resumed {
            let sampled = pb.suspend(|| lp.sample(round, &qs))?;
            lp.score_into_pool(round, sampled)?;
        }
        let examples = lp.build_examples(round, active, resumed)?;
        if !lp.train_round(round, active, &examples, &mut rng, &limits, &pb)? {
            pb.finish_and_clear();
            return Ok(MarioOutcome::Stopped {
                step: lp.state.step,
                round,
            });
        }
        pb.suspend(|| lp.evaluate_and_save(round, active, t_round))?;
    }
    pb.finish_and_clear();
    let metrics = lp.paths.metrics.clone();
    if let Err(e) = reward_rounds(&metrics, &lp.table, &lp.paths.out.join("rewards.png")) {
        tracing::warn!("could not draw rewards.png: {e:#}");
    }
    let curves = lp.paths.out.join("curves.png");
    if let Err(e) = crate::report::plot::training_curves::<MarioRecord>(&metrics, &curves) {
        tracing::warn!("could not draw curves.png: {e:#}");
    }
    Ok(MarioOutcome::Finished(metrics))
}
