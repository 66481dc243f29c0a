//! The per-batch decoder cache.
//!
//! One [`DecoderCache`] belongs to one running batch. It holds, for every decoder block,
//! - the cross-attention keys and values of the encoder output, computed once when the cache
//!   is created (`(B, H, S, d_kv)`), and
//! - a preallocated self-attention key/value buffer (`(B, H, capacity, d_kv)`) that each
//!   decoding step writes into in place.
//!
//! Rows are aligned on *slots*: every step writes all rows at the same slot. A row that joined
//! the batch later ([`DecoderCache::merge`]) starts at a later slot; the slots before its
//! start are masked out. T5's relative positions only depend on slot differences, so a row
//! computes exactly what it would compute alone. Finished rows leave with
//! [`DecoderCache::retain_rows`], and slots that no remaining row uses are reclaimed.

use candle_core::{Device, Result, Tensor};

use super::attention::KeyWindows;

/// Cached keys and values of one decoder block.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    /// `(B, H, capacity, d_kv)`; slots `0..len` are filled.
    pub self_k: Tensor,
    /// Same shape as `self_k`.
    pub self_v: Tensor,
    /// `(B, H, S, d_kv)`.
    pub cross_k: Tensor,
    /// `(B, H, S, d_kv)`.
    pub cross_v: Tensor,
}

/// Decoder state of one batch: cross-attention K/V, self-attention K/V, row alignment.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    pub(crate) layers: Vec<LayerCache>,
    /// Encoder length of each row.
    pub(crate) encoder_lengths: Vec<usize>,
    /// First slot of each row.
    pub(crate) row_start: Vec<usize>,
    /// Slots written so far (the same for every row).
    pub(crate) len: usize,
    pub(crate) capacity: usize,
    pub(crate) num_heads: usize,
    pub(crate) d_kv: usize,
}

impl DecoderCache {
    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        self.row_start.len()
    }

    /// Slots written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no slot has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots that fit without growing the buffers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Decoder tokens each row has consumed so far.
    pub fn row_lengths(&self) -> Vec<usize> {
        self.row_start.iter().map(|s| self.len - s).collect()
    }

    /// Encoder length of each row.
    pub fn encoder_lengths(&self) -> &[usize] {
        &self.encoder_lengths
    }

    fn device(&self) -> &Device {
        self.layers[0].cross_k.device()
    }

    /// Encoder positions held by the cross-attention K/V (the longest row).
    pub(crate) fn encoder_width(&self) -> usize {
        self.layers[0].cross_k.dim(2).unwrap_or(0)
    }

    /// Grows the self-attention buffers so that `needed` slots fit.
    pub(crate) fn reserve(&mut self, needed: usize) -> Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let new_cap = needed.max(self.capacity * 2).max(8);
        let b = self.batch_size();
        for layer in &mut self.layers {
            for buf in [&mut layer.self_k, &mut layer.self_v] {
                let grown = Tensor::zeros(
                    (b, self.num_heads, new_cap, self.d_kv),
                    buf.dtype(),
                    buf.device(),
                )?;
                if self.len > 0 {
                    grown.slice_set(&buf.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
                *buf = grown;
            }
        }
        self.capacity = new_cap;
        Ok(())
    }

    /// Visible keys for `q_len` new tokens at slots `len..len + q_len`: from each row's
    /// first slot, causal.
    pub(crate) fn self_windows(&self, q_len: usize) -> KeyWindows {
        KeyWindows {
            lo: self.row_start.clone(),
            hi: vec![self.len + q_len; self.batch_size()],
            causal_offset: Some(self.len),
        }
    }

    /// Visible encoder positions of each row.
    pub(crate) fn cross_windows(&self) -> KeyWindows {
        KeyWindows::lengths(&self.encoder_lengths)
    }

    /// Keeps only the given rows, in the given order (e.g. after some rows finished).
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        if rows.len() == self.batch_size() && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch_size()) {
            candle_core::bail!(
                "retain_rows: row {bad} out of range for a batch of {}",
                self.batch_size()
            );
        }
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            self.device(),
        )?;
        for layer in &mut self.layers {
            layer.self_k = layer.self_k.index_select(&idx, 0)?;
            layer.self_v = layer.self_v.index_select(&idx, 0)?;
            layer.cross_k = layer.cross_k.index_select(&idx, 0)?;
            layer.cross_v = layer.cross_v.index_select(&idx, 0)?;
        }
        self.encoder_lengths = rows.iter().map(|&r| self.encoder_lengths[r]).collect();
        self.row_start = rows.iter().map(|&r| self.row_start[r]).collect();
        // Shrink the encoder axis to the longest remaining row.
        let max_enc = self.encoder_lengths.iter().copied().max().unwrap_or(0);
        if max_enc > 0 && max_enc < self.encoder_width() {
            for layer in &mut self.layers {
                layer.cross_k = layer.cross_k.narrow(2, 0, max_enc)?.contiguous()?;
                layer.cross_v = layer.cross_v.narrow(2, 0, max_enc)?.contiguous()?;
            }
        }
        self.compact()
    }

    /// Drops leading slots that no row uses any more.
    pub fn compact(&mut self) -> Result<()> {
        let shift = match self.row_start.iter().copied().min() {
            Some(s) if s > 0 => s,
            _ => return Ok(()),
        };
        let keep = self.len - shift;
        for layer in &mut self.layers {
            for buf in [&mut layer.self_k, &mut layer.self_v] {
                let moved = Tensor::zeros(buf.dims(), buf.dtype(), buf.device())?;
                if keep > 0 {
                    moved.slice_set(&buf.narrow(2, shift, keep)?.contiguous()?, 2, 0)?;
                }
                *buf = moved;
            }
        }
        for s in &mut self.row_start {
            *s -= shift;
        }
        self.len = keep;
        Ok(())
    }

    /// Appends the rows of `other` (e.g. new requests that were prefilled on their own) to
    /// this batch. Both caches must come from the same model. The shorter side is shifted to
    /// later slots so that both end at the same slot.
    pub fn merge(&mut self, other: DecoderCache) -> Result<()> {
        if other.layers.len() != self.layers.len()
            || other.num_heads != self.num_heads
            || other.d_kv != self.d_kv
        {
            candle_core::bail!("merge: caches of different models");
        }
        if self.batch_size() == 0 {
            *self = other;
            return Ok(());
        }
        if other.batch_size() == 0 {
            return Ok(());
        }
        let new_len = self.len.max(other.len);
        let new_cap = self.capacity.max(other.capacity).max(new_len);
        let enc_len = self.encoder_width().max(other.encoder_width());
        let a = self.aligned(new_len, new_cap, enc_len)?;
        let b = other.aligned(new_len, new_cap, enc_len)?;
        let mut layers = Vec::with_capacity(a.layers.len());
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            layers.push(LayerCache {
                self_k: Tensor::cat(&[&la.self_k, &lb.self_k], 0)?,
                self_v: Tensor::cat(&[&la.self_v, &lb.self_v], 0)?,
                cross_k: Tensor::cat(&[&la.cross_k, &lb.cross_k], 0)?,
                cross_v: Tensor::cat(&[&la.cross_v, &lb.cross_v], 0)?,
            });
        }
        self.layers = layers;
        self.encoder_lengths = a.encoder_lengths;
        self.encoder_lengths.extend(b.encoder_lengths);
        self.row_start = a.row_start;
        self.row_start.extend(b.row_start);
        self.len = new_len;
        self.capacity = new_cap;
        Ok(())
    }

    /// A copy whose filled slots end at `len`, with `capacity` slots and an encoder axis of
    /// `enc_len` (the padding is outside every row's window).
    fn aligned(&self, len: usize, capacity: usize, enc_len: usize) -> Result<DecoderCache> {
        let shift = len - self.len;
        let b = self.batch_size();
        let mut out = self.clone();
        for layer in &mut out.layers {
            for buf in [&mut layer.self_k, &mut layer.self_v] {
                if shift == 0 && capacity == self.capacity {
                    continue;
                }
                let moved = Tensor::zeros(
                    (b, self.num_heads, capacity, self.d_kv),
                    buf.dtype(),
                    buf.device(),
                )?;
                if self.len > 0 {
                    moved.slice_set(&buf.narrow(2, 0, self.len)?.contiguous()?, 2, shift)?;
                }
                *buf = moved;
            }
            let s = layer.cross_k.dim(2)?;
            if s < enc_len {
                let pad = Tensor::zeros(
                    (b, self.num_heads, enc_len - s, self.d_kv),
                    layer.cross_k.dtype(),
                    layer.cross_k.device(),
                )?;
                layer.cross_k = Tensor::cat(&[&layer.cross_k, &pad], 2)?;
                layer.cross_v = Tensor::cat(&[&layer.cross_v, &pad], 2)?;
            }
        }
        for st in &mut out.row_start {
            *st += shift;
        }
        out.len = len;
        out.capacity = capacity;
        Ok(out)
    }
}
