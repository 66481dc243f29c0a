//! The stages after SFT, and the whole pipeline in one command:
//! tokenizer → init → SFT → consistency models → plausibility scorer → MaRio → eval + sweep,
//! each stage skipped when its output exists (so the pipeline resumes stage by stage), ending
//! in one report comparing SFT and MaRio.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;
use mario::rewards::plausibility::PLAUSIBILITY_FILE;
use serde::{Deserialize, Serialize};

use crate::config::{DataSection, PlausibilityDataSection, RunConfig};
use crate::consistency::{AnswerMode, AnswerTask};
use crate::data::load_teacher;
use crate::decoding::{Decoding, DecodingOverrides};
use crate::eval::{evaluate_model, EvalOptions};
use crate::plausibility::{balance, build_examples, PlausibilityTask};
use crate::quark::dev_scores::{dev_scores_path, paired, read_dev_scores, DevScore};
use crate::quark::run::{
    build_rewards, run_mario, score_all, DevEval, MarioOutcome, MarioRun, MarioSettings,
    MarioState, RewardModels, RewardName,
};
use crate::report::markdown_table;
use crate::report::paired::PairedDiff;
use crate::report::plot::{save_charts, Chart, Series};
use crate::sft::{SftSettings, SftTask};
use crate::train::{train, RunDir, TrainSummary, TrainableModel};
use crate::world::truth::TruthMeasure;
use crate::world::World;

/// Copies the files of a folder (not recursive).
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name();
            if name == "optimizer.safetensors" || name == "trainer_state.json" {
                continue;
            }
            std::fs::copy(entry.path(), dst.join(name))?;
        }
    }
    Ok(())
}

/// Options shared by the training stages.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Continue an interrupted stage.
    pub resume: bool,
    /// Stop a stage after this many minutes.
    pub max_minutes: Option<f64>,
    /// Progress bars.
    pub progress: bool,
    /// Device.
    pub device: Device,
}

/// A training stage that hit its time limit (`--max-minutes`) before its last update. Its
/// checkpoint is kept, and nothing downstream treats the stage as done.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedEarly {
    /// The stage (`sft`, `consistency-i2o`, ...).
    pub stage: String,
    /// Updates done so far.
    pub steps: u64,
    /// Its run folder (`last/` resumes, `best/` is the best checkpoint so far).
    pub run: PathBuf,
}

impl std::fmt::Display for StoppedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {} stopped by its time limit after {} updates; its best checkpoint so far is \
             {}/best; rerun with --resume (the pipeline: the same command) to finish it",
            self.stage,
            self.steps,
            self.run.display()
        )
    }
}

impl StoppedEarly {
    /// `Some` when `summary` ended before the stage's last update.
    fn unless_completed(summary: &TrainSummary, stage: &str, run: &RunDir) -> Option<Self> {
        (!summary.completed).then(|| Self {
            stage: stage.to_string(),
            steps: summary.steps,
            run: run.0.clone(),
        })
    }
}

/// How a training stage ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome<T> {
    /// It ran to its last update and wrote its output.
    Done(T),
    /// It hit its time limit; no final output was written.
    Stopped(StoppedEarly),
}

/// Trains I2O or IR2O from `model` (usually the SFT model) and writes the best checkpoint to
/// `<out>/consistency-i2o` or `<out>/consistency-ir2o` once training has run to its end.
pub fn train_answer_model(
    mode: AnswerMode,
    model: &Path,
    train_files: &[PathBuf],
    dev_files: &[PathBuf],
    settings: &SftSettings,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<PathBuf>> {
    let name = match mode {
        AnswerMode::I2o => mario::rewards::consistency::I2O_DIR,
        AnswerMode::Ir2o => mario::rewards::consistency::IR2O_DIR,
    };
    let mut m = TrainableModel::load(model, &o.device)?;
    let task = AnswerTask::load(
        mode,
        train_files,
        dev_files,
        &m.tokenizer,
        settings.max_input_tokens,
        settings.eval_limit,
        &o.device,
    )?;
    let mut opts = settings.train_options(task.train.len());
    opts.max_minutes = o.max_minutes;
    opts.progress = o.progress;
    let run = RunDir(out.join("runs").join(name));
    let summary = train(&task, &mut m, &opts, &run, o.resume)?;
    tracing::info!("{name}: {:?}", summary.best);
    if let Some(s) = StoppedEarly::unless_completed(&summary, name, &run) {
        return Ok(StageOutcome::Stopped(s));
    }
    let dest = out.join(name);
    copy_dir(&run.best(), &dest)?;
    Ok(StageOutcome::Done(dest))
}

/// Trains a plausibility scorer; once training has run to its end, writes it (with
/// `plausibility.json`) to `out/scorer` and returns that folder and the held-out AUC.
pub fn train_plausibility(
    model: &Path,
    teacher_files: &[PathBuf],
    settings: &SftSettings,
    data: &PlausibilityDataSection,
    out: &Path,
    o: &StageOptions,
) -> Result<StageOutcome<(PathBuf, f64)>> {
    let mut records = Vec::new();
    for f in teacher_files {
        records.extend(load_teacher(f)?);
    }
    // a generated world next to the teacher file gives false-fact negatives
    let world = match teacher_files.iter().find_map(|f| f.parent()) {
        Some(dir) => World::load(dir)?,
        None => None,
    };
    let (train_ex, test_ex) = build_examples(&records, settings.seed, world.as_ref());
    let built = train_ex.len();
    let train_ex = balance(train_ex, data.negatives_per_positive, settings.seed);
    let mut m = TrainableModel::load(model, &o.device)?;
    let task = PlausibilityTask::new(&mut m, &train_ex, &test_ex, &o.device)?;
    tracing::info!(
        train = task.train.len(),
        built,
        held_out = task.test.len(),
        "plausibility data"
    );
    let mut opts = settings.train_options(task.train.len());
    opts.max_minutes = o.max_minutes;
    opts.progress = o.progress;
    let run = RunDir(out.join("run"));
    let summary = train(&task, &mut m, &opts, &run, o.resume)?;
    if let Some(s) = StoppedEarly::unless_completed(&summary, "plausibility", &run) {
        return Ok(StageOutcome::Stopped(s));
    }
    let dest = out.join("scorer");
    copy_dir(&run.best(), &dest)?;
    std::fs::write(
        dest.join(PLAUSIBILITY_FILE),
        serde_json::to_string_pretty(&task.head)? + "\n",
    )?;
    let best_step = summary.best.map(|b| b.1).unwrap_or(0);
    let best = TrainableModel::load(&dest, &o.device)?;
    let aucs = task.held_out_aucs(&best.model)?;
    let auc = aucs[0].1;
    let table: String = aucs
        .iter()
        .map(|(k, v)| format!("| {k} | {v:.4} |\n"))
        .collect();
    std::fs::write(
        out.join("report.md"),
        format!(
            "# Plausibility scorer\n\nTrained from `{}` on {} examples ({}; {} held out, split \
             by question) from {:?}; the checkpoint of step {best_step} was kept.\n\nHeld-out AUC, \
             overall and of the positives against each kind of negative:\n\n| metric | AUC |\n\
             |---|---|\n{table}",
            model.display(),
            task.train.len(),
            if data.negatives_per_positive > 0.0 {
                format!(
                    "every positive and at most {} negatives per positive, of {built} built",
                    data.negatives_per_positive
                )
            } else {
                "all the negatives built".to_string()
            },
            task.test.len(),
            teacher_files
        ),
    )?;
    Ok(StageOutcome::Done((dest, auc)))
}

/// One row of the controllability sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// The reward whose bin is varied.
    pub reward: String,
    /// Its bin (0 = best).
    pub bin: usize,
    /// Mean of every reward over the dev outputs.
    pub means: Vec<(String, f64)>,
    /// Dev accuracy.
    pub accuracy: f64,
    /// Every reward's score per dev question, in the means' order (for paired intervals).
    #[serde(skip)]
    pub per_question: Vec<Vec<Option<f64>>>,
}

/// For each reward, decodes dev with that reward's bin from best to worst (the others at
/// best) and reports each reward's mean per bin; writes `sweep.md`, `sweep.json`, `sweep.png`.
/// Decoding: the checkpoint's `generation_config.json` < `settings` < `flags`.
pub fn sweep(
    model_dir: &Path,
    dev_files: &[PathBuf],
    reward_models: &RewardModels,
    settings: &MarioSettings,
    flags: &DecodingOverrides,
    out: &Path,
    device: &Device,
) -> Result<Vec<SweepRow>> {
    let ckpt = Checkpoint::load(model_dir, DType::F32, device)?;
    let decode_with = Decoding::resolve(&ckpt.generation, &settings.into(), flags);
    tracing::info!("sweep decoding: {}", decode_with.describe(1));
    let table = ckpt.control.clone().ok_or_else(|| {
        anyhow!(
            "{} has no mario.json: nothing to sweep",
            model_dir.display()
        )
    })?;
    let reward_names = RewardName::of_table(&table)?;
    let names: Vec<String> = reward_names.iter().map(|r| r.to_string()).collect();
    // every reward scores each decoding, then the ground-truth measures of a generated world
    let mut rewards = build_rewards(&reward_names, reward_models, device)?;
    rewards.extend(crate::world::truth::truth_rewards_for(dev_files)?);
    let measured: Vec<String> = rewards.iter().map(|r| r.name().to_string()).collect();
    let mut dev = Vec::new();
    for f in dev_files {
        dev.extend(crate::data::load_examples(f)?);
    }
    std::fs::create_dir_all(out)?;
    let limit = (settings.eval_limit > 0).then_some(settings.eval_limit);
    let questions = limit.map_or(dev.len(), |l| l.min(dev.len()));
    let partial_path = out.join(SWEEP_PARTIAL_FILE);
    let mut done = SweepPartial::open(&partial_path, model_dir, questions)?;
    let mut rows = Vec::new();
    for r in &table.rewards {
        for bin in 0..r.bins() {
            let bins = table.resolve(&ControlChoice::Bins(
                [(r.name.clone(), bin)].into_iter().collect(),
            ))?;
            // every reward's bin 0 is the same all-best setting: decoded once
            let decoding = match done.get(&bins) {
                Some(d) if d.per_question.len() != rewards.len() => bail!(
                    "{}: its decodings were scored with {} measures, this sweep has {} ({}); \
                     remove it to start the sweep again",
                    partial_path.display(),
                    d.per_question.len(),
                    rewards.len(),
                    measured.join(", ")
                ),
                Some(d) => d.clone(),
                None => {
                    let opts = EvalOptions {
                        limit,
                        prefix: table.prefix_ids(&bins, &ckpt.tokenizer),
                        ..Default::default()
                    }
                    .with_decoding(&decode_with);
                    let (m, results) = evaluate_model(&ckpt.model, &ckpt.tokenizer, &dev, &opts)?;
                    let items: Vec<(String, String, String)> = results
                        .iter()
                        .map(|x| (x.question.clone(), x.output.clone(), x.gold.clone()))
                        .collect();
                    let scores = score_all(&rewards, &items)?;
                    let d = SweepDecoding {
                        bins: bins.clone(),
                        accuracy: m.accuracy,
                        per_question: (0..rewards.len())
                            .map(|k| scores.iter().map(|s| s[k]).collect())
                            .collect(),
                    };
                    done.record(d.clone())?;
                    d
                }
            };
            let means: Vec<(String, f64)> = rewards
                .iter()
                .zip(&decoding.per_question)
                .map(|(rw, col)| {
                    let v: Vec<f64> = col.iter().copied().flatten().collect();
                    (
                        rw.name().to_string(),
                        v.iter().sum::<f64>() / v.len().max(1) as f64,
                    )
                })
                .collect();
            tracing::info!(reward = %r.name, bin, "sweep {means:?}");
            rows.push(SweepRow {
                reward: r.name.clone(),
                bin,
                means,
                accuracy: decoding.accuracy,
                per_question: decoding.per_question,
            });
        }
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("sweep.json"), serde_json::to_string_pretty(&rows)?)?;
    let mut header = vec!["varied reward", "bin"];
    header.extend(measured.iter().map(String::as_str));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![r.reward.clone(), r.bin.to_string()];
            v.extend(r.means.iter().map(|(_, m)| format!("{m:.4}")));
            v
        })
        .collect();
    let mut md = format!(
        "# Controllability sweep of `{}`\n\nEach row decodes the dev questions with one reward's \
         control token at the given bin (0 = best) and every other reward at its best bin, then \
         scores the outputs with every reward (means), and in a generated world with every ground-truth \
         measure (`truth_*`). Decoding: {}.\n\n{}",
        model_dir.display(),
        decode_with.describe(1),
        markdown_table(&header, &table_rows)
    );
    md.push_str(
        "\nThe last two columns pair the best and the worst bin's outputs question by question: \
         the mean of best - worst with its 95 % interval, and where that interval lies; in a generated world a second row judges the reward's ground \
         truth (plausibility: `truth_fact_accuracy`, consistency: `truth_entailed`, diversity: \
         `truth_no_repetition`) over the same decodings.\n\n\
         | reward | best-bin mean | worst-bin mean | best > worst | best - worst [95 %] | \
         where it lies |\n|---|---:|---:|---|---:|---|\n",
    );
    let mut charts = Vec::new();
    for (name, reward) in names.iter().zip(&reward_names) {
        let own_rows: Vec<&SweepRow> = rows.iter().filter(|r| &r.reward == name).collect();
        // the varied reward itself, then its ground truth when the world has one
        let mut judged = vec![name.clone()];
        judged.extend(
            TruthMeasure::counterpart(*reward)
                .map(|m| m.name().to_string())
                .filter(|m| measured.contains(m)),
        );
        let mut own = Vec::new();
        for (j, column) in judged.iter().enumerate() {
            let k = measured
                .iter()
                .position(|m| m == column)
                .expect("judged columns are measured");
            let verdict_row = best_vs_worst(&own_rows, k, column);
            if let Some((line, means)) = verdict_row {
                let label = if j == 0 {
                    name.clone()
                } else {
                    format!("{name} (ground truth: {column})")
                };
                md.push_str(&format!("| {label} | {line} |\n"));
                if j == 0 {
                    own = means;
                }
            }
        }
        charts.push(Chart {
            title: format!("{name}: mean vs its bin"),
            x_label: "bin (0 = best)".into(),
            series: vec![Series {
                name: name.clone(),
                points: own.iter().map(|&(b, m)| (b as f64, m)).collect(),
            }],
            markers: true,
            y_range: None,
        });
    }
    md.push_str("\n![sweep](sweep.png)\n");
    std::fs::write(out.join("sweep.md"), md)?;
    save_charts(&charts, 2, &out.join("sweep.png"))?;
    std::fs::remove_file(&partial_path)?;
    Ok(rows)
}

/// The best-vs-worst verdict of one measured column (`k`) over a varied reward's rows (bin 0
/// first): the table cells after the reward's name, and the column's mean per bin.
fn best_vs_worst(
    own_rows: &[&SweepRow],
    k: usize,
    column: &str,
) -> Option<(String, Vec<(usize, f64)>)> {
    let (best, worst) = (own_rows.first()?, own_rows.last()?);
    let diff = PairedDiff::of(&worst.per_question[k], &best.per_question[k])
        .filter(|_| own_rows.len() > 1);
    let (diff_text, verdict) = diff
        .map(|d| (d.describe(), d.verdict()))
        .unwrap_or_else(|| ("-".into(), "-"));
    let means: Vec<(usize, f64)> = own_rows
        .iter()
        .map(|r| {
            (
                r.bin,
                r.means
                    .iter()
                    .find(|m| m.0 == column)
                    .map(|m| m.1)
                    .unwrap_or(f64::NAN),
            )
        })
        .collect();
    let (first, last) = (means.first()?.1, means.last()?.1);
    let line = format!(
        "{first:.4} | {last:.4} | {} | {diff_text} | {verdict}",
        if first > last { "yes" } else { "no" }
    );
    Some((line, means))
}

/// The sweep's finished decodings so far (`<out>/sweep-partial.jsonl`), so that an
/// interrupted sweep resumes where it stopped; removed when the sweep is written.
pub const SWEEP_PARTIAL_FILE: &str = "sweep-partial.jsonl";

/// One decoding of the sweep: a bin per reward (prefix order) and what it scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SweepDecoding {
    bins: Vec<usize>,
    accuracy: f64,
    /// Every reward's score per dev question.
    per_question: Vec<Vec<Option<f64>>>,
}

/// The first line of the partial file: what the decodings were made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SweepPartialHeader {
    model: String,
    questions: usize,
}

/// The partial file, read at the start and appended to after each decoding.
struct SweepPartial {
    path: PathBuf,
    decodings: Vec<SweepDecoding>,
}

impl SweepPartial {
    /// Reads the decodings a previous run of the same sweep left; a file from another model
    /// or dev set, or a bad line, is an error naming the file.
    fn open(path: &Path, model: &Path, questions: usize) -> Result<Self> {
        let header = SweepPartialHeader {
            model: model.display().to_string(),
            questions,
        };
        let mut decodings = Vec::new();
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut lines = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty());
            if let Some((_, first)) = lines.next() {
                let found: SweepPartialHeader = serde_json::from_str(first)
                    .with_context(|| format!("{}: line 1", path.display()))?;
                if found != header {
                    bail!(
                        "{} holds a sweep of {} over {} questions, not of {} over {}: remove it \
                         to start this sweep afresh",
                        path.display(),
                        found.model,
                        found.questions,
                        header.model,
                        header.questions
                    );
                }
                for (i, line) in lines {
                    let d: SweepDecoding = serde_json::from_str(line)
                        .with_context(|| format!("{}: line {}", path.display(), i + 1))?;
                    if d.per_question.iter().any(|c| c.len() != questions) {
                        bail!(
                            "{}: line {}: not {questions} questions",
                            path.display(),
                            i + 1
                        );
                    }
                    decodings.push(d);
                }
            }
        }
        if decodings.is_empty() {
            std::fs::write(path, serde_json::to_string(&header)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        } else {
            tracing::info!(
                done = decodings.len(),
                "sweep: resuming from {}",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            decodings,
        })
    }

    fn get(&self, bins: &[usize]) -> Option<&SweepDecoding> {
        self.decodings.iter().find(|d| d.bins == bins)
    }

    fn record(&mut self, d: SweepDecoding) -> Result<()> {
        crate::jsonl::append_one(&self.path, &d)?;
        self.decodings.push(d);
        Ok(())
    }
}

/// How `run_pipeline` ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineOutcome {
    /// Every stage is done and `report.md` is written.
    Finished,
    /// A training stage hit its time limit; running the pipeline again continues it.
    Stopped(StoppedEarly),
}

/// Runs every stage of a configuration into `out`, skipping stages whose output exists. A
/// training stage stopped by `o.max_minutes` ends the run there (its checkpoint kept, nothing
/// downstream started), so the next invocation resumes it instead of building on a cut stage.
pub fn run_pipeline(cfg: &RunConfig, out: &Path, o: &StageOptions) -> Result<PipelineOutcome> {
    std::fs::create_dir_all(out)?;
    // 0. the data: a generated world, or the configured datasets
    let data = pipeline_data(cfg, out)?;
    let train_files = data.files("train.jsonl");
    // SFT and the answer models also read the training-only questions MaRio does not sample
    let sft_files = data.training_files();
    let dev_files = data.files("dev.jsonl");
    let teacher_files = data.files("teacher_gpt3_train.jsonl");
    if train_files.is_empty() || dev_files.is_empty() {
        bail!(
            "the configuration's [data] datasets have no train.jsonl / dev.jsonl under {}",
            data.dir().display()
        );
    }
    // 1-2. tokenizer and init, unless SFT starts from a pretrained folder
    let init = match &cfg.init.model {
        Some(arg) => {
            // a folder, or a Hugging Face Hub id downloaded into the cache
            let revision = cfg
                .init
                .revision
                .as_deref()
                .unwrap_or(mario::hub::DEFAULT_REVISION);
            let dir = &mario::hub::resolve_model(arg, revision)
                .map_err(|e| anyhow!("[init] model: {e}"))?;
            for f in ["config.json", "tokenizer.json"] {
                if !dir.join(f).is_file() {
                    bail!(
                        "[init] model = {}: no {f} there (a Hugging Face T5 folder holds \
                         config.json, model.safetensors and tokenizer.json)",
                        dir.display()
                    );
                }
            }
            tracing::info!(
                "stages tokenizer and init: skipped, SFT starts from {}",
                dir.display()
            );
            dir.clone()
        }
        None => new_model(cfg, out, &sft_files, &teacher_files)?,
    };
    // 3. SFT
    let sft_run = RunDir(out.join("sft"));
    // Done means the trainer state reached its last update: a standalone `sft` cut by its
    // time limit leaves `best/` behind, which must not pass for a finished stage.
    if !sft_run.completed() {
        let mut m = TrainableModel::load(&init, &o.device)?;
        let task = SftTask::load(
            &sft_files,
            &dev_files,
            &m.tokenizer,
            cfg.sft.clone(),
            &o.device,
        )?;
        let mut opts = cfg.sft.train_options(task.train.len());
        opts.max_minutes = o.max_minutes;
        opts.progress = o.progress;
        let summary = train(&task, &mut m, &opts, &sft_run, sft_run.has_checkpoint())?;
        if let Some(s) = StoppedEarly::unless_completed(&summary, "sft", &sft_run) {
            return Ok(PipelineOutcome::Stopped(s));
        }
        tracing::info!("stage sft: done");
    }
    let sft = sft_run.best();
    // 4. consistency models
    let rm_dir = out.join("reward-models");
    let needs = |n: RewardName| cfg.mario.rewards.contains(&n);
    if needs(RewardName::Consistency) {
        for (mode, name) in [
            (AnswerMode::I2o, "consistency-i2o"),
            (AnswerMode::Ir2o, "consistency-ir2o"),
        ] {
            if !is_model_folder(&rm_dir.join(name)) {
                let resume = rm_dir
                    .join("runs")
                    .join(name)
                    .join("last/trainer_state.json")
                    .is_file();
                let so = StageOptions {
                    resume,
                    ..o.clone()
                };
                if let StageOutcome::Stopped(s) = train_answer_model(
                    mode,
                    &sft,
                    &sft_files,
                    &dev_files,
                    &cfg.consistency,
                    &rm_dir,
                    &so,
                )? {
                    return Ok(PipelineOutcome::Stopped(s));
                }
                tracing::info!("stage {name}: done");
            }
        }
    }
    // 5. plausibility scorer
    let pl_dir = out.join("plausibility");
    if needs(RewardName::Plausibility) && !is_model_folder(&pl_dir.join("scorer")) {
        let resume = pl_dir.join("run/last/trainer_state.json").is_file();
        let so = StageOptions {
            resume,
            ..o.clone()
        };
        if let StageOutcome::Stopped(s) = train_plausibility(
            &sft,
            &teacher_files,
            &cfg.plausibility,
            &cfg.plausibility_data,
            &pl_dir,
            &so,
        )? {
            return Ok(PipelineOutcome::Stopped(s));
        }
        tracing::info!("stage plausibility: done");
    }
    let reward_models = RewardModels {
        consistency: needs(RewardName::Consistency).then(|| rm_dir.clone()),
        plausibility: needs(RewardName::Plausibility).then(|| pl_dir.join("scorer")),
    };
    // 6. MaRio
    let mario_dir = out.join("mario");
    let saved = MarioState::load(&mario_dir)?;
    let unfinished = saved
        .as_ref()
        .is_none_or(|st| st.rounds_done < cfg.mario.rounds);
    if unfinished {
        let outcome = run_mario(MarioRun {
            settings: cfg.mario.clone(),
            sft: sft.clone(),
            init: Some(init.clone()),
            train_files: train_files.clone(),
            dev_files: dev_files.clone(),
            reward_models: reward_models.clone(),
            out: mario_dir.clone(),
            resume: saved.is_some(),
            max_minutes: o.max_minutes,
            stop_after: None,
            device: &o.device,
            progress: o.progress,
        })?;
        if let MarioOutcome::Stopped { step, .. } = outcome {
            return Ok(PipelineOutcome::Stopped(StoppedEarly {
                stage: "mario".into(),
                steps: step,
                run: mario_dir,
            }));
        }
        tracing::info!("stage mario: done");
    }
    // 7. sweep and report (the report first without the sweep, which takes a while)
    let sweep_dir = out.join("sweep");
    if !sweep_dir.join("sweep.json").is_file() {
        write_comparison(&mario_dir, &sweep_dir, out)?;
        sweep(
            &mario_dir.join("best"),
            &dev_files,
            &reward_models,
            &cfg.mario,
            &DecodingOverrides::default(),
            &sweep_dir,
            &o.device,
        )?;
    }
    // 8. the test split, when the data has one (a generated world)
    let test_files = data.files("test.jsonl");
    if !test_files.is_empty() && !out.join(TEST_DIR).join("mario.jsonl").is_file() {
        evaluate_test(
            &test_files,
            &sft,
            &mario_dir.join("best"),
            &reward_models,
            &cfg.mario,
            out,
            &o.device,
        )?;
        tracing::info!("stage test: done");
    }
    write_comparison(&mario_dir, &sweep_dir, out)?;
    Ok(PipelineOutcome::Finished)
}

/// `<out>/test/`: every test question's output and scores, of the SFT model (`sft.jsonl`) and
/// of the best MaRio round with the best control tokens (`mario.jsonl`), in the MaRio dev
/// files' layout (`-nr<N>` files for the further n-gram blocking sizes).
pub const TEST_DIR: &str = "test";

/// Decodes the test split with the SFT model and the best MaRio checkpoint (the same decoding
/// as the MaRio dev evaluations, every question) and writes `<out>/test/`.
fn evaluate_test(
    test_files: &[PathBuf],
    sft: &Path,
    mario_best: &Path,
    reward_models: &RewardModels,
    settings: &MarioSettings,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let mut test = Vec::new();
    for f in test_files {
        test.extend(crate::data::load_examples(f)?);
    }
    let mario = Checkpoint::load(mario_best, DType::F32, device)?;
    let table = mario
        .control
        .clone()
        .ok_or_else(|| anyhow!("{} has no mario.json", mario_best.display()))?;
    let rewards = build_rewards(&RewardName::of_table(&table)?, reward_models, device)?;
    let settings = MarioSettings {
        eval_limit: 0,
        ..settings.clone()
    };
    let sft = Checkpoint::load(sft, DType::F32, device)?;
    let harness = DevEval {
        dev: &test,
        rewards: &rewards,
        measures: crate::world::truth::truth_rewards_for(test_files)?,
        settings: &settings,
        // as the MaRio dev evaluations: the SFT checkpoint's generation_config.json < [mario]
        decoding: Decoding::resolve(&sft.generation, &(&settings).into(), &Default::default()),
        dir: out.join(TEST_DIR),
    };
    harness.all(&sft.model, &sft.tokenizer, &[], "sft")?;
    let prefix = table.prefix_ids(&table.resolve(&ControlChoice::Best)?, &mario.tokenizer);
    harness.all(&mario.model, &mario.tokenizer, &prefix, "mario")?;
    Ok(())
}

/// Rows `metric | A | B | change | 95 % interval | where it lies` over every score of two
/// decodings of the same questions (accuracy first, then by name).
fn paired_rows(a: &[DevScore], b: &[DevScore]) -> Result<Vec<Vec<String>>> {
    let mut metrics: Vec<String> = a
        .iter()
        .flat_map(|r| r.scores.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    metrics.sort_by_key(|m| (m != "accuracy", m.clone()));
    let mean = |rows: &[DevScore], m: &str| {
        let v: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.scores.get(m).copied().flatten())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut out = Vec::new();
    for m in &metrics {
        let (x, y) = (mean(a, m), mean(b, m));
        let diff = paired(a, b, m)?;
        out.push(comparison_row(m, x, y, diff));
    }
    Ok(out)
}

/// One row `metric | A | B | change | 95 % interval | where it lies`.
fn comparison_row(metric: &str, a: f64, b: f64, diff: Option<PairedDiff>) -> Vec<String> {
    vec![
        metric.to_string(),
        format!("{a:.4}"),
        format!("{b:.4}"),
        format!("{:+.4}", b - a),
        diff.map(|d| format!("[{:+.4}, {:+.4}]", d.low(), d.high()))
            .unwrap_or_else(|| "-".into()),
        diff.map(|d| d.verdict().to_string())
            .unwrap_or_else(|| "-".into()),
    ]
}

/// The pipeline's data. With a `[world]` table: stage 0 writes the world into
/// `<out>/data/world/` (skipped when the same world is already there; another world there is
/// an error) and the pipeline trains on it. Otherwise the configured `[data]` datasets.
pub fn pipeline_data(cfg: &RunConfig, out: &Path) -> Result<DataSection> {
    let Some(settings) = &cfg.world else {
        return Ok(cfg.data.clone());
    };
    if !cfg.data.datasets.is_empty() {
        bail!(
            "the configuration has both a [world] table and [data] datasets {:?}: a pipeline \
             trains on one or the other",
            cfg.data.datasets
        );
    }
    let dir = out.join("data").join("world");
    match World::load(&dir)? {
        Some(w) if &w.settings == settings => {
            tracing::info!("stage world: {} exists", dir.display());
        }
        Some(_) => bail!(
            "{} holds a world made with other [world] settings than the configuration's; \
             remove it or choose another output folder",
            dir.display()
        ),
        None => {
            let summary = World::generate(settings)?.write(&dir)?;
            tracing::info!(
                "stage world: wrote {} ({} facts, {} training questions, {} silver samples, \
                 teacher accuracy {:.2})",
                dir.display(),
                summary.facts,
                summary.train_questions,
                summary.silver,
                summary.teacher_accuracy
            );
        }
    }
    Ok(DataSection {
        datasets: vec!["world".into()],
        dir: Some(out.join("data")),
    })
}

/// A stage's model folder is written (its `config.json` exists).
fn is_model_folder(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// Stages 1 and 2: trains `<out>/tokenizer.json` on the training questions and rationales (the
/// training-only files included) and writes `<out>/init/` with random weights of `[init]
/// arch`, each skipped when it exists.
fn new_model(
    cfg: &RunConfig,
    out: &Path,
    train_files: &[PathBuf],
    teacher_files: &[PathBuf],
) -> Result<PathBuf> {
    let tok_path = out.join("tokenizer.json");
    if !tok_path.is_file() {
        let files: Vec<PathBuf> = train_files.iter().chain(teacher_files).cloned().collect();
        let tok = crate::tokenizer::train_tokenizer(
            &crate::tokenizer::corpus_from_files(&files)?,
            &cfg.tokenizer,
        )?;
        crate::tokenizer::save_tokenizer(&tok, &tok_path)?;
        tracing::info!("stage tokenizer: done");
    }
    let init = out.join("init");
    if !is_model_folder(&init) {
        let tok = mario::tokenize::TextTokenizer::from_file(&tok_path)?;
        let mcfg = crate::init::resolve_arch(&cfg.init.arch, tok.vocab_size())?;
        crate::init::write_model_folder(
            &init,
            &mcfg,
            &crate::init::init_weights(&mcfg, cfg.init.seed)?,
            &tok_path,
        )?;
        tracing::info!("stage init: done");
    }
    Ok(init)
}

/// `report.md`: SFT against MaRio on dev (from the MaRio run's metrics), the sweep verdicts.
pub fn write_comparison(mario_dir: &Path, sweep_dir: &Path, out: &Path) -> Result<()> {
    let rows: Vec<serde_json::Value> = crate::jsonl::read(&mario_dir.join("metrics.jsonl"))?;
    let sft = rows
        .iter()
        .find(|r| r["kind"] == "eval" && r["model"] == "sft")
        .ok_or_else(|| anyhow!("the MaRio log has no SFT evaluation"))?;
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        mario_dir.join("last/mario_state.json"),
    )?)?;
    let best_round = state["best"][1].as_u64();
    let best = rows
        .iter()
        .rfind(|r| {
            r["kind"] == "eval" && r["model"] == "policy" && r["round"].as_u64() == best_round
        })
        .ok_or_else(|| anyhow!("the MaRio log has no evaluation of the best round"))?;
    let keys: Vec<String> = sft
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| k.starts_with("dev_"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // per-question scores of both decodings, when the run wrote them
    let per_question = match best_round {
        Some(r) => {
            let (a, b) = (
                dev_scores_path(mario_dir, "sft"),
                dev_scores_path(mario_dir, &format!("round-{r}")),
            );
            if a.is_file() && b.is_file() {
                Some((read_dev_scores(&a)?, read_dev_scores(&b)?))
            } else {
                None
            }
        }
        None => None,
    };
    let mut table_rows = Vec::new();
    for k in &keys {
        let (a, b) = (
            sft[k].as_f64().unwrap_or(f64::NAN),
            best[k].as_f64().unwrap_or(f64::NAN),
        );
        let metric = k.trim_start_matches("dev_");
        let diff = match &per_question {
            Some((sa, sb)) => paired(sa, sb, metric)?,
            None => None,
        };
        table_rows.push(comparison_row(metric, a, b, diff));
    }
    let sweep_md = std::fs::read_to_string(sweep_dir.join("sweep.md")).unwrap_or_else(|_| {
        format!(
            "# Controllability sweep\n\nNot finished yet: its finished decodings are in \
             `{}`; running the same pipeline command again continues it and rewrites this \
             report.\n",
            sweep_dir.join(SWEEP_PARTIAL_FILE).display()
        )
    });
    let md =
        format!(
        "# MaRio vs SFT\n\nDev metrics of the SFT start and of the best MaRio round ({}), decoded \
         with the best control tokens; written by `mario-train pipeline`. The interval is the \
         95 % interval of the change, paired question by question (`mario/dev/*.jsonl`); \
         \"within noise\" means it contains 0. Decoding: {}.\n\n{}\n\
         ![rewards per round](mario/rewards.png)\n\n{}",
        best_round.map(|r| format!("round {r}")).unwrap_or_default(),
        sft["decoding"].as_str().unwrap_or("not recorded in the MaRio log"),
        markdown_table(
            &["metric", "SFT", "MaRio", "change", "95 % interval", "where it lies"],
            &table_rows
        ),
        sweep_md.replace("](sweep.png)", "](sweep/sweep.png)")
    );
    let test = (
        out.join(TEST_DIR).join("sft.jsonl"),
        out.join(TEST_DIR).join("mario.jsonl"),
    );
    let md =
        if test.0.is_file() && test.1.is_file() {
            let rows = paired_rows(&read_dev_scores(&test.0)?, &read_dev_scores(&test.1)?)?;
            let n = read_dev_scores(&test.0)?.len();
            md.replacen(
                "\n![rewards per round]",
                &format!(
                "\n## Test split\n\nThe SFT model and the best MaRio round (best control tokens) \
                 on all {n} test questions, decoded like the dev evaluations; intervals paired \
                 question by question (`{TEST_DIR}/*.jsonl`).\n\n{}\n![rewards per round]",
                markdown_table(
                    &["metric", "SFT", "MaRio", "change", "95 % interval", "where it lies"],
                    &rows
                )
            ),
                1,
            )
        } else {
            md
        };
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}
