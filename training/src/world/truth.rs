//! Ground-truth measures of a rationale in a generated world, next to the learned rewards: a
//! gain on a learned reward is real only if these move with it.
//!
//! Every fact of a world has one sentence template, so a rationale's sentences can be read
//! back as facts ([`parse_sentence`]) and checked against the knowledge base.

use crate::quark::rewards::RewardName;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mario::rationale::parse_output;
use mario::rewards::{Reward, RewardError, RewardInput};

use serde::{Deserialize, Serialize};

use super::kb::{Fact, KnowledgeBase, Relation, COLORS};
use super::questions::{implied_answer, WorldQuestion};
use super::World;

/// The measures of one rationale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TruthScores {
    /// Share of the stated facts that are true in the world (`None`: no sentence states a
    /// fact).
    pub fact_accuracy: Option<f64>,
    /// The stated facts imply the output's answer.
    pub entailed: bool,
    /// Every fact the question needs is stated (true).
    pub complete: bool,
    /// Some sentence is stated more than once.
    pub repeated: bool,
}

/// The sentences of a rationale (split after each period).
pub fn sentences(rationale: &str) -> Vec<String> {
    rationale
        .split_inclusive('.')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The fact a sentence states, if it has the shape of one of the world's templates (true or
/// not).
pub fn parse_sentence(s: &str) -> Option<Fact> {
    let s = s.trim().strip_suffix('.')?;
    let lower_first = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let word = |w: &str| !w.is_empty() && w.chars().all(char::is_alphabetic);
    if let Some(rest) = s.strip_prefix("A ") {
        for (infix, rel) in [
            (" is made of ", Relation::MadeOf),
            (" lives in ", Relation::LivesIn),
            (" eats ", Relation::Eats),
        ] {
            if let Some((a, b)) = rest.split_once(infix) {
                if word(a) && word(b) {
                    return Some(Fact::new(a, rel, b));
                }
            }
        }
        return None;
    }
    if let Some(a) = s.strip_suffix(" floats on water") {
        return word(a).then(|| Fact::new(&lower_first(a), Relation::Floats, "yes"));
    }
    if let Some(a) = s.strip_suffix(" sinks in water") {
        return word(a).then(|| Fact::new(&lower_first(a), Relation::Floats, "no"));
    }
    let (a, v) = s.split_once(" is ")?;
    if !word(a) {
        return None;
    }
    let subject = lower_first(a);
    match v {
        "hot" | "cold" => Some(Fact::new(&subject, Relation::Climate, v)),
        c if COLORS.contains(&c) => Some(Fact::new(&subject, Relation::Color, c)),
        _ => None,
    }
}

/// Scores `rationale` (whose parsed answer is `answer`) for question `q` of a world.
pub fn score(
    kb: &KnowledgeBase,
    q: &WorldQuestion,
    rationale: &str,
    answer: Option<&str>,
) -> TruthScores {
    score_against(&kb.facts.iter().cloned().collect(), q, rationale, answer)
}

/// [`score`] against a world's facts already collected into a set (a [`TruthIndex`] keeps
/// one per world instead of rebuilding it for every output).
fn score_against(
    truth: &BTreeSet<Fact>,
    q: &WorldQuestion,
    rationale: &str,
    answer: Option<&str>,
) -> TruthScores {
    let sents = sentences(rationale);
    let facts: Vec<Fact> = sents.iter().filter_map(|s| parse_sentence(s)).collect();
    let fact_accuracy = (!facts.is_empty())
        .then(|| facts.iter().filter(|f| truth.contains(f)).count() as f64 / facts.len() as f64);
    let implied = implied_answer(&q.kind, &facts);
    let entailed = match (implied, answer) {
        (Some(i), Some(a)) => i.eq_ignore_ascii_case(a.trim()),
        _ => false,
    };
    let stated: BTreeSet<&Fact> = facts.iter().collect();
    let complete = q.facts.iter().all(|f| stated.contains(f));
    let distinct: BTreeSet<&String> = sents.iter().collect();
    TruthScores {
        fact_accuracy,
        entailed,
        complete,
        repeated: distinct.len() < sents.len(),
    }
}

/// Questions of one or more worlds by text, for scoring outputs of any split.
#[derive(Debug, Clone, Default)]
pub struct TruthIndex {
    /// Every true fact, per world.
    truths: Vec<BTreeSet<Fact>>,
    /// question text -> (its world's index in `truths`, the question)
    by_question: HashMap<String, (usize, WorldQuestion)>,
}

impl TruthIndex {
    /// Indexes every question of `world`.
    pub fn new(world: &World) -> Self {
        let mut index = Self::default();
        index.add(world);
        index
    }

    /// Adds every question of another world.
    pub fn add(&mut self, world: &World) {
        let k = self.truths.len();
        self.truths.push(world.kb.facts.iter().cloned().collect());
        for q in world.train.iter().chain(&world.dev).chain(&world.test) {
            self.by_question.insert(q.question.clone(), (k, q.clone()));
        }
    }

    /// The worlds beside `files` (each file's folder holding a `world.json`); `None` when no
    /// file is in a generated world.
    pub fn for_files(files: &[PathBuf]) -> anyhow::Result<Option<Self>> {
        let mut index = Self::default();
        let mut seen = BTreeSet::new();
        for f in files {
            let dir = f.parent().unwrap_or(Path::new(".")).to_path_buf();
            if seen.insert(dir.clone()) {
                if let Some(world) = World::load(&dir)? {
                    index.add(&world);
                }
            }
        }
        Ok((!index.truths.is_empty()).then_some(index))
    }

    /// Scores an output for `question`; `None` when the question is not of these worlds.
    pub fn score(
        &self,
        question: &str,
        rationale: &str,
        answer: Option<&str>,
    ) -> Option<TruthScores> {
        let (k, q) = self.by_question.get(question)?;
        Some(score_against(&self.truths[*k], q, rationale, answer))
    }
}

/// One ground-truth measure as a number per output, higher is better (so it sits next to the
/// learned rewards in every table and paired interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TruthMeasure {
    /// Share of the stated facts that are true (no value when no fact is stated).
    FactAccuracy,
    /// 1 when the stated facts imply the output's answer.
    Entailed,
    /// 1 when every fact the question needs is stated.
    Complete,
    /// 1 when no sentence is stated twice.
    NoRepetition,
}

impl TruthMeasure {
    /// Every measure, in report order.
    pub const ALL: [TruthMeasure; 4] = [
        TruthMeasure::FactAccuracy,
        TruthMeasure::Entailed,
        TruthMeasure::Complete,
        TruthMeasure::NoRepetition,
    ];

    /// The name in metrics, dev score files and reports.
    pub fn name(self) -> &'static str {
        match self {
            TruthMeasure::FactAccuracy => "truth_fact_accuracy",
            TruthMeasure::Entailed => "truth_entailed",
            TruthMeasure::Complete => "truth_complete",
            TruthMeasure::NoRepetition => "truth_no_repetition",
        }
    }

    /// This measure's value for one output's scores.
    pub fn of(self, s: &TruthScores) -> Option<f64> {
        let flag = |b: bool| Some(f64::from(u8::from(b)));
        match self {
            TruthMeasure::FactAccuracy => s.fact_accuracy,
            TruthMeasure::Entailed => flag(s.entailed),
            TruthMeasure::Complete => flag(s.complete),
            TruthMeasure::NoRepetition => flag(!s.repeated),
        }
    }

    /// The ground truth of a learned reward: plausibility is checked by the facts being true,
    /// consistency by the answer following from them, diversity by the absence of repeated
    /// sentences. `None` for rewards without one (task accuracy is already exact).
    pub fn counterpart(reward: RewardName) -> Option<TruthMeasure> {
        match reward {
            RewardName::Plausibility => Some(TruthMeasure::FactAccuracy),
            RewardName::Consistency => Some(TruthMeasure::Entailed),
            RewardName::Diversity => Some(TruthMeasure::NoRepetition),
            RewardName::Accuracy => None,
        }
    }
}

/// A [`TruthMeasure`] over a [`TruthIndex`], scoring outputs like a reward does (it is never
/// trained on: it only measures).
pub struct TruthReward {
    index: Arc<TruthIndex>,
    measure: TruthMeasure,
}

impl Reward for TruthReward {
    fn name(&self) -> &str {
        self.measure.name()
    }

    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        Ok(items
            .iter()
            .map(|it| {
                let parsed = parse_output(it.output);
                let answer = parsed.answer.ok();
                self.index
                    .score(it.question, &parsed.rationale, answer.as_deref())
                    .and_then(|s| self.measure.of(&s))
            })
            .collect())
    }
}

/// Every ground-truth measure over `index`.
pub fn truth_rewards(index: TruthIndex) -> Vec<Box<dyn Reward>> {
    let index = Arc::new(index);
    TruthMeasure::ALL
        .iter()
        .map(|&measure| {
            Box::new(TruthReward {
                index: index.clone(),
                measure,
            }) as Box<dyn Reward>
        })
        .collect()
}

/// The ground-truth measures for data `files` when they lie in a generated world (empty
/// otherwise): what `eval`, the MaRio dev evaluations and the sweep add to their scores.
pub fn truth_rewards_for(files: &[PathBuf]) -> anyhow::Result<Vec<Box<dyn Reward>>> {
    Ok(TruthIndex::for_files(files)?
        .map(truth_rewards)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::questions::{build, QuestionKind};

    fn kb() -> KnowledgeBase {
        KnowledgeBase {
            objects: vec!["duzo".into(), "kime".into()],
            materials: vec!["brax".into(), "lotu".into()],
            creatures: vec!["rafi".into(), "sonu".into()],
            places: vec!["deza".into(), "pisu".into()],
            foods: vec!["lasu".into(), "mogi".into()],
            facts: vec![
                Fact::new("duzo", Relation::MadeOf, "brax"),
                Fact::new("kime", Relation::MadeOf, "lotu"),
                Fact::new("brax", Relation::Floats, "yes"),
                Fact::new("lotu", Relation::Floats, "no"),
                Fact::new("brax", Relation::Color, "red"),
                Fact::new("lotu", Relation::Color, "blue"),
                Fact::new("rafi", Relation::LivesIn, "deza"),
                Fact::new("sonu", Relation::LivesIn, "pisu"),
                Fact::new("deza", Relation::Climate, "hot"),
                Fact::new("pisu", Relation::Climate, "cold"),
                Fact::new("rafi", Relation::Eats, "lasu"),
                Fact::new("sonu", Relation::Eats, "mogi"),
                Fact::new("lasu", Relation::Color, "green"),
                Fact::new("mogi", Relation::Color, "yellow"),
            ],
        }
    }

    #[test]
    fn every_template_parses_back_to_its_fact() {
        for f in kb().facts {
            assert_eq!(
                parse_sentence(&f.sentence()),
                Some(f.clone()),
                "{}",
                f.sentence()
            );
        }
        assert_eq!(parse_sentence("It depends on what it is made of."), None);
        assert_eq!(parse_sentence("A duzo is a common thing."), None);
    }

    #[test]
    fn hand_written_rationales_score_as_expected() {
        let kb = kb();
        let q = build(
            &kb,
            QuestionKind::Floats {
                object: "duzo".into(),
            },
        );
        assert_eq!(q.answer, "yes");
        // the gold rationale: all true, complete, entails, no repetition
        let s = score(
            &kb,
            &q,
            "A duzo is made of brax. Brax floats on water.",
            Some("yes"),
        );
        assert_eq!(
            s,
            TruthScores {
                fact_accuracy: Some(1.0),
                entailed: true,
                complete: true,
                repeated: false
            }
        );
        // a false first hop: half the facts true, the answer follows from them, incomplete
        let s = score(
            &kb,
            &q,
            "A duzo is made of lotu. Lotu sinks in water.",
            Some("no"),
        );
        assert_eq!(
            s,
            TruthScores {
                fact_accuracy: Some(0.5),
                entailed: true,
                complete: false,
                repeated: false
            }
        );
        // true facts, answer that does not follow
        let s = score(
            &kb,
            &q,
            "A duzo is made of brax. Brax floats on water.",
            Some("no"),
        );
        assert!(!s.entailed && s.complete);
        // repetition
        let s = score(
            &kb,
            &q,
            "A duzo is made of brax. A duzo is made of brax. Brax floats on water.",
            Some("yes"),
        );
        assert!(s.repeated && s.entailed && s.complete);
        // vague: no fact stated, nothing entailed
        let s = score(&kb, &q, "A duzo is a common thing.", Some("yes"));
        assert_eq!(
            s,
            TruthScores {
                fact_accuracy: None,
                entailed: false,
                complete: false,
                repeated: false
            }
        );
        // a multiple-choice question: the letter is compared case-insensitively
        let q = build(
            &kb,
            QuestionKind::WhichHot {
                options: vec!["sonu".into(), "rafi".into()],
            },
        );
        let s = score(&kb, &q, &q.rationale(), Some("(b)"));
        assert!(s.entailed && s.complete);
    }

    #[test]
    fn measures_score_full_outputs_like_rewards() {
        let kb = kb();
        let q = build(
            &kb,
            QuestionKind::Floats {
                object: "duzo".into(),
            },
        );
        let world = World {
            settings: Default::default(),
            kb,
            train: vec![q.clone()],
            dev: vec![],
            test: vec![],
            reading: vec![],
            unsolved: vec![],
        };
        let rewards = truth_rewards(TruthIndex::new(&world));
        let names: Vec<&str> = rewards.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "truth_fact_accuracy",
                "truth_entailed",
                "truth_complete",
                "truth_no_repetition"
            ]
        );
        let outputs = [
            "A duzo is made of lotu. Lotu sinks in water. So the answer is no.",
            "A duzo is made of brax. A duzo is made of brax. So the answer is yes.",
            "It depends. So the answer is yes.",
        ];
        let mut items: Vec<RewardInput<'_>> = outputs
            .iter()
            .map(|o| RewardInput {
                question: &q.question,
                output: o,
                gold: Some("yes"),
            })
            .collect();
        items.push(RewardInput {
            question: "Is this question from elsewhere?",
            output: outputs[0],
            gold: None,
        });
        let table: Vec<Vec<Option<f64>>> =
            rewards.iter().map(|r| r.score(&items).unwrap()).collect();
        // a false first hop (half the facts true), a repeated true fact, a vague rationale, a
        // question of no world
        assert_eq!(table[0], [Some(0.5), Some(1.0), None, None]);
        assert_eq!(table[1], [Some(1.0), Some(0.0), Some(0.0), None]);
        assert_eq!(table[2], [Some(0.0), Some(0.0), Some(0.0), None]);
        assert_eq!(table[3], [Some(1.0), Some(0.0), Some(1.0), None]);
        assert_eq!(
            TruthMeasure::counterpart(RewardName::Plausibility),
            Some(TruthMeasure::FactAccuracy)
        );
        assert_eq!(TruthMeasure::counterpart(RewardName::Accuracy), None);
    }
}
