//! Diversity: how little a rationale repeats itself (MaRio, method section C.3).
//!
//! Tokens are the whitespace split of the rationale. For n = 2, 3, 4 the ratio of unique
//! n-grams to n-gram occurrences is taken; diversity is their product, in `[0, 1]`. When the
//! text is too short for n-grams of size n the loop stops and the missing ratios count as 1
//! (the reference implementation sets `rep_n = 0`), so an empty or one-word text scores 1.

use std::collections::HashSet;

/// Diversity of one rationale.
pub fn diversity(rationale: &str) -> f64 {
    let tokens: Vec<&str> = rationale.split_whitespace().collect();
    let mut score = 1.0;
    for n in 2..=4 {
        if tokens.len() < n {
            break;
        }
        let grams: Vec<&[&str]> = tokens.windows(n).collect();
        let unique: HashSet<&[&str]> = grams.iter().copied().collect();
        score *= unique.len() as f64 / grams.len() as f64;
    }
    score
}

#[cfg(test)]
mod tests {
    use super::diversity;

    /// The golden vectors of method.md section C.3 (computed with the released Python code).
    #[test]
    fn diversity_golden_vectors() {
        let cases = [
            ("", 1.0),
            ("a b", 1.0),
            ("a b a b a b", 0.133_333_333_333),
            ("the the the the", 0.166_666_666_666),
            (
                "Less resistance implies ease in ease in ease in cutting through. \
                 Ease in cutting through. Answer is bread.",
                0.535_294_117_647,
            ),
        ];
        for (text, want) in cases {
            let got = diversity(text);
            assert!((got - want).abs() < 1e-9, "{text:?}: {got} vs {want}");
        }
    }
}
