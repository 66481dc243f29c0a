//! CPU attention kernel for inference: scores, position bias, key window, softmax and the
//! weighted sum of values in one pass, without materialising `(B, H, Tq, Tk)` tensors.
//!
//! Each query visits exactly the keys of its window, in increasing order, with a fixed
//! summation order. The result for a row therefore does not depend on the batch it is in, on
//! padding, or on masked cache slots: batched generation equals one-by-one generation.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::attention::KeyWindows;

/// A read-only view of an f32 CPU tensor with a contiguous last dimension.
struct View<'a> {
    data: &'a [f32],
    /// Element offset of `[0, 0, 0, 0]`.
    start: usize,
    /// Strides of the first three dimensions (the last one is 1).
    strides: [usize; 3],
    /// Size of dimension 0 (1 means broadcast over rows).
    dim0: usize,
}

impl View<'_> {
    #[inline]
    fn row(&self, b: usize, h: usize, i: usize, len: usize) -> &[f32] {
        let b = if self.dim0 == 1 { 0 } else { b };
        let at = self.start + b * self.strides[0] + h * self.strides[1] + i * self.strides[2];
        &self.data[at..at + len]
    }
}

fn f32_slice<'a>(storage: &'a Storage, what: &str) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(v.as_slice()),
        _ => candle_core::bail!("fused attention: {what} must be an f32 CPU tensor"),
    }
}

fn view<'a>(data: &'a [f32], layout: &Layout) -> Result<View<'a>> {
    let st = layout.stride();
    if st.len() != 4 || st[3] != 1 {
        candle_core::bail!("fused attention: expected a rank-4 tensor with a contiguous last dim");
    }
    Ok(View {
        data,
        start: layout.start_offset(),
        strides: [st[0], st[1], st[2]],
        dim0: layout.dims()[0],
    })
}

/// Makes the last dimension contiguous (a no-op for cache views and contiguous tensors).
fn last_dim_contiguous(t: &Tensor) -> Result<Tensor> {
    if t.stride().last() == Some(&1) {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Dot product with eight independent accumulators combined in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for t in chunks * 8..a.len() {
        tail += a[t] * b[t];
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// `softmax(q kᵀ + position_bias, over the window) v` for `q (B, H, Tq, d)`,
/// `k, v (B, H, Tk, d)`, `position (1 | B, H, Tq, Tk)`; returns `(B, H, Tq, d)` in q's dtype.
pub fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    position: Option<&Tensor>,
    windows: &KeyWindows,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let to_f32 = |t: &Tensor| -> Result<Tensor> {
        if t.dtype() == DType::F32 {
            last_dim_contiguous(t)
        } else {
            t.to_dtype(DType::F32)
        }
    };
    let (q, k, v) = (
        q.to_dtype(DType::F32)?.contiguous()?,
        to_f32(k)?,
        to_f32(v)?,
    );
    let position = position.map(to_f32).transpose()?;
    let (b, h, tq, d) = q.dims4()?;
    let tk = k.dim(2)?;
    if windows.lo.len() != b || windows.hi.len() != b {
        candle_core::bail!("fused attention: {} windows for {b} rows", windows.lo.len());
    }
    if windows.hi.iter().any(|&hi| hi > tk) {
        candle_core::bail!("fused attention: a key window ends past the {tk} keys");
    }

    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let qv = view(f32_slice(&qs, "q")?, ql)?;
    let kv = view(f32_slice(&ks, "k")?, kl)?;
    let vv = view(f32_slice(&vs, "v")?, vl)?;
    let pos_guard = position.as_ref().map(|p| p.storage_and_layout());
    let pv = match &pos_guard {
        Some((s, l)) => Some(view(f32_slice(s, "position bias")?, l)?),
        None => None,
    };

    let mut out = vec![0f32; b * h * tq * d];
    out.par_chunks_mut(tq * d)
        .enumerate()
        .for_each(|(bh, block)| {
            let (row, head) = (bh / h, bh % h);
            let mut scores = vec![0f32; tk];
            for i in 0..tq {
                let (lo, hi) = windows.range(row, i);
                if lo >= hi {
                    continue; // nothing visible: zeros (never happens for valid inputs)
                }
                let qi = qv.row(row, head, i, d);
                let bias = pv.as_ref().map(|p| p.row(row, head, i, tk));
                let mut max = f32::NEG_INFINITY;
                for (j, score) in scores.iter_mut().enumerate().take(hi).skip(lo) {
                    let mut s = dot(qi, kv.row(row, head, j, d));
                    if let Some(bias) = bias {
                        s += bias[j];
                    }
                    *score = s;
                    max = max.max(s);
                }
                let mut sum = 0f32;
                for s in &mut scores[lo..hi] {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                let o = &mut block[i * d..(i + 1) * d];
                for (j, &e) in scores.iter().enumerate().take(hi).skip(lo) {
                    let p = e * inv;
                    for (ot, vt) in o.iter_mut().zip(vv.row(row, head, j, d)) {
                        *ot += p * vt;
                    }
                }
            }
        });
    drop((qs, ks, vs, pos_guard));
    Tensor::from_vec(out, (b, h, tq, d), q.device())?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused kernel against plain tensor ops with an additive mask.
    #[test]
    fn fused_attention_matches_masked_softmax() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, tq, tk, d) = (2, 3, 4, 6, 10);
        let q = Tensor::randn(0f32, 1.0, (b, h, tq, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev)?;
        let pos = Tensor::randn(0f32, 1.0, (1, h, tq, tk), &dev)?;
        let windows = KeyWindows {
            lo: vec![0, 1],
            hi: vec![6, 5],
            causal_offset: Some(2),
        };
        let got = fused_attention(&q, &k, &v, Some(&pos), &windows)?;
        let mask = windows.dense_mask(tq, tk, &dev)?;
        let scores = q
            .matmul(&k.t()?)?
            .broadcast_add(&pos)?
            .broadcast_add(&mask)?;
        let want = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let err = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(err < 1e-5, "max error {err}");
        Ok(())
    }

    #[test]
    fn fused_attention_ignores_everything_outside_the_window() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 1, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, 2, 5, 8), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, 2, 5, 8), &dev)?;
        let w = KeyWindows::lengths(&[3]);
        let short = fused_attention(&q, &k.narrow(2, 0, 3)?, &v.narrow(2, 0, 3)?, None, &w)?;
        // garbage in the keys and values past the window changes nothing, bit for bit
        let k2 = Tensor::cat(&[&k.narrow(2, 0, 3)?, &(k.narrow(2, 3, 2)? * 100.0)?], 2)?;
        let long = fused_attention(&q, &k2, &v, None, &w)?;
        assert_eq!(
            short.flatten_all()?.to_vec1::<f32>()?,
            long.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }
}
