//! The training loop shared by every stage that fine-tunes a T5: seeded length-bucketed
//! batches, AdamW, warm-up + linear decay, global-norm clipping, gradient accumulation,
//! periodic evaluation, best-checkpoint selection, exact resume, a progress bar and a JSONL
//! metrics log.
//!
//! A run directory holds:
//! - `last/`: the latest checkpoint (a Hugging Face folder plus `optimizer.safetensors` and
//!   `trainer_state.json`), from which `--resume` continues;
//! - `best/`: the checkpoint with the best evaluation metric so far;
//! - `metrics.jsonl`: one line per logged training window or evaluation;
//! - `curves.png`: the curves of that log.

pub mod batches;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod optim;
pub mod precision;
pub mod schedule;
pub mod update;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use mario::model::{DropoutRng, DropoutRngState, Mode, T5Model};
use serde::{Deserialize, Serialize};

use crate::metrics_log::{self, metric_values, EvalRecord, TrainRecord, TrainWindowRecord};

pub use model::TrainableModel;
pub use optim::{AdamW, AdamWConfig};
pub use precision::{Network, Precision};
pub use schedule::LinearSchedule;
pub use update::{ensure_finite, save_checkpoint, Update, Updater};

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Optimizer updates in the whole run (the schedule reaches 0 there).
    pub total_steps: u64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per update.
    pub grad_accum: usize,
    /// Global gradient-norm clip (0 = none).
    pub max_grad_norm: f64,
    /// Optimizer.
    pub optimizer: AdamWConfig,
    /// Dropout probability (the model's `dropout_rate` when absent).
    pub dropout: Option<f64>,
    /// Seed of the data order and dropout.
    pub seed: u64,
    /// Evaluate every this many updates (0 = only at the end).
    pub eval_every: u64,
    /// Save `last/` every this many updates (0 = only at evaluations and the end).
    pub save_every: u64,
    /// Log a training line every this many updates.
    pub log_every: u64,
    /// Stop (with a checkpoint) after this many updates in this invocation.
    pub stop_after: Option<u64>,
    /// Stop (with a final evaluation and checkpoint) after this many minutes.
    pub max_minutes: Option<f64>,
    /// Draw a progress bar.
    pub progress: bool,
    /// f32, or bf16 mixed precision.
    #[serde(default)]
    pub precision: Precision,
}

/// What a task reports from an evaluation: named metrics.
pub type Metrics = Vec<(String, f64)>;

/// The checkpoint-selection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The metric compared.
    pub metric: String,
    /// Whether larger is better.
    pub higher_is_better: bool,
}

/// A trainable objective over indexed examples.
pub trait TrainTask {
    /// Length of each training example (for bucketing).
    fn lengths(&self) -> Vec<usize>;
    /// The loss of a micro-batch and its token count.
    fn loss(&self, model: &T5Model, indices: &[usize], mode: Mode) -> Result<(Tensor, usize)>;
    /// Evaluates the current model.
    fn evaluate(&self, model: &TrainableModel) -> Result<Metrics>;
    /// How the best checkpoint is chosen.
    fn selection(&self) -> Selection;
}

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates done.
    pub step: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Next micro-batch of the epoch.
    pub batch_in_epoch: usize,
    /// Best selection metric so far and its step.
    pub best: Option<(f64, u64)>,
    /// Dropout generator state.
    pub dropout: DropoutRngState,
    /// Training tokens processed.
    pub tokens: u64,
    /// Seconds of training so far (all invocations).
    pub elapsed_s: f64,
    /// The options the run started with.
    pub options: TrainOptions,
}

/// Paths of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// `last/`.
    pub fn last(&self) -> PathBuf {
        self.0.join("last")
    }
    /// `best/`.
    pub fn best(&self) -> PathBuf {
        self.0.join("best")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// `curves.png`.
    pub fn curves(&self) -> PathBuf {
        self.0.join("curves.png")
    }
    fn state(&self) -> PathBuf {
        self.last().join(TRAINER_STATE_FILE)
    }
    fn optimizer(&self) -> PathBuf {
        self.last().join(update::OPTIMIZER_FILE)
    }
    /// Whether a checkpoint to resume from exists.
    pub fn has_checkpoint(&self) -> bool {
        self.state().is_file()
    }
    /// Whether the run reached its last update, read from `last/trainer_state.json` (`false`
    /// when there is no checkpoint or it cannot be read). A run cut by `max_minutes` or
    /// `stop_after` is not completed, whatever else its folder holds.
    pub fn completed(&self) -> bool {
        std::fs::read_to_string(self.state())
            .ok()
            .and_then(|t| serde_json::from_str::<TrainerState>(&t).ok())
            .is_some_and(|s| s.step >= s.options.total_steps)
    }
}

/// Summary of a finished (or stopped) run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Updates done.
    pub steps: u64,
    /// Whether the run reached `total_steps`.
    pub completed: bool,
    /// Best selection metric and its step.
    pub best: Option<(f64, u64)>,
    /// Last evaluation.
    pub last_eval: Metrics,
    /// Seconds of training.
    pub elapsed_s: f64,
    /// Training tokens per second (this invocation).
    pub tokens_per_s: f64,
}

/// Drops log lines after `step` (written after the checkpoint a run resumes from).
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let mut rows: Vec<TrainRecord> = metrics_log::read(path)?;
    rows.retain(|r| r.step() <= step);
    metrics_log::write(path, &rows)
}

/// The trainer's state file in `last/`.
const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// Runs (or resumes) training of `model` on `task`, writing the run directory `run`.
pub fn train<T: TrainTask>(
    task: &T,
    model: &mut TrainableModel,
    opts: &TrainOptions,
    run: &RunDir,
    resume: bool,
) -> Result<TrainSummary> {
    std::fs::create_dir_all(&run.0).with_context(|| format!("creating {}", run.0.display()))?;
    let lengths = task.lengths();
    if lengths.is_empty() {
        bail!("no training examples");
    }
    let dropout_rate = opts.dropout.unwrap_or(model.config.dropout_rate);
    opts.precision.warn_if_slow_on(model.model.device());
    let mut state = start_or_resume(model, opts, run, resume)?;
    let schedule = LinearSchedule {
        peak: opts.lr,
        warmup_steps: opts.warmup_steps,
        total_steps: opts.total_steps,
    };
    let mut updater = Updater::new(model, opts.optimizer, schedule, opts.max_grad_norm)?;
    if resume {
        updater.opt.load(&run.optimizer())?;
    }
    let dropout = DropoutRng::restore(dropout_rate, state.dropout);
    let mut t = Trainer {
        task,
        opts,
        run,
        selection: task.selection(),
        pb: progress_bar(opts, state.step),
        started: Instant::now(),
        elapsed_before: state.elapsed_s,
        epoch_batches: batches::epoch_batches(&lengths, opts.batch_size, opts.seed, state.epoch),
        lengths,
        window: TrainWindow::new(),
        tokens_this_run: 0,
        last_eval: Vec::new(),
    };
    let mut steps_this_run = 0u64;
    while state.step < opts.total_steps {
        t.update(model, &mut updater, &dropout, &mut state)?;
        steps_this_run += 1;
        let out_of_time = opts.max_minutes.is_some_and(|m| t.elapsed_s() >= m * 60.0);
        let stopping = opts.stop_after.is_some_and(|n| steps_this_run >= n);
        let finished = state.step >= opts.total_steps;
        let eval_now =
            (opts.eval_every > 0 && state.step % opts.eval_every == 0) || finished || out_of_time;
        if eval_now {
            t.evaluate(model, &mut state)?;
        }
        if eval_now || stopping || (opts.save_every > 0 && state.step % opts.save_every == 0) {
            state.dropout = dropout.state(opts.seed);
            state.elapsed_s = t.elapsed_s();
            save_checkpoint(&run.last(), model, &updater.opt, TRAINER_STATE_FILE, &state)?;
        }
        if out_of_time {
            t.pb.suspend(|| tracing::warn!(step = state.step, "time limit reached; stopping"));
            break;
        }
        if stopping {
            break;
        }
    }
    t.pb.finish_and_clear();
    let elapsed = t.started.elapsed().as_secs_f64();
    if let Err(e) =
        crate::report::plot::training_curves::<TrainRecord>(&run.metrics(), &run.curves())
    {
        tracing::warn!("could not draw {}: {e:#}", run.curves().display());
    }
    Ok(TrainSummary {
        steps: state.step,
        completed: state.step >= opts.total_steps,
        best: state.best,
        last_eval: t.last_eval,
        elapsed_s: t.elapsed_before + elapsed,
        tokens_per_s: t.tokens_this_run as f64 / elapsed.max(1e-9),
    })
}

/// The state a run starts from: with `resume`, the one saved in `last/` (whose weights replace
/// `model`'s; the metrics log loses the lines written after it), else a fresh one (an existing
/// checkpoint is refused, an old metrics log removed).
fn start_or_resume(
    model: &mut TrainableModel,
    opts: &TrainOptions,
    run: &RunDir,
    resume: bool,
) -> Result<TrainerState> {
    if resume {
        if !run.has_checkpoint() {
            bail!("--resume: {} has no checkpoint", run.state().display());
        }
        let state: TrainerState = serde_json::from_str(&std::fs::read_to_string(run.state())?)
            .with_context(|| format!("reading {}", run.state().display()))?;
        *model = TrainableModel::load(&run.last(), model.model.device())?;
        truncate_log(&run.metrics(), state.step)?;
        tracing::info!(step = state.step, "resuming from {}", run.last().display());
        return Ok(state);
    }
    if run.has_checkpoint() {
        bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            run.0.display()
        );
    }
    if run.metrics().exists() {
        std::fs::remove_file(run.metrics())?;
    }
    Ok(TrainerState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        best: None,
        dropout: DropoutRngState {
            seed: opts.seed,
            word_pos: 0,
        },
        tokens: 0,
        elapsed_s: 0.0,
        options: opts.clone(),
    })
}

/// The progress bar of a run (hidden without `opts.progress`).
fn progress_bar(opts: &TrainOptions, at: u64) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(opts.total_steps);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_position(at);
    pb
}

/// The updates since the last training line of the metrics log.
struct TrainWindow {
    loss: f64,
    updates: usize,
    tokens: usize,
    grad_norm: f64,
    start: Instant,
}

impl TrainWindow {
    fn new() -> Self {
        Self {
            loss: 0.0,
            updates: 0,
            tokens: 0,
            grad_norm: 0.0,
            start: Instant::now(),
        }
    }
}

/// One invocation of the loop: what it trains and where it logs, and what it has seen.
struct Trainer<'a, T: TrainTask> {
    task: &'a T,
    opts: &'a TrainOptions,
    run: &'a RunDir,
    selection: Selection,
    pb: ProgressBar,
    started: Instant,
    /// Seconds of training of the earlier invocations.
    elapsed_before: f64,
    lengths: Vec<usize>,
    /// This epoch's micro-batches.
    epoch_batches: Vec<Vec<usize>>,
    window: TrainWindow,
    tokens_this_run: usize,
    last_eval: Metrics,
}

impl<T: TrainTask> Trainer<'_, T> {
    /// Seconds of training of the run, every invocation.
    fn elapsed_s(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// One update: `grad_accum` micro-batches (the next epoch's when this one is used up),
    /// their mean loss backpropagated, the optimizer stepped, a training line logged every
    /// `log_every` updates and at the last.
    fn update(
        &mut self,
        model: &TrainableModel,
        updater: &mut Updater,
        dropout: &DropoutRng,
        state: &mut TrainerState,
    ) -> Result<()> {
        let opts = self.opts;
        let mut losses = Vec::with_capacity(opts.grad_accum);
        let mut tokens = 0;
        let net = model.network(opts.precision)?;
        for _ in 0..opts.grad_accum.max(1) {
            if state.batch_in_epoch >= self.epoch_batches.len() {
                state.epoch += 1;
                state.batch_in_epoch = 0;
                self.epoch_batches =
                    batches::epoch_batches(&self.lengths, opts.batch_size, opts.seed, state.epoch);
            }
            let batch = &self.epoch_batches[state.batch_in_epoch];
            state.batch_in_epoch += 1;
            let (loss, n) = self.task.loss(&net, batch, Mode::Training(dropout))?;
            losses.push(loss);
            tokens += n;
        }
        let total = Tensor::stack(&losses, 0)?.mean(0)?;
        let loss_value = total.to_scalar::<f32>()? as f64;
        ensure_finite("the loss", state.step, &[("loss", loss_value)])?;
        let Update { lr, grad_norm } = updater.update(&total, state.step)?;
        state.step += 1;
        state.tokens += tokens as u64;
        self.tokens_this_run += tokens;
        let w = &mut self.window;
        w.loss += loss_value;
        w.updates += 1;
        w.tokens += tokens;
        w.grad_norm += grad_norm;
        self.pb.set_position(state.step);
        if state.step % opts.log_every.max(1) == 0 || state.step == opts.total_steps {
            self.log_window(state, lr)?;
        }
        Ok(())
    }

    /// Logs the window's mean loss, learning rate, gradient norm and throughput, and starts a
    /// new window.
    fn log_window(&mut self, state: &TrainerState, lr: f64) -> Result<()> {
        let w = &self.window;
        let secs = w.start.elapsed().as_secs_f64().max(1e-9);
        let mean = w.loss / w.updates as f64;
        let tps = w.tokens as f64 / secs;
        self.pb
            .set_message(format!("loss {mean:.4} | {tps:.0} tok/s"));
        metrics_log::append(
            &self.run.metrics(),
            &TrainRecord::Train(TrainWindowRecord {
                step: state.step,
                loss: mean,
                lr,
                grad_norm: w.grad_norm / w.updates as f64,
                tokens_per_s: tps,
                epoch: state.epoch,
                elapsed_s: self.elapsed_s(),
            }),
        )?;
        self.window = TrainWindow::new();
        Ok(())
    }

    /// Evaluates the model, logs the metrics and saves `best/` when the selection metric
    /// improved.
    fn evaluate(&mut self, model: &TrainableModel, state: &mut TrainerState) -> Result<()> {
        let metrics = self.pb.suspend(|| self.task.evaluate(model))?;
        let line = TrainRecord::Eval(EvalRecord {
            step: state.step,
            metrics: metric_values(&metrics),
        });
        metrics_log::append(&self.run.metrics(), &line)?;
        let selection = &self.selection;
        let value = metrics
            .iter()
            .find(|(k, _)| *k == selection.metric)
            .map(|(_, v)| *v)
            .ok_or_else(|| anyhow!("evaluation did not report `{}`", selection.metric))?;
        let better = match state.best {
            None => true,
            Some((b, _)) if selection.higher_is_better => value > b,
            Some((b, _)) => value < b,
        };
        self.pb.suspend(|| {
            tracing::info!(
                step = state.step,
                "eval {}{}",
                metrics
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                if better { " (best so far)" } else { "" }
            )
        });
        if better {
            state.best = Some((value, state.step));
            model.save(&self.run.best())?;
        }
        self.last_eval = metrics;
        Ok(())
    }
}
