//! Quantile bins: each reward's scores over the whole data pool cut into K bins, best first.
//!
//! Items are ranked by score, highest first, and the ranking is cut into K runs of equal
//! length: an item's bin is `floor(rank * K / N)`, so with N >= K every bin holds N/K items
//! (the remainder spread over the bins) and none is empty. Tied scores are ordered by a seeded
//! shuffle, so a tie group that straddles a cut is split between neighbouring bins at random,
//! as the released code does (its cut of a sorted list). Keeping ties together instead empties
//! bins: when 66 % of the pool shares the top diversity score of 1.0, a shared bin of the mean
//! rank (this module's old rule) put them all in bin 1 and left the best bin, the one every
//! sampling round and evaluation asks for, with nothing to train on. With N < K the items
//! spread over the bins in order (the best in bin 0) and some bins stay empty. Missing and
//! NaN scores get no bin.
//!
//! [`TiedScores::BestBin`] keeps each tie group together in the best bin any of its items
//! reaches: the best bin is never empty (it holds the top group), every item's bin depends on
//! its score alone, and bins below a large group stay empty. When 83 % of a pool shares the top
//! diversity score, the worst bin then holds only the repeating outputs instead of 17 % of them
//! topped up with unrepeated ones, so its control token means "repeat".

/// How [`quantile_bins`] bins items with equal scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TiedScores {
    /// Ties ordered by a seeded shuffle and cut like distinct scores (the released code's
    /// rule): every bin holds N/K items.
    #[default]
    Split,
    /// A tie group takes the best bin its first-ranked item reaches.
    BestBin,
}

/// How a run cuts each quantile reward's scores into bins (one entry per reward, in control
/// table order; a shorter `within_question` leaves the rest unset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Binning {
    /// Per reward, whether it is binned on each score minus its question's mean
    /// ([`centred_by_question`]).
    pub within_question: Vec<bool>,
    /// How equal scores are binned.
    pub ties: TiedScores,
    /// Per reward, the step its scores (centred ones when binned within each question) are
    /// rounded to before they are cut ([`rounded_to_step`]); a shorter list or `None` leaves
    /// them as they are.
    pub steps: Vec<Option<f64>>,
    /// Per reward, whether it is cut on the right answers only, each wrong answer then taking
    /// a bin drawn in the right answers' proportions ([`spread_in_proportion`]); a shorter
    /// list leaves the rest unset.
    pub right_answers_only: Vec<bool>,
}

/// A stable pseudo-random key of an item for breaking ties (SplitMix64 of seed and index).
fn tie_key(seed: u64, i: usize) -> u64 {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bin (0 = best) of each score among `scores`, with `k` bins; ties are ordered by
/// `seed` and binned by `ties`.
pub fn quantile_bins(
    scores: &[Option<f64>],
    k: usize,
    seed: u64,
    ties: TiedScores,
) -> Vec<Option<usize>> {
    assert!(k >= 1, "at least one bin");
    let mut order: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].is_some_and(f64::is_finite))
        .collect();
    let n = order.len();
    let mut out = vec![None; scores.len()];
    let score = |i: usize| scores[i].expect("filtered");
    // highest first; ties in a seeded random order (deterministic for a seed)
    order.sort_by(|&a, &b| {
        score(b)
            .total_cmp(&score(a))
            .then(tie_key(seed, a).cmp(&tie_key(seed, b)))
            .then(a.cmp(&b))
    });
    let bin_of_rank = |rank: usize| (rank * k / n).min(k - 1);
    let mut group_bin = 0;
    for (rank, &i) in order.iter().enumerate() {
        let tied_with_previous = rank > 0 && score(order[rank - 1]) == score(i);
        if ties == TiedScores::Split || !tied_with_previous {
            group_bin = bin_of_rank(rank);
        }
        out[i] = Some(group_bin);
    }
    out
}

/// Each score minus the mean of the finite scores of its question (`questions[i]` is item
/// `i`'s question): what [`quantile_bins`] cuts for a reward binned within each question, so
/// that an item's bin says how it compares with the other outputs for the same question.
/// Missing and NaN scores stay missing and do not enter the means.
pub fn centred_by_question<Q: AsRef<str>>(
    scores: &[Option<f64>],
    questions: &[Q],
) -> Vec<Option<f64>> {
    assert_eq!(scores.len(), questions.len(), "one question per score");
    let mut sums: std::collections::HashMap<&str, (f64, usize)> = std::collections::HashMap::new();
    for (s, q) in scores.iter().zip(questions) {
        if let Some(v) = s.filter(|v| v.is_finite()) {
            let e = sums.entry(q.as_ref()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    scores
        .iter()
        .zip(questions)
        .map(|(s, q)| {
            let v = s.filter(|v| v.is_finite())?;
            let (sum, n) = sums[q.as_ref()];
            Some(v - sum / n as f64)
        })
        .collect()
}

/// Each score rounded to the nearest multiple of `step`: scores closer than the reward's
/// noise become equal, so that [`TiedScores::BestBin`] keeps them in one bin instead of
/// ranking them by that noise. Binned within each question, half a pool's consistency scores
/// lie within 0.005 of their question's mean (outputs as good as the others for the same
/// question); cut as distinct scores they filled half the worst bin, and the worst token was
/// trained on them as much as on the outputs that state no fact.
pub fn rounded_to_step(scores: &[Option<f64>], step: f64) -> Vec<Option<f64>> {
    assert!(step.is_finite() && step > 0.0, "a positive step");
    scores
        .iter()
        .map(|s| s.map(|v| (v / step).round() * step))
        .collect()
}

/// Bins for `n` items drawn in the proportions of `counts` (items per bin, best first): the
/// items are ordered by a seeded shuffle and the j-th takes the bin in which the point
/// `(j + 0.5) / n` of the cumulative shares falls, so every bin gets its share of the `n`
/// items up to rounding and a bin with no count gets none. With every count 0 the items are
/// spread evenly over the bins. A reward cut on the right answers only gives its wrong
/// answers these bins, so that its control token says nothing about whether the answer is
/// right (the accuracy token's job): cut over the whole pool, consistency's worst bin was
/// half wrong answers, and a student that reads its token as "wrong answer" is overruled by
/// the accuracy token at its best bin.
pub fn spread_in_proportion(n: usize, counts: &[usize], seed: u64) -> Vec<usize> {
    assert!(!counts.is_empty(), "at least one bin");
    let total: usize = counts.iter().sum();
    let weights: Vec<f64> = if total == 0 {
        vec![1.0; counts.len()]
    } else {
        counts.iter().map(|&c| c as f64).collect()
    };
    let sum: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (tie_key(seed, i), i));
    let mut out = vec![0; n];
    for (j, &i) in order.iter().enumerate() {
        let point = (j as f64 + 0.5) / n as f64 * sum;
        let mut acc = 0.0;
        let mut bin = weights.len() - 1;
        for (b, w) in weights.iter().enumerate() {
            acc += w;
            if point < acc {
                bin = b;
                break;
            }
        }
        out[i] = bin;
    }
    out
}

/// The bin of a binary reward: 0 (correct) for a score >= 0.5, 1 (wrong) otherwise.
pub fn binary_bins(scores: &[Option<f64>]) -> Vec<Option<usize>> {
    scores
        .iter()
        .map(|s| s.filter(|v| v.is_finite()).map(|v| usize::from(v < 0.5)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins(scores: &[f64], k: usize) -> Vec<usize> {
        let s: Vec<Option<f64>> = scores.iter().map(|&x| Some(x)).collect();
        quantile_bins(&s, k, 0, TiedScores::Split)
            .into_iter()
            .map(Option::unwrap)
            .collect()
    }

    fn counts(bins: &[usize], k: usize) -> Vec<usize> {
        (0..k)
            .map(|b| bins.iter().filter(|&&x| x == b).count())
            .collect()
    }

    #[test]
    fn equal_count_bins_best_first() {
        // 10 distinct scores, 5 bins: two per bin, highest scores in bin 0
        let s: Vec<f64> = (0..10).map(|i| i as f64).collect();
        assert_eq!(bins(&s, 5), vec![4, 4, 3, 3, 2, 2, 1, 1, 0, 0]);
    }

    #[test]
    fn the_remainder_is_spread_over_the_bins() {
        let s: Vec<f64> = (0..7).map(|i| -(i as f64)).collect(); // already best first
        assert_eq!(bins(&s, 3), vec![0, 0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn a_tie_at_the_top_fills_the_best_bin() {
        // StrategyQA's diversity: most items tie at 1.0. The old rule (a tie group takes the
        // bin of its mean rank) gave bins [0, 3617, 0, 762, 1113]; now every bin is used and
        // bin 0 holds only top-scoring items.
        let mut s = vec![1.0; 3617];
        s.extend((0..1875).map(|i| 0.5 + i as f64 / 10_000.0));
        let b = bins(&s, 5);
        let c = counts(&b, 5);
        assert!(c.iter().all(|&n| n >= 1098), "{c:?}");
        assert!(b.iter().zip(&s).all(|(&bin, &x)| bin > 1 || x == 1.0));
        // six of ten tied at the top: bins of two, the tie split across bins 0-2
        let s = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.4, 0.3, 0.2];
        let b = bins(&s, 5);
        assert_eq!(counts(&b, 5), vec![2, 2, 2, 2, 2]);
        assert_eq!(&b[6..], &[3, 3, 4, 4]);
        // all equal: spread evenly
        assert_eq!(counts(&bins(&[0.7; 10], 5), 5), vec![2; 5]);
    }

    #[test]
    fn ties_are_split_by_the_seed_not_by_arrival_order() {
        let s: Vec<Option<f64>> = vec![Some(1.0); 100];
        let a = quantile_bins(&s, 2, 1, TiedScores::Split);
        let b = quantile_bins(&s, 2, 2, TiedScores::Split);
        assert_eq!(
            a,
            quantile_bins(&s, 2, 1, TiedScores::Split),
            "deterministic for a seed"
        );
        assert_ne!(a, b, "another seed, another split");
        // not simply the first half in bin 0
        let first_half_best = a[..50].iter().filter(|x| **x == Some(0)).count();
        assert!((10..=40).contains(&first_half_best), "{first_half_best}");
    }

    #[test]
    fn fewer_items_than_bins_spread_in_order() {
        assert_eq!(bins(&[3.0, 1.0, 2.0], 5), vec![0, 3, 1]);
        assert_eq!(bins(&[9.0], 5), vec![0]);
        assert!(quantile_bins(&[], 5, 0, TiedScores::Split).is_empty());
    }

    #[test]
    fn missing_and_nan_scores_get_no_bin() {
        let b = quantile_bins(
            &[Some(1.0), None, Some(f64::NAN), Some(0.0)],
            2,
            0,
            TiedScores::Split,
        );
        assert_eq!(b, vec![Some(0), None, None, Some(1)]);
    }

    #[test]
    fn scores_centred_by_question_rank_outputs_against_their_own_question() {
        // question a: 0.9 and 0.7 (mean 0.8); question b: 0.2, 0.0 and a missing score (mean
        // 0.1). Over the whole pool both of b's items sit below both of a's; centred, each
        // question's better output ranks above each question's worse one.
        let scores = [
            Some(0.9),
            Some(0.2),
            Some(0.7),
            Some(0.0),
            None,
            Some(f64::NAN),
        ];
        let questions = ["a", "b", "a", "b", "b", "c"];
        let c = centred_by_question(&scores, &questions);
        let want = [0.1, 0.1, -0.1, -0.1];
        for (got, want) in c[..4].iter().zip(want) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{c:?}");
        }
        assert_eq!(&c[4..], &[None, None]);
        assert_eq!(
            quantile_bins(&scores, 2, 0, TiedScores::Split)[..4],
            [Some(0), Some(1), Some(0), Some(1)]
        );
        let b = quantile_bins(&c, 2, 0, TiedScores::Split);
        assert_eq!(b[0], b[1], "both better outputs share a bin: {b:?}");
        assert_eq!(b[2], b[3], "both worse outputs share a bin: {b:?}");
        assert_eq!(b[..2], [Some(0), Some(0)]);
        // a question whose outputs all score alike is centred at 0
        assert_eq!(
            centred_by_question(&[Some(0.4), Some(0.4)], &["q", "q"]),
            vec![Some(0.0); 2]
        );
    }

    #[test]
    fn scores_rounded_to_a_step_tie_within_half_a_step() {
        let s = [Some(0.001), Some(-0.0049), Some(0.03), Some(-0.12), None];
        let r = rounded_to_step(&s, 0.05);
        let want = [0.0, 0.0, 0.05, -0.1];
        for (got, want) in r[..4].iter().zip(want) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{r:?}");
        }
        assert_eq!(r[4], None);
        let b = quantile_bins(&r, 2, 0, TiedScores::BestBin);
        assert_eq!(b[0], b[1], "{b:?}");
    }

    #[test]
    fn best_bin_keeps_a_tie_group_in_the_best_bin_it_reaches() {
        let best_bin = |scores: &[f64], k: usize, seed: u64| -> Vec<usize> {
            let s: Vec<Option<f64>> = scores.iter().map(|&x| Some(x)).collect();
            quantile_bins(&s, k, seed, TiedScores::BestBin)
                .into_iter()
                .map(Option::unwrap)
                .collect()
        };
        // six of ten tied at the top: all in bin 0, the rest where their rank cuts them
        let s = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.4, 0.3, 0.2];
        let b = best_bin(&s, 5, 0);
        assert_eq!(b, vec![0, 0, 0, 0, 0, 0, 3, 3, 4, 4]);
        assert_eq!(counts(&b, 5), vec![6, 0, 0, 2, 2]);
        // the same for every seed: a bin depends on the score alone
        assert_eq!(best_bin(&s, 5, 7), b);
        // a tie group lower down starts at its first item's bin
        let s = [0.9, 0.8, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1, 0.0, -1.0];
        assert_eq!(best_bin(&s, 5, 3), vec![0, 0, 1, 1, 1, 1, 1, 3, 4, 4]);
        // all equal: one group in the best bin
        assert_eq!(best_bin(&[0.7; 10], 5, 1), vec![0; 10]);
        // distinct scores: the same bins as the split rule
        let s: Vec<f64> = (0..10).map(|i| i as f64).collect();
        assert_eq!(best_bin(&s, 5, 0), bins(&s, 5));
        // missing and NaN scores still get no bin
        assert_eq!(
            quantile_bins(
                &[Some(1.0), None, Some(f64::NAN), Some(1.0)],
                2,
                0,
                TiedScores::BestBin
            ),
            vec![Some(0), None, None, Some(0)]
        );
    }

    #[test]
    fn spread_in_proportion_follows_the_counts_and_the_seed() {
        let b = spread_in_proportion(100, &[60, 0, 0, 20, 20], 3);
        let c = counts(&b, 5);
        assert_eq!(c, vec![60, 0, 0, 20, 20]);
        // shares, not counts: 10 items over bins holding 300, 100 and 100
        assert_eq!(
            counts(&spread_in_proportion(10, &[300, 100, 100], 0), 3),
            vec![6, 2, 2]
        );
        // deterministic for a seed; another seed puts other items in the bins
        assert_eq!(
            spread_in_proportion(50, &[1, 1], 7),
            spread_in_proportion(50, &[1, 1], 7)
        );
        assert_ne!(
            spread_in_proportion(50, &[1, 1], 7),
            spread_in_proportion(50, &[1, 1], 8)
        );
        // no counts at all: evenly
        assert_eq!(counts(&spread_in_proportion(10, &[0; 5], 1), 5), vec![2; 5]);
        assert!(spread_in_proportion(0, &[3, 1], 1).is_empty());
    }

    #[test]
    fn binary_rewards() {
        assert_eq!(
            binary_bins(&[Some(1.0), Some(0.0), None]),
            vec![Some(0), Some(1), None]
        );
    }
}
