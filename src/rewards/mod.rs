//! Rewards: scores of a generated output, higher is better.
//!
//! Every reward scores a batch of items and returns one `Option<f64>` per item (`None` when the
//! reward does not apply, e.g. task accuracy without a gold answer). The trainer uses them to
//! bin the data pool; the server uses them for `score: true`.
//!
//! ```
//! use mario::rewards::{Diversity, Reward, RewardInput, TaskAccuracy};
//! let item = RewardInput { question: "Can pigs fly?", output: "Pigs have no wings. So the answer is no.", gold: Some("no") };
//! assert_eq!(TaskAccuracy.score(&[item.clone()]).unwrap(), vec![Some(1.0)]);
//! assert_eq!(Diversity.score(&[item]).unwrap(), vec![Some(1.0)]);
//! ```

pub mod consistency;
mod diversity;
pub mod knowledge_context;
pub mod likelihood;
pub mod plausibility;

pub use consistency::ConsistencyScorer;
pub use diversity::diversity;
pub use plausibility::PlausibilityScorer;

use crate::rationale::parse_output;

/// One output to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewardInput<'a> {
    /// The question (encoder input).
    pub question: &'a str,
    /// The full generated text (`<rationale> So the answer is <answer>.`).
    pub output: &'a str,
    /// The gold answer, when known.
    pub gold: Option<&'a str>,
}

/// Why scoring failed as a whole (a single unscorable item is `None` instead).
#[derive(Debug, thiserror::Error)]
#[error("reward `{reward}`: {message}")]
pub struct RewardError {
    /// The reward.
    pub reward: String,
    /// What went wrong.
    pub message: String,
}

/// A reward model or metric.
pub trait Reward: Send + Sync {
    /// Stable name (used in `mario.json`, reports and the API).
    fn name(&self) -> &str;
    /// One score per item, in order; higher is better.
    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError>;
}

/// [`diversity`] of the rationale part of each output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Diversity;

impl Reward for Diversity {
    fn name(&self) -> &str {
        "diversity"
    }
    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        Ok(items
            .iter()
            .map(|it| Some(diversity(&parse_output(it.output).rationale)))
            .collect())
    }
}

/// 1 when the parsed answer equals the gold answer (case-insensitive), 0 when it differs or is
/// missing, `None` without a gold answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskAccuracy;

/// Whether a parsed answer matches the gold one (trimmed, case-insensitive).
pub fn answers_match(predicted: &str, gold: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('.').trim().to_lowercase();
    norm(predicted) == norm(gold)
}

impl Reward for TaskAccuracy {
    fn name(&self) -> &str {
        "accuracy"
    }
    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        Ok(items
            .iter()
            .map(|it| {
                it.gold.map(|gold| match parse_output(it.output).answer {
                    Ok(a) if answers_match(&a, gold) => 1.0,
                    _ => 0.0,
                })
            })
            .collect())
    }
}
