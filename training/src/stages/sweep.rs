//! The controllability sweep of a MaRio checkpoint (`mario-train sweep`, pipeline stage 7):
//! for each reward, dev decoded with that reward's bin from best to worst (the others at best),
//! every output scored by every reward (and, in a generated world, every ground-truth measure).
//! Each finished decoding is kept in `<out>/sweep-partial.jsonl`, so an interrupted sweep
//! resumes where it stopped. Its markdown and chart: [`crate::report::sweep`].

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::{ControlChoice, ControlTokens};
use mario::rewards::Reward;
use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::decoding::{Decoding, DecodingOverrides};
use crate::eval::{evaluate_model, EvalOptions};
use crate::quark::rewards::{build_rewards, score_all, RewardModels, RewardName};
use crate::quark::settings::MarioSettings;
use crate::report::sweep::{write_sweep_report, SweepReport};

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
    let decoding = Decoding::resolve(&ckpt.generation, &settings.into(), flags);
    tracing::info!("sweep decoding: {}", decoding.describe(1));
    let table = ckpt.control.clone().ok_or_else(|| {
        anyhow!(
            "{} has no mario.json: nothing to sweep",
            model_dir.display()
        )
    })?;
    let reward_names = RewardName::of_table(&table)?;
    // every reward scores each decoding, then the ground-truth measures of a generated world
    let mut rewards = build_rewards(&reward_names, reward_models, device)?;
    rewards.extend(crate::world::truth::truth_rewards_for(dev_files)?);
    let dev = crate::data::load_examples_of(dev_files)?;
    std::fs::create_dir_all(out)?;
    let limit = (settings.eval_limit > 0).then_some(settings.eval_limit);
    let questions = limit.map_or(dev.len(), |l| l.min(dev.len()));
    let partial_path = out.join(SWEEP_PARTIAL_FILE);
    let sweeper = Sweeper {
        ckpt: &ckpt,
        table: &table,
        rewards: &rewards,
        dev: &dev,
        limit,
        decoding: &decoding,
    };
    let mut done = SweepPartial::open(&partial_path, model_dir, questions)?;
    let rows = sweeper.rows(&mut done)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("sweep.json"), serde_json::to_string_pretty(&rows)?)?;
    write_sweep_report(
        out,
        &SweepReport {
            model: model_dir,
            decoding: &decoding.describe(1),
            rewards: &reward_names,
            measured: &sweeper.measured(),
            rows: &rows,
        },
    )?;
    std::fs::remove_file(&partial_path)?;
    Ok(rows)
}

/// What one sweep decodes with and scores by.
struct Sweeper<'a> {
    ckpt: &'a Checkpoint,
    table: &'a ControlTokens,
    /// The rewards, then the ground-truth measures.
    rewards: &'a [Box<dyn Reward>],
    dev: &'a [Example],
    limit: Option<usize>,
    decoding: &'a Decoding,
}

impl Sweeper<'_> {
    /// The names of what scores each decoding.
    fn measured(&self) -> Vec<String> {
        self.rewards.iter().map(|r| r.name().to_string()).collect()
    }

    /// One row per reward and bin, each decoded unless `done` holds its bins (every reward's
    /// bin 0 is the same all-best setting: decoded once).
    fn rows(&self, done: &mut SweepPartial) -> Result<Vec<SweepRow>> {
        let mut rows = Vec::new();
        for r in &self.table.rewards {
            for bin in 0..r.bins() {
                let bins = self.table.resolve(&ControlChoice::Bins(
                    [(r.name.clone(), bin)].into_iter().collect(),
                ))?;
                let decoding = match done.get(&bins) {
                    Some(d) if d.per_question.len() != self.rewards.len() => bail!(
                        "{}: its decodings were scored with {} measures, this sweep has {} ({}); \
                         remove it to start the sweep again",
                        done.path.display(),
                        d.per_question.len(),
                        self.rewards.len(),
                        self.measured().join(", ")
                    ),
                    Some(d) => d.clone(),
                    None => {
                        let d = self.decode(bins)?;
                        done.record(d.clone())?;
                        d
                    }
                };
                let means: Vec<(String, f64)> = self
                    .rewards
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
        Ok(rows)
    }

    /// Decodes dev with the control tokens of `bins` and scores every output.
    fn decode(&self, bins: Vec<usize>) -> Result<SweepDecoding> {
        let opts = EvalOptions {
            limit: self.limit,
            prefix: self.table.prefix_ids(&bins, &self.ckpt.tokenizer),
            ..Default::default()
        }
        .with_decoding(self.decoding);
        let (m, results) = evaluate_model(&self.ckpt.model, &self.ckpt.tokenizer, self.dev, &opts)?;
        let items: Vec<(String, String, String)> = results
            .iter()
            .map(|x| (x.question.clone(), x.output.clone(), x.gold.clone()))
            .collect();
        let scores = score_all(self.rewards, &items)?;
        Ok(SweepDecoding {
            bins,
            accuracy: m.accuracy,
            per_question: (0..self.rewards.len())
                .map(|k| scores.iter().map(|s| s[k]).collect())
                .collect(),
        })
    }
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
        let decodings = if path.is_file() {
            Self::read(path, &header)?
        } else {
            Vec::new()
        };
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

    /// The decodings of an existing partial file made with `header`.
    fn read(path: &Path, header: &SweepPartialHeader) -> Result<Vec<SweepDecoding>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, first)) = lines.next() else {
            return Ok(Vec::new());
        };
        let found: SweepPartialHeader =
            serde_json::from_str(first).with_context(|| format!("{}: line 1", path.display()))?;
        if &found != header {
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
        let mut decodings = Vec::new();
        for (i, line) in lines {
            let d: SweepDecoding = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            if d.per_question.iter().any(|c| c.len() != header.questions) {
                bail!(
                    "{}: line {}: not {} questions",
                    path.display(),
                    i + 1,
                    header.questions
                );
            }
            decodings.push(d);
        }
        Ok(decodings)
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
