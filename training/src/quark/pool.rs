//! The data pool of the multi-reward QUARK loop: every sampled (and, at the start, every silver)
//! output with its reward scores, kept across rounds and stored as JSON Lines so that a run can
//! resume.

use std::path::Path;

use anyhow::Result;
use mario::control::{ControlTokens, RewardKind};
use serde::{Deserialize, Serialize};

use super::bins::{
    binary_bins, centred_by_question, quantile_bins, rounded_to_step, spread_in_proportion,
    Binning, TiedScores,
};
use super::rewards::RewardName;

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The teacher's (silver) training data.
    Silver,
    /// Sampled from the SFT reference (round 0).
    Reference,
    /// Sampled from the policy.
    Policy,
    /// A teacher sample that reached a wrong answer (`[mario] teacher_wrong_answers`).
    Teacher,
}

/// One output in the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolItem {
    /// The question.
    pub question: String,
    /// Its gold answer.
    pub gold: String,
    /// The output text (`<rationale> So the answer is <answer>.`).
    pub text: String,
    /// One score per reward, in the control table's order (`None`: not computable).
    pub scores: Vec<Option<f64>>,
    /// The round that added it.
    pub round: u32,
    /// Its origin.
    pub source: Source,
}

/// The pool cut into bins.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolBins {
    /// Reward names, in control order.
    pub rewards: Vec<String>,
    /// Their kinds.
    pub kinds: Vec<RewardKind>,
    /// Per item, its bin for every reward (`None`: a score is missing; not trained on).
    pub items: Vec<Option<Vec<usize>>>,
    /// Per reward, trained items in each bin (bin 0 = best).
    pub counts: Vec<Vec<usize>>,
    /// How equal scores were binned ([`Binning::ties`]).
    pub ties: TiedScores,
}

impl PoolBins {
    /// Refuses a pool in which a quantile reward has an empty bin, or any reward an empty best
    /// bin: that control token would never be trained, yet sampling and evaluation ask for it.
    /// A binary reward whose worst bin is empty (no wrong answer in the pool: nothing to
    /// contrast) is only warned about; it is a fact of the data, not of the binning. So is an
    /// empty bin below the best one of a quantile reward binned with
    /// [`TiedScores::BestBin`], which empties the bins a tie group spans by design.
    pub fn ensure_no_empty_bin(&self) -> Result<()> {
        for ((name, c), kind) in self.rewards.iter().zip(&self.counts).zip(&self.kinds) {
            let empty_allowed = *kind == RewardKind::Binary || self.ties == TiedScores::BestBin;
            if empty_allowed && c[0] > 0 {
                if let Some(b) = c.iter().position(|&n| n == 0) {
                    tracing::warn!(
                        "reward `{name}`: bin {b} holds no pool item ({c:?}); its token is not \
                         trained this round"
                    );
                }
                continue;
            }
            if let Some(b) = c.iter().position(|&n| n == 0) {
                anyhow::bail!(
                    "reward `{name}`: bin {b} holds no pool item (items per bin, best first: \
                     {c:?}); its control token would never be trained. Sample more outputs \
                     (questions_per_round, rollouts) or use fewer bins"
                );
            }
        }
        Ok(())
    }
}

/// All items so far.
#[derive(Debug, Clone, Default)]
pub struct DataPool {
    /// The items, in arrival order.
    pub items: Vec<PoolItem>,
}

impl DataPool {
    /// Reads a pool file (missing file: empty pool).
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self {
            items: crate::jsonl::read_if_exists(path)?,
        })
    }

    /// Appends items to the pool and to its file.
    pub fn extend(&mut self, items: Vec<PoolItem>, path: &Path) -> Result<()> {
        crate::jsonl::append(path, &items)?;
        self.items.extend(items);
        Ok(())
    }

    /// Each item's bin per reward (over the whole pool; ties ordered by `seed` and binned by
    /// `binning.ties`), or `None` for an item missing a score for any reward (such items are
    /// not trained on), with the number of trained items in every bin. A quantile reward whose
    /// `binning.within_question` flag is set is binned on each score minus its question's mean
    /// ([`centred_by_question`]); one whose `binning.right_answers_only` flag is set is cut on
    /// the items the `accuracy` reward scores right, and its wrong answers are spread over its
    /// bins in the right answers' proportions ([`spread_in_proportion`]).
    pub fn bins(&self, table: &ControlTokens, seed: u64, binning: &Binning) -> PoolBins {
        let scores_of = |k: usize| -> Vec<Option<f64>> {
            self.items
                .iter()
                .map(|it| it.scores.get(k).copied().flatten())
                .collect()
        };
        // per item, its accuracy bin (Some(0) right, Some(1) wrong; None: no accuracy reward
        // or no score), read by the rewards cut on the right answers only
        let accuracy = RewardName::Accuracy.as_str();
        let answer_bins: Vec<Option<usize>> =
            match table.rewards.iter().position(|r| r.name == accuracy) {
                Some(a) => binary_bins(&scores_of(a)),
                None => vec![None; self.items.len()],
            };
        let per_reward: Vec<Vec<Option<usize>>> = table
            .rewards
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let scores = scores_of(k);
                match r.kind {
                    RewardKind::Quantile
                        if binning.right_answers_only.get(k).copied().unwrap_or(false) =>
                    {
                        self.bins_on_right_answers(
                            &scores,
                            &answer_bins,
                            k,
                            r.bins(),
                            seed,
                            binning,
                        )
                    }
                    RewardKind::Quantile => {
                        self.quantile_bins_of(scores, k, r.bins(), seed, binning)
                    }
                    RewardKind::Binary => binary_bins(&scores),
                }
            })
            .collect();
        let items: Vec<Option<Vec<usize>>> = (0..self.items.len())
            .map(|i| {
                per_reward
                    .iter()
                    .map(|b| b[i])
                    .collect::<Option<Vec<usize>>>()
            })
            .collect();
        let mut counts: Vec<Vec<usize>> = table.rewards.iter().map(|r| vec![0; r.bins()]).collect();
        for bins in items.iter().flatten() {
            for (c, &b) in counts.iter_mut().zip(bins) {
                c[b] += 1;
            }
        }
        PoolBins {
            rewards: table.rewards.iter().map(|r| r.name.clone()).collect(),
            kinds: table.rewards.iter().map(|r| r.kind).collect(),
            items,
            counts,
            ties: binning.ties,
        }
    }

    /// The quantile bins of reward `k`'s `scores` (centred by question and rounded to a step
    /// as `binning` says for it).
    fn quantile_bins_of(
        &self,
        scores: Vec<Option<f64>>,
        k: usize,
        n_bins: usize,
        seed: u64,
        binning: &Binning,
    ) -> Vec<Option<usize>> {
        let scores = if binning.within_question.get(k).copied().unwrap_or(false) {
            let questions: Vec<&str> = self.items.iter().map(|it| it.question.as_str()).collect();
            centred_by_question(&scores, &questions)
        } else {
            scores
        };
        let scores = match binning.steps.get(k).copied().flatten() {
            Some(step) => rounded_to_step(&scores, step),
            None => scores,
        };
        quantile_bins(&scores, n_bins, seed.wrapping_add(k as u64), binning.ties)
    }

    /// The bins of reward `k` cut on the right answers only (`answer_bins[i] == Some(0)`): the
    /// right answers take their [`Self::quantile_bins_of`] bins, every wrong answer with a
    /// score a bin drawn in the right answers' proportions ([`spread_in_proportion`], seeded
    /// apart from the tie order).
    fn bins_on_right_answers(
        &self,
        scores: &[Option<f64>],
        answer_bins: &[Option<usize>],
        k: usize,
        n_bins: usize,
        seed: u64,
        binning: &Binning,
    ) -> Vec<Option<usize>> {
        let right_scores: Vec<Option<f64>> = scores
            .iter()
            .zip(answer_bins)
            .map(|(s, a)| s.filter(|_| *a == Some(0)))
            .collect();
        let mut bins = self.quantile_bins_of(right_scores, k, n_bins, seed, binning);
        let mut counts = vec![0; n_bins];
        for &b in bins.iter().flatten() {
            counts[b] += 1;
        }
        let wrong: Vec<usize> = (0..scores.len())
            .filter(|&i| answer_bins[i] == Some(1) && scores[i].is_some_and(f64::is_finite))
            .collect();
        let spread = spread_in_proportion(wrong.len(), &counts, seed.wrapping_add(1000 + k as u64));
        for (i, b) in wrong.into_iter().zip(spread) {
            bins[i] = Some(b);
        }
        bins
    }

    /// Mean and count of each reward's scores over the items of one round.
    pub fn round_means(&self, round: u32, n_rewards: usize) -> Vec<(f64, usize)> {
        (0..n_rewards)
            .map(|k| {
                let v: Vec<f64> = self
                    .items
                    .iter()
                    .filter(|it| {
                        it.round == round && matches!(it.source, Source::Reference | Source::Policy)
                    })
                    .filter_map(|it| it.scores.get(k).copied().flatten())
                    .collect();
                (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(scores: &[Option<f64>]) -> PoolItem {
        PoolItem {
            question: "q".into(),
            gold: "yes".into(),
            text: "r. So the answer is yes.".into(),
            scores: scores.to_vec(),
            round: 0,
            source: Source::Policy,
        }
    }

    #[test]
    fn bins_per_reward_and_items_missing_a_score_are_left_out() {
        let table = ControlTokens::quark(&[("diversity", 2)], &["accuracy"]);
        let pool = DataPool {
            items: vec![
                item(&[Some(0.9), Some(1.0)]),
                item(&[Some(0.1), Some(0.0)]),
                item(&[None, Some(1.0)]),
                item(&[Some(0.5), Some(0.0)]),
            ],
        };
        let bins = pool.bins(&table, 0, &Binning::default());
        let b = &bins.items;
        assert_eq!(b[0], Some(vec![0, 0]));
        assert_eq!(b[1], Some(vec![1, 1]));
        assert_eq!(b[2], None);
        assert_eq!(b[3], Some(vec![0, 1]));
        // counts over the trained items (item 2 is not trained)
        assert_eq!(bins.counts, vec![vec![2, 1], vec![1, 2]]);
        bins.ensure_no_empty_bin().unwrap();
    }

    #[test]
    fn a_score_step_keeps_outputs_as_good_as_their_siblings_out_of_the_worst_bin() {
        // 20 questions: 16 whose outputs score alike up to noise (< 0.001), 4 with three good
        // outputs (0.5) and one that states no fact (0.2). Centred, the noise decides which
        // alike outputs fill the worst bin; rounded to 0.05, they tie at 0 and the worst bin
        // holds the four outputs that are worse than their siblings.
        let table = ControlTokens::quark(&[("consistency", 5)], &[]);
        let mut items = Vec::new();
        for q in 0..20 {
            for j in 0..4 {
                let score = if q < 16 {
                    0.4 + f64::from(q * 4 + j) * 1e-5 * if j % 2 == 0 { 1.0 } else { -1.0 }
                } else if j == 3 {
                    0.2
                } else {
                    0.5
                };
                let mut it = item(&[Some(score)]);
                it.question = format!("q{q}");
                items.push(it);
            }
        }
        let pool = DataPool { items };
        let vague = |b: &PoolBins| -> Vec<usize> {
            (0..80)
                .filter(|&i| i >= 64 && i % 4 == 3)
                .map(|i| b.items[i].as_ref().unwrap()[0])
                .collect()
        };
        let mut binning = Binning {
            within_question: vec![true],
            ties: TiedScores::BestBin,
            ..Binning::default()
        };
        let noisy = pool.bins(&table, 0, &binning);
        assert_eq!(noisy.counts[0][4], 16, "{:?}", noisy.counts);
        assert_eq!(vague(&noisy), vec![4; 4]);
        binning.steps = vec![Some(0.05)];
        let stepped = pool.bins(&table, 0, &binning);
        // the 12 good outputs of the mixed questions (+0.075) in bin 0, the 64 alike ones
        // tied at 0 from bin 0's end, the 4 that state no fact alone in the worst bin
        assert_eq!(
            stepped.counts,
            vec![vec![76, 0, 0, 0, 4]],
            "{:?}",
            stepped.counts
        );
        assert_eq!(vague(&stepped), vec![4; 4]);
    }

    #[test]
    fn a_reward_cut_on_right_answers_spreads_wrong_answers_over_its_bins() {
        // 40 right answers with consistency 0.0..0.39 and 10 wrong ones scoring below all of
        // them. Cut over the whole pool the worst of 5 bins (10 items) is every wrong answer;
        // cut on the right answers, each bin holds 8 right answers and 2 wrong ones.
        let table = ControlTokens::quark(&[("consistency", 5)], &["accuracy"]);
        let mut items: Vec<PoolItem> = (0..40)
            .map(|i| item(&[Some(f64::from(i) / 100.0), Some(1.0)]))
            .collect();
        items.extend((0..10).map(|i| item(&[Some(-1.0 - f64::from(i)), Some(0.0)])));
        items.push(item(&[None, Some(0.0)]));
        let pool = DataPool { items };
        let whole = pool.bins(&table, 0, &Binning::default());
        assert!(whole.items[40..50]
            .iter()
            .all(|b| b.as_ref().unwrap()[0] == 4));
        let binning = Binning {
            right_answers_only: vec![true],
            ..Binning::default()
        };
        let right_only = pool.bins(&table, 0, &binning);
        assert_eq!(right_only.counts, vec![vec![10; 5], vec![40, 10]]);
        let right_bin = |i: usize| right_only.items[i].as_ref().unwrap()[0];
        // the right answers ranked among themselves: the best 8 in bin 0, the worst 8 in bin 4
        assert!((32..40).all(|i| right_bin(i) == 0) && (0..8).all(|i| right_bin(i) == 4));
        let mut wrong: Vec<usize> = (40..50).map(right_bin).collect();
        wrong.sort_unstable();
        assert_eq!(wrong, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        // an item missing its score still gets no bin
        assert_eq!(right_only.items[50], None);
    }

    #[test]
    fn a_pool_whose_top_scores_tie_trains_every_bin() {
        // diversity 1.0 for most items (as for 66 % of StrategyQA's silver rationales)
        let table = ControlTokens::quark(&[("diversity", 5)], &[]);
        let mut items: Vec<PoolItem> = (0..66).map(|_| item(&[Some(1.0)])).collect();
        items.extend((0..34).map(|i| item(&[Some(0.5 + f64::from(i) / 100.0)])));
        let bins = DataPool { items }.bins(&table, 3, &Binning::default());
        assert_eq!(bins.counts, vec![vec![20; 5]]);
        bins.ensure_no_empty_bin().unwrap();
    }

    #[test]
    fn best_bin_ties_empty_the_bins_a_top_tie_spans_and_are_allowed_to() {
        // 83 of 100 outputs repeat nothing (diversity 1.0): with best_bin they all train the
        // best token, the 17 repeating ones the bins their ranks reach, bins 1-3 stay empty
        let table = ControlTokens::quark(&[("diversity", 5)], &[]);
        let mut items: Vec<PoolItem> = (0..83).map(|_| item(&[Some(1.0)])).collect();
        items.extend((0..17).map(|i| item(&[Some(0.5 + f64::from(i) / 100.0)])));
        let binning = Binning {
            ties: TiedScores::BestBin,
            ..Binning::default()
        };
        let bins = DataPool { items }.bins(&table, 3, &binning);
        assert_eq!(bins.counts, vec![vec![83, 0, 0, 0, 17]]);
        assert!(bins.items[83..].iter().all(|b| b == &Some(vec![4])));
        bins.ensure_no_empty_bin().unwrap();
        // the split rule on the same pool fills every bin, the worst with 3 unrepeated outputs
        let mut items: Vec<PoolItem> = (0..83).map(|_| item(&[Some(1.0)])).collect();
        items.extend((0..17).map(|i| item(&[Some(0.5 + f64::from(i) / 100.0)])));
        let bins = DataPool { items }.bins(&table, 3, &Binning::default());
        assert_eq!(bins.counts, vec![vec![20; 5]]);
    }

    #[test]
    fn an_empty_bin_is_refused_naming_the_reward() {
        // three items cannot fill five quantile bins
        let table = ControlTokens::quark(&[("plausibility", 5)], &["accuracy"]);
        let items: Vec<PoolItem> = (0..3)
            .map(|i| item(&[Some(f64::from(i)), Some(1.0)]))
            .collect();
        let bins = DataPool { items }.bins(&table, 0, &Binning::default());
        assert_eq!(bins.counts, vec![vec![1, 1, 0, 1, 0], vec![3, 0]]);
        let msg = bins.ensure_no_empty_bin().unwrap_err().to_string();
        assert!(msg.contains("`plausibility`: bin 2"), "{msg}");
        // a binary reward with no wrong answer is allowed; with no right answer it is not
        let table = ControlTokens::quark(&[], &["accuracy"]);
        let right: Vec<PoolItem> = (0..4).map(|_| item(&[Some(1.0)])).collect();
        DataPool { items: right }
            .bins(&table, 0, &Binning::default())
            .ensure_no_empty_bin()
            .unwrap();
        let wrong: Vec<PoolItem> = (0..4).map(|_| item(&[Some(0.0)])).collect();
        let bins = DataPool { items: wrong }.bins(&table, 0, &Binning::default());
        let msg = bins.ensure_no_empty_bin().unwrap_err().to_string();
        assert!(
            msg.contains("`accuracy`: bin 0") && msg.contains("[0, 4]"),
            "{msg}"
        );
    }

    #[test]
    fn pool_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.jsonl");
        let mut pool = DataPool::default();
        pool.extend(vec![item(&[Some(0.5), None])], &p).unwrap();
        pool.extend(vec![item(&[Some(0.7), Some(1.0)])], &p)
            .unwrap();
        let back = DataPool::load(&p).unwrap();
        assert_eq!(back.items, pool.items);
    }
}
