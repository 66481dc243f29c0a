//! The text format of a self-rationalization: `<rationale> So the answer is <answer>.`
//!
//! ```
//! use mario::rationale::{build_target, parse_output, AnswerMissing};
//! let t = build_target("Pigs cannot fly", "no");
//! assert_eq!(t, "Pigs cannot fly. So the answer is no.");
//! let p = parse_output(&t);
//! assert_eq!(p.rationale, "Pigs cannot fly.");
//! assert_eq!(p.answer, Ok("no".to_string()));
//! assert_eq!(parse_output("Pigs cannot fly.").answer, Err(AnswerMissing::NoAnswerPhrase));
//! ```

use serde::Serialize;

/// The phrase that separates the rationale from the answer.
pub const ANSWER_PHRASE: &str = "So the answer is";

/// Builds the SFT target: the rationale (with a final period ensured), then
/// ` So the answer is <answer>.`
pub fn build_target(rationale: &str, answer: &str) -> String {
    let r = rationale.trim();
    let r = if r.is_empty() || r.ends_with('.') {
        r.to_string()
    } else {
        format!("{r}.")
    };
    let a = answer.trim();
    if r.is_empty() {
        format!("{ANSWER_PHRASE} {a}.")
    } else {
        format!("{r} {ANSWER_PHRASE} {a}.")
    }
}

/// Why an output has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMissing {
    /// The output does not contain "So the answer is".
    NoAnswerPhrase,
    /// Nothing follows the last "So the answer is".
    EmptyAnswer,
}

impl AnswerMissing {
    /// A short human-readable reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoAnswerPhrase => "the output does not contain \"So the answer is\"",
            Self::EmptyAnswer => "nothing follows \"So the answer is\"",
        }
    }
}

/// A generated text split into rationale and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOutput {
    /// Text before the last "So the answer is" (the whole text when it is absent), trimmed.
    pub rationale: String,
    /// Text after it, trimmed, without the final period; or why there is none.
    pub answer: Result<String, AnswerMissing>,
}

/// Splits a generated text at the last "So the answer is". Nothing is guessed: a text
/// without the phrase has no answer.
pub fn parse_output(text: &str) -> ParsedOutput {
    match text.rfind(ANSWER_PHRASE) {
        None => ParsedOutput {
            rationale: text.trim().to_string(),
            answer: Err(AnswerMissing::NoAnswerPhrase),
        },
        Some(at) => {
            let rationale = text[..at].trim().to_string();
            let rest = text[at + ANSWER_PHRASE.len()..].trim();
            let rest = rest.strip_suffix('.').unwrap_or(rest).trim();
            ParsedOutput {
                rationale,
                answer: if rest.is_empty() {
                    Err(AnswerMissing::EmptyAnswer)
                } else {
                    Ok(rest.to_string())
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_adds_period_once() {
        assert_eq!(build_target("A.", "(B)"), "A. So the answer is (B).");
        assert_eq!(build_target(" A ", "yes"), "A. So the answer is yes.");
        assert_eq!(build_target("", "yes"), "So the answer is yes.");
    }

    #[test]
    fn parse_uses_last_phrase_and_strips_one_period() {
        let p = parse_output("So the answer is x. Really. So the answer is (C).");
        assert_eq!(p.rationale, "So the answer is x. Really.");
        assert_eq!(p.answer, Ok("(C)".into()));
        let p = parse_output("r So the answer is yes");
        assert_eq!(p.answer, Ok("yes".into()));
        assert_eq!(p.rationale, "r");
    }

    #[test]
    fn parse_reports_missing_and_empty_answers() {
        assert_eq!(
            parse_output("no phrase here").answer,
            Err(AnswerMissing::NoAnswerPhrase)
        );
        assert_eq!(
            parse_output("r. So the answer is .").answer,
            Err(AnswerMissing::EmptyAnswer)
        );
        assert_eq!(
            parse_output("r. So the answer is").answer,
            Err(AnswerMissing::EmptyAnswer)
        );
    }
}
