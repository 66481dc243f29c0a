//! One optimizer update and one checkpoint writer, shared by every training loop (SFT, the
//! reward models, MaRio): backward, global-norm clipping, AdamW at the schedule's learning
//! rate, and `last/` written so that a crash never leaves a half-written state file.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::Serialize;

use super::{AdamW, AdamWConfig, LinearSchedule, TrainableModel};

/// The optimizer, its learning-rate schedule and its clip: what turns a loss into an update.
pub struct Updater {
    /// AdamW over the model's variables.
    pub opt: AdamW,
    /// Learning rate per update.
    pub schedule: LinearSchedule,
    /// Global gradient-norm clip (0 = none).
    pub max_grad_norm: f64,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// The learning rate it used.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

impl Updater {
    /// AdamW with `cfg` over `model`'s variables.
    pub fn new(
        model: &TrainableModel,
        cfg: AdamWConfig,
        schedule: LinearSchedule,
        max_grad_norm: f64,
    ) -> Result<Self> {
        Ok(Self {
            opt: AdamW::new(model.vars(), cfg)?,
            schedule,
            max_grad_norm,
        })
    }

    /// Backpropagates `loss` (a scalar), clips the global gradient norm and steps the
    /// optimizer at the learning rate of update `step` (0-based: the updates done before).
    pub fn update(&mut self, loss: &Tensor, step: u64) -> Result<Update> {
        let grads = loss.backward()?;
        self.apply(&grads, step)
    }

    /// The second half of [`Updater::update`], for callers that time backpropagation apart
    /// (`mario-train bench-train`): clips `grads` and steps the optimizer.
    pub fn apply(&mut self, grads: &GradStore, step: u64) -> Result<Update> {
        let grad_norm = self.opt.grad_norm(grads)?;
        let lr = self.schedule.lr(step);
        self.opt.step(
            grads,
            lr,
            super::optim::clip_factor(grad_norm, self.max_grad_norm),
        )?;
        Ok(Update { lr, grad_norm })
    }
}

/// Refuses a loss with a non-finite term: `Err` naming `what` (e.g. `loss` or `round 2: the
/// loss`), the update and every term.
pub fn ensure_finite(what: &str, step: u64, terms: &[(&str, f64)]) -> Result<()> {
    if terms.iter().all(|(_, v)| v.is_finite()) {
        return Ok(());
    }
    let terms = terms
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    bail!("{what} became non-finite at step {step} ({terms})")
}

/// Writes a resumable checkpoint to `dir`: the model (a Hugging Face folder),
/// `optimizer.safetensors`, and the loop's state as `dir/<state_file>`, written last and
/// atomically (a state file is only ever next to the weights it describes).
pub fn save_checkpoint<T: Serialize>(
    dir: &Path,
    model: &TrainableModel,
    opt: &AdamW,
    state_file: &str,
    state: &T,
) -> Result<()> {
    model.save(dir)?;
    opt.save(&dir.join(OPTIMIZER_FILE))?;
    crate::json_file::write_atomic(&dir.join(state_file), state)
}

/// The optimizer's file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_term_is_refused_with_every_term_named() {
        assert!(ensure_finite("loss", 3, &[("nll", 1.0), ("kl", 0.0)]).is_ok());
        let e = ensure_finite("round 2: the loss", 7, &[("nll", 1.5), ("kl", f64::NAN)])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "round 2: the loss became non-finite at step 7 (nll 1.5, kl NaN)"
        );
        assert!(ensure_finite("loss", 0, &[("loss", f64::INFINITY)]).is_err());
    }
}
