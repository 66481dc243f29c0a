//! Multi-head attention as T5 does it: no `1/sqrt(d)` scaling (folded into the weights at
//! initialisation), an additive relative-position bias, and a key window per row that encodes
//! padding, causality and (in a running batch) the slots before a row joined.
//!
//! On the CPU at inference time attention runs in [`fused_attention`], which visits only each
//! row's own keys in a fixed order: a row gets bit-for-bit the same attention whatever else is
//! in the batch and however much padding there is. Elsewhere (training, CUDA) it runs as
//! tensor ops with the window turned into an additive mask of [`MASKED`] values, which is what
//! transformers does.

use candle_core::{Device, Result, Tensor};

use super::fused::fused_attention;
use super::layers::{Linear, Mode};

/// Additive bias value for masked positions (transformers uses `torch.finfo(dtype).min`).
pub const MASKED: f32 = f32::MIN;

/// Which keys each query may see: for row `b` and query `i`, keys `j` with
/// `lo[b] <= j < hi[b]` and, when causal, `j <= causal_offset + i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWindows {
    /// First visible key of each row.
    pub lo: Vec<usize>,
    /// One past the last visible key of each row.
    pub hi: Vec<usize>,
    /// Slot of query 0 when attention is causal.
    pub causal_offset: Option<usize>,
}

impl KeyWindows {
    /// Keys `0..len` of each row, not causal (encoder self-attention, cross-attention).
    pub fn lengths(lengths: &[usize]) -> Self {
        Self {
            lo: vec![0; lengths.len()],
            hi: lengths.to_vec(),
            causal_offset: None,
        }
    }

    /// The visible keys `lo..hi` of row `b`, query `i`.
    pub fn range(&self, b: usize, i: usize) -> (usize, usize) {
        let hi = match self.causal_offset {
            Some(off) => self.hi[b].min(off + i + 1),
            None => self.hi[b],
        };
        (self.lo[b], hi.max(self.lo[b]))
    }

    /// `(B, 1, q_len, k_len)` additive mask: 0 inside the window, [`MASKED`] outside.
    pub fn dense_mask(&self, q_len: usize, k_len: usize, device: &Device) -> Result<Tensor> {
        let b = self.lo.len();
        let mut mask = vec![MASKED; b * q_len * k_len];
        for row in 0..b {
            for i in 0..q_len {
                let (lo, hi) = self.range(row, i);
                let base = (row * q_len + i) * k_len;
                for m in &mut mask[base + lo.min(k_len)..base + hi.min(k_len)] {
                    *m = 0.0;
                }
            }
        }
        Tensor::from_vec(mask, (b, 1, q_len, k_len), device)
    }
}

/// Everything added to the attention scores of one attention call: an optional relative
/// position bias shared by the batch, and the key windows.
#[derive(Debug, Clone)]
pub struct AttentionBias {
    /// `(1, H, Tq, Tk)` relative-position bias (self-attention only).
    pub position: Option<Tensor>,
    /// Visible keys of each row.
    pub windows: KeyWindows,
    /// `position + mask` as one `(B, H | 1, Tq, Tk)` tensor, for the tensor-op path.
    dense: Option<Tensor>,
}

impl AttentionBias {
    /// Prepares the bias of `q_len` queries over `k_len` keys. The dense form is only built
    /// when the tensor-op path will run (training, or a non-CPU device).
    pub fn new(
        position: Option<Tensor>,
        windows: KeyWindows,
        q_len: usize,
        k_len: usize,
        dtype: candle_core::DType,
        device: &Device,
        mode: Mode,
    ) -> Result<Self> {
        let dense = if use_fused(device, mode) {
            None
        } else {
            let mask = windows.dense_mask(q_len, k_len, device)?.to_dtype(dtype)?;
            Some(match &position {
                Some(p) => p.broadcast_add(&mask)?,
                None => mask,
            })
        };
        Ok(Self {
            position,
            windows,
            dense,
        })
    }
}

static FORCE_TENSOR_OPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes inference attention on the CPU run as tensor ops, the path a GPU takes, so that path
/// can be checked without one (tests, comparisons). Process-wide.
pub fn force_tensor_attention(on: bool) {
    FORCE_TENSOR_OPS.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn use_fused(device: &Device, mode: Mode) -> bool {
    device.is_cpu()
        && !mode.is_training()
        && !FORCE_TENSOR_OPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// One attention module: `q`, `k`, `v`, `o` projections.
#[derive(Debug, Clone)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    num_heads: usize,
    d_kv: usize,
}

impl Attention {
    /// Assembles the module; each projection is `(num_heads * d_kv, d_model)` except `o`.
    pub fn new(q: Linear, k: Linear, v: Linear, o: Linear, num_heads: usize, d_kv: usize) -> Self {
        Self {
            q,
            k,
            v,
            o,
            num_heads,
            d_kv,
        }
    }

    /// `(B, T, d_model) -> (B, H, T, d_kv)`, contiguous.
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.d_kv))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Query projection, `(B, T, d_model) -> (B, H, T, d_kv)`.
    pub fn query(&self, xs: &Tensor) -> Result<Tensor> {
        self.split_heads(&self.q.forward(xs)?)
    }

    /// Key and value projections, each `(B, H, T, d_kv)`.
    pub fn key_value(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split_heads(&self.k.forward(xs)?)?,
            self.split_heads(&self.v.forward(xs)?)?,
        ))
    }

    /// Attends `q (B, H, Tq, d)` over `k, v (B, H, Tk, d)`, then applies the output
    /// projection: returns `(B, Tq, d_model)`.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &AttentionBias,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, h, tq, d) = q.dims4()?;
        let ctx = match &bias.dense {
            None => fused_attention(q, k, v, bias.position.as_ref(), &bias.windows)?,
            Some(dense) => {
                let scores = q.matmul(&k.t()?)?.broadcast_add(dense)?;
                let p = mode.softmax_last_dim(&scores)?;
                let p = mode.dropout(&p)?;
                p.matmul(&v.contiguous()?)?
            }
        };
        // (B, H, Tq, d) -> (B, Tq, H * d)
        let ctx = ctx.transpose(1, 2)?.reshape((b, tq, h * d))?;
        self.o.forward(&ctx)
    }

    /// Self-attention over `xs (B, T, d_model)` with no cache.
    pub fn self_attention(&self, xs: &Tensor, bias: &AttentionBias, mode: Mode) -> Result<Tensor> {
        let q = self.query(xs)?;
        let (k, v) = self.key_value(xs)?;
        self.attend(&q, &k, &v, bias, mode)
    }
}
