//! Ground-truth measures of a rationale in a generated world, next to the learned rewards: a
//! gain on a learned reward is real only if these move with it.
//!
//! Every fact of a world has one sentence template, so a rationale's sentences can be read
//! back as facts ([`parse_sentence`]) and checked against the knowledge base.

use std::collections::{BTreeSet, HashMap};

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
    let sents = sentences(rationale);
    let facts: Vec<Fact> = sents.iter().filter_map(|s| parse_sentence(s)).collect();
    let truth: BTreeSet<Fact> = kb.facts.iter().cloned().collect();
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

/// A world's questions by text, for scoring outputs of any split.
pub struct TruthIndex<'a> {
    world: &'a World,
    by_question: HashMap<&'a str, &'a WorldQuestion>,
}

impl<'a> TruthIndex<'a> {
    /// Indexes every question of `world`.
    pub fn new(world: &'a World) -> Self {
        let by_question = world
            .train
            .iter()
            .chain(&world.dev)
            .chain(&world.test)
            .map(|q| (q.question.as_str(), q))
            .collect();
        Self { world, by_question }
    }

    /// Scores an output for `question`; `None` when the question is not of this world.
    pub fn score(
        &self,
        question: &str,
        rationale: &str,
        answer: Option<&str>,
    ) -> Option<TruthScores> {
        let q = self.by_question.get(question)?;
        Some(score(&self.world.kb, q, rationale, answer))
    }
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
}
