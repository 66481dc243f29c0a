//! T5's relative-position buckets and the learned bias they index.
//!
//! The encoder uses bidirectional buckets (half of them for keys after the query); the decoder
//! uses unidirectional buckets (all of them for keys at or before the query), exactly as
//! transformers' `T5Attention._relative_position_bucket(bidirectional=not is_decoder)`.

use candle_core::{DType, Device, Result, Tensor};

/// Maps `relative_position = key_position - query_position` to a bucket index.
///
/// Mirrors transformers, including its float32 arithmetic for the logarithmic buckets, so that
/// bucket boundaries agree bit for bit.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let rp = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        // Only past (and current) keys are distinguished; future keys share bucket 0 and are
        // masked anyway.
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if rp < max_exact {
        bucket += rp;
    } else {
        // transformers: (log(rp.float() / max_exact) / math.log(max_distance / max_exact)
        //                 * (num_buckets - max_exact)).to(long), in float32.
        let ratio = (rp as f32 / max_exact as f32).ln();
        let denom = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (ratio / denom * (num_buckets - max_exact) as f32) as i64;
        bucket += large.min(num_buckets - 1);
    }
    bucket as usize
}

/// Bucket indices for every (query, key) pair: `out[i * key_len + j]` for query position
/// `query_offset + i` and key position `j`.
pub fn bucket_grid(
    query_offset: usize,
    query_len: usize,
    key_len: usize,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(query_len * key_len);
    for i in 0..query_len {
        let q = (query_offset + i) as i64;
        for j in 0..key_len {
            out.push(relative_position_bucket(
                j as i64 - q,
                bidirectional,
                num_buckets,
                max_distance,
            ) as u32);
        }
    }
    out
}

/// The learned relative-attention bias of the first block of a stack:
/// weight `(num_buckets, num_heads)`.
#[derive(Debug, Clone)]
pub struct RelativeBias {
    weight: Tensor,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

impl RelativeBias {
    /// Wraps the `relative_attention_bias.weight` tensor.
    pub fn new(weight: Tensor, bidirectional: bool, max_distance: usize) -> Result<Self> {
        let (num_buckets, _heads) = weight.dims2()?;
        Ok(Self {
            weight,
            bidirectional,
            num_buckets,
            max_distance,
        })
    }

    /// Bias for query positions `query_offset..query_offset + query_len` against key positions
    /// `0..key_len`: shape `(1, heads, query_len, key_len)`.
    pub fn forward(&self, query_offset: usize, query_len: usize, key_len: usize) -> Result<Tensor> {
        let grid = bucket_grid(
            query_offset,
            query_len,
            key_len,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        );
        let idx = Tensor::from_vec(grid, query_len * key_len, self.weight.device())?;
        // (q*k, heads) -> (heads, q*k) -> (1, heads, q, k)
        let heads = self.weight.dim(1)?;
        self.weight
            .index_select(&idx, 0)?
            .t()?
            .reshape((1, heads, query_len, key_len))
    }

    /// The weight's device.
    pub fn device(&self) -> &Device {
        self.weight.device()
    }

    /// The weight's dtype.
    pub fn dtype(&self) -> DType {
        self.weight.dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with transformers' `T5Attention._relative_position_bucket`
    /// (num_buckets=32, max_distance=128).
    #[test]
    fn buckets_match_transformers_reference_values() {
        // bidirectional (encoder)
        let cases_bi = [
            (-200, 15),
            (-128, 15),
            (-100, 15),
            (-64, 14),
            (-20, 10),
            (-8, 8),
            (-7, 7),
            (-1, 1),
            (0, 0),
            (1, 17),
            (7, 23),
            (8, 24),
            (20, 26),
            (100, 31),
        ];
        for (rp, want) in cases_bi {
            assert_eq!(relative_position_bucket(rp, true, 32, 128), want, "rp={rp}");
        }
        // unidirectional (decoder): only the past is distinguished
        let cases_uni = [
            (-200, 31),
            (-128, 31),
            (-100, 30),
            (-40, 23),
            (-20, 17),
            (-16, 16),
            (-15, 15),
            (-1, 1),
            (0, 0),
            (5, 0),
        ];
        for (rp, want) in cases_uni {
            assert_eq!(
                relative_position_bucket(rp, false, 32, 128),
                want,
                "rp={rp}"
            );
        }
    }
}
