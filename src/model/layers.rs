//! The building blocks of T5: bias-free linear maps, RMS layer norm, feed-forward blocks and
//! seeded dropout, each with an inference path (fast kernels) and a training path (every op
//! differentiable).

use std::sync::Mutex;

use candle_core::{DType, Result, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::Activation;

/// Seeded source of dropout masks, shared by every dropout site of a model during training.
///
/// The state can be saved and restored, so that a resumed training run draws exactly the
/// masks the uninterrupted run would have drawn. That holds on the CPU, where the masks come
/// from this generator. On a GPU they are drawn on the device instead (candle's `Tensor::rand`,
/// the device's own generator): drawing millions of numbers per step on one host thread and
/// copying them over would cost more than the step itself; a resumed GPU run then draws fresh
/// masks, not the same sequence.
#[derive(Debug)]
pub struct DropoutRng {
    rate: f32,
    rng: Mutex<ChaCha8Rng>,
}

/// Saved state of a [`DropoutRng`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DropoutRngState {
    /// The seed the generator was created with.
    pub seed: u64,
    /// How many 32-bit words it has produced.
    pub word_pos: u128,
}

impl DropoutRng {
    /// A generator with the given drop probability (0 disables dropout) and seed.
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate: rate as f32,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The drop probability.
    pub fn rate(&self) -> f32 {
        self.rate
    }

    /// The current state, for checkpoints.
    pub fn state(&self, seed: u64) -> DropoutRngState {
        let rng = self.rng.lock().expect("dropout rng poisoned");
        DropoutRngState {
            seed,
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator positioned at a saved state.
    pub fn restore(rate: f64, state: DropoutRngState) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(state.seed);
        rng.set_word_pos(state.word_pos);
        Self {
            rate: rate as f32,
            rng: Mutex::new(rng),
        }
    }

    /// Zeroes each element with probability `rate` and scales the others by `1 / (1 - rate)`.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        if self.rate <= 0.0 {
            return Ok(xs.clone());
        }
        if !xs.device().is_cpu() {
            return device_dropout(xs, self.rate);
        }
        let n = xs.elem_count();
        let scale = 1.0 / (1.0 - self.rate);
        let mut mask = Vec::with_capacity(n);
        {
            let mut rng = self.rng.lock().expect("dropout rng poisoned");
            for _ in 0..n {
                let keep = rng.random::<f32>() >= self.rate;
                mask.push(if keep { scale } else { 0.0 });
            }
        }
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs.mul(&mask)
    }
}

/// Dropout with the mask drawn on `xs`'s device: each element is kept when a uniform draw
/// in `[0, 1)` is at least `rate`, and kept elements are scaled by `1 / (1 - rate)`.
fn device_dropout(xs: &Tensor, rate: f32) -> Result<Tensor> {
    let u = Tensor::rand(0f32, 1f32, xs.shape(), xs.device())?;
    let mask = (u.ge(rate)?.to_dtype(DType::F32)? * (1.0 / (1.0 - rate as f64)))?;
    xs.mul(&mask.to_dtype(xs.dtype())?)
}

/// Whether a forward pass is for inference or for training.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// No dropout; fused kernels without backward passes.
    Inference,
    /// Dropout from the given generator; every op differentiable.
    Training(&'a DropoutRng),
}

impl Mode<'_> {
    /// True in training mode.
    pub fn is_training(&self) -> bool {
        matches!(self, Mode::Training(_))
    }

    /// Applies dropout in training mode; the identity otherwise.
    pub fn dropout(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Mode::Inference => Ok(xs.clone()),
            Mode::Training(rng) => rng.apply(xs),
        }
    }

    /// Softmax over the last dimension, computed in f32 (as transformers does for T5) or f64.
    pub fn softmax_last_dim(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let xs = if dtype == DType::F64 {
            xs.clone()
        } else {
            xs.to_dtype(DType::F32)?
        };
        let p = match self {
            Mode::Inference => candle_nn::ops::softmax_last_dim(&xs)?,
            Mode::Training(_) => candle_nn::ops::softmax(&xs, D::Minus1)?,
        };
        p.to_dtype(dtype)
    }
}

/// A linear map without bias; weight `(out, in)` as stored by transformers.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
}

impl Linear {
    /// Wraps a weight of shape `(out, in)`.
    pub fn new(weight: Tensor) -> Self {
        Self { weight }
    }

    /// The weight, `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `(..., in) -> (..., out)`, as one 2-D matmul over all leading positions.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / in_dim;
        let x2 = xs.reshape((rows, in_dim))?;
        // decoding steps (a few rows, no gradient): stream each weight row once instead of
        // letting the general product repack the whole weight at every call
        let small = rows <= super::small_matmul::MAX_ROWS
            && xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
            && self.weight.is_contiguous()
            && !xs.track_op()
            && !self.weight.track_op();
        let out = if small {
            super::small_matmul::small_matmul(&x2, &self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        out.reshape(out_dims)
    }
}

/// T5's layer norm: RMS scaling without mean subtraction or bias, computed in f32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Wraps the scale vector `(d_model)`.
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps }
    }

    /// Normalises the last dimension.
    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let fast_kernel = matches!(xs.dtype(), DType::F32 | DType::BF16 | DType::F16);
        match mode {
            Mode::Inference if fast_kernel => {
                // the fused kernel reads its input as one contiguous block
                let xs = if xs.is_contiguous() {
                    xs.clone()
                } else {
                    xs.contiguous()?
                };
                candle_nn::ops::rms_norm(&xs, &self.weight, self.eps as f32)
            }
            Mode::Training(_)
                if xs.dtype() == DType::F32
                    && xs.device().is_cpu()
                    && self.weight.dtype() == DType::F32 =>
            {
                super::rms_norm::rms_norm_train(xs, &self.weight, self.eps as f32)
            }
            _ => {
                let dtype = xs.dtype();
                let x = if dtype == DType::F64 {
                    xs.clone()
                } else {
                    xs.to_dtype(DType::F32)?
                };
                let var = x.sqr()?.mean_keepdim(D::Minus1)?;
                let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                x.to_dtype(dtype)?.broadcast_mul(&self.weight)
            }
        }
    }
}

/// The feed-forward block: `wo(act(wi x))`, or `wo(act(wi_0 x) * wi_1 x)` when gated.
#[derive(Debug, Clone)]
pub struct FeedForward {
    /// `wi` (plain) or `wi_0` (gated).
    wi: Linear,
    /// `wi_1` when gated.
    wi_gate: Option<Linear>,
    wo: Linear,
    act: Activation,
}

impl FeedForward {
    /// Assembles the block from its weights.
    pub fn new(wi: Linear, wi_gate: Option<Linear>, wo: Linear, act: Activation) -> Self {
        Self {
            wi,
            wi_gate,
            wo,
            act,
        }
    }

    /// `(..., d_model) -> (..., d_model)`.
    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.wi.forward(xs)?;
        let h = match self.act {
            Activation::Relu => h.relu()?,
            Activation::GeluNew => h.gelu()?,
            Activation::Gelu => h.gelu_erf()?,
        };
        let h = match &self.wi_gate {
            Some(gate) => h.mul(&gate.forward(xs)?)?,
            None => h,
        };
        let h = mode.dropout(&h)?;
        self.wo.forward(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The GPU's dropout path, run on the CPU: the share dropped is the rate, kept elements are
    /// scaled so the mean is kept, the dtype is the input's.
    #[test]
    fn device_dropout_drops_the_rate_and_keeps_the_mean() {
        for dtype in [DType::F32, DType::BF16] {
            let xs = Tensor::ones((200, 200), dtype, &Device::Cpu).unwrap();
            let ys = device_dropout(&xs, 0.25).unwrap();
            assert_eq!(ys.dtype(), dtype);
            let v: Vec<f32> = ys
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let dropped = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
            assert!(
                (dropped - 0.25).abs() < 0.02,
                "{dtype:?}: dropped {dropped}"
            );
            let kept_ok = v
                .iter()
                .filter(|&&x| x != 0.0)
                .all(|&x| (x - 4.0 / 3.0).abs() < 1e-2);
            assert!(kept_ok, "{dtype:?}: kept elements scaled by 1 / (1 - rate)");
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            assert!((mean - 1.0).abs() < 0.03, "{dtype:?}: mean {mean}");
        }
    }
}
