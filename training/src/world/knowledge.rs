//! Knowledge records: every fact of a world asked alone, as a multiple-choice question whose
//! rationale is the fact's sentence ("What is a pepuvi made of? (A) goda (B) sasi" -> "A
//! pepuvi is made of sasi." -> `(B)`).
//!
//! They are training-only (`knowledge.jsonl`, trained on by SFT and the answer models, never
//! sampled by MaRio, never in dev or test). A world's objects are asked about in three forms,
//! so an object whose two yes/no questions are held out is stated by a single training
//! question: a few teacher samples, too few for a from-scratch model to learn the fact or for
//! the tokenizer to keep the name whole. Stating every fact `knowledge_repeats` times more
//! removes that chance from the split.
//!
//! Colour checks ([`color_checks`], `[world] color_checks`) are records too: every colour fact
//! asked as a yes/no question ("Is reti red?" -> "Reti is blue." -> `no`), the last step of
//! `Does a X eat something C?` on a fact the model recalls.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::kb::{Fact, KnowledgeBase, Relation, COLORS};
use super::questions::{asked_color, yes_no, LETTERS};

/// One knowledge record: a fact asked alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeRecord {
    /// The question with its choices inline.
    pub question: String,
    /// The fact's sentence.
    pub rationale: String,
    /// The letter of the fact's value (`yes` or `no` for a colour check).
    pub answer: String,
}

/// Every fact of `kb` asked alone, in the knowledge base's order, `repeats` times over (each
/// time with a fresh distractor and order for the entity-valued relations).
pub fn knowledge_records(
    rng: &mut impl Rng,
    kb: &KnowledgeBase,
    repeats: usize,
) -> Vec<KnowledgeRecord> {
    let mut out = Vec::with_capacity(kb.facts.len() * repeats);
    for _ in 0..repeats {
        for f in &kb.facts {
            out.push(record(rng, kb, f));
        }
    }
    out
}

/// Every colour fact of `kb` asked as a yes/no question, `repeats` times over, the colour asked
/// being the true one half of the time (else one of the others): "Is reti red?" -> "Reti is
/// blue." -> `no`. `Does a X eat something C?` ends with this step (compare the colour its
/// rationale states with the one asked), and the world's teacher mostly answers that form
/// without stating the colour (a vague habit), so the silver data shows the step too rarely for
/// the student to learn it; these records show it on every food and material.
pub fn color_checks(
    rng: &mut impl Rng,
    kb: &KnowledgeBase,
    repeats: usize,
) -> Vec<KnowledgeRecord> {
    let colors: Vec<&Fact> = kb
        .facts
        .iter()
        .filter(|f| f.relation == Relation::Color)
        .collect();
    let mut out = Vec::with_capacity(colors.len() * repeats);
    for _ in 0..repeats {
        for f in &colors {
            let asked = asked_color(rng, &f.value);
            out.push(KnowledgeRecord {
                question: format!("Is {} {asked}?", f.subject),
                rationale: f.sentence(),
                answer: yes_no(asked == f.value),
            });
        }
    }
    out
}

/// The knowledge record of `fact`: its question with the choices inline (a float fact's
/// values shown as "it floats" / "it sinks"), its sentence, and the letter of its value.
fn record(rng: &mut impl Rng, kb: &KnowledgeBase, fact: &Fact) -> KnowledgeRecord {
    let s = &fact.subject;
    let (question, values): (String, Vec<String>) = match fact.relation {
        Relation::MadeOf => (format!("What is a {s} made of?"), two(rng, kb, fact)),
        Relation::LivesIn => (format!("Where does a {s} live?"), two(rng, kb, fact)),
        Relation::Eats => (format!("What does a {s} eat?"), two(rng, kb, fact)),
        Relation::Floats => (
            format!("Does {s} float or sink in water?"),
            vec!["yes".into(), "no".into()],
        ),
        Relation::Climate => (
            format!("Is {s} hot or cold?"),
            vec!["hot".into(), "cold".into()],
        ),
        Relation::Color => (
            format!("What color is {s}?"),
            COLORS.iter().map(|c| c.to_string()).collect(),
        ),
    };
    let shown = |v: &str| match (fact.relation, v) {
        (Relation::Floats, "yes") => "it floats".to_string(),
        (Relation::Floats, _) => "it sinks".to_string(),
        _ => v.to_string(),
    };
    let choices: Vec<String> = values
        .iter()
        .zip(LETTERS)
        .map(|(v, l)| format!("{l} {}", shown(v)))
        .collect();
    let at = values
        .iter()
        .position(|v| *v == fact.value)
        .expect("the true value is among the choices");
    KnowledgeRecord {
        question: format!("{question} {}", choices.join(" ")),
        rationale: fact.sentence(),
        answer: LETTERS[at].to_string(),
    }
}

/// The true value and one other of the relation's domain, in a random order.
fn two(rng: &mut impl Rng, kb: &KnowledgeBase, fact: &Fact) -> Vec<String> {
    let others: Vec<String> = kb
        .domain(fact.relation)
        .into_iter()
        .filter(|v| *v != fact.value)
        .collect();
    let other = others.choose(rng).expect("a domain has two values").clone();
    if rng.random_bool(0.5) {
        vec![fact.value.clone(), other]
    } else {
        vec![other, fact.value.clone()]
    }
}
