//! The answer choices of a question, read from its text.
//!
//! The MaRio datasets put the choices inline: `"... (A) marble floor (B) wet floor"` (QuaRel,
//! NumerSense `(A)`…`(L)`, QASC `(A)`…`(H)`), `"(a) ... (d) ..."` (OpenBookQA), and nothing for
//! StrategyQA, whose answers are `yes` / `no`.

/// The labels and texts of a question's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    /// Labels as the answers spell them: `["no", "yes"]`, `["(A)", "(B)", ...]`.
    pub labels: Vec<String>,
    /// The text after each label (empty for yes/no).
    pub texts: Vec<String>,
}

impl Choices {
    /// The yes/no choices (in the order of the paper's code).
    pub fn yes_no() -> Self {
        Self {
            labels: vec!["no".into(), "yes".into()],
            texts: vec![String::new(), String::new()],
        }
    }

    /// Index of a label, compared case-insensitively.
    pub fn index_of(&self, answer: &str) -> Option<usize> {
        let a = answer.trim();
        self.labels.iter().position(|l| l.eq_ignore_ascii_case(a))
    }
}

/// Finds the markers `(A) (B) ...` or `(a) (b) ...`: consecutive letters from `a`, at least
/// two. Returns byte offsets of each marker.
fn markers(question: &str, first: u8) -> Vec<usize> {
    let bytes = question.as_bytes();
    let mut out = Vec::new();
    let mut want = first;
    let mut i = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == b'(' && bytes[i + 1] == want && bytes[i + 2] == b')' {
            out.push(i);
            want += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The choices of a question: lettered markers if there are at least two (upper case first),
/// otherwise yes/no.
pub fn extract_choices(question: &str) -> Choices {
    for first in [b'A', b'a'] {
        let at = markers(question, first);
        if at.len() >= 2 {
            let mut labels = Vec::with_capacity(at.len());
            let mut texts = Vec::with_capacity(at.len());
            for (k, &start) in at.iter().enumerate() {
                let end = at.get(k + 1).copied().unwrap_or(question.len());
                labels.push(question[start..start + 3].to_string());
                texts.push(question[start + 3..end].trim().to_string());
            }
            return Choices { labels, texts };
        }
    }
    Choices::yes_no()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lettered_choices_upper_and_lower_case() {
        let c = extract_choices("Tommy ... resistance. (A) marble floor (B) wet floor");
        assert_eq!(c.labels, vec!["(A)", "(B)"]);
        assert_eq!(c.texts, vec!["marble floor", "wet floor"]);
        let c = extract_choices("Frilled sharks ... (a) Deep sea animals (b) fish (c) Long Sea Fish (d) Far Sea Animals");
        assert_eq!(c.labels, vec!["(a)", "(b)", "(c)", "(d)"]);
        assert_eq!(c.texts[3], "Far Sea Animals");
        assert_eq!(c.index_of("(C)"), Some(2));
    }

    #[test]
    fn numersense_has_twelve_choices() {
        let q =
            "Lobelia Take <mask> capsules. \n (A) no (B) zero (C) one (D) two (E) three (F) four \
                 (G) five (H) six (I) seven (J) eight (K) nine (L) ten";
        let c = extract_choices(q);
        assert_eq!(c.labels.len(), 12);
        assert_eq!(c.labels[11], "(L)");
        assert_eq!(c.texts[0], "no");
    }

    #[test]
    fn no_markers_means_yes_no() {
        assert_eq!(
            extract_choices("Is Poseidon similar to Vulcan?"),
            Choices::yes_no()
        );
        // a lone "(A)" is not a choice list
        assert_eq!(extract_choices("Is vitamin (A) good?"), Choices::yes_no());
        assert_eq!(Choices::yes_no().index_of("Yes"), Some(1));
    }
}
