//! Quantile bins: each reward's scores over the whole data pool cut into K bins, best first.
//!
//! Items are ranked by score, highest first. An item's bin is `floor(rank * K / N)` where `rank`
//! is the mean rank of its tie group, so equal scores always share a bin (the released code cuts
//! a sorted list, which splits ties between neighbouring bins at random). With N >= K the bins
//! hold N/K items each (the remainder goes to the first bins); with N < K the items spread over
//! the bins in order, so the best item is in bin 0 and the worst in a late bin (the released code
//! puts every item in the last bin then). Missing scores get no bin.

/// The bin (0 = best) of each score among `scores`, with `k` bins.
pub fn quantile_bins(scores: &[Option<f64>], k: usize) -> Vec<Option<usize>> {
    assert!(k >= 1, "at least one bin");
    let mut order: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].is_some_and(f64::is_finite))
        .collect();
    let n = order.len();
    let mut out = vec![None; scores.len()];
    if n == 0 {
        return out;
    }
    let score = |i: usize| scores[i].expect("filtered");
    // highest first; index order among equals keeps the result deterministic
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && score(order[end]) == score(order[start]) {
            end += 1;
        }
        // mean rank of the tie group [start, end)
        let mid = (start + end - 1) as f64 / 2.0;
        let bin = ((mid * k as f64 / n as f64).floor() as usize).min(k - 1);
        for &i in &order[start..end] {
            out[i] = Some(bin);
        }
        start = end;
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
        quantile_bins(&s, k)
            .into_iter()
            .map(Option::unwrap)
            .collect()
    }

    #[test]
    fn equal_count_bins_best_first() {
        // 10 distinct scores, 5 bins: two per bin, highest scores in bin 0
        let s: Vec<f64> = (0..10).map(|i| i as f64).collect();
        assert_eq!(bins(&s, 5), vec![4, 4, 3, 3, 2, 2, 1, 1, 0, 0]);
    }

    #[test]
    fn remainder_goes_to_the_first_bins() {
        let s: Vec<f64> = (0..7).map(|i| -(i as f64)).collect(); // already best first
        assert_eq!(bins(&s, 3), vec![0, 0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn ties_share_a_bin() {
        // six items tied at the top, 4 others: the tie group's mean rank is 2.5 -> bin 1 of 5
        let s = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.4, 0.3, 0.2];
        let b = bins(&s, 5);
        assert!(b[..6].iter().all(|&x| x == b[0]), "{b:?}");
        assert_eq!(b[0], 1);
        assert_eq!(&b[6..], &[3, 3, 4, 4]);
        // all equal: one bin for everyone (the middle one)
        assert_eq!(bins(&[0.7; 4], 5), vec![1; 4]);
    }

    #[test]
    fn fewer_items_than_bins_spread_in_order() {
        assert_eq!(bins(&[3.0, 1.0, 2.0], 5), vec![0, 3, 1]);
        assert_eq!(bins(&[9.0], 5), vec![0]);
        assert!(quantile_bins(&[], 5).is_empty());
    }

    #[test]
    fn missing_and_nan_scores_get_no_bin() {
        let b = quantile_bins(&[Some(1.0), None, Some(f64::NAN), Some(0.0)], 2);
        assert_eq!(b, vec![Some(0), None, None, Some(1)]);
    }

    #[test]
    fn binary_rewards() {
        assert_eq!(
            binary_bins(&[Some(1.0), Some(0.0), None]),
            vec![Some(0), Some(1), None]
        );
    }
}
