//! T5's RMS norm for training on the CPU as one fused op with a fused backward pass.
//!
//! `y = w * x / sqrt(mean(x^2) + eps)` over the last dimension. Composed from tensor ops this is
//! about eight single-threaded passes forward and a dozen backward, each allocating an
//! `(N, D)` tensor; here the forward pass is one parallel pass over the rows, and the backward
//! pass two (one for `dx`, one for `dw`). The tests compare values and gradients with the
//! composed ops and with finite differences.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::cpu_slice::contiguous_f32;
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// `x (..., D)`, `w (D)` -> RMS-normalised `x` scaled by `w`: one fused op on f32 CPU tensors
/// (contiguous `x` is expected; others are made contiguous), with a fused backward pass.
pub fn rms_norm_train(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.contiguous()?
    };
    let w = if w.is_contiguous() {
        w.clone()
    } else {
        w.contiguous()?
    };
    x.apply_op2(&w, RmsNormOp { eps })
}

#[inline]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

struct RmsNormOp {
    eps: f32,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "mario-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "rms_norm_train: x")?;
        let w = contiguous_f32(ws, wl, "rms_norm_train: weight")?;
        let d = w.len();
        if d == 0 || x.len() % d != 0 || xl.dims().last() != Some(&d) {
            candle_core::bail!(
                "rms_norm_train: x {:?} vs weight {:?}",
                xl.dims(),
                wl.dims()
            );
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(x.par_chunks(d * ROWS_PER_TASK))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                    let r = inv_rms(x, self.eps);
                    for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                        *o = w * x * r;
                    }
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps: self.eps })?;
        let dw = x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps: self.eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = r * (g * w) - r^3 * x / D * sum(g * w * x)` per row.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "mario-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "rms_norm_train: x")?;
        let w = contiguous_f32(ws, wl, "rms_norm_train: weight")?;
        let g = contiguous_f32(gs, gl, "rms_norm_train: grad")?;
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(x.par_chunks(d * ROWS_PER_TASK))
            .zip(g.par_chunks(d * ROWS_PER_TASK))
            .for_each(|((o, x), g)| {
                for ((o, x), g) in o.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)) {
                    let r = inv_rms(x, self.eps);
                    let dot: f32 = g.iter().zip(w).zip(x).map(|((g, w), x)| g * w * x).sum();
                    let c = r * r * r * dot / d as f32;
                    for (((o, &x), &g), &w) in o.iter_mut().zip(x).zip(g).zip(w) {
                        *o = r * g * w - c * x;
                    }
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// `dw = sum over rows of g * x * r`.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "mario-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "rms_norm_train: x")?;
        let g = contiguous_f32(gs, gl, "rms_norm_train: grad")?;
        let d = *xl.dims().last().unwrap_or(&0);
        if d == 0 {
            candle_core::bail!("rms_norm_train: empty rows");
        }
        let partial = |(x, g): (&[f32], &[f32])| {
            let mut acc = vec![0f32; d];
            for (x, g) in x.chunks(d).zip(g.chunks(d)) {
                let r = inv_rms(x, self.eps);
                for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                    *a += g * x * r;
                }
            }
            acc
        };
        let partials: Vec<Vec<f32>> = x
            .par_chunks(d * ROWS_PER_TASK * 4)
            .zip(g.par_chunks(d * ROWS_PER_TASK * 4))
            .map(partial)
            .collect();
        // summed in a fixed order: the result does not depend on the thread count
        let mut out = vec![0f32; d];
        for p in &partials {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(w)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Values and both gradients equal the composed ops (rows not a multiple of the task size).
    #[test]
    fn rms_norm_gradient_check_against_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 37, 24), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 24, &dev)?)?;
        let probe = Tensor::randn(0f32, 1.0, (3, 37, 24), &dev)?;
        let fused = rms_norm_train(x.as_tensor(), w.as_tensor(), 1e-6)?;
        let reference = composed(x.as_tensor(), w.as_tensor(), 1e-6)?;
        assert!(max_diff(&fused, &reference)? < 1e-5);
        let gf = (fused * &probe)?.sum_all()?.backward()?;
        let gr = (reference * &probe)?.sum_all()?.backward()?;
        for v in [x.as_tensor(), w.as_tensor()] {
            let (a, b) = (gf.get(v).unwrap(), gr.get(v).unwrap());
            let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(
                max_diff(a, b)? < 1e-5 * scale.max(1.0),
                "gradients differ by {}",
                max_diff(a, b)?
            );
        }
        Ok(())
    }

    /// The gradient with respect to `x` matches central finite differences.
    #[test]
    fn rms_norm_matches_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let base: Vec<f32> = (0..12).map(|i| (i as f32 * 0.9).sin() + 0.1).collect();
        let w = Tensor::new(&[0.5f32, 1.5, -1.0, 2.0], &dev)?;
        let probe = Tensor::new(&[[1f32, -2.0, 0.5, 3.0]; 3], &dev)?;
        let x = Var::new(&base[..], &dev)?;
        let loss =
            (rms_norm_train(&x.as_tensor().reshape((3, 4))?, &w, 1e-6)? * &probe)?.sum_all()?;
        let g: Vec<f32> = loss.backward()?.get(x.as_tensor()).unwrap().to_vec1()?;
        let eps = 1e-2f32;
        for i in 0..12 {
            let f = |d: f32| -> Result<f32> {
                let mut v = base.clone();
                v[i] += d;
                let x = Tensor::from_vec(v, (3, 4), &dev)?;
                (rms_norm_train(&x, &w, 1e-6)? * &probe)?
                    .sum_all()?
                    .to_scalar::<f32>()
            };
            let fd = (f(eps)? - f(-eps)?) / (2.0 * eps);
            assert!((fd - g[i]).abs() < 2e-3, "element {i}: {fd} vs {}", g[i]);
        }
        Ok(())
    }
}
