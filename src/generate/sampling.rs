//! Choosing the next token of one row: greedy, or temperature / top-k / top-p sampling with
//! the row's own seeded generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::params::SamplingParams;

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in xs.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// `log_softmax(xs)[idx]`, computed stably.
pub fn log_softmax_at(xs: &[f32], idx: u32) -> f32 {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = xs.iter().map(|&v| ((v - max) as f64).exp()).sum();
    (xs[idx as usize] - max) - sum.ln() as f32
}

/// The token chooser of one row.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A chooser with its own generator seeded by `seed`.
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses a token from `logits` (`(V)`; `-inf` entries are never chosen).
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let t = self.params.temperature as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // (token, unnormalised probability), in token order
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, &l)| l > f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, ((l - max) / t).exp()))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        let by_prob_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = self.params.top_k {
            if k > 0 && k < cand.len() {
                cand.select_nth_unstable_by(k - 1, by_prob_desc);
                cand.truncate(k);
            }
        }
        if let Some(p) = self.params.top_p {
            if p < 1.0 {
                cand.sort_by(by_prob_desc);
                let total: f32 = cand.iter().map(|c| c.1).sum();
                let mut cum = 0.0;
                let mut keep = cand.len();
                for (i, c) in cand.iter().enumerate() {
                    cum += c.1;
                    if cum >= p as f32 * total {
                        keep = i + 1;
                        break;
                    }
                }
                cand.truncate(keep);
            }
        }
        // Walk in a canonical order so the draw does not depend on how `cand` was filtered.
        cand.sort_by_key(|c| c.0);
        let total: f64 = cand.iter().map(|c| c.1 as f64).sum();
        let mut u = self.rng.random::<f64>() * total;
        for c in &cand {
            u -= c.1 as f64;
            if u < 0.0 {
                return c.0;
            }
        }
        cand.last().expect("non-empty").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(t: f64, k: Option<usize>, p: Option<f64>, seed: u64) -> Sampler {
        Sampler::new(
            SamplingParams {
                temperature: t,
                top_k: k,
                top_p: p,
            },
            seed,
        )
    }

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), 1);
        assert_eq!(sampler(0.0, None, None, 1).choose(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn temperatures_too_small_to_sample_with_are_greedy() {
        // 1e-300 is 0 in f32: dividing by it made every probability NaN
        let logits = [0.0, 3.0, 2.9, 1.0];
        for t in [1e-300, 1e-45, 1e-6] {
            for seed in 0..20 {
                assert_eq!(sampler(t, None, None, seed).choose(&logits), 1, "{t}");
            }
        }
        assert!(!SamplingParams {
            temperature: crate::generate::MIN_SAMPLING_TEMPERATURE,
            top_k: None,
            top_p: None
        }
        .is_greedy());
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        for seed in 0..50 {
            assert_eq!(sampler(1.0, Some(1), None, seed).choose(&logits), 1);
        }
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // probabilities ~ [0.665, 0.245, 0.09]: p = 0.6 keeps only the first
        let logits = [2.0, 1.0, 0.0];
        for seed in 0..50 {
            assert_eq!(sampler(1.0, None, Some(0.6), seed).choose(&logits), 0);
        }
        // p = 0.8 keeps two, never the third
        let seen: std::collections::HashSet<u32> = (0..200)
            .map(|s| sampler(1.0, None, Some(0.8), s).choose(&logits))
            .collect();
        assert_eq!(seen, [0, 1].into_iter().collect());
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_probabilities() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut a = sampler(1.0, None, None, 7);
        let mut b = sampler(1.0, None, None, 7);
        let da: Vec<u32> = (0..100).map(|_| a.choose(&logits)).collect();
        let db: Vec<u32> = (0..100).map(|_| b.choose(&logits)).collect();
        assert_eq!(da, db);
        let mut s = sampler(1.0, None, None, 3);
        let ones = (0..4000).filter(|_| s.choose(&logits) == 1).count() as f64 / 4000.0;
        assert!((ones - 0.75).abs() < 0.03, "frequency {ones}");
    }

    #[test]
    fn masked_tokens_are_never_sampled() {
        let logits = [f32::NEG_INFINITY, 0.0, 0.0];
        for seed in 0..100 {
            assert_ne!(sampler(2.0, None, None, seed).choose(&logits), 0);
        }
    }

    #[test]
    fn log_softmax_is_normalised() {
        let xs = [1.0f32, 2.0, 3.0];
        let total: f32 = (0..3).map(|i| log_softmax_at(&xs, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
