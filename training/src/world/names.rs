//! Invented names made of syllables: no real-world prior helps or hurts a model reading them.

use std::collections::BTreeSet;

use rand::seq::IndexedRandom;
use rand::Rng;

const CONSONANTS: [&str; 14] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];

/// How many distinct names of two or three syllables exist.
pub fn name_space() -> usize {
    let s = CONSONANTS.len() * VOWELS.len();
    s * s + s * s * s
}

/// One name: two syllables, or three with probability 1/3.
pub fn name(rng: &mut impl Rng) -> String {
    let n = if rng.random_bool(1.0 / 3.0) { 3 } else { 2 };
    (0..n)
        .map(|_| {
            format!(
                "{}{}",
                CONSONANTS.choose(rng).expect("non-empty"),
                VOWELS.choose(rng).expect("non-empty")
            )
        })
        .collect()
}

/// `n` distinct names, none in `taken` (which gains them), in draw order.
pub fn distinct_names(rng: &mut impl Rng, n: usize, taken: &mut BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let x = name(rng);
        if taken.insert(x.clone()) {
            out.push(x);
        }
    }
    out
}

/// `word` with its first letter upper-cased (a name starting a sentence).
pub fn capitalized(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
