//! `mario-train`: the MaRio training pipeline. This file parses the flags; every stage is in
//! [`mario_training::stages`], the whole run in [`mario_training::pipeline`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use mario::control::ControlChoice;
use mario::device::{DeviceChoice, WeightType};
use mario_training::config::RunConfig;
use mario_training::decoding::DecodingOverrides;
use mario_training::pipeline::{run_pipeline, PipelineOutcome};
use mario_training::quark::run::{MarioOutcome, RewardModels};
use mario_training::sft::SftSettings;
use mario_training::stages::answer_models::train_answer_model;
use mario_training::stages::eval::{evaluate_checkpoint, evaluate_rationales, CheckpointEval};
use mario_training::stages::export::export_checkpoint;
use mario_training::stages::init::init_model_folder;
use mario_training::stages::mario::{run_mario_stage, MarioInputs};
use mario_training::stages::plausibility::train_plausibility;
use mario_training::stages::sft::{run_sft, SftInputs};
use mario_training::stages::sweep::sweep;
use mario_training::stages::tokenizer::train_tokenizer_file;
use mario_training::stages::{StageOptions, StageOutcome};
use mario_training::teach::{load_demonstrations, teach, TeachOptions};

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
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

/// The flags every subcommand takes.
#[derive(Debug, Args)]
struct GlobalFlags {
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
}

impl GlobalFlags {
    /// Progress bars: unless `--no-progress`, when stderr is a terminal.
    fn progress(&self) -> bool {
        !self.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

/// `--device`, of every subcommand that runs a model.
#[derive(Debug, Clone, Copy, Args)]
struct DeviceFlag {
    /// Device: cpu, cuda or auto.
    #[arg(long = "device", value_name = "DEVICE", default_value = "cpu")]
    choice: DeviceChoice,
}

impl DeviceFlag {
    fn open(self) -> Result<Device> {
        self.choice.open().map_err(|e| anyhow!("--device: {e}"))
    }
}

/// `--resume` and `--max-minutes` of a training run (sft, consistency, plausibility).
#[derive(Debug, Clone, Copy, Args)]
struct RunFlags {
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop (final evaluation and checkpoint) once the run's training time reaches this many
    /// minutes. The time counts every invocation of the run: after a resume, pass the old total
    /// plus the minutes to add (`elapsed_s` in the run's last/trainer_state.json holds the total
    /// so far).
    #[arg(long)]
    max_minutes: Option<f64>,
}

/// `--train` and `--dev` files, else the config's datasets'.
#[derive(Debug, Args)]
struct SplitFlags {
    /// Training files (default: the config's datasets' train.jsonl and training-only files:
    /// reading.jsonl, knowledge.jsonl).
    #[arg(long)]
    train: Vec<PathBuf>,
    /// Dev files (default: dev.jsonl of the config's datasets).
    #[arg(long)]
    dev: Vec<PathBuf>,
}

impl SplitFlags {
    fn train_files(&self, cfg: &RunConfig) -> Result<Vec<PathBuf>> {
        given_or_config(
            &self.train,
            cfg.data.training_files(),
            Some("--train"),
            "training data",
        )
    }

    fn dev_files(&self, cfg: &RunConfig) -> Result<Vec<PathBuf>> {
        given_or_config(
            &self.dev,
            cfg.data.files("dev.jsonl"),
            Some("--dev"),
            "dev data",
        )
    }
}

/// The files given with `flag`, else the config's; an error naming both when neither has any.
fn given_or_config(
    given: &[PathBuf],
    from_config: Vec<PathBuf>,
    flag: Option<&str>,
    what: &str,
) -> Result<Vec<PathBuf>> {
    let files = if given.is_empty() {
        from_config
    } else {
        given.to_vec()
    };
    if files.is_empty() {
        match flag {
            Some(flag) => bail!("no {what}: pass {flag} FILE or a --config with [data] datasets"),
            None => bail!("no {what}: pass a --config with [data] datasets"),
        }
    }
    Ok(files)
}

/// The run configuration at `path`, else the built-in defaults.
fn load_config(path: &Option<PathBuf>) -> Result<RunConfig> {
    match path {
        Some(p) => RunConfig::from_file(p),
        None => Ok(RunConfig::default()),
    }
}

/// The options of a training stage.
fn stage_options(
    g: &GlobalFlags,
    device: DeviceFlag,
    resume: bool,
    max_minutes: Option<f64>,
) -> Result<StageOptions> {
    Ok(StageOptions {
        resume,
        max_minutes,
        progress: g.progress(),
        device: device.open()?,
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a byte-level BPE tokenizer with T5's special tokens on questions and rationales.
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
    /// Make a plausibility scorer from a teacher file: a VERA-format classifier, or the model's
    /// calibrated token likelihoods (`[plausibility_data] scorer`).
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
    /// Time SFT and MaRio updates (forward, backward, clip, AdamW) on synthetic batches, as
    /// bench/train_throughput/torch_train.py times transformers.
    BenchTrain(BenchTrainArgs),
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

/// The flags of a subcommand that trains a model from another (sft, consistency,
/// plausibility): `--config`, `--model`, `--out`, [`RunFlags`] and [`DeviceFlag`]. Each
/// subcommand words the help of the first three for itself (`mut_arg`).
#[derive(Debug, Args)]
struct TrainingFlags {
    /// Configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Starting model.
    #[arg(long)]
    model: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    run: RunFlags,
    #[command(flatten)]
    device: DeviceFlag,
}

impl TrainingFlags {
    /// The `--config` file, else the built-in defaults.
    fn config(&self) -> Result<RunConfig> {
        load_config(&self.config)
    }

    /// The options of the training stage (opens the device).
    fn options(&self, g: &GlobalFlags) -> Result<StageOptions> {
        stage_options(g, self.device, self.run.resume, self.run.max_minutes)
    }
}

#[derive(Debug, Args)]
#[command(
    mut_arg("config", |a| a.help("Configuration file (its [data] and [consistency] sections)")),
    mut_arg("model", |a| a.help("Starting model (usually the SFT checkpoint)")),
    mut_arg("out", |a| {
        a.help("Reward-model folder: the model is written to <out>/consistency-<mode>")
    })
)]
struct ConsistencyArgs {
    /// i2o (question -> answer) or ir2o (question + rationale -> answer).
    #[arg(long, value_enum)]
    mode: mario_training::consistency::AnswerMode,
    #[command(flatten)]
    flags: TrainingFlags,
    #[command(flatten)]
    splits: SplitFlags,
}

#[derive(Debug, Args)]
#[command(
    mut_arg("config", |a| a.help("Configuration file (its [data] and [plausibility] sections)")),
    mut_arg("model", |a| {
        a.help("Starting model (its encoder is trained; usually the SFT checkpoint)")
    }),
    mut_arg("out", |a| a.help("Output folder (the scorer is <out>/scorer)"))
)]
struct PlausibilityArgs {
    #[command(flatten)]
    flags: TrainingFlags,
    /// Teacher files (default: the config's teacher_gpt3_train.jsonl files).
    #[arg(long)]
    teacher: Vec<PathBuf>,
}

/// `--consistency` and `--plausibility`: the reward models' folders (mario, sweep).
#[derive(Debug, Args)]
struct RewardModelFlags {
    /// Folder with consistency-i2o/ and consistency-ir2o/ (for the consistency reward).
    #[arg(long)]
    consistency: Option<PathBuf>,
    /// Plausibility scorer folder (for the plausibility reward).
    #[arg(long)]
    plausibility: Option<PathBuf>,
}

impl RewardModelFlags {
    fn models(&self) -> RewardModels {
        RewardModels {
            consistency: self.consistency.clone(),
            plausibility: self.plausibility.clone(),
        }
    }
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
    #[command(flatten)]
    reward_models: RewardModelFlags,
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
    #[command(flatten)]
    device: DeviceFlag,
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
    #[command(flatten)]
    reward_models: RewardModelFlags,
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
    #[command(flatten)]
    device: DeviceFlag,
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
    #[command(flatten)]
    device: DeviceFlag,
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
    #[command(flatten)]
    device: DeviceFlag,
    /// Also write all rows here as JSON Lines.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BenchTrainArgs {
    /// Model folders (comma-separated), each with config.json, weights and tokenizer.json.
    #[arg(long, value_delimiter = ',', required = true)]
    model: Vec<PathBuf>,
    /// Updates to time: sft, mario.
    #[arg(long, value_delimiter = ',', default_value = "sft,mario")]
    steps: Vec<mario_training::bench::train::TrainStep>,
    /// Examples per update.
    #[arg(long, value_delimiter = ',', default_value = "4,32")]
    batch_sizes: Vec<usize>,
    /// Encoder tokens per example.
    #[arg(long, default_value_t = 32)]
    src: usize,
    /// Target tokens per example (the last one is EOS).
    #[arg(long, default_value_t = 48)]
    tgt: usize,
    /// Control tokens the MaRio policy reads (one per reward).
    #[arg(long, default_value_t = 4)]
    controls: usize,
    /// Untimed updates per configuration.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed updates per configuration (medians are reported).
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Dropout during the updates.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Compute types: fp32, bf16 (mixed precision: bf16 forward and backward on casts of the
    /// f32 variables; variables and AdamW stay f32).
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    dtypes: Vec<WeightType>,
    #[command(flatten)]
    device: DeviceFlag,
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
    /// Dataset folders under the data directory whose training files (train.jsonl and the
    /// training-only reading.jsonl / knowledge.jsonl) and teacher file are read, as in the
    /// pipeline.
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
#[command(
    mut_arg("config", |a| {
        a.help("Configuration file (its [data] and [sft] sections); flags override it")
    }),
    mut_arg("model", |a| {
        a.help(
            "Initial model folder (from `mario-train init`, or any T5 checkpoint), or a \
             Hugging Face Hub model id (owner/name)",
        )
    }),
    mut_arg("out", |a| {
        a.help("Run directory (checkpoints, metrics.jsonl, curves.png, report.md)")
    })
)]
struct SftArgs {
    #[command(flatten)]
    flags: TrainingFlags,
    #[command(flatten)]
    splits: SplitFlags,
    /// Stop with a checkpoint after this many updates in this invocation.
    #[arg(long)]
    stop_after: Option<u64>,
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
    control: ControlChoice,
    /// Never repeat an n-gram of this many tokens, 0 = plain greedy/sampling [the checkpoint's
    /// generation_config.json, else 0].
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    #[command(flatten)]
    device: DeviceFlag,
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

fn main() {
    let mut cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = mario::device::configure_threads(cli.global.threads) {
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
    settings.progress &= !cli.global.no_progress;
    let revision = cli.global.revision.clone();
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
        Command::Sft(a) => resolve("--model", &mut a.flags.model),
        Command::Eval(a) => a.model.as_mut().map_or(Ok(()), |m| resolve("--model", m)),
        Command::Export(a) => resolve("--model", &mut a.model),
        Command::Consistency(a) => resolve("--model", &mut a.flags.model),
        Command::Plausibility(a) => resolve("--model", &mut a.flags.model),
        Command::Sweep(a) => resolve("--model", &mut a.model),
        Command::BenchGenerate(a) => a.model.iter_mut().try_for_each(|m| resolve("--model", m)),
        Command::BenchTrain(a) => a.model.iter_mut().try_for_each(|m| resolve("--model", m)),
        Command::Mario(a) => {
            resolve("--sft", &mut a.sft)?;
            a.init.as_mut().map_or(Ok(()), |m| resolve("--init", m))
        }
        _ => Ok(()),
    }
}

fn run(cli: &Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Tokenizer(a) => cmd_tokenizer(a),
        Command::Init(a) => cmd_init(a),
        Command::Teach(a) => cmd_teach(a, g),
        Command::Sft(a) => cmd_sft(a, g),
        Command::Eval(a) => cmd_eval(a, g),
        Command::Check(a) => cmd_check(a),
        Command::Export(a) => cmd_export(a),
        Command::Consistency(a) => cmd_consistency(a, g),
        Command::Plausibility(a) => cmd_plausibility(a, g),
        Command::Mario(a) => cmd_mario(a, g),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Pipeline(a) => cmd_pipeline(a, g),
        Command::BenchGenerate(a) => cmd_bench_generate(a),
        Command::BenchTrain(a) => cmd_bench_train(a),
        Command::World(a) => cmd_world(a),
        Command::Probe(ProbeCommand::Copy(a)) => cmd_probe_copy(a),
    }
}

fn cmd_tokenizer(a: &TokenizerArgs) -> Result<()> {
    let mut cfg = load_config(&a.config)?;
    if !a.datasets.is_empty() {
        cfg.data.datasets = a.datasets.clone();
    }
    let mut settings = cfg.tokenizer.clone();
    settings.vocab_size = a.vocab_size.unwrap_or(settings.vocab_size);
    settings.min_frequency = a.min_frequency.unwrap_or(settings.min_frequency);
    let mut files: Vec<PathBuf> = cfg.data.tokenizer_files();
    files.extend(a.files.iter().cloned());
    if files.is_empty() {
        bail!(
            "no data: pass --datasets NAME[,NAME] (folders under {}) or --file FILE",
            cfg.data.dir().display()
        );
    }
    let summary = train_tokenizer_file(&files, &settings, &a.out)?;
    println!("wrote {} ({} pieces)", a.out.display(), summary.pieces);
    Ok(())
}

fn cmd_init(a: &InitArgs) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let arch = a.arch.clone().unwrap_or(cfg.init.arch);
    let seed = a.seed.unwrap_or(cfg.init.seed);
    let summary = init_model_folder(&arch, seed, &a.tokenizer, &a.out)?;
    println!(
        "wrote {} ({arch}: {:.1}M parameters, vocab {}, seed {seed})",
        a.out.display(),
        summary.params as f64 / 1e6,
        summary.vocab_size
    );
    Ok(())
}

fn cmd_teach(a: &TeachArgs, g: &GlobalFlags) -> Result<()> {
    let mut examples = mario_training::data::load_examples(&a.data)?;
    if let Some(n) = a.limit {
        examples.truncate(n);
    }
    let demos = load_demonstrations(a.demos.as_deref(), &examples)?;
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
        progress: g.progress(),
    };
    let summary = teach(&examples, &demos, &opts, &a.out)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(train_out) = &a.train_out {
        let n = mario_training::teach::write_training_split(&a.out, &examples, train_out)?;
        println!("wrote {} training rows to {}", n, train_out.display());
    }
    Ok(())
}

fn cmd_sft(a: &SftArgs, g: &GlobalFlags) -> Result<()> {
    let cfg = a.flags.config()?;
    let mut settings = cfg.sft.clone();
    a.overrides.apply(&mut settings);
    let train_files = a.splits.train_files(&cfg)?;
    let dev_files = a.splits.dev_files(&cfg)?;
    let o = a.flags.options(g)?;
    let inputs = SftInputs {
        model: &a.flags.model,
        train_files: &train_files,
        dev_files: &dev_files,
        settings: &settings,
        out: &a.flags.out,
        stop_after: a.stop_after,
    };
    let summary = run_sft(&inputs, &o)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn cmd_eval(a: &EvalArgs, g: &GlobalFlags) -> Result<()> {
    let metrics = match (&a.rationales, &a.model) {
        (Some(path), _) => evaluate_rationales(path, &a.out)?,
        (None, Some(model)) => {
            let data = a
                .data
                .clone()
                .ok_or_else(|| anyhow!("--model needs --data FILE"))?;
            let device = a.device.open()?;
            let e = CheckpointEval {
                model: model.clone(),
                data,
                out: a.out.clone(),
                config: load_config(&a.config)?.eval,
                batch_size: a.batch_size,
                samples: a.samples,
                seed: a.seed,
                limit: a.limit,
                control: a.control.clone(),
                flags: DecodingOverrides {
                    max_new_tokens: a.max_new_tokens,
                    no_repeat_ngram_size: a.no_repeat_ngram_size,
                    temperature: a.temperature,
                    top_p: a.top_p,
                },
                progress: g.progress(),
            };
            evaluate_checkpoint(&e, &device)?
        }
        (None, None) => unreachable!("clap requires --model or --rationales"),
    };
    println!("{}", serde_json::to_string_pretty(&metrics)?);
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
        let report = mario_training::data::check_file(f, tokenizer.as_ref())?;
        println!(
            "{}: {}",
            f.display(),
            serde_json::to_string_pretty(&report)?
        );
    }
    Ok(())
}

fn cmd_bench_generate(a: &BenchGenerateArgs) -> Result<()> {
    use mario_training::bench::{bench_models, markdown, GenerateBench};
    let device = a.device.open()?;
    let bench = GenerateBench {
        batch_sizes: a.batch_sizes.clone(),
        new_tokens: a.new_tokens,
        warmup: a.warmup,
        repeats: a.repeats,
    };
    let all = bench_models(&a.model, &a.inputs, &a.dtypes, &bench, &device, |r| {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    })?;
    print!("{}", markdown(&all));
    if let Some(p) = &a.json_out {
        mario_training::jsonl::write(p, &all)?;
    }
    Ok(())
}

fn cmd_bench_train(a: &BenchTrainArgs) -> Result<()> {
    use anyhow::Context;
    use mario_training::bench::train::{bench_train, markdown, TrainBench};
    let device = a.device.open()?;
    let bench = TrainBench {
        dtypes: a.dtypes.iter().map(|d| d.dtype()).collect(),
        steps: a.steps.clone(),
        batch_sizes: a.batch_sizes.clone(),
        src: a.src,
        tgt: a.tgt,
        controls: a.controls,
        warmup: a.warmup,
        repeats: a.repeats,
        dropout: a.dropout,
        ..TrainBench::default()
    };
    let mut all = Vec::new();
    for m in &a.model {
        let rows = bench_train(m, &bench, &device, |r| {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        })
        .with_context(|| format!("benchmarking {}", m.display()))?;
        all.extend(rows);
    }
    print!("{}", markdown(&all));
    if let Some(p) = &a.json_out {
        mario_training::jsonl::write(p, &all)?;
    }
    Ok(())
}

fn cmd_export(a: &ExportArgs) -> Result<()> {
    let bytes = export_checkpoint(&a.model, &a.out, a.dtype, a.no_repeat_ngram_size)?;
    println!(
        "wrote {} ({:.1} MB of {} weights)",
        a.out.display(),
        bytes as f64 / 1e6,
        a.dtype
    );
    Ok(())
}

fn cmd_consistency(a: &ConsistencyArgs, g: &GlobalFlags) -> Result<()> {
    let cfg = a.flags.config()?;
    let train_files = a.splits.train_files(&cfg)?;
    let dev_files = a.splits.dev_files(&cfg)?;
    let o = a.flags.options(g)?;
    match train_answer_model(
        a.mode,
        &a.flags.model,
        &train_files,
        &dev_files,
        &cfg.consistency,
        &a.flags.out,
        &o,
    )? {
        StageOutcome::Done(dest) => println!("wrote {}", dest.display()),
        StageOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}

fn cmd_plausibility(a: &PlausibilityArgs, g: &GlobalFlags) -> Result<()> {
    let cfg = a.flags.config()?;
    let teacher = given_or_config(
        &a.teacher,
        cfg.data.files("teacher_gpt3_train.jsonl"),
        Some("--teacher"),
        "teacher data",
    )?;
    let o = a.flags.options(g)?;
    match train_plausibility(
        &a.flags.model,
        &teacher,
        &cfg.plausibility,
        &cfg.plausibility_data,
        &a.flags.out,
        &o,
    )? {
        StageOutcome::Done((dest, auc)) => {
            println!("wrote {} (held-out AUC {auc:.4})", dest.display())
        }
        StageOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}

fn cmd_mario(a: &MarioArgs, g: &GlobalFlags) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let train_files = given_or_config(&[], cfg.data.files("train.jsonl"), None, "training data")?;
    let dev_files = given_or_config(&[], cfg.data.files("dev.jsonl"), None, "dev data")?;
    let replay_files = cfg.data.training_only_files();
    let teacher_files = cfg.data.files("teacher_gpt3_train.jsonl");
    let o = stage_options(g, a.device, a.resume, a.max_minutes)?;
    let inputs = MarioInputs {
        settings: &cfg.mario,
        sft: &a.sft,
        init: a.init.as_deref(),
        train_files: &train_files,
        replay_files: &replay_files,
        teacher_files: &teacher_files,
        dev_files: &dev_files,
        reward_models: &a.reward_models.models(),
        out: &a.out,
        stop_after: a.stop_after,
    };
    match run_mario_stage(&inputs, &o)? {
        MarioOutcome::Finished(metrics) => println!("done; metrics in {}", metrics.display()),
        MarioOutcome::Stopped { step, round } => println!(
            "stopped in round {round} after {step} updates; continue with --resume (same flags)"
        ),
    }
    Ok(())
}

fn cmd_sweep(a: &SweepArgs) -> Result<()> {
    let cfg = load_config(&a.config)?;
    let dev = given_or_config(
        &a.dev,
        cfg.data.files("dev.jsonl"),
        Some("--dev"),
        "dev data",
    )?;
    let device = a.device.open()?;
    let models = a.reward_models.models();
    let flags = DecodingOverrides {
        max_new_tokens: a.max_new_tokens,
        no_repeat_ngram_size: a.no_repeat_ngram_size,
        ..Default::default()
    };
    sweep(&a.model, &dev, &models, &cfg.mario, &flags, &a.out, &device)?;
    println!("wrote {}", a.out.join("sweep.md").display());
    Ok(())
}

fn cmd_pipeline(a: &PipelineArgs, g: &GlobalFlags) -> Result<()> {
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
    let o = stage_options(g, a.device, true, a.max_minutes_per_stage)?;
    match run_pipeline(&cfg, &a.out, &o)? {
        PipelineOutcome::Finished => println!("wrote {}", a.out.join("report.md").display()),
        PipelineOutcome::Stopped(s) => println!("{s}"),
    }
    Ok(())
}

fn cmd_world(a: &WorldArgs) -> Result<()> {
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

fn cmd_probe_copy(a: &CopyProbeArgs) -> Result<()> {
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
