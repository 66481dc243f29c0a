//! The dev metric that picks a MaRio run's `best/` checkpoint (`[mario] selection`), typed:
//! a name the dev evaluations never report is refused when the configuration is read, not
//! after the first round.

use std::str::FromStr;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use super::rewards::RewardName;
use crate::world::truth::TruthMeasure;

/// What a dev evaluation measures (see [`super::dev_eval::DevEval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevMeasure {
    /// Share of questions answered correctly (`dev_accuracy`).
    Accuracy,
    /// Share of outputs in the rationale-then-answer format (`dev_format_valid`).
    FormatValid,
    /// Mean rationale length in words (`dev_rationale_words`).
    RationaleWords,
    /// A learned reward's mean (`dev_consistency`, `dev_plausibility`, `dev_diversity`; task
    /// accuracy is [`DevMeasure::Accuracy`]).
    Reward(RewardName),
    /// The mean of the quantile rewards' means (`dev_reward_mean`).
    RewardMean,
    /// A ground-truth measure of a generated world (`dev_truth_*`).
    Truth(TruthMeasure),
}

impl DevMeasure {
    /// Every measure, in the order the dev evaluations report them.
    pub fn all() -> Vec<DevMeasure> {
        let mut all = vec![
            DevMeasure::Accuracy,
            DevMeasure::FormatValid,
            DevMeasure::RationaleWords,
        ];
        all.extend(
            RewardName::ALL
                .into_iter()
                .filter(|r| *r != RewardName::Accuracy)
                .map(DevMeasure::Reward),
        );
        all.extend(TruthMeasure::ALL.map(DevMeasure::Truth));
        all.push(DevMeasure::RewardMean);
        all
    }

    /// Its name without the `dev_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            DevMeasure::Accuracy => "accuracy",
            DevMeasure::FormatValid => "format_valid",
            DevMeasure::RationaleWords => "rationale_words",
            DevMeasure::Reward(r) => r.as_str(),
            DevMeasure::RewardMean => "reward_mean",
            DevMeasure::Truth(m) => m.name(),
        }
    }
}

/// A dev metric: a measure under the run's first n-gram blocking size (`dev_<measure>`), or
/// under a further one of `eval_no_repeat_ngram_sizes` (`dev_<measure>_nr<N>`). Higher is
/// better. Read and written as that name (config files, `mario_state.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SelectionMetric {
    /// What is measured.
    pub measure: DevMeasure,
    /// The further n-gram blocking size it is measured under (`None`: the first one).
    pub no_repeat_ngram_size: Option<usize>,
}

impl SelectionMetric {
    /// `dev_accuracy`, the default.
    pub const ACCURACY: SelectionMetric = SelectionMetric {
        measure: DevMeasure::Accuracy,
        no_repeat_ngram_size: None,
    };
}

impl std::fmt::Display for SelectionMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dev_{}", self.measure.name())?;
        match self.no_repeat_ngram_size {
            Some(n) => write!(f, "_nr{n}"),
            None => Ok(()),
        }
    }
}

impl FromStr for SelectionMetric {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let unknown = || {
            let names: Vec<String> = DevMeasure::all()
                .into_iter()
                .map(|m| format!("dev_{}", m.name()))
                .collect();
            anyhow!(
                "unknown selection metric `{s}`: expected one of {}, each optionally with \
                 _nr<N> (a further eval_no_repeat_ngram_sizes entry)",
                names.join(", ")
            )
        };
        let Some(rest) = s.strip_prefix("dev_") else {
            return Err(unknown());
        };
        let (name, no_repeat_ngram_size) = match rest.rsplit_once("_nr") {
            Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (name, Some(n.parse().map_err(|_| unknown())?))
            }
            _ => (rest, None),
        };
        let measure = DevMeasure::all()
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(unknown)?;
        Ok(Self {
            measure,
            no_repeat_ngram_size,
        })
    }
}

impl TryFrom<String> for SelectionMetric {
    type Error = anyhow::Error;
    fn try_from(s: String) -> anyhow::Result<Self> {
        s.parse()
    }
}

impl From<SelectionMetric> for String {
    fn from(m: SelectionMetric) -> String {
        m.to_string()
    }
}

/// How a round competes for `best/` (`[mario] selection` and
/// `selection_max_accuracy_drop`): a round that trained every reward's control tokens ranks
/// before one that did not (the additive variant's early rounds, whose later rewards' tokens
/// are untrained: their sweep rows would say nothing); then rounds whose dev accuracy stays
/// within the floor rank first, by the selection value; rounds below it rank after every one
/// within it, by their dev accuracy (the least loss first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRank {
    /// Every reward's tokens were in the round's prefix (always for the canonical variant).
    pub all_rewards: bool,
    /// The round's dev accuracy is at least the floor (always, without a floor).
    pub within_floor: bool,
    /// The selection value (within the floor) or the dev accuracy (below it).
    pub value: f64,
}

impl RoundRank {
    /// The rank of a round with this selection value and dev accuracy, against `floor` (the
    /// SFT start's dev accuracy less the allowed drop; `None`: no floor). A tolerance of 1e-9
    /// keeps an accuracy equal to the floor within it despite rounding.
    /// `all_rewards`: the round's prefix held every reward's tokens.
    pub fn of(selection_value: f64, accuracy: f64, floor: Option<f64>, all_rewards: bool) -> Self {
        let within_floor = !matches!(floor, Some(f) if accuracy < f - 1e-9);
        Self {
            all_rewards,
            within_floor,
            value: if within_floor {
                selection_value
            } else {
                accuracy
            },
        }
    }

    /// Whether this round replaces `other` as `best/` (strictly better: an equal later round
    /// does not).
    pub fn beats(self, other: RoundRank) -> bool {
        if self.all_rewards != other.all_rewards {
            return self.all_rewards;
        }
        match (self.within_floor, other.within_floor) {
            (true, false) => true,
            (false, true) => false,
            _ => self.value > other.value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_within_the_accuracy_floor_rank_first() {
        // SFT dev accuracy 0.90, one point allowed: floor 0.89
        let floor = Some(0.89);
        let a = RoundRank::of(0.78, 0.889, floor, true); // loses 1.1 points: below
        let b = RoundRank::of(0.75, 0.89, floor, true); // loses exactly 1 point: within
        let c = RoundRank::of(0.77, 0.92, floor, true);
        assert!(!a.within_floor && a.value == 0.889);
        assert!(b.within_floor && b.value == 0.75);
        assert!(
            b.beats(a),
            "within the floor beats a higher reward below it"
        );
        assert!(!a.beats(b));
        assert!(
            c.beats(b) && !b.beats(c),
            "within the floor: the selection value decides"
        );
        // below the floor: the smaller accuracy loss wins, whatever the reward
        let d = RoundRank::of(0.70, 0.88, floor, true);
        assert!(a.beats(d) && !d.beats(a));
        // ties keep the earlier round
        assert!(!b.beats(b));
        // without a floor the selection value alone decides
        assert!(RoundRank::of(0.78, 0.5, None, true).beats(RoundRank::of(0.77, 0.99, None, true)));
    }

    #[test]
    fn a_round_that_trained_every_reward_beats_one_that_did_not() {
        // additive variant: round 2 trained 3 of 4 rewards, round 3 all of them
        let floor = Some(0.755);
        let partial = RoundRank::of(0.70, 0.80, floor, false);
        let all_below_floor = RoundRank::of(0.60, 0.70, floor, true);
        assert!(all_below_floor.beats(partial) && !partial.beats(all_below_floor));
        // among partial rounds the usual order holds
        let partial_lower = RoundRank::of(0.65, 0.80, floor, false);
        assert!(partial.beats(partial_lower) && !partial_lower.beats(partial));
    }

    #[test]
    fn every_dev_metric_name_reads_back_and_others_are_refused() {
        for m in DevMeasure::all() {
            for n in [None, Some(3)] {
                let metric = SelectionMetric {
                    measure: m,
                    no_repeat_ngram_size: n,
                };
                assert_eq!(
                    metric.to_string().parse::<SelectionMetric>().unwrap(),
                    metric
                );
            }
        }
        let m: SelectionMetric = "dev_truth_no_repetition_nr0".parse().unwrap();
        assert_eq!(m.measure, DevMeasure::Truth(TruthMeasure::NoRepetition));
        assert_eq!(m.no_repeat_ngram_size, Some(0));
        assert_eq!(
            "dev_accuracy".parse::<SelectionMetric>().unwrap(),
            SelectionMetric::ACCURACY
        );
        for bad in [
            "accuracy",
            "dev_loss",
            "dev_accuracy_nr",
            "dev_reward_mean_nrx",
            "",
        ] {
            let err = bad.parse::<SelectionMetric>().unwrap_err().to_string();
            assert!(err.contains("dev_reward_mean"), "{bad}: {err}");
        }
        // a config names it as a string, and a refused name fails when the file is read
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            selection: SelectionMetric,
        }
        let t: T = toml::from_str("selection = \"dev_reward_mean\"").unwrap();
        assert_eq!(t.selection.measure, DevMeasure::RewardMean);
        let err = toml::from_str::<T>("selection = \"dev_reward\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown selection metric"),
            "{err}"
        );
    }
}
