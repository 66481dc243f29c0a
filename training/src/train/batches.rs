//! Length-bucketed batches in a seeded, reproducible order.
//!
//! For epoch `e` the examples are shuffled with a generator seeded by `(seed, e)`, cut into
//! windows of `batch_size * bucket_factor` examples, each window is sorted by length and cut
//! into batches (so a batch holds examples of similar length and pads little), and the batches
//! are shuffled again. The order of any epoch can be rebuilt from the seed alone, which is what
//! makes a resumed run see exactly the batches the uninterrupted run would have seen.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How many batches' worth of examples are sorted together.
pub const BUCKET_FACTOR: usize = 50;

/// The batches (lists of example indices) of one epoch.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * BUCKET_FACTOR) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| (lengths[i], i));
        batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_per_epoch_and_reproducible() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 90 + 5).collect();
        let a = epoch_batches(&lengths, 16, 7, 3);
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_batches(&lengths, 16, 7, 3));
        assert_ne!(a, epoch_batches(&lengths, 16, 7, 4));
        assert_ne!(a, epoch_batches(&lengths, 16, 8, 3));
    }

    #[test]
    fn batches_hold_similar_lengths() {
        let lengths: Vec<usize> = (0..800).map(|i| (i * 7919) % 200 + 1).collect();
        let batches = epoch_batches(&lengths, 16, 1, 0);
        let spread: f64 = batches
            .iter()
            .map(|b| {
                let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
                (l.iter().max().unwrap() - l.iter().min().unwrap()) as f64
            })
            .sum::<f64>()
            / batches.len() as f64;
        assert!(spread < 20.0, "mean length spread in a batch: {spread}");
    }
}
