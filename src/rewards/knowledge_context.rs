//! A likelihood scorer that reads what a knowledge corpus says about a question's entities.
//!
//! A likelihood scorer judges a rationale by how likely its model finds each token after the
//! question. The model's habits for a kind of question then raise false facts: in a generated
//! world whose teacher names a stereotypical place for every "Does a X live somewhere cold?",
//! the scorer expects that place for a creature it has never seen asked about, and prefers the
//! stereotype to the creature's true place. Put the corpus's statements about the question's
//! entities before the question ("A rifa lives in lusu. Does a rifa live somewhere cold?"),
//! the form of the reading questions the model learnt to restate, and a rationale that
//! contradicts them becomes unlikely, for any entity the corpus covers.
//!
//! Retrieval is by name: a word of the question is taken for an entity's name when at most
//! [`KnowledgeContext::max_statements_per_word`] statements contain it (common words and
//! values shared by many facts, such as a place many creatures live in, are in more), and every
//! statement containing such a word is read.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The statements a likelihood scorer reads before each question, stored in
/// `plausibility.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeContext {
    /// A question's word selects the statements containing it when there are at most this
    /// many (> 0).
    pub max_statements_per_word: usize,
    /// The corpus: one statement per entry.
    pub statements: Vec<String>,
}

impl KnowledgeContext {
    /// Checks the settings can be used.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_statements_per_word == 0 {
            return Err("`knowledge.max_statements_per_word` must be > 0".into());
        }
        if self.statements.is_empty() {
            return Err("`knowledge.statements` is empty".into());
        }
        Ok(())
    }

    /// An index of the statements by word, for [`KnowledgeIndex::context`].
    pub fn index(&self) -> KnowledgeIndex<'_> {
        let mut by_word: HashMap<String, Vec<&str>> = HashMap::new();
        for s in &self.statements {
            let mut seen: Vec<String> = words(s).collect();
            seen.sort();
            seen.dedup();
            for w in seen {
                by_word.entry(w).or_default().push(s.as_str());
            }
        }
        KnowledgeIndex {
            by_word,
            max: self.max_statements_per_word,
        }
    }
}

/// [`KnowledgeContext`]'s statements by word.
#[derive(Debug)]
pub struct KnowledgeIndex<'a> {
    by_word: HashMap<String, Vec<&'a str>>,
    max: usize,
}

impl KnowledgeIndex<'_> {
    /// The statements naming `question`'s entities: each once, in the order their words
    /// appear in the question, then in the corpus's order.
    pub fn statements(&self, question: &str) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        for w in words(question) {
            match self.by_word.get(&w) {
                Some(hits) if hits.len() <= self.max => {
                    for h in hits {
                        if !found.contains(h) {
                            found.push(h);
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// [`Self::statements`], then the question, joined by spaces; the question alone when none
    /// is found.
    pub fn context(&self, question: &str) -> String {
        self.context_within(question, |_| true)
    }

    /// [`Self::context`] with the last statements dropped until `fits` accepts it (the question
    /// is kept whole: the encoder input is cut at its end, and it must not lose the question).
    pub fn context_within(&self, question: &str, fits: impl Fn(&str) -> bool) -> String {
        let mut found = self.statements(question);
        loop {
            let text = found
                .iter()
                .copied()
                .chain(std::iter::once(question))
                .collect::<Vec<_>>()
                .join(" ");
            if found.is_empty() || fits(&text) {
                return text;
            }
            found.pop();
        }
    }
}

/// The lower-cased alphabetic words of `text`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> KnowledgeContext {
        KnowledgeContext {
            max_statements_per_word: 2,
            statements: [
                "A rifa lives in lusu.",
                "A rifa eats naso.",
                "A tuteno lives in lusu.",
                "A pemo lives in lusu.",
                "Lusu is cold.",
                "Davi is cold.",
                "Tusa is cold.",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    #[test]
    fn a_question_reads_the_statements_naming_its_rare_words() {
        let c = corpus();
        let idx = c.index();
        // "rifa" is in two statements; "a", "lives", "cold" in more
        assert_eq!(
            idx.context("Does a rifa live somewhere cold?"),
            "A rifa lives in lusu. A rifa eats naso. Does a rifa live somewhere cold?"
        );
        // two entities: each one's statements, in the order the question names them, once
        assert_eq!(
            idx.context("Which lives somewhere cold? (A) a tuteno (B) a rifa (C) a Rifa"),
            "A tuteno lives in lusu. A rifa lives in lusu. A rifa eats naso. \
             Which lives somewhere cold? (A) a tuteno (B) a rifa (C) a Rifa"
        );
        // nothing known: the question alone
        assert_eq!(idx.context("Is zubo red?"), "Is zubo red?");
    }

    #[test]
    fn statements_are_dropped_from_the_end_until_the_input_fits_and_the_question_stays() {
        let c = corpus();
        let idx = c.index();
        let q = "Does a rifa live somewhere cold?";
        let short = |t: &str| t.len() <= 60;
        assert_eq!(
            idx.context_within(q, short),
            "A rifa lives in lusu. Does a rifa live somewhere cold?"
        );
        // nothing fits: the question alone, whatever its length
        assert_eq!(idx.context_within(q, |_| false), q);
    }

    #[test]
    fn a_word_in_more_statements_than_the_limit_selects_none() {
        let mut c = corpus();
        assert_eq!(c.index().context("Is lusu cold?"), "Is lusu cold?");
        c.max_statements_per_word = 4;
        assert_eq!(
            c.index().context("Is lusu cold?"),
            "Lusu is cold. Davi is cold. Tusa is cold. A rifa lives in lusu. \
             A tuteno lives in lusu. A pemo lives in lusu. Is lusu cold?"
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let mut c = corpus();
        assert!(c.validate().is_ok());
        c.max_statements_per_word = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .contains("max_statements_per_word"));
        let empty = KnowledgeContext {
            max_statements_per_word: 3,
            statements: vec![],
        };
        assert!(empty.validate().unwrap_err().contains("statements"));
    }
}
