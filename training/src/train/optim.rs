//! AdamW with its state kept as tensors, so a checkpoint can save and restore it exactly.
//! Also global-norm gradient clipping.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (0 = Adam).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The paper's optimizer: Adam, betas (0.9, 0.99), eps 1e-8, no weight decay.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The two moments of one parameter (always f32).
enum Moments {
    /// On the host, for CPU parameters: updated by one fused loop.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// On the parameter's device (GPU): updated with tensor ops, never copied to the host.
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    fn zeros(var: &Var, tensor_ops: bool) -> Result<Self> {
        let t = var.as_tensor();
        Ok(if !tensor_ops {
            let n = t.elem_count();
            Self::Host {
                m: vec![0f32; n],
                v: vec![0f32; n],
            }
        } else {
            Self::Device {
                m: Tensor::zeros(t.shape(), DType::F32, t.device())?,
                v: Tensor::zeros(t.shape(), DType::F32, t.device())?,
            }
        })
    }

    /// `(m, v)` as CPU tensors of `shape`.
    fn to_host(&self, shape: &candle_core::Shape) -> Result<(Tensor, Tensor)> {
        let dev = &candle_core::Device::Cpu;
        Ok(match self {
            Self::Host { m, v } => (
                Tensor::from_slice(m, shape, dev)?,
                Tensor::from_slice(v, shape, dev)?,
            ),
            Self::Device { m, v } => (m.to_device(dev)?, v.to_device(dev)?),
        })
    }

    fn set(&mut self, m_new: &Tensor, v_new: &Tensor) -> Result<()> {
        match self {
            Self::Host { m, v } => {
                *m = m_new.flatten_all()?.to_vec1()?;
                *v = v_new.flatten_all()?.to_vec1()?;
            }
            Self::Device { m, v } => {
                *m = m_new.to_dtype(DType::F32)?.to_device(m.device())?;
                *v = v_new.to_dtype(DType::F32)?.to_device(v.device())?;
            }
        }
        Ok(())
    }
}

/// AdamW over named variables. On the CPU the update runs as one fused loop per parameter over
/// plain `f32` buffers (one read of the parameter and gradient, one write), instead of a dozen
/// tensor ops and allocations; on a GPU it runs as tensor ops on the device.
pub struct AdamW {
    cfg: AdamWConfig,
    /// (name, variable, moments), in a fixed (sorted) order.
    params: Vec<(String, Var, Moments)>,
    step: u64,
}

impl AdamW {
    /// An optimizer with zero moments for `vars`.
    pub fn new(vars: HashMap<String, Var>, cfg: AdamWConfig) -> Result<Self> {
        Self::build(vars, cfg, None)
    }

    /// `tensor_ops`: force the tensor-op update (the GPU path) or the fused host loop; `None`
    /// picks by each parameter's device.
    fn build(
        vars: HashMap<String, Var>,
        cfg: AdamWConfig,
        tensor_ops: Option<bool>,
    ) -> Result<Self> {
        let mut names: Vec<String> = vars.keys().cloned().collect();
        names.sort();
        let mut params = Vec::with_capacity(names.len());
        for name in names {
            let var = vars[&name].clone();
            let on_device = tensor_ops.unwrap_or(!var.as_tensor().device().is_cpu());
            let moments = Moments::zeros(&var, on_device)?;
            params.push((name, var, moments));
        }
        Ok(Self {
            cfg,
            params,
            step: 0,
        })
    }

    /// Updates done so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Global L2 norm of the gradients of the optimized variables.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        // one device-to-host copy in all (a GPU would otherwise sync once per parameter)
        let mut sums = Vec::with_capacity(self.params.len());
        for (_, var, _) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                sums.push(g.to_dtype(DType::F32)?.sqr()?.sum_all()?);
            }
        }
        if sums.is_empty() {
            return Ok(0.0);
        }
        let total = Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
        Ok(total.iter().map(|&x| f64::from(x)).sum::<f64>().sqrt())
    }

    /// One update with learning rate `lr`; gradients are first multiplied by `grad_scale`
    /// (clipping and accumulation averaging).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.cfg;
        let bc1 = 1.0 - beta1.powi(t);
        let bc2 = 1.0 - beta2.powi(t);
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let (lr32, scale, eps32) = (lr as f32, grad_scale as f32, eps as f32);
        let (bc1, bc2) = (bc1 as f32, bc2 as f32);
        let decay = (1.0 - lr * weight_decay) as f32;
        for (_, var, moments) in &mut self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let t = var.as_tensor();
            match moments {
                Moments::Host { m, v } => {
                    let g: Vec<f32> = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                    let mut p: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                    const CHUNK: usize = 1 << 15;
                    p.par_chunks_mut(CHUNK)
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK))
                        .for_each(|(((p, m), v), g)| {
                            for i in 0..p.len() {
                                let gi = g[i] * scale;
                                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                                let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps32);
                                p[i] = p[i] * decay - lr32 * update;
                            }
                        });
                    var.set(&Tensor::from_vec(p, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
                }
                Moments::Device { m, v } => {
                    let g = (g.to_dtype(DType::F32)? * f64::from(scale))?;
                    *m = ((&*m * f64::from(b1))? + (&g * (1.0 - f64::from(b1)))?)?;
                    *v = ((&*v * f64::from(b2))? + (g.sqr()? * (1.0 - f64::from(b2)))?)?;
                    let denom = ((&*v / f64::from(bc2))?.sqrt()? + f64::from(eps32))?;
                    let update = ((&*m / f64::from(bc1))? / denom)?;
                    let p = ((t.to_dtype(DType::F32)? * f64::from(decay))?
                        - (update * f64::from(lr32))?)?;
                    var.set(&p.to_dtype(t.dtype())?)?;
                }
            }
        }
        Ok(())
    }

    /// Saves the moments and the step count.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for (name, var, moments) in &self.params {
            let (m, v) = moments.to_host(var.as_tensor().shape())?;
            tensors.insert(format!("m.{name}"), m);
            tensors.insert(format!("v.{name}"), v);
        }
        tensors.insert(
            "step".to_string(),
            Tensor::new(&[self.step as f64], &candle_core::Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Restores what [`AdamW::save`] wrote.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        for (name, _, moments) in &mut self.params {
            let get = |k: String| {
                tensors
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| anyhow!("{}: tensor `{k}` is missing", path.display()))
            };
            moments.set(&get(format!("m.{name}"))?, &get(format!("v.{name}"))?)?;
        }
        let step = tensors
            .get("step")
            .ok_or_else(|| anyhow!("{}: `step` is missing", path.display()))?
            .to_vec1::<f64>()?;
        self.step = step[0] as u64;
        Ok(())
    }
}

/// The factor that brings the gradient norm down to `max_norm` (1 when already below).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One step on f(x) = x²/2 from x = 1 with Adam: the first update is exactly `lr` in
    /// magnitude (m̂ / sqrt(v̂) = 1), the reference behaviour of torch.optim.Adam.
    #[test]
    fn first_adam_step_moves_by_lr() -> Result<()> {
        let x = Var::new(&[1.0f32, -2.0], &Device::Cpu)?;
        let mut opt = AdamW::new(
            HashMap::from([("x".to_string(), x.clone())]),
            AdamWConfig::default(),
        )?;
        let loss = (x.as_tensor().sqr()? * 0.5)?.sum_all()?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.1, 1.0)?;
        let got = x.as_tensor().to_vec1::<f32>()?;
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
        Ok(())
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        assert_eq!(clip_factor(0.3, 0.5), 1.0);
        assert!((clip_factor(2.0, 0.5) * 2.0 - 0.5).abs() < 1e-6);
        assert_eq!(clip_factor(5.0, 0.0), 1.0);
    }

    #[test]
    fn state_round_trips() -> Result<()> {
        let x = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
        let vars = HashMap::from([("x".to_string(), x.clone())]);
        let mut opt = AdamW::new(vars.clone(), AdamWConfig::default())?;
        let grads = x.as_tensor().sqr()?.sum_all()?.backward()?;
        opt.step(&grads, 0.01, 1.0)?;
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("opt.safetensors");
        opt.save(&p)?;
        let mut other = AdamW::new(vars, AdamWConfig::default())?;
        other.load(&p)?;
        assert_eq!(other.steps(), 1);
        let shape = x.as_tensor().shape();
        let (a, b) = (
            other.params[0].2.to_host(shape)?,
            opt.params[0].2.to_host(shape)?,
        );
        assert_eq!(a.0.to_vec1::<f32>()?, b.0.to_vec1::<f32>()?);
        assert_eq!(a.1.to_vec1::<f32>()?, b.1.to_vec1::<f32>()?);
        Ok(())
    }

    /// The GPU path (tensor ops) and the CPU path (fused loop) give the same parameters.
    #[test]
    fn tensor_op_update_equals_the_fused_loop() -> Result<()> {
        let init = [0.5f32, -1.5, 2.0, 0.25, -0.75];
        let run = |tensor_ops: bool| -> Result<Vec<f32>> {
            let x = Var::new(&init, &Device::Cpu)?;
            let cfg = AdamWConfig {
                weight_decay: 0.1,
                ..AdamWConfig::default()
            };
            let mut opt = AdamW::build(
                HashMap::from([("x".to_string(), x.clone())]),
                cfg,
                Some(tensor_ops),
            )?;
            for step in 0..4 {
                let loss = (x.as_tensor().powf(3.0)? * 0.3)?.sum_all()?;
                let grads = loss.backward()?;
                opt.step(&grads, 0.05 * (step + 1) as f64, 0.7)?;
            }
            Ok(x.as_tensor().to_vec1::<f32>()?)
        };
        let (fused, ops) = (run(false)?, run(true)?);
        for (a, b) in fused.iter().zip(&ops) {
            assert!((a - b).abs() < 1e-6, "{fused:?} vs {ops:?}");
        }
        assert_ne!(fused, init.to_vec());
        Ok(())
    }
}
