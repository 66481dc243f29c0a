//! The imperfect teacher: several samples per question, each correct or carrying one flaw
//! aimed at one reward, at configurable rates.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::kb::{Fact, KnowledgeBase};
use super::questions::{implied_answer, rationale_of, Form, QuestionKind, WorldQuestion};

/// How often each flaw occurs in a teacher sample (the rest are correct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlawRates {
    /// One stated fact is false; the answer follows from the stated facts (plausibility, and
    /// accuracy when the false fact changes the answer).
    pub false_fact: f64,
    /// The facts are true but the answer does not follow from them (consistency, accuracy).
    pub non_sequitur: f64,
    /// A sentence is stated twice (diversity).
    pub repetition: f64,
    /// The rationale states no needed fact; the answer is a guess (consistency, plausibility).
    pub vague: f64,
}

impl Default for FlawRates {
    fn default() -> Self {
        Self {
            false_fact: 0.15,
            non_sequitur: 0.1,
            repetition: 0.15,
            vague: 0.1,
        }
    }
}

impl FlawRates {
    /// Refuses rates outside [0, 1] or summing past 1.
    pub fn check(&self) -> anyhow::Result<()> {
        let all = [
            self.false_fact,
            self.non_sequitur,
            self.repetition,
            self.vague,
        ];
        if all.iter().any(|r| !(0.0..=1.0).contains(r)) || all.iter().sum::<f64>() > 1.0 {
            anyhow::bail!(
                "[world.flaws]: rates must lie in [0, 1] and sum to at most 1 ({self:?})"
            );
        }
        Ok(())
    }
}

/// A flaw the teacher makes in most samples of one question form (`[[world.habits]]`): unlike
/// the independent per-sample flaws, a habit is the mode of what the student learns for that
/// form, so its greedy SFT outputs carry it and MaRio has something to remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Habit {
    /// The form whose samples carry it.
    pub form: Form,
    /// The flaw.
    pub flaw: Flaw,
    /// Share of that form's samples that carry it (the others draw their flaw at the usual
    /// rates).
    pub rate: f64,
}

impl Habit {
    /// Refuses a rate outside [0, 1] or a habit of no flaw.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.rate) || self.flaw == Flaw::None {
            anyhow::bail!(
                "[[world.habits]]: a habit needs a flaw other than none and a rate in [0, 1] \
                 ({self:?})"
            );
        }
        Ok(())
    }
}

/// The flaw of one sample of `q`: its form's habit at the habit's rate, else one drawn at
/// `rates`.
pub fn flaw_for(
    rng: &mut impl Rng,
    q: &WorldQuestion,
    habits: &[Habit],
    rates: &FlawRates,
) -> Flaw {
    let form = q.kind.form();
    if let Some(h) = habits.iter().find(|h| h.form == form) {
        if rng.random_bool(h.rate) {
            return h.flaw;
        }
    }
    draw_flaw(rng, rates)
}

/// What a teacher sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flaw {
    /// No flaw.
    None,
    /// See [`FlawRates::false_fact`].
    FalseFact,
    /// See [`FlawRates::non_sequitur`].
    NonSequitur,
    /// See [`FlawRates::repetition`].
    Repetition,
    /// See [`FlawRates::vague`].
    Vague,
    /// Every first hop names the stereotypical entity instead of the true one: the first
    /// entity, in the knowledge base's order, with the same property ("A pudodo lives in
    /// vavi. Vavi is cold." for any creature of a cold place). The answer stays right, so the
    /// sample reaches the silver data with a false fact: the right answer for a wrong reason.
    /// A habit only (`[[world.habits]]`), it has no rate of its own.
    Stereotype,
}

/// One teacher sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherSample {
    /// The rationale.
    pub rationale: String,
    /// The answer (`yes`, `(B)`, ...).
    pub answer: String,
    /// Its flaw.
    pub flaw: Flaw,
}

/// The answer labels of a question.
fn labels(q: &WorldQuestion) -> Vec<String> {
    crate::data::extract_choices(&q.question).labels
}

/// A label other than `answer`.
fn other_label(rng: &mut impl Rng, q: &WorldQuestion, answer: &str) -> String {
    let others: Vec<String> = labels(q).into_iter().filter(|l| l != answer).collect();
    others.choose(rng).expect("two or more labels").clone()
}

/// A rationale that names the question's entity and states no fact.
fn vague_rationale(q: &WorldQuestion) -> String {
    match &q.kind {
        QuestionKind::Floats { object }
        | QuestionKind::Sinks { object }
        | QuestionKind::ObjectColor { object, .. } => {
            format!("A {object} is a common thing. It depends on what it is made of.")
        }
        QuestionKind::LivesCold { creature }
        | QuestionKind::LivesHot { creature }
        | QuestionKind::FoodColor { creature, .. }
        | QuestionKind::EatsColor { creature, .. } => {
            format!("A {creature} is a creature. It depends on how it lives.")
        }
        QuestionKind::WhichHot { .. } => {
            "Creatures live in many places. It depends on the place.".to_string()
        }
    }
}

/// One sample with the given flaw.
pub fn sample(
    rng: &mut impl Rng,
    kb: &KnowledgeBase,
    q: &WorldQuestion,
    flaw: Flaw,
) -> TeacherSample {
    let (rationale, answer) = match flaw {
        Flaw::None => (q.rationale(), q.answer.clone()),
        Flaw::FalseFact => {
            let mut facts: Vec<Fact> = q.facts.clone();
            let i = rng.random_range(0..facts.len());
            let wrong: Vec<String> = kb
                .domain(facts[i].relation)
                .into_iter()
                .filter(|v| *v != facts[i].value)
                .collect();
            facts[i].value = wrong.choose(rng).expect("two or more values").clone();
            // a changed first hop names another entity: state that entity's true fact next
            if i % 2 == 0 && i + 1 < facts.len() {
                let second = facts[i + 1].relation;
                facts[i + 1] = kb.fact(&facts[i].value.clone(), second);
            }
            let answer =
                implied_answer(&q.kind, &facts).unwrap_or_else(|| other_label(rng, q, &q.answer));
            (rationale_of(&facts), answer)
        }
        Flaw::NonSequitur => (q.rationale(), other_label(rng, q, &q.answer)),
        Flaw::Repetition => {
            let mut sentences: Vec<String> = q.facts.iter().map(Fact::sentence).collect();
            let i = rng.random_range(0..sentences.len());
            sentences.insert(i + 1, sentences[i].clone());
            (sentences.join(" "), q.answer.clone())
        }
        Flaw::Vague => {
            let all = labels(q);
            (vague_rationale(q), all.choose(rng).expect("labels").clone())
        }
        Flaw::Stereotype => (rationale_of(&stereotyped(kb, &q.facts)), q.answer.clone()),
    };
    TeacherSample {
        rationale,
        answer,
        flaw,
    }
}

/// `facts` (pairs of a first hop and its value's property, as questions state them) with
/// every first hop naming the stereotype of its property: the first entity of the hop's domain
/// with the same property value. The facts still imply the same answer.
fn stereotyped(kb: &KnowledgeBase, facts: &[Fact]) -> Vec<Fact> {
    let mut out = facts.to_vec();
    for i in (0..out.len().saturating_sub(1)).step_by(2) {
        let (hop, property) = (out[i].relation, out[i + 1].relation);
        let wanted = out[i + 1].value.clone();
        if let Some(typical) = kb
            .domain(hop)
            .into_iter()
            .find(|v| kb.value(v, property) == Some(wanted.as_str()))
        {
            out[i].value = typical.clone();
            out[i + 1] = kb.fact(&typical, property);
        }
    }
    out
}

/// A flaw drawn at `rates`.
pub fn draw_flaw(rng: &mut impl Rng, rates: &FlawRates) -> Flaw {
    let x: f64 = rng.random();
    let mut edge = 0.0;
    for (rate, flaw) in [
        (rates.false_fact, Flaw::FalseFact),
        (rates.non_sequitur, Flaw::NonSequitur),
        (rates.repetition, Flaw::Repetition),
        (rates.vague, Flaw::Vague),
    ] {
        edge += rate;
        if x < edge {
            return flaw;
        }
    }
    Flaw::None
}
