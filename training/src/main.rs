//! `mario-train`: the MaRio training pipeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Parser, Subcommand};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;
use mario::device::{DeviceChoice, WeightType};
use mario_training::config::RunConfig;
use mario_training::data::{duplicate_report, load_examples, load_teacher};
use mario_training::decoding::{Decoding, DecodingOverrides};
use mario_training::eval::{
    add_measures, aggregate, evaluate_model, evaluate_rationale_file, write_eval, EvalMetrics,
    EvalOptions, ExampleResult,
};
use mario_training::init::{init_weights, resolve_arch, write_model_folder};
use mario_training::pipeline::{
    run_pipeline, sweep, train_answer_model, train_plausibility, PipelineOutcome, StageOptions,
    StageOutcome,
};
use mario_training::quark::run::{run_mario, MarioOutcome, MarioRun, RewardModels};
use mario_training::report::markdown_table;
use mario_training::sft::{SftSettings, SftTask};
use mario_training::teach::{default_demonstrations, teach, Demonstration, TeachOptions};
use mario_training::tokenizer::{corpus_from_files, save_tokenizer, train_tokenizer};
use mario_training::train::{train, RunDir, TrainableModel};
use mario_training::world::truth::truth_rewards_for;
use serde_json::json;

/// Train self-rationalizing T5 models with MaRio (multi-reward distillation).
///
/// Stages: `tokenizer` → `init` → (`teach`) → `sft` → `eval`. Each reads and writes Hugging
/// Face folders and JSON Lines, so any stage can be rerun or replaced. Data files default to
/// `$MARIO_DATA` (else `../shared/data/mario`).
///
/// Wherever a model folder is read (`--model`, `--sft`, `--init`, `[init] model`), an argument
/// that is not an existing folder and looks like `owner/name` is a Hugging Face Hub model id
/// (at `--revision`), downloaded once into the Hugging Face cache (`HF_HUB_CACHE`, else
/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; `HF_TOKEN`, `HF_ENDPOINT` and
/// `HF_HUB_OFFLINE=1` are honoured).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Threads for tensor work (default: all cores).
    #[arg(long, global = true, env = "MARIO_THREADS")]
    threads: Option<usize>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info", env = "MARIO_LOG")]
    log: String,
    /// No progress bars.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Revision (branch, tag or commit) of a Hugging Face Hub model id given for a model
    /// folder (`[init] model` has `[init] revision`).
    #[arg(long, global = true, default_value = mario::hub::DEFAULT_REVISION)]
    revision: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a Unigram tokenizer with T5's special tokens on questions and rationales.
    Tokenizer(TokenizerArgs),
    /// Write a randomly initialised T5 (transformers' initialisation) as a model folder.
    Init(InitArgs),
    /// Collect teacher rationales from an OpenAI-compatible chat-completions endpoint.
    Teach(TeachArgs),
    /// SFT distillation: train a T5 on teacher rationales.
    Sft(SftArgs),
    /// Evaluate a checkpoint on a split, or score an existing rationale file.
    Eval(EvalArgs),
    /// Validate data files and report duplicates.
    Check(CheckArgs),
    /// Copy a checkpoint for shipping, with its weights converted (e.g. to bf16).
    Export(ExportArgs),
    /// Train one of the consistency reward's answer models (I2O or IR2O).
    Consistency(ConsistencyArgs),
    /// Train a plausibility scorer (VERA format) from a teacher file.
    Plausibility(PlausibilityArgs),
    /// The multi-reward QUARK loop (MaRio) from an SFT checkpoint.
    Mario(MarioArgs),
    /// Controllability sweep of a MaRio checkpoint: each reward's bin from best to worst.
    ///
    /// Each finished decoding is kept in `<out>/sweep-partial.jsonl`: the same command run
    /// again after an interruption continues where it stopped.
    Sweep(SweepArgs),
    /// Every stage from tokenizer to MaRio and the report, resumable stage by stage.
    Pipeline(PipelineArgs),
    /// Time greedy generation (forced new tokens) of a model folder, as the peer benchmarks do.
    BenchGenerate(BenchGenerateArgs),
    /// Generate a knowledge world (data folder with world.json): invented entities, questions
    /// chaining two or more facts, and an imperfect teacher with known flaws.
    World(WorldArgs),
    /// Generate a probe data set that tests a training recipe (e.g. `probe copy`).
    #[command(subcommand)]
    Probe(ProbeCommand),
}

#[derive(Debug, Args)]
struct WorldArgs {
    /// Configuration file (its [world] table); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed [default: the config's, else 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Output data folder (train.jsonl, dev.jsonl, test.jsonl, teacher_gpt3_train.jsonl,
    /// world.json).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ProbeCommand {
    /// The copy task: invented names in the question, repeated in the rationale; dev names are
    /// never seen in training, so SFT's dev_rationale_exact is the share of names copied.
    Copy(CopyProbeArgs),
}

#[derive(Debug, Args)]
struct CopyProbeArgs {
    /// Output folder (train.jsonl and dev.jsonl, JSON Lines).
    #[arg(long)]
    out: PathBuf,
    /// Training records, one distinct name each.
    #[arg(long, default_value_t = 3000)]
    train: usize,
    /// Dev records, with names not in training.
    #[arg(long, default_value_t = 200)]
    dev: usize,
    /// Seed of names, templates and answers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
struct ConsistencyArgs {
    /// i2o (question -> answer) or ir2o (question + rationale -> answer).
    #[arg(long, value_enum)]
    mode: mario_training::consistency::AnswerMode,
    /// Configuration file (its [data] and [consistency] sections).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Starting model (usually the SFT checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// Training files (default: the config's train.jsonl files).
    #[arg(long)]
    train: Vec<PathBuf>,
    /// Dev files (default: the config's dev.jsonl files).
    #[arg(long)]
    dev: Vec<PathBuf>,
    /// Reward-model folder: the model is written to <out>/consistency-<mode>.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) once the run's training time reaches this many minutes. The
    /// time counts every invocation of the run: after a resume, pass the old total plus the
    /// minutes to add.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct PlausibilityArgs {
    /// Configuration file (its [data] and [plausibility] sections).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Starting model (its encoder is trained; usually the SFT checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// Teacher files (default: the config's teacher_gpt3_train.jsonl files).
    #[arg(long)]
    teacher: Vec<PathBuf>,
    /// Output folder (the scorer is <out>/scorer).
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) once the run's training time reaches this many minutes. The
    /// time counts every invocation of the run: after a resume, pass the old total plus the
    /// minutes to add.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct MarioArgs {
    /// Configuration file (its [data] and [mario] sections).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The SFT checkpoint (reference model and, by default, the policy's start): a folder or a
    /// Hugging Face Hub model id (owner/name).
    #[arg(long)]
    sft: PathBuf,
    /// The policy's start when [mario] policy_from_sft = false.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Folder with consistency-i2o/ and consistency-ir2o/ (for the consistency reward).
    #[arg(long)]
    consistency: Option<PathBuf>,
    /// Plausibility scorer folder (for the plausibility reward).
    #[arg(long)]
    plausibility: Option<PathBuf>,
    /// Run directory (last/, best/, pool.jsonl, metrics.jsonl, rewards.png).
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run (from its last checkpoint: the end of a round, or inside
    /// one when it was stopped or saved there).
    #[arg(long)]
    resume: bool,
    /// Stop after this many minutes, with a checkpoint that --resume continues.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Stop after this many updates, with a checkpoint that --resume continues.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Configuration file (its [data] and [mario] sections: rewards, decoding, eval_limit).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A MaRio checkpoint (with mario.json).
    #[arg(long)]
    model: PathBuf,
    /// Dev files (default: the config's dev.jsonl files).
    #[arg(long)]
    dev: Vec<PathBuf>,
    /// Folder with consistency-i2o/ and consistency-ir2o/.
    #[arg(long)]
    consistency: Option<PathBuf>,
    /// Plausibility scorer folder.
    #[arg(long)]
    plausibility: Option<PathBuf>,
    /// Output folder (sweep.md, sweep.json, sweep.png).
    #[arg(long)]
    out: PathBuf,
    /// Most new tokens per output [the config's [mario] max_new_tokens, else the checkpoint's
    /// generation_config.json, else 128].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// n-gram blocking, 0 = none [the first of the config's [mario] eval_no_repeat_ngram_sizes,
    /// else the checkpoint's generation_config.json, else 0].
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// Configuration file (training/configs/<dataset>.toml).
    #[arg(long)]
    config: PathBuf,
    /// Output folder for every stage and report.md.
    #[arg(long)]
    out: PathBuf,
    /// Time limit of each training stage, in minutes of that stage's total training time (a
    /// resumed stage counts its earlier invocations too).
    #[arg(long)]
    max_minutes_per_stage: Option<f64>,
    /// The seed of the generated world (replaces `[world] seed`; only with a `[world]` table).
    #[arg(long)]
    world_seed: Option<u64>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct BenchGenerateArgs {
    /// Model folders (comma-separated), each with config.json, weights and tokenizer.json.
    #[arg(long, value_delimiter = ',', required = true)]
    model: Vec<PathBuf>,
    /// Inputs: JSON Lines with `text` (tokenized) or `ids` (batch B = the first B lines).
    #[arg(long)]
    inputs: PathBuf,
    /// Weight and activation types: fp32, bf16.
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    dtypes: Vec<WeightType>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch_sizes: Vec<usize>,
    /// Forced new tokens per row (EOS suppressed until then).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Untimed runs per configuration.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Also write all rows here as JSON Lines.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Source model folder.
    #[arg(long)]
    model: PathBuf,
    /// Destination folder.
    #[arg(long)]
    out: PathBuf,
    /// Weight type: f32, bf16 or f16.
    #[arg(long, default_value = "bf16")]
    dtype: WeightType,
    /// Write this decoding default (n-gram blocking) into generation_config.json.
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
}

#[derive(Debug, Args)]
struct TokenizerArgs {
    /// Configuration file ([data] datasets and [tokenizer] settings).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset folders under the data directory whose train.jsonl (and teacher file) are read.
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Extra data files (split or teacher layout).
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Vocabulary size (specials and the 256 bytes included) [default: 8000].
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Merge a pair of pieces only if it occurs this often [default: 8].
    #[arg(long)]
    min_frequency: Option<u64>,
    /// Output tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Configuration file ([init] arch and seed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Architecture: tiny, small, base, large, or a config.json [default: tiny].
    #[arg(long)]
    arch: Option<String>,
    /// The tokenizer.json the model will use (sets vocab_size).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Initialisation seed [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct TeachArgs {
    /// Questions with gold answers (split layout; rationales may be "dummy").
    #[arg(long)]
    data: PathBuf,
    /// Output teacher file (JSON Lines, teacher layout); appended to, and resumable.
    #[arg(long)]
    out: PathBuf,
    /// Also write the kept rationales as a training split (JSON Lines) here.
    #[arg(long)]
    train_out: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible API.
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    url: String,
    /// Teacher model name.
    #[arg(long, env = "MARIO_TEACHER_MODEL")]
    model: String,
    /// API key (sent as a bearer token).
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    api_key: String,
    /// Samples per question.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Retries of a failed request (429, 5xx, network), with exponential backoff.
    #[arg(long, default_value_t = 5)]
    retries: usize,
    /// First retry delay in milliseconds (doubles each retry).
    #[arg(long, default_value_t = 1000)]
    backoff_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Few-shot demonstrations (JSON Lines with question, rationale, answer); default:
    /// built-in ones for the question's answer format.
    #[arg(long)]
    demos: Option<PathBuf>,
    /// Keep samples whose answer is wrong too (e.g. as negatives).
    #[arg(long)]
    keep_wrong: bool,
    /// Only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Args)]
struct SftArgs {
    /// Configuration file (its [data] and [sft] sections); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Initial model folder (from `mario-train init`, or any T5 checkpoint), or a Hugging Face
    /// Hub model id (owner/name).
    #[arg(long)]
    model: PathBuf,
    /// Training files (default: train.jsonl of the config's datasets).
    #[arg(long)]
    train: Vec<PathBuf>,
    /// Dev files (default: dev.jsonl of the config's datasets).
    #[arg(long)]
    dev: Vec<PathBuf>,
    /// Run directory (checkpoints, metrics.jsonl, curves.png, report.md).
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop with a checkpoint after this many updates in this invocation.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Stop (final evaluation and checkpoint) once the run's training time reaches this many
    /// minutes. The time counts every invocation of the run: after a resume, pass the old total
    /// plus the minutes to add (`elapsed_s` in last/trainer_state.json holds the total so far).
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    #[command(flatten)]
    overrides: SftOverrides,
}

/// Flags that override `[sft]` settings (see `SftSettings` for their meaning and defaults).
#[derive(Debug, Args)]
struct SftOverrides {
    /// Peak learning rate [paper: 3e-5].
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up steps [paper: 1000].
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Total updates (overrides --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Passes over the training data [paper: 25].
    #[arg(long)]
    epochs: Option<f64>,
    /// Examples per micro-batch [paper: 4].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per update [1].
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Gradient-norm clip [paper: 0.5].
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Decoupled weight decay [0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Dropout [the model's dropout_rate].
    #[arg(long)]
    dropout: Option<f64>,
    /// Seed of data order and dropout [1].
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate every N updates [1000].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Save a resumable checkpoint every N updates [at evaluations].
    #[arg(long)]
    save_every: Option<u64>,
    /// Log the training loss every N updates [20].
    #[arg(long)]
    log_every: Option<u64>,
    /// Dev questions decoded per evaluation, 0 = all [0].
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Most new tokens when decoding dev questions [128].
    #[arg(long)]
    max_new_tokens: Option<usize>,
}

impl SftOverrides {
    fn apply(&self, s: &mut SftSettings) {
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = self.$f { s.$f = v; } )*};
        }
        set!(
            lr,
            warmup_steps,
            steps,
            epochs,
            batch_size,
            grad_accum,
            max_grad_norm,
            weight_decay,
            seed,
            eval_every,
            save_every,
            log_every,
            eval_limit,
            max_new_tokens
        );
        if self.dropout.is_some() {
            s.dropout = self.dropout;
        }
        if self.epochs.is_some() && self.steps.is_none() {
            s.steps = 0;
        }
    }
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Checkpoint folder to evaluate (with --data), or a Hugging Face Hub model id (owner/name).
    #[arg(
        long,
        conflicts_with = "rationales",
        required_unless_present = "rationales"
    )]
    model: Option<PathBuf>,
    /// Questions with gold answers (split layout).
    #[arg(long, requires = "model")]
    data: Option<PathBuf>,
    /// Score this rationale file (teacher layout) instead of a model.
    #[arg(long)]
    rationales: Option<PathBuf>,
    /// Output folder: metrics.json, metrics.md, examples.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// Configuration file: its [eval] table decodes between the checkpoint's
    /// generation_config.json and these flags.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Questions per generation batch [the config's [eval] batch_size, else 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Most new tokens per output [the checkpoint's generation_config.json, else 128].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Samples per question (1 = greedy; more = majority vote).
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Sampling temperature, with --samples > 1 [1.0].
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus mass, with --samples > 1 [0.9].
    #[arg(long)]
    top_p: Option<f64>,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Control tokens for a MaRio checkpoint: best, worst, or reward=bin,reward=bin.
    #[arg(long, default_value = "best")]
    control: String,
    /// Never repeat an n-gram of this many tokens, 0 = plain greedy/sampling [the checkpoint's
    /// generation_config.json, else 0].
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Split files (train.jsonl, dev.jsonl layout) to validate.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also refuse records whose SFT target this tokenizer (a tokenizer.json or a model
    /// folder) encodes with `<unk>`.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

fn progress(cli: &Cli) -> bool {
    !cli.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn main() {
    let mut cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = mario::device::configure_threads(cli.threads) {
        eprintln!("mario-train: --threads: {e}");
        std::process::exit(2);
    }
    if let Err(e) = resolve_models(&mut cli) {
        eprintln!("mario-train: error: {e:#}");
        std::process::exit(1);
    }
    if let Err(e) = mario::device::run_in_pool(|| run(&cli)) {
        eprintln!("mario-train: error: {e:#}");
        std::process::exit(1);
    }
}

/// Every model argument that names a Hugging Face Hub id rather than a folder becomes the
/// folder of its snapshot in the Hugging Face cache (downloaded when needed); folders stay as
/// they are.
fn resolve_models(cli: &mut Cli) -> Result<()> {
    let mut settings = mario::hub::HubSettings::from_env();
    settings.progress &= !cli.no_progress;
    let revision = cli.revision.clone();
    let resolve = |flag: &str, arg: &mut PathBuf| -> Result<()> {
        let m = mario::hub::resolve_model_with(arg, &revision, &settings)
            .map_err(|e| anyhow!("{flag}: {e}"))?;
        if m.source != mario::hub::ModelSource::Folder {
            tracing::info!("{flag}: {}", m.describe());
        }
        *arg = m.dir;
        Ok(())
    };
    match &mut cli.command {
        Command::Sft(a) => resolve("--model", &mut a.model),
        Command::Eval(a) => a.model.as_mut().map_or(Ok(()), |m| resolve("--model", m)),
        Command::Export(a) => resolve("--model", &mut a.model),
        Command::Consistency(a) => resolve("--model", &mut a.model),
        Command::Plausibility(a) => resolve("--model", &mut a.model),
        Command::Sweep(a) => resolve("--model", &mut a.model),
        Command::BenchGenerate(a) => a.model.iter_mut().try_for_each(|m| resolve("--model", m)),
        Command::Mario(a) => {
            resolve("--sft", &mut a.sft)?;
            a.init.as_mut().map_or(Ok(()), |m| resolve("--init", m))
        }
        _ => Ok(()),
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Tokenizer(a) => cmd_tokenizer(a),
        Command::Init(a) => cmd_init(a),
        Command::Teach(a) => cmd_teach(a, progress(cli)),
        Command::Sft(a) => cmd_sft(a, progress(cli)),
        Command::Eval(a) => cmd_eval(a, progress(cli)),
        Command::Check(a) => cmd_check(a),
        Command::Export(a) => cmd_export(a),
        Command::Consistency(a) => cmd_consistency(a, progress(cli)),
        Command::Plausibility(a) => cmd_plausibility(a, progress(cli)),
        Command::Mario(a) => cmd_mario(a, progress(cli)),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Pipeline(a) => cmd_pipeline(a, progress(cli)),
        Command::BenchGenerate(a) => cmd_bench_generate(a),
        Command::World(a) => {
            let mut settings = load_config(&a.config)?.world.unwrap_or_default();
            if let Some(seed) = a.seed {
                settings.seed = seed;
            }
            let summary = mario_training::world::World::generate(&settings)?.write(&a.out)?;
            println!(
                "wrote {}: {}",
                a.out.display(),
                serde_json::to_string_pretty(&summary)?
            );
            Ok(())
        }
        Command::Probe(ProbeCommand::Copy(a)) => {
            mario_training::probe::CopyProbe {
                train: a.train,
                dev: a.dev,
                seed: a.seed,
            }
            .write(&a.out)?;
            println!(
                "wrote {} ({} train and {} dev records)",
                a.out.display(),
                a.train,
                a.dev
            );
            Ok(())
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<RunConfig> {
    match path {
        Some(p) => RunConfig::from_file(p),
        None => Ok(RunConfig::default()),
    }
}

fn cmd_tokenizer(a: &TokenizerArgs) -> Result<()> {
    let mut cfg = load_config(&a.config)?;
    if !a.datasets.is_empty() {
        cfg.data.datasets = a.datasets.clone();
    }
    let mut files: Vec<PathBuf> = cfg.data.files("train.jsonl");
    files.extend(cfg.data.files("teacher_gpt3_train.jsonl"));
    files.extend(a.files.iter().cloned());
    if files.is_empty() {
        bail!(
            "no data: pass --datasets NAME[,NAME] (folders under {}) or --file FILE",
            cfg.data.dir().display()
        );
    }
    let texts = corpus_from_files(&files)?;
    let mut settings = cfg.tokenizer.clone();
    settings.vocab_size = a.vocab_size.unwrap_or(settings.vocab_size);
    settings.min_frequency = a.min_frequency.unwrap_or(settings.min_frequency);
    tracing::info!(
        files = files.len(),
        strings = texts.len(),
        vocab = settings.vocab_size,
        min_frequency = settings.min_frequency,
        "training tokenizer"
    );
    let tok = train_tokenizer(&texts, &settings)?;
    save_tokenizer(&tok, &a.out)?;
    println!(
        "wrote {} ({} pieces)",
        a.out.display(),
        tok.get_vocab_size(true)
    );
    Ok(())
}

fn cmd_init(a: &InitArgs) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let tok = mario::tokenize::TextTokenizer::from_file(&a.tokenizer)?;
    let arch = a.arch.clone().unwrap_or(cfg.init.arch);
    let model_cfg = resolve_arch(&arch, tok.vocab_size())?;
    let seed = a.seed.unwrap_or(cfg.init.seed);
    let weights = init_weights(&model_cfg, seed)?;
    write_model_folder(&a.out, &model_cfg, &weights, &a.tokenizer)?;
    let params: usize = weights.values().map(|t| t.elem_count()).sum();
    println!(
        "wrote {} ({arch}: {:.1}M parameters, vocab {}, seed {seed})",
        a.out.display(),
        params as f64 / 1e6,
        model_cfg.vocab_size
    );
    Ok(())
}

fn cmd_teach(a: &TeachArgs, progress: bool) -> Result<()> {
    let mut examples = load_examples(&a.data)?;
    if let Some(n) = a.limit {
        examples.truncate(n);
    }
    let demos: Vec<Demonstration> = match &a.demos {
        Some(p) => load_examples(p)?
            .into_iter()
            .map(|e| {
                Ok(Demonstration {
                    rationale: e.rationale.ok_or_else(|| {
                        anyhow!("{}: record {} has no rationale", p.display(), e.id)
                    })?,
                    question: e.question,
                    answer: e.answer,
                })
            })
            .collect::<Result<_>>()?,
        None => default_demonstrations(
            examples
                .first()
                .is_some_and(|e| e.choices().labels == ["no", "yes"]),
        ),
    };
    let opts = TeachOptions {
        url: a.url.clone(),
        model: a.model.clone(),
        api_key: a.api_key.clone(),
        samples: a.samples,
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        concurrency: a.concurrency,
        retries: a.retries,
        backoff: Duration::from_millis(a.backoff_ms),
        timeout: Duration::from_secs(a.timeout_s),
        keep_wrong: a.keep_wrong,
        progress,
    };
    let summary = teach(&examples, &demos, &opts, &a.out)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(train_out) = &a.train_out {
        let n = mario_training::teach::write_training_split(&a.out, &examples, train_out)?;
        println!("wrote {} training rows to {}", n, train_out.display());
    }
    Ok(())
}

fn cmd_sft(a: &SftArgs, progress: bool) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let mut settings = cfg.sft.clone();
    a.overrides.apply(&mut settings);
    let train_files = if a.train.is_empty() {
        cfg.data.training_files()
    } else {
        a.train.clone()
    };
    let dev_files = if a.dev.is_empty() {
        cfg.data.files("dev.jsonl")
    } else {
        a.dev.clone()
    };
    if train_files.is_empty() {
        bail!("no training data: pass --train FILE or a --config with [data] datasets");
    }
    if dev_files.is_empty() {
        bail!("no dev data: pass --dev FILE or a --config with [data] datasets");
    }
    let device = a.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let mut model = TrainableModel::load(&a.model, &device)
        .with_context(|| format!("loading the initial model {}", a.model.display()))?;
    let task = SftTask::load(
        &train_files,
        &dev_files,
        &model.tokenizer,
        settings.clone(),
        &device,
    )?;
    let mut opts = settings.train_options(task.train.len());
    opts.stop_after = a.stop_after;
    opts.max_minutes = a.max_minutes;
    opts.progress = progress;
    tracing::info!(
        params = model.num_params(),
        steps = opts.total_steps,
        batch = opts.batch_size,
        lr = opts.lr,
        "SFT"
    );
    let run = RunDir(a.out.clone());
    let summary = train(&task, &mut model, &opts, &run, a.resume)?;
    write_sft_report(
        a,
        &settings,
        &task,
        &summary,
        &train_files,
        &dev_files,
        model.num_params(),
    )?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn write_sft_report(
    a: &SftArgs,
    settings: &SftSettings,
    task: &SftTask,
    summary: &mario_training::train::TrainSummary,
    train_files: &[PathBuf],
    dev_files: &[PathBuf],
    params: usize,
) -> Result<()> {
    let mut rows = vec![
        vec!["initial model".into(), a.model.display().to_string()],
        vec!["parameters".into(), format!("{:.2}M", params as f64 / 1e6)],
        vec!["train files".into(), list(train_files)],
        vec!["dev files".into(), list(dev_files)],
        vec!["training pairs".into(), task.train.len().to_string()],
        vec!["dev questions".into(), task.dev.len().to_string()],
        vec![
            "updates".into(),
            format!(
                "{} ({})",
                summary.steps,
                if summary.completed {
                    "completed"
                } else {
                    "stopped early"
                }
            ),
        ],
        vec![
            "training time".into(),
            format!("{:.1} min", summary.elapsed_s / 60.0),
        ],
        vec![
            "throughput (this invocation)".into(),
            format!("{:.0} tokens/s", summary.tokens_per_s),
        ],
    ];
    if let Some((v, step)) = summary.best {
        rows.push(vec![
            "best dev accuracy".into(),
            format!("{:.2} % at update {step}", 100.0 * v),
        ]);
    }
    for (k, v) in &summary.last_eval {
        rows.push(vec![format!("final {k}"), format!("{v:.4}")]);
    }
    let md = format!(
        "# SFT run `{}`\n\nWritten by `mario-train sft` on {}.\n\n{}\n## Settings\n\n```json\n{}\n```\n\n![curves](curves.png)\n",
        a.out.display(),
        chrono_like_now(),
        markdown_table(&["", ""], &rows),
        serde_json::to_string_pretty(settings)?
    );
    std::fs::write(a.out.join("report.md"), md)?;
    Ok(())
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The current UTC date and time, formatted without a date library.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // civil-from-days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

fn parse_control(spec: &str) -> Result<ControlChoice> {
    match spec {
        "best" => Ok(ControlChoice::Best),
        "worst" => Ok(ControlChoice::Worst),
        other => {
            let mut map = std::collections::BTreeMap::new();
            for part in other.split(',') {
                let (k, v) = part.split_once('=').ok_or_else(|| {
                    anyhow!(
                        "--control: expected best, worst or reward=bin[,reward=bin], got {part:?}"
                    )
                })?;
                let bin: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("--control: bin {v:?} is not a number"))?;
                map.insert(k.trim().to_string(), bin);
            }
            Ok(ControlChoice::Bins(map))
        }
    }
}

fn cmd_eval(a: &EvalArgs, progress: bool) -> Result<()> {
    if let Some(path) = &a.rationales {
        let records = load_teacher(path)?;
        let (mut metrics, mut results) = evaluate_rationale_file(&records);
        add_world_truth(path, &mut metrics, &mut results)?;
        let title = format!("Rationale file {}", path.display());
        write_eval(&a.out, &title, &metrics, &json!({"source": path}), &results)?;
        println!("{}", serde_json::to_string_pretty(&metrics)?);
        return Ok(());
    }
    let model_dir = a
        .model
        .as_ref()
        .expect("clap requires --model or --rationales");
    let data = a
        .data
        .as_ref()
        .ok_or_else(|| anyhow!("--model needs --data FILE"))?;
    let device: Device = a.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let ckpt = Checkpoint::load(model_dir, DType::F32, &device)?;
    let examples = load_examples(data)?;
    let prefix = match &ckpt.control {
        Some(table) => {
            let bins = table.resolve(&parse_control(&a.control)?)?;
            table.prefix_ids(&bins, &ckpt.tokenizer)
        }
        None if a.control != "best" => {
            bail!("--control: {} has no mario.json", model_dir.display())
        }
        None => Vec::new(),
    };
    let flags = DecodingOverrides {
        max_new_tokens: a.max_new_tokens,
        no_repeat_ngram_size: a.no_repeat_ngram_size,
        temperature: a.temperature,
        top_p: a.top_p,
    };
    let cfg = load_config(&a.config)?;
    let decoding = Decoding::resolve(&ckpt.generation, &cfg.eval.decoding(), &flags);
    tracing::info!("decoding: {}", decoding.describe(a.samples));
    let opts = EvalOptions {
        batch_size: a.batch_size.or(cfg.eval.batch_size).unwrap_or(32),
        samples: a.samples,
        seed: a.seed,
        limit: a.limit,
        prefix,
        progress,
        ..Default::default()
    }
    .with_decoding(&decoding);
    let started = std::time::Instant::now();
    let (mut metrics, mut results) =
        evaluate_model(&ckpt.model, &ckpt.tokenizer, &examples, &opts)?;
    add_world_truth(data, &mut metrics, &mut results)?;
    let title = format!("{} on {}", model_dir.display(), data.display());
    let extra = json!({
        "model": model_dir, "data": data,
        "decoding": if a.samples > 1 { "sampled, majority vote" } else { "greedy" },
        "samples": a.samples, "control": a.control,
        "max_new_tokens": opts.max_new_tokens, "no_repeat_ngram_size": opts.no_repeat_ngram_size,
        "decoding_settings": decoding,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let title = format!("{title}\n\nDecoding: {}.", decoding.describe(a.samples));
    write_eval(&a.out, &title, &metrics, &extra, &results)?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(())
}

/// When `data` lies in a generated world, scores every output with the ground-truth measures.
fn add_world_truth(
    data: &Path,
    metrics: &mut EvalMetrics,
    results: &mut [ExampleResult],
) -> Result<()> {
    let measures = truth_rewards_for(&[data.to_path_buf()])?;
    if !measures.is_empty() {
        add_measures(results, &measures)?;
        *metrics = aggregate(results);
    }
    Ok(())
}

fn cmd_check(a: &CheckArgs) -> Result<()> {
    let tokenizer = match &a.tokenizer {
        Some(p) if p.is_dir() => Some(mario::tokenize::TextTokenizer::from_file(
            &p.join(mario::tokenize::TOKENIZER_FILE),
        )?),
        Some(p) => Some(mario::tokenize::TextTokenizer::from_file(p)?),
        None => None,
    };
    for f in &a.files {
        let ex = load_examples(f)?;
        if let Some(tok) = &tokenizer {
            mario_training::tokenizer::check_targets(tok, f, &ex)?;
        }
        let report = duplicate_report(&ex);
        println!(
            "{}: {}",
            f.display(),
            serde_json::to_string_pretty(&report)?
        );
    }
    Ok(())
}

fn cmd_bench_generate(a: &BenchGenerateArgs) -> Result<()> {
    use mario_training::bench::{bench_generate, GenerateBench};
    let device = a.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let bench = GenerateBench {
        batch_sizes: a.batch_sizes.clone(),
        new_tokens: a.new_tokens,
        warmup: a.warmup,
        repeats: a.repeats,
    };
    let mut all = Vec::new();
    for model in &a.model {
        for &d in &a.dtypes {
            if d == WeightType::F16 {
                bail!("--dtypes f16: the benchmark runs fp32 or bf16");
            }
            let dtype = d.dtype();
            let rows = bench_generate(model, &a.inputs, dtype, &bench, &device, |r| {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            })
            .with_context(|| format!("benchmarking {}", model.display()))?;
            all.extend(rows);
        }
    }
    println!("| model | dtype | batch | tokens/s | ms/step |\n|---|---|---:|---:|---:|");
    for r in &all {
        println!(
            "| {} | {} | {} | {:.1} | {:.3} |",
            r.model, r.dtype, r.batch, r.tok_s, r.ms_per_step
        );
    }
    if let Some(p) = &a.json_out {
        let text: String = all
            .iter()
            .map(|r| serde_json::to_string(r).map(|s| s + "\n"))
            .collect::<Result<_, _>>()?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn cmd_export(a: &ExportArgs) -> Result<()> {
    let dtype = a.dtype.dtype();
    // loading checks every file first
    Checkpoint::load(&a.model, DType::F32, &Device::Cpu)
        .with_context(|| format!("checking {}", a.model.display()))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for f in [
        "config.json",
        "tokenizer.json",
        "mario.json",
        "generation_config.json",
    ] {
        let src = a.model.join(f);
        if src.is_file() {
            std::fs::copy(&src, a.out.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    let mut tensors = std::collections::HashMap::new();
    for file in mario::model::weight_files(&a.model)? {
        for (name, t) in candle_core::safetensors::load(&file, &Device::Cpu)? {
            tensors.insert(name, t.to_dtype(dtype)?);
        }
    }
    let dest = a.out.join(mario::model::WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    if let Some(n) = a.no_repeat_ngram_size {
        let path = a.out.join(mario::checkpoint::GENERATION_CONFIG_FILE);
        let mut gen = mario::checkpoint::GenerationDefaults::from_dir(&a.out)?;
        gen.no_repeat_ngram_size = Some(n);
        std::fs::write(&path, serde_json::to_string_pretty(&gen)? + "\n")?;
    }
    let bytes = std::fs::metadata(&dest)?.len();
    println!(
        "wrote {} ({:.1} MB of {} weights)",
        a.out.display(),
        bytes as f64 / 1e6,
        a.dtype
    );
    Ok(())
}

fn or_config(given: &[PathBuf], cfg: &RunConfig, file: &str, what: &str) -> Result<Vec<PathBuf>> {
    let files = if given.is_empty() {
        cfg.data.files(file)
    } else {
        given.to_vec()
    };
    if files.is_empty() {
        bail!("no {what}: pass them on the command line or a --config with [data] datasets");
    }
    Ok(files)
}

fn stage(
    device: DeviceChoice,
    resume: bool,
    max_minutes: Option<f64>,
    progress: bool,
) -> Result<StageOptions> {
    Ok(StageOptions {
        resume,
        max_minutes,
        progress,
        device: device.open().map_err(|e| anyhow!("--device: {e}"))?,
    })
}

fn cmd_consistency(a: &ConsistencyArgs, progress: bool) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let train_files = if a.train.is_empty() {
        cfg.data.training_files()
    } else {
        a.train.clone()
    };
    if train_files.is_empty() {
        bail!(
            "no training files: pass them on the command line or a --config with [data] datasets"
        );
    }
    let dev_files = or_config(&a.dev, &cfg, "dev.jsonl", "dev files")?;
    let o = stage(a.device, a.resume, a.max_minutes, progress)?;
    match train_answer_model(
        a.mode,
        &a.model,
        &train_files,
        &dev_files,
        &cfg.consistency,
        &a.out,
        &o,
    )? {
        StageOutcome::Done(dest) => println!("wrote {}", dest.display()),
        StageOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}

fn cmd_plausibility(a: &PlausibilityArgs, progress: bool) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let teacher = or_config(
        &a.teacher,
        &cfg,
        "teacher_gpt3_train.jsonl",
        "teacher files",
    )?;
    let o = stage(a.device, a.resume, a.max_minutes, progress)?;
    match train_plausibility(
        &a.model,
        &teacher,
        &cfg.plausibility,
        &cfg.plausibility_data,
        &a.out,
        &o,
    )? {
        StageOutcome::Done((dest, auc)) => {
            println!("wrote {} (held-out AUC {auc:.4})", dest.display())
        }
        StageOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}

fn cmd_mario(a: &MarioArgs, progress: bool) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let device = a.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let outcome = run_mario(MarioRun {
        settings: cfg.mario.clone(),
        sft: a.sft.clone(),
        init: a.init.clone(),
        train_files: or_config(&[], &cfg, "train.jsonl", "training files")?,
        dev_files: or_config(&[], &cfg, "dev.jsonl", "dev files")?,
        reward_models: RewardModels {
            consistency: a.consistency.clone(),
            plausibility: a.plausibility.clone(),
        },
        out: a.out.clone(),
        resume: a.resume,
        max_minutes: a.max_minutes,
        stop_after: a.stop_after,
        device: &device,
        progress,
    })?;
    match outcome {
        MarioOutcome::Finished(metrics) => println!("done; metrics in {}", metrics.display()),
        MarioOutcome::Stopped { step, round } => println!(
            "stopped in round {round} after {step} updates; continue with --resume (same flags)"
        ),
    }
    Ok(())
}

fn cmd_sweep(a: &SweepArgs) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let dev = or_config(&a.dev, &cfg, "dev.jsonl", "dev files")?;
    let device = a.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let models = RewardModels {
        consistency: a.consistency.clone(),
        plausibility: a.plausibility.clone(),
    };
    let flags = DecodingOverrides {
        max_new_tokens: a.max_new_tokens,
        no_repeat_ngram_size: a.no_repeat_ngram_size,
        ..Default::default()
    };
    sweep(&a.model, &dev, &models, &cfg.mario, &flags, &a.out, &device)?;
    println!("wrote {}", a.out.join("sweep.md").display());
    Ok(())
}

fn cmd_pipeline(a: &PipelineArgs, progress: bool) -> Result<()> {
    let mut cfg = RunConfig::from_file(&a.config)?;
    if let Some(seed) = a.world_seed {
        match cfg.world.as_mut() {
            Some(w) => w.seed = seed,
            None => bail!(
                "--world-seed: {} has no [world] table (its data is not generated)",
                a.config.display()
            ),
        }
    }
    let o = stage(a.device, true, a.max_minutes_per_stage, progress)?;
    match run_pipeline(&cfg, &a.out, &o)? {
        PipelineOutcome::Finished => println!("wrote {}", a.out.join("report.md").display()),
        PipelineOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}
