//! The knowledge base of a generated world: invented entities of five types and the facts
//! that link them, each stated by exactly one sentence template (so a rationale's sentences
//! can be checked against the world).

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::names::{capitalized, distinct_names};

/// Colours of materials and foods.
pub const COLORS: [&str; 4] = ["red", "blue", "green", "yellow"];

/// A kind of fact: a relation between entities, or a property of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// object -> material.
    MadeOf,
    /// material -> `yes` (floats on water) or `no` (sinks).
    Floats,
    /// creature -> place.
    LivesIn,
    /// place -> `hot` or `cold`.
    Climate,
    /// creature -> food.
    Eats,
    /// material or food -> a colour.
    Color,
}

/// One fact: `subject relation value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fact {
    /// The entity the fact is about.
    pub subject: String,
    /// What it says.
    pub relation: Relation,
    /// The other entity, or the property's value.
    pub value: String,
}

impl Fact {
    /// A new fact.
    pub fn new(subject: &str, relation: Relation, value: &str) -> Self {
        Self {
            subject: subject.into(),
            relation,
            value: value.into(),
        }
    }

    /// The sentence that states the fact (the only one the world uses for it).
    pub fn sentence(&self) -> String {
        let (s, v) = (&self.subject, &self.value);
        match self.relation {
            Relation::MadeOf => format!("A {s} is made of {v}."),
            Relation::Floats if v == "yes" => format!("{} floats on water.", capitalized(s)),
            Relation::Floats => format!("{} sinks in water.", capitalized(s)),
            Relation::LivesIn => format!("A {s} lives in {v}."),
            Relation::Climate => format!("{} is {v}.", capitalized(s)),
            Relation::Eats => format!("A {s} eats {v}."),
            Relation::Color => format!("{} is {v}.", capitalized(s)),
        }
    }
}

/// Sizes of a world's knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KbSizes {
    /// Objects (each made of one material).
    pub objects: usize,
    /// Materials (each floats or sinks, and has a colour).
    pub materials: usize,
    /// Creatures (each lives in one place and eats one food).
    pub creatures: usize,
    /// Places (each hot or cold).
    pub places: usize,
    /// Foods (each has a colour).
    pub foods: usize,
}

impl Default for KbSizes {
    fn default() -> Self {
        Self {
            objects: 80,
            materials: 12,
            creatures: 80,
            places: 12,
            foods: 12,
        }
    }
}

/// The entities and every true fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeBase {
    /// Objects.
    pub objects: Vec<String>,
    /// Materials.
    pub materials: Vec<String>,
    /// Creatures.
    pub creatures: Vec<String>,
    /// Places.
    pub places: Vec<String>,
    /// Foods.
    pub foods: Vec<String>,
    /// Every true fact.
    pub facts: Vec<Fact>,
}

/// Values of a property, half of the entities each, in a seeded order.
fn balanced<'a>(rng: &mut impl Rng, n: usize, values: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = (0..n).map(|i| values[i % values.len()]).collect();
    rand::seq::SliceRandom::shuffle(out.as_mut_slice(), rng);
    out
}

impl KnowledgeBase {
    /// A random world of the given sizes (every type needs at least two entities).
    pub fn generate(rng: &mut impl Rng, sizes: &KbSizes) -> anyhow::Result<Self> {
        for (n, what) in [
            (sizes.objects, "objects"),
            (sizes.materials, "materials"),
            (sizes.creatures, "creatures"),
            (sizes.places, "places"),
            (sizes.foods, "foods"),
        ] {
            if n < 2 {
                anyhow::bail!("[world] {what} = {n}: a world needs at least 2");
            }
        }
        let total = sizes.objects + sizes.materials + sizes.creatures + sizes.places + sizes.foods;
        if total > super::names::name_space() / 4 {
            anyhow::bail!("[world]: {total} entities are too many for the invented names");
        }
        let mut taken = BTreeSet::new();
        let objects = distinct_names(rng, sizes.objects, &mut taken);
        let materials = distinct_names(rng, sizes.materials, &mut taken);
        let creatures = distinct_names(rng, sizes.creatures, &mut taken);
        let places = distinct_names(rng, sizes.places, &mut taken);
        let foods = distinct_names(rng, sizes.foods, &mut taken);
        let mut facts = Vec::new();
        let floats = balanced(rng, materials.len(), &["yes", "no"]);
        let material_colors = balanced(rng, materials.len(), &COLORS);
        for ((m, f), c) in materials.iter().zip(floats).zip(material_colors) {
            facts.push(Fact::new(m, Relation::Floats, f));
            facts.push(Fact::new(m, Relation::Color, c));
        }
        for (p, c) in places
            .iter()
            .zip(balanced(rng, places.len(), &["hot", "cold"]))
        {
            facts.push(Fact::new(p, Relation::Climate, c));
        }
        for (f, c) in foods.iter().zip(balanced(rng, foods.len(), &COLORS)) {
            facts.push(Fact::new(f, Relation::Color, c));
        }
        for o in &objects {
            let m = materials.choose(rng).expect("non-empty");
            facts.push(Fact::new(o, Relation::MadeOf, m));
        }
        for c in &creatures {
            let p = places.choose(rng).expect("non-empty");
            let f = foods.choose(rng).expect("non-empty");
            facts.push(Fact::new(c, Relation::LivesIn, p));
            facts.push(Fact::new(c, Relation::Eats, f));
        }
        Ok(Self {
            objects,
            materials,
            creatures,
            places,
            foods,
            facts,
        })
    }

    /// Every entity name, of every type.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.objects
            .iter()
            .chain(&self.materials)
            .chain(&self.creatures)
            .chain(&self.places)
            .chain(&self.foods)
    }

    /// The value of `relation` for `subject`.
    pub fn value(&self, subject: &str, relation: Relation) -> Option<&str> {
        self.facts
            .iter()
            .find(|f| f.subject == subject && f.relation == relation)
            .map(|f| f.value.as_str())
    }

    /// The fact `relation` of `subject` (panics if the world lacks it: a generator bug).
    pub fn fact(&self, subject: &str, relation: Relation) -> Fact {
        let v = self
            .value(subject, relation)
            .unwrap_or_else(|| panic!("the world has no {relation:?} fact for {subject}"));
        Fact::new(subject, relation, v)
    }

    /// The values a fact of this relation could take (for false facts and distractors).
    pub fn domain(&self, relation: Relation) -> Vec<String> {
        match relation {
            Relation::MadeOf => self.materials.clone(),
            Relation::LivesIn => self.places.clone(),
            Relation::Eats => self.foods.clone(),
            Relation::Floats => vec!["yes".into(), "no".into()],
            Relation::Climate => vec!["hot".into(), "cold".into()],
            Relation::Color => COLORS.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Every true fact's sentence, with the fact.
    pub fn sentences(&self) -> BTreeMap<String, Fact> {
        self.facts
            .iter()
            .map(|f| (f.sentence(), f.clone()))
            .collect()
    }
}
