//! Fused CPU kernels of the training loss, with their backward passes.
//!
//! `token_nll` computes `-log softmax(logits)[label]` per row in two passes over the logits and
//! its gradient `g * (softmax - onehot)` in two more, where the composed tensor ops
//! (log-softmax, gather and their backward passes) take about a dozen passes and as many
//! allocations of a `(rows, vocab)` tensor. The gradient checks below compare both against the
//! composed version.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use mario::model::contiguous_f32;
use rayon::prelude::*;

/// Per-row negative log-likelihood of `labels` under `logits (N, V)`: returns `(N)`.
///
/// On the CPU with f32 logits this is one fused op with a fused backward pass; elsewhere it
/// falls back to composed tensor ops.
pub fn token_nll(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (n, _v) = logits.dims2()?;
    if logits.device().is_cpu() && logits.dtype() == candle_core::DType::F32 {
        let labels: Vec<u32> = labels.to_vec1()?;
        if labels.len() != n {
            candle_core::bail!("token_nll: {} labels for {n} rows", labels.len());
        }
        logits.apply_op1(TokenNll { labels })
    } else {
        let lp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        lp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
    }
}

fn row_lse(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

struct TokenNll {
    labels: Vec<u32>,
}

impl CustomOp1 for TokenNll {
    fn name(&self) -> &'static str {
        "token-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "token_nll input")?;
        let (n, v) = l.shape().dims2()?;
        if let Some(&bad) = self.labels.iter().find(|&&l| l as usize >= v) {
            candle_core::bail!("token_nll: label {bad} out of range for {v} logits");
        }
        let mut out = vec![0f32; n];
        out.par_iter_mut().enumerate().for_each(|(r, o)| {
            let row = &x[r * v..(r + 1) * v];
            *o = row_lse(row) - row[self.labels[r] as usize];
        });
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g: Vec<f32> = grad_res.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let grad = arg.apply_op1_no_bwd(&TokenNllGrad {
            labels: self.labels.clone(),
            g,
        })?;
        Ok(Some(grad))
    }
}

/// `g[r] * (softmax(x[r]) - onehot(label[r]))`.
struct TokenNllGrad {
    labels: Vec<u32>,
    g: Vec<f32>,
}

impl CustomOp1 for TokenNllGrad {
    fn name(&self) -> &'static str {
        "token-nll-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "token_nll input")?;
        let (n, v) = l.shape().dims2()?;
        let mut out = vec![0f32; n * v];
        out.par_chunks_mut(v).enumerate().for_each(|(r, o)| {
            let g = self.g[r];
            if g == 0.0 {
                return;
            }
            let row = &x[r * v..(r + 1) * v];
            let lse = row_lse(row);
            for (oi, &xi) in o.iter_mut().zip(row) {
                *oi = g * (xi - lse).exp();
            }
            o[self.labels[r] as usize] -= g;
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn composed(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let lp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        lp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Forward values and gradients equal the composed log-softmax + gather.
    #[test]
    fn token_nll_gradient_check_against_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (6, 11), &dev)?)?;
        let labels = Tensor::new(&[0u32, 3, 10, 5, 5, 1], &dev)?;
        let w = Tensor::new(&[1f32, 0.5, 0.0, 2.0, 1.0, -1.0], &dev)?;
        let fused = token_nll(x.as_tensor(), &labels)?;
        let reference = composed(x.as_tensor(), &labels)?;
        assert!(max_diff(&fused, &reference)? < 1e-5);
        let gf = (fused * &w)?.sum_all()?.backward()?;
        let gr = (reference * &w)?.sum_all()?.backward()?;
        let (a, b) = (
            gf.get(x.as_tensor()).unwrap(),
            gr.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(a, b)? < 1e-5,
            "gradients differ by {}",
            max_diff(a, b)?
        );
        Ok(())
    }

    /// The gradient also matches central finite differences.
    #[test]
    fn token_nll_matches_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let base: Vec<f32> = (0..8).map(|i| (i as f32 * 0.7).sin()).collect();
        let labels = Tensor::new(&[2u32, 3], &dev)?;
        let x = Var::new(&base[..], &dev)?;
        let loss = token_nll(&x.as_tensor().reshape((2, 4))?, &labels)?.sum_all()?;
        let g: Vec<f32> = loss.backward()?.get(x.as_tensor()).unwrap().to_vec1()?;
        let eps = 1e-2f32;
        for i in 0..8 {
            let f = |d: f32| -> Result<f32> {
                let mut v = base.clone();
                v[i] += d;
                token_nll(&Tensor::from_vec(v, (2, 4), &dev)?, &labels)?
                    .sum_all()?
                    .to_scalar::<f32>()
            };
            let fd = (f(eps)? - f(-eps)?) / (2.0 * eps);
            assert!((fd - g[i]).abs() < 1e-3, "element {i}: {fd} vs {}", g[i]);
        }
        Ok(())
    }
}
