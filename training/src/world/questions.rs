//! Questions about a world: each needs two or more facts chained, and its answer follows from
//! the facts it needs (so a rationale that states other facts implies another answer, which
//! is how the imperfect teacher's false facts change its answers).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::kb::{Fact, KnowledgeBase, Relation, COLORS};

/// The question templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuestionKind {
    /// "Would a {object} float on water?" (yes/no): made of -> floats.
    Floats {
        /// The object.
        object: String,
    },
    /// "Would a {object} sink in water?" (yes/no): made of -> floats (the answer reversed).
    Sinks {
        /// The object.
        object: String,
    },
    /// "What color is a {object}? (A) .. (C) .." : made of -> colour (see [`ColorOptions`]).
    ObjectColor {
        /// The object.
        object: String,
        /// The three colours offered, in order.
        options: Vec<String>,
    },
    /// "Does a {creature} live somewhere cold?" (yes/no): lives in -> climate.
    LivesCold {
        /// The creature.
        creature: String,
    },
    /// "Does a {creature} live somewhere hot?" (yes/no): lives in -> climate.
    LivesHot {
        /// The creature.
        creature: String,
    },
    /// "What color is the food a {creature} eats? (A) .. (C) ..": eats -> colour.
    FoodColor {
        /// The creature.
        creature: String,
        /// The three colours offered.
        options: Vec<String>,
    },
    /// "Does a {creature} eat something {color}?" (yes/no): eats -> colour.
    EatsColor {
        /// The creature.
        creature: String,
        /// The colour asked about (the true one half of the time).
        color: String,
    },
    /// "Which lives somewhere hot? (A) a {c1} (B) a {c2}": two chains, one hot place.
    WhichHot {
        /// The creatures offered.
        options: Vec<String>,
    },
}

pub(crate) const LETTERS: [&str; 4] = ["(A)", "(B)", "(C)", "(D)"];

/// How the choices of a colour question are offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOptions {
    /// Three colours, the true one among them, in a seeded order (`(A)`-`(C)`).
    #[default]
    ThreeShuffled,
    /// Every colour, always in the same order (`(A) red (B) blue (C) green (D) yellow`), like
    /// NumerSense's fixed choices: the letter is a function of the colour alone.
    AllInOrder,
}

/// What questions a world asks.
#[derive(Debug, Clone, Copy)]
pub struct QuestionPlan<'a> {
    /// The forms asked.
    pub forms: &'a [Form],
    /// "Which lives somewhere hot?" pairs.
    pub which_hot: usize,
    /// How colour questions offer their choices.
    pub color_options: ColorOptions,
}

/// A question template without its entities: what `[world] forms` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// [`QuestionKind::Floats`] (yes/no).
    Floats,
    /// [`QuestionKind::Sinks`] (yes/no).
    Sinks,
    /// [`QuestionKind::ObjectColor`] (three choices).
    ObjectColor,
    /// [`QuestionKind::LivesCold`] (yes/no).
    LivesCold,
    /// [`QuestionKind::LivesHot`] (yes/no).
    LivesHot,
    /// [`QuestionKind::FoodColor`] (three choices).
    FoodColor,
    /// [`QuestionKind::EatsColor`] (yes/no).
    EatsColor,
    /// [`QuestionKind::WhichHot`] (two choices; `[world] which_hot` of them).
    WhichHot,
}

impl QuestionKind {
    /// Its form.
    pub fn form(&self) -> Form {
        match self {
            QuestionKind::Floats { .. } => Form::Floats,
            QuestionKind::Sinks { .. } => Form::Sinks,
            QuestionKind::ObjectColor { .. } => Form::ObjectColor,
            QuestionKind::LivesCold { .. } => Form::LivesCold,
            QuestionKind::LivesHot { .. } => Form::LivesHot,
            QuestionKind::FoodColor { .. } => Form::FoodColor,
            QuestionKind::EatsColor { .. } => Form::EatsColor,
            QuestionKind::WhichHot { .. } => Form::WhichHot,
        }
    }
}

impl Form {
    /// The forms of the first worlds (every form but `sinks` and `lives_hot`).
    pub fn original() -> Vec<Form> {
        vec![
            Form::Floats,
            Form::ObjectColor,
            Form::LivesCold,
            Form::FoodColor,
            Form::EatsColor,
            Form::WhichHot,
        ]
    }
}

/// One question with what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldQuestion {
    /// Its template and entities.
    #[serde(flatten)]
    pub kind: QuestionKind,
    /// The question text (choices inline).
    pub question: String,
    /// The gold answer (`yes`, `no`, `(A)`, ...).
    pub answer: String,
    /// The facts the answer needs, in the order a rationale states them.
    pub facts: Vec<Fact>,
}

impl WorldQuestion {
    /// The gold rationale: every needed fact, in order.
    pub fn rationale(&self) -> String {
        rationale_of(&self.facts)
    }
}

/// Sentences of `facts`, joined.
pub fn rationale_of(facts: &[Fact]) -> String {
    facts
        .iter()
        .map(Fact::sentence)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `yes` or `no`.
pub(super) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The colour a yes/no colour question asks about: the true one half of the time, else one of
/// the other colours.
pub(super) fn asked_color(rng: &mut impl Rng, true_color: &str) -> String {
    if rng.random_bool(0.5) {
        return true_color.to_string();
    }
    let others: Vec<&str> = COLORS
        .iter()
        .copied()
        .filter(|x| *x != true_color)
        .collect();
    others.choose(rng).expect("non-empty").to_string()
}

/// The letter of `value` among `options`.
fn letter_of(options: &[String], value: &str) -> Option<String> {
    options
        .iter()
        .position(|o| o == value)
        .map(|i| LETTERS[i].to_string())
}

/// The facts the question needs, as true in `kb`.
fn needed(kb: &KnowledgeBase, kind: &QuestionKind) -> Vec<Fact> {
    let chain = |s: &str, first: Relation, second: Relation| {
        let a = kb.fact(s, first);
        let b = kb.fact(&a.value, second);
        vec![a, b]
    };
    match kind {
        QuestionKind::Floats { object } | QuestionKind::Sinks { object } => {
            chain(object, Relation::MadeOf, Relation::Floats)
        }
        QuestionKind::ObjectColor { object, .. } => {
            chain(object, Relation::MadeOf, Relation::Color)
        }
        QuestionKind::LivesCold { creature } | QuestionKind::LivesHot { creature } => {
            chain(creature, Relation::LivesIn, Relation::Climate)
        }
        QuestionKind::FoodColor { creature, .. } | QuestionKind::EatsColor { creature, .. } => {
            chain(creature, Relation::Eats, Relation::Color)
        }
        QuestionKind::WhichHot { options } => options
            .iter()
            .flat_map(|c| chain(c, Relation::LivesIn, Relation::Climate))
            .collect(),
    }
}

/// The answer that `facts` imply for the question, if they imply one: the facts are read as
/// chains (the first fact about the question's entity, then a fact about its value).
pub fn implied_answer(kind: &QuestionKind, facts: &[Fact]) -> Option<String> {
    let hop = |s: &str, first: Relation, second: Relation| -> Option<String> {
        let a = facts
            .iter()
            .find(|f| f.subject == s && f.relation == first)?;
        let b = facts
            .iter()
            .find(|f| f.subject == a.value && f.relation == second)?;
        Some(b.value.clone())
    };
    match kind {
        QuestionKind::Floats { object } => hop(object, Relation::MadeOf, Relation::Floats),
        QuestionKind::Sinks { object } => {
            hop(object, Relation::MadeOf, Relation::Floats).map(|f| yes_no(f == "no"))
        }
        QuestionKind::ObjectColor { object, options } => {
            letter_of(options, &hop(object, Relation::MadeOf, Relation::Color)?)
        }
        QuestionKind::LivesCold { creature } => {
            hop(creature, Relation::LivesIn, Relation::Climate).map(|c| yes_no(c == "cold"))
        }
        QuestionKind::LivesHot { creature } => {
            hop(creature, Relation::LivesIn, Relation::Climate).map(|c| yes_no(c == "hot"))
        }
        QuestionKind::FoodColor { creature, options } => {
            letter_of(options, &hop(creature, Relation::Eats, Relation::Color)?)
        }
        QuestionKind::EatsColor { creature, color } => {
            hop(creature, Relation::Eats, Relation::Color).map(|c| yes_no(&c == color))
        }
        QuestionKind::WhichHot { options } => {
            let hot: Vec<usize> = options
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    hop(c, Relation::LivesIn, Relation::Climate).as_deref() == Some("hot")
                })
                .map(|(i, _)| i)
                .collect();
            (hot.len() == 1).then(|| LETTERS[hot[0]].to_string())
        }
    }
}

/// The text of a question.
fn text(kind: &QuestionKind) -> String {
    let choices = |opts: &[String], prefix: &str| {
        opts.iter()
            .zip(LETTERS)
            .map(|(o, l)| format!("{l} {prefix}{o}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match kind {
        QuestionKind::Floats { object } => format!("Would a {object} float on water?"),
        QuestionKind::Sinks { object } => format!("Would a {object} sink in water?"),
        QuestionKind::ObjectColor { object, options } => {
            format!("What color is a {object}? {}", choices(options, ""))
        }
        QuestionKind::LivesCold { creature } => format!("Does a {creature} live somewhere cold?"),
        QuestionKind::LivesHot { creature } => format!("Does a {creature} live somewhere hot?"),
        QuestionKind::FoodColor { creature, options } => format!(
            "What color is the food a {creature} eats? {}",
            choices(options, "")
        ),
        QuestionKind::EatsColor { creature, color } => {
            format!("Does a {creature} eat something {color}?")
        }
        QuestionKind::WhichHot { options } => {
            format!("Which lives somewhere hot? {}", choices(options, "a "))
        }
    }
}

/// The question of `kind` in `kb`.
pub fn build(kb: &KnowledgeBase, kind: QuestionKind) -> WorldQuestion {
    let facts = needed(kb, &kind);
    let answer = implied_answer(&kind, &facts).expect("the needed facts imply an answer");
    WorldQuestion {
        question: text(&kind),
        answer,
        facts,
        kind,
    }
}

/// The choices of a colour question whose answer is `correct`.
fn colour_options(rng: &mut impl Rng, style: ColorOptions, correct: &str) -> Vec<String> {
    if style == ColorOptions::AllInOrder {
        return COLORS.iter().map(|c| c.to_string()).collect();
    }
    let mut others: Vec<&str> = COLORS.iter().copied().filter(|c| *c != correct).collect();
    others.shuffle(rng);
    let mut opts: Vec<String> = vec![correct.to_string(), others[0].into(), others[1].into()];
    opts.shuffle(rng);
    opts
}

/// Every question of the world in the given `forms`: one per object or creature and form, and
/// `which_hot` pairs of creatures (one in a hot place, one in a cold place).
pub fn all_questions(
    rng: &mut impl Rng,
    kb: &KnowledgeBase,
    plan: QuestionPlan<'_>,
) -> Vec<WorldQuestion> {
    let has = |f: Form| plan.forms.contains(&f);
    let which_hot = plan.which_hot;
    let mut out = Vec::new();
    for o in &kb.objects {
        if has(Form::Floats) {
            out.push(build(kb, QuestionKind::Floats { object: o.clone() }));
        }
        if has(Form::Sinks) {
            out.push(build(kb, QuestionKind::Sinks { object: o.clone() }));
        }
        if has(Form::ObjectColor) {
            let m = kb.fact(o, Relation::MadeOf).value;
            let options =
                colour_options(rng, plan.color_options, &kb.fact(&m, Relation::Color).value);
            out.push(build(
                kb,
                QuestionKind::ObjectColor {
                    object: o.clone(),
                    options,
                },
            ));
        }
    }
    let climate = |c: &str| {
        kb.fact(&kb.fact(c, Relation::LivesIn).value, Relation::Climate)
            .value
    };
    for c in &kb.creatures {
        if has(Form::LivesCold) {
            out.push(build(
                kb,
                QuestionKind::LivesCold {
                    creature: c.clone(),
                },
            ));
        }
        if has(Form::LivesHot) {
            out.push(build(
                kb,
                QuestionKind::LivesHot {
                    creature: c.clone(),
                },
            ));
        }
        let f = kb.fact(c, Relation::Eats).value;
        let true_color = kb.fact(&f, Relation::Color).value;
        if has(Form::FoodColor) {
            let options = colour_options(rng, plan.color_options, &true_color);
            out.push(build(
                kb,
                QuestionKind::FoodColor {
                    creature: c.clone(),
                    options,
                },
            ));
        }
        if !has(Form::EatsColor) {
            continue;
        }
        let color = asked_color(rng, &true_color);
        out.push(build(
            kb,
            QuestionKind::EatsColor {
                creature: c.clone(),
                color,
            },
        ));
    }
    let hot: Vec<&String> = kb
        .creatures
        .iter()
        .filter(|c| climate(c) == "hot")
        .collect();
    let cold: Vec<&String> = kb
        .creatures
        .iter()
        .filter(|c| climate(c) == "cold")
        .collect();
    if has(Form::WhichHot) && !hot.is_empty() && !cold.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..which_hot * 4 {
            if seen.len() == which_hot {
                break;
            }
            let (h, c) = (
                (*hot.choose(rng).expect("non-empty")).clone(),
                (*cold.choose(rng).expect("non-empty")).clone(),
            );
            let options = if rng.random_bool(0.5) {
                vec![h, c]
            } else {
                vec![c, h]
            };
            if seen.insert(options.clone()) {
                out.push(build(kb, QuestionKind::WhichHot { options }));
            }
        }
    }
    out
}

/// `n` training-only *reading* questions: each states the facts it needs before asking, about
/// invented entities that are not in `kb` (fresh knowledge bases of the same shape), so the
/// answer step (compare a colour, find the option that names it, pick the creature in the hot
/// place) is learnt on names that cannot be memorised per question. Their rationale restates
/// those facts; they never enter dev or test.
pub fn reading_questions(
    rng: &mut impl Rng,
    kb: &KnowledgeBase,
    plan: QuestionPlan<'_>,
    n: usize,
) -> anyhow::Result<Vec<WorldQuestion>> {
    let world_names: std::collections::BTreeSet<&String> = kb.names().collect();
    let sizes = super::kb::KbSizes {
        objects: 4,
        materials: 4,
        creatures: 4,
        places: 4,
        foods: 4,
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mini = KnowledgeBase::generate(rng, &sizes)?;
        if mini.names().any(|name| world_names.contains(name)) {
            continue;
        }
        let mut qs = all_questions(
            rng,
            &mini,
            QuestionPlan {
                which_hot: 2,
                ..plan
            },
        );
        qs.shuffle(rng);
        for mut q in qs.into_iter().take(4) {
            q.question = format!("{} {}", q.rationale(), q.question);
            out.push(q);
        }
    }
    out.truncate(n);
    Ok(out)
}
