//! `mario-train world`: a generated knowledge world in which a small model can become
//! competent and the truth is known.
//!
//! A fixed knowledge base of invented entities ([`kb`]: objects made of materials that float
//! or sink and have colours; creatures that live in hot or cold places and eat coloured foods),
//! questions that chain two or more facts ([`questions`]: yes/no and `(A)`/`(B)`/`(C)` forms),
//! and an imperfect teacher ([`teacher`]) whose samples carry flaws aimed at each reward at
//! configurable rates. Written in the standard data layout:
//!
//! - `train.jsonl`: silver data, the teacher samples that reached the gold answer;
//! - `reading.jsonl` (when `reading_questions` > 0): training-only reading questions with their
//!   gold rationales; SFT and the answer models train on them, MaRio does not sample them;
//! - `knowledge.jsonl` (when `knowledge_repeats` or `color_checks` > 0): training-only knowledge
//!   records, every fact of the knowledge base asked alone ([`knowledge`]) `knowledge_repeats`
//!   times, then every colour fact checked as a yes/no question `color_checks` times; trained
//!   on like the reading questions;
//! - `teacher_gpt3_train.jsonl`: every teacher sample, with predicted and gold labels
//!   (lower-cased as in the paper's files); with `unsolved` > 0 some training questions have
//!   only wrong samples, so they are here and not in `train.jsonl`;
//! - `dev.jsonl`, `test.jsonl`: held-out questions with their gold rationales;
//! - `world.json`: the settings, the knowledge base and every question with the facts it needs.
//!
//! [`truth`] scores a rationale against the world (facts true, answer entailed, every needed
//! fact stated, repetition).
//!
//! Every fact a dev or test question needs is stated in the gold rationale of some training
//! question, but the held-out questions themselves are unseen combinations. The same seed and
//! settings always give the same bytes.

pub mod kb;
pub mod knowledge;
pub mod names;
pub mod questions;
pub mod teacher;
pub mod truth;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use kb::{Fact, KbSizes, KnowledgeBase};
use knowledge::KnowledgeRecord;
use questions::{
    all_questions, reading_questions, ColorOptions, Form, QuestionKind, QuestionPlan, WorldQuestion,
};
use teacher::{flaw_for, sample, Flaw, FlawRates, Habit};

/// Settings of a world (the `[world]` table of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldSettings {
    /// Seed of everything.
    pub seed: u64,
    /// Entities per type.
    pub sizes: KbSizes,
    /// The question forms asked (default: every form but `sinks` and `lives_hot`).
    pub forms: Vec<Form>,
    /// "Which lives somewhere hot?" questions (pairs of creatures).
    pub which_hot: usize,
    /// How colour questions offer their choices (default: three, shuffled).
    pub color_options: ColorOptions,
    /// Share of the questions held out for dev (as many again for test), as far as the
    /// facts they need stay stated in training.
    pub held_out: f64,
    /// Teacher samples per training question.
    pub teacher_samples: usize,
    /// Training-only reading questions (their facts stated in the question, about entities
    /// outside the knowledge base; one correct teacher sample each): they teach the answer
    /// step on fresh names. 0 = none.
    pub reading_questions: usize,
    /// Training-only knowledge records per fact (`knowledge.jsonl`: every fact asked alone,
    /// its sentence as the rationale): every entity is then stated often enough to be learnt,
    /// and to be one token, even when most questions about it are held out. 0 = none.
    pub knowledge_repeats: usize,
    /// Share of the training questions the teacher never answers right: every sample of such
    /// a question reaches a wrong answer (its usual flaw where that already misses it, else a
    /// non-sequitur), so the silver data has no rationale for it, as GPT-3 fails some
    /// StrategyQA questions in all five samples. A question is only picked while every fact it
    /// needs stays stated by another, solved, training question. 0 = none.
    pub unsolved: f64,
    /// Pick the unsolved questions per question form and gold answer, `unsolved` of each as
    /// far as their facts allow, instead of in one draw over every training question. In one
    /// draw the picks fall unevenly: only questions whose facts their twins also state (the
    /// water and place forms) can be picked, so about half of those are, with no regard to the
    /// answer (seed 11: 13 of its 16 "sink: no" questions, leaving 3 in the silver data). Off
    /// by default, so that the worlds made before it stay the same, byte for byte.
    #[serde(skip_serializing_if = "is_false")]
    pub unsolved_by_form: bool,
    /// Training-only colour checks per colour fact, written after the knowledge records in
    /// `knowledge.jsonl` ([`knowledge::color_checks`]: "Is reti red?" -> "Reti is blue." ->
    /// `no`): the answer step of `Does a X eat something C?`, which a vague teacher habit on
    /// that form leaves nearly unshown. 0 = none (the default, so that the worlds made before
    /// it keep their bytes).
    #[serde(skip_serializing_if = "is_zero")]
    pub color_checks: usize,
    /// Deal the held-out question groups to dev and test in turn, form by form (each group to
    /// the split with fewer questions of its form), instead of dev taking the first half. The
    /// held-out groups are found in a shuffled order but not at random: groups are taken while
    /// their facts stay stated in training, which happens more easily early on, so the first
    /// half over-represents some forms (seeds 11-31 of the world config before it,
    /// `training/reports/world/hot-stereotype-seed*`: dev held 38-52 questions of each water
    /// form, test 30-38, and fewer eats-colour questions), and dev accuracy misjudged test
    /// accuracy by the forms' mix. Dealt by form, both splits hold each form's questions within
    /// one twin pair of each other; the held-out questions are the same ones. Off by default,
    /// so that the worlds made before it keep their bytes; `configs/world.toml` turns it on.
    #[serde(skip_serializing_if = "is_false")]
    pub balanced_splits: bool,
    /// The teacher's flaws.
    pub flaws: FlawRates,
    /// Flaws the teacher makes in most samples of a form (`[[world.habits]]`; default none).
    pub habits: Vec<Habit>,
}

impl Default for WorldSettings {
    fn default() -> Self {
        Self {
            seed: 0,
            sizes: KbSizes::default(),
            forms: Form::original(),
            which_hot: 80,
            color_options: ColorOptions::default(),
            held_out: 0.15,
            teacher_samples: 4,
            reading_questions: 0,
            knowledge_repeats: 0,
            unsolved: 0.0,
            unsolved_by_form: false,
            color_checks: 0,
            balanced_splits: false,
            flaws: FlawRates::default(),
            habits: Vec::new(),
        }
    }
}

/// A generated world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// How it was made.
    pub settings: WorldSettings,
    /// The knowledge base.
    pub kb: KnowledgeBase,
    /// Training questions.
    pub train: Vec<WorldQuestion>,
    /// Dev questions.
    pub dev: Vec<WorldQuestion>,
    /// Test questions.
    pub test: Vec<WorldQuestion>,
    /// Training-only reading questions (see [`WorldSettings::reading_questions`]).
    #[serde(default)]
    pub reading: Vec<WorldQuestion>,
    /// The training questions the teacher never answers right (see
    /// [`WorldSettings::unsolved`]).
    #[serde(default)]
    pub unsolved: Vec<String>,
}

/// One teacher sample with its question (a line of `teacher_gpt3_train.jsonl`, plus its flaw
/// in `world.json`'s terms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeacherRow {
    /// The question.
    pub question: String,
    /// The gold label.
    pub gold: String,
    /// The sample.
    pub sample: teacher::TeacherSample,
}

/// Questions that must stay in the same split: the two forms that ask the same fact the
/// opposite way ("float" and "sink" of one object, "cold" and "hot" of one creature). Held
/// out alone, one of them would have its twin in training with the opposite answer, and a
/// model that memorises answers per entity would look as if it had the answer step inverted;
/// kept together, training asks both ways about each entity, so only the question's wording
/// and the stated fact decide the answer.
fn twin_key(kind: &QuestionKind) -> Option<(u8, &str)> {
    match kind {
        QuestionKind::Floats { object } | QuestionKind::Sinks { object } => Some((0, object)),
        QuestionKind::LivesCold { creature } | QuestionKind::LivesHot { creature } => {
            Some((1, creature))
        }
        _ => None,
    }
}

/// `all` in groups (twins together, see [`twin_key`]), each group at its first question's
/// place.
fn groups(all: Vec<WorldQuestion>) -> Vec<Vec<WorldQuestion>> {
    let mut out: Vec<Vec<WorldQuestion>> = Vec::new();
    let mut index: HashMap<(u8, String), usize> = HashMap::new();
    for q in all {
        let key = twin_key(&q.kind).map(|(t, e)| (t, e.to_string()));
        match key.as_ref().and_then(|k| index.get(k)) {
            Some(&i) => out[i].push(q),
            None => {
                if let Some(k) = key {
                    index.insert(k, out.len());
                }
                out.push(vec![q]);
            }
        }
    }
    out
}

/// Whether a flag is off (`skip_serializing_if` of the options added after worlds were
/// committed, so that those worlds' `world.json` keeps its bytes).
fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a count is 0 (see [`is_false`]).
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The questions of `train` the teacher never answers right: a seeded `share` of them, each
/// only while every fact it needs stays needed by another question left solved (so that some
/// silver rationale still states it). With `by_form`, at most `share` of each question form's
/// questions with one gold answer ([`WorldSettings::unsolved_by_form`]).
fn pick_unsolved(train: &[WorldQuestion], share: f64, seed: u64, by_form: bool) -> Vec<String> {
    let n = (train.len() as f64 * share).round() as usize;
    let stratum = |q: &WorldQuestion| (q.kind.form(), q.answer.clone());
    // with `by_form`: how many more of each (form, answer) may be picked
    let mut quota: Option<HashMap<(Form, String), usize>> = by_form.then(|| {
        let mut sizes: HashMap<(Form, String), usize> = HashMap::new();
        for q in train {
            *sizes.entry(stratum(q)).or_default() += 1;
        }
        sizes
            .into_iter()
            .map(|(k, size)| (k, (size as f64 * share).round() as usize))
            .collect()
    });
    let mut counts = FactCounts::of(train);
    let mut order: Vec<&WorldQuestion> = train.iter().collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x00B5_01ED));
    let mut out = Vec::new();
    for q in order {
        if out.len() == n {
            break;
        }
        let left = quota
            .as_mut()
            .map(|m| m.get_mut(&stratum(q)).expect("every stratum counted"));
        if left.as_ref().is_some_and(|l| **l == 0) {
            continue;
        }
        if counts.take_out([q]) {
            out.push(q.question.clone());
            if let Some(l) = left {
                *l -= 1;
            }
        }
    }
    out
}

/// How many questions state each fact.
struct FactCounts(HashMap<Fact, usize>);

impl FactCounts {
    fn of<'a>(questions: impl IntoIterator<Item = &'a WorldQuestion>) -> Self {
        let mut count = HashMap::new();
        for f in questions.into_iter().flat_map(|q| &q.facts) {
            *count.entry(f.clone()).or_default() += 1;
        }
        Self(count)
    }

    /// Takes `questions` out of the count when every fact they need stays stated by some
    /// question left in; says whether it did.
    fn take_out<'a>(&mut self, questions: impl IntoIterator<Item = &'a WorldQuestion>) -> bool {
        let mut uses: HashMap<&Fact, usize> = HashMap::new();
        for f in questions.into_iter().flat_map(|q| &q.facts) {
            *uses.entry(f).or_default() += 1;
        }
        if !uses.iter().all(|(f, u)| self.0[*f] > *u) {
            return false;
        }
        for (f, u) in uses {
            *self.0.get_mut(f).expect("counted") -= u;
        }
        true
    }
}

/// Moves questions from `all` to two held-out sets of up to `n` each, keeping every fact of a
/// held-out question stated by some question left in training, and twins (see [`twin_key`])
/// in the same split. `balanced`: see [`WorldSettings::balanced_splits`].
fn split(
    all: Vec<WorldQuestion>,
    n: usize,
    balanced: bool,
) -> (Vec<WorldQuestion>, Vec<WorldQuestion>, Vec<WorldQuestion>) {
    let mut counts = FactCounts::of(&all);
    let (mut train, mut held) = (Vec::new(), Vec::<Vec<WorldQuestion>>::new());
    let mut held_questions = 0;
    for group in groups(all) {
        if held_questions + group.len() <= 2 * n && counts.take_out(&group) {
            held_questions += group.len();
            held.push(group);
        } else {
            train.extend(group);
        }
    }
    // dev gets the groups up to half of the held-out questions, test the rest; balanced, each
    // group goes to the split with fewer questions of its form (then the smaller split, then
    // dev). A twin pair counts under its first question's form: both twins go to one split, so
    // float and sink (cold and hot) questions stay equal in each split either way.
    let (mut dev, mut test) = (Vec::new(), Vec::<WorldQuestion>::new());
    let mut of_form: HashMap<Form, (usize, usize)> = HashMap::new();
    for group in held {
        let to_dev = if balanced {
            let (d, t) = of_form.entry(group[0].kind.form()).or_default();
            let to_dev = (*d, dev.len()) <= (*t, test.len());
            if to_dev {
                *d += group.len();
            } else {
                *t += group.len();
            }
            to_dev
        } else {
            dev.len() < held_questions / 2
        };
        if to_dev {
            dev.extend(group);
        } else {
            test.extend(group);
        }
    }
    (train, dev, test)
}

impl World {
    /// Generates the world of `settings`.
    pub fn generate(settings: &WorldSettings) -> Result<Self> {
        settings.flaws.check()?;
        for h in &settings.habits {
            h.check()?;
        }
        if !(0.0..=1.0).contains(&settings.unsolved) {
            anyhow::bail!(
                "[world] unsolved = {}: use a share in [0, 1]",
                settings.unsolved
            );
        }
        if !(0.0..0.5).contains(&settings.held_out) {
            anyhow::bail!(
                "[world] held_out = {}: use a share in [0, 0.5)",
                settings.held_out
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let kb = KnowledgeBase::generate(&mut rng, &settings.sizes)?;
        if settings.forms.is_empty() {
            anyhow::bail!("[world] forms is empty: list at least one question form");
        }
        let plan = QuestionPlan {
            forms: &settings.forms,
            which_hot: settings.which_hot,
            color_options: settings.color_options,
        };
        let mut all = all_questions(&mut rng, &kb, plan);
        all.shuffle(&mut rng);
        let n = (all.len() as f64 * settings.held_out).round() as usize;
        let (train, dev, test) = split(all, n, settings.balanced_splits);
        let reading = reading_questions(&mut rng, &kb, plan, settings.reading_questions)?;
        let unsolved = pick_unsolved(
            &train,
            settings.unsolved,
            settings.seed,
            settings.unsolved_by_form,
        );
        Ok(Self {
            settings: settings.clone(),
            kb,
            train,
            dev,
            test,
            reading,
            unsolved,
        })
    }

    /// The teacher's samples on the world's own training questions, `teacher_samples` each
    /// (the silver data and MaRio's pool come from these).
    pub fn world_teacher(&self) -> Vec<TeacherRow> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.settings.seed ^ 0x7EAC_4E85);
        let unsolved: std::collections::HashSet<&str> =
            self.unsolved.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for q in &self.train {
            for _ in 0..self.settings.teacher_samples {
                let flaw = flaw_for(&mut rng, q, &self.settings.habits, &self.settings.flaws);
                let mut s = sample(&mut rng, &self.kb, q, flaw);
                if s.answer == q.answer && unsolved.contains(q.question.as_str()) {
                    s = sample(&mut rng, &self.kb, q, Flaw::NonSequitur);
                }
                out.push(TeacherRow {
                    question: q.question.clone(),
                    gold: q.answer.clone(),
                    sample: s,
                });
            }
        }
        out
    }

    /// Every teacher sample: [`Self::world_teacher`], then one flawless sample per reading
    /// question.
    pub fn teacher(&self) -> Vec<TeacherRow> {
        let mut out = self.world_teacher();
        for q in &self.reading {
            out.push(TeacherRow {
                question: q.question.clone(),
                gold: q.answer.clone(),
                sample: teacher::TeacherSample {
                    rationale: q.rationale(),
                    answer: q.answer.clone(),
                    flaw: Flaw::None,
                },
            });
        }
        out
    }

    /// Writes the data folder (see the module documentation).
    pub fn write(&self, out: &Path) -> Result<WorldSummary> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let teacher = self.teacher();
        let split_row = |q: &str, r: &str, a: &str| serde_json::json!({"question": q, "rationale": r, "answer": a});
        let silver: Vec<serde_json::Value> = self
            .world_teacher()
            .iter()
            .filter(|t| t.sample.answer == t.gold)
            .map(|t| split_row(&t.question, &t.sample.rationale, &t.gold))
            .collect();
        let held = |qs: &[WorldQuestion]| -> Vec<serde_json::Value> {
            qs.iter()
                .map(|q| split_row(&q.question, &q.rationale(), &q.answer))
                .collect()
        };
        let teacher_rows: Vec<serde_json::Value> = teacher
            .iter()
            .map(|t| {
                serde_json::json!({
                    "question": t.question,
                    "gold_label": t.gold.to_lowercase(),
                    "predicted_label": t.sample.answer.to_lowercase(),
                    "predicted_rationale": t.sample.rationale,
                })
            })
            .collect();
        crate::jsonl::write(&out.join("train.jsonl"), &silver)?;
        write_or_remove(&out.join(READING_FILE), &held(&self.reading))?;
        let knowledge: Vec<serde_json::Value> = self
            .knowledge()
            .iter()
            .map(|k| split_row(&k.question, &k.rationale, &k.answer))
            .collect();
        write_or_remove(&out.join(KNOWLEDGE_FILE), &knowledge)?;
        crate::jsonl::write(&out.join("dev.jsonl"), &held(&self.dev))?;
        crate::jsonl::write(&out.join("test.jsonl"), &held(&self.test))?;
        crate::jsonl::write(&out.join("teacher_gpt3_train.jsonl"), &teacher_rows)?;
        let path = out.join(WORLD_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        let flawed = |f: Flaw| teacher.iter().filter(|t| t.sample.flaw == f).count();
        Ok(WorldSummary {
            facts: self.kb.facts.len(),
            train_questions: self.train.len(),
            dev_questions: self.dev.len(),
            test_questions: self.test.len(),
            teacher_samples: teacher.len(),
            silver: silver.len(),
            teacher_accuracy: silver.len() as f64
                / (teacher.len() - self.reading.len()).max(1) as f64,
            reading_questions: self.reading.len(),
            knowledge_records: knowledge.len(),
            unsolved_questions: self.unsolved.len(),
            false_fact: flawed(Flaw::FalseFact),
            non_sequitur: flawed(Flaw::NonSequitur),
            repetition: flawed(Flaw::Repetition),
            vague: flawed(Flaw::Vague),
            stereotype: flawed(Flaw::Stereotype),
        })
    }
}

impl World {
    /// The knowledge records (see [`knowledge`]), `knowledge_repeats` per fact, then the
    /// colour checks, `color_checks` per colour fact (their own random stream, so that the
    /// records before them do not change with it).
    pub fn knowledge(&self) -> Vec<KnowledgeRecord> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.settings.seed ^ 0x4B_0057);
        let mut out =
            knowledge::knowledge_records(&mut rng, &self.kb, self.settings.knowledge_repeats);
        let mut rng = ChaCha8Rng::seed_from_u64(self.settings.seed ^ 0xC0_104C);
        out.extend(knowledge::color_checks(
            &mut rng,
            &self.kb,
            self.settings.color_checks,
        ));
        out
    }

    /// A rationale for the training question `question` with one of its facts made false (the
    /// teacher's false-fact flaw); `None` for a question that is not one of the world's
    /// training questions.
    pub fn false_fact_rationale(&self, question: &str, rng: &mut impl rand::Rng) -> Option<String> {
        let q = self.train.iter().find(|q| q.question == question)?;
        Some(sample(rng, &self.kb, q, Flaw::FalseFact).rationale)
    }

    /// Reads `<dir>/world.json`; `Ok(None)` when the folder is not a generated world.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        crate::json_file::read_if_exists(&dir.join(WORLD_FILE), "a world file")
    }
}

/// The file that marks a data folder as a generated world.
pub const WORLD_FILE: &str = "world.json";

/// Training-only questions of a data folder that SFT and the answer models train on next to
/// `train.jsonl`, and that MaRio does not sample (a generated world's reading questions).
pub const READING_FILE: &str = "reading.jsonl";

/// Training-only records that state every fact alone (a generated world's `knowledge.jsonl`),
/// trained on like the reading questions.
pub const KNOWLEDGE_FILE: &str = "knowledge.jsonl";

/// Writes `rows` to `path`, or removes `path` when there are none (a regenerated world leaves
/// no stale file behind).
fn write_or_remove(path: &Path, rows: &[serde_json::Value]) -> Result<()> {
    if !rows.is_empty() {
        return crate::jsonl::write(path, rows);
    }
    if path.is_file() {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// What `World::write` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldSummary {
    /// Facts in the knowledge base.
    pub facts: usize,
    /// Training questions.
    pub train_questions: usize,
    /// Dev questions.
    pub dev_questions: usize,
    /// Test questions.
    pub test_questions: usize,
    /// Teacher samples (reading questions included).
    pub teacher_samples: usize,
    /// Samples that reached the gold answer (`train.jsonl`; reading questions not included).
    pub silver: usize,
    /// Share of the samples on the world's own training questions (not the reading ones)
    /// that reached the gold answer.
    pub teacher_accuracy: f64,
    /// Training-only reading questions (one correct sample each).
    pub reading_questions: usize,
    /// Training-only knowledge records (`knowledge.jsonl`).
    pub knowledge_records: usize,
    /// Training questions no sample answers right (none of their rows in `train.jsonl`).
    pub unsolved_questions: usize,
    /// Samples with a false fact.
    pub false_fact: usize,
    /// Samples whose answer does not follow.
    pub non_sequitur: usize,
    /// Samples with a repeated sentence.
    pub repetition: usize,
    /// Samples that state no needed fact.
    pub vague: usize,
    /// Samples that name stereotypical entities (see [`Flaw::Stereotype`]).
    pub stereotype: usize,
}

#[cfg(test)]
mod tests;
