//! The QUARK objective over response tokens only:
//! `Σ_t m_t (NLL_t + β KL_t − α H_t) / Σ_t m_t`, where the policy reads the control tokens and
//! the frozen reference does not.
//!
//! KL is `KL(π_policy(·|x, controls) ‖ π_ref(·|x))` per position, computed over the
//! reference's vocabulary (the policy's extra control-token rows are left out and both
//! distributions renormalised there, as the released code does with its first 32,000 logits);
//! NLL and entropy use the policy's full vocabulary.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

/// The three terms averaged over response tokens, and their weighted sum.
pub struct QuarkLoss {
    /// The weighted sum (what is minimised).
    pub total: Tensor,
    /// Mean NLL.
    pub nll: f64,
    /// Mean KL.
    pub kl: f64,
    /// Mean entropy.
    pub entropy: f64,
}

/// `policy_logits (B, M + T, V_p)` over `[start, controls (M), response]`,
/// `ref_logits (B, T, V_r)` over `[start, response]`, `labels (B, T)` the response ids and
/// `mask (B, T)` 1 on response tokens; `V_r <= V_p`.
pub fn quark_loss(
    policy_logits: &Tensor,
    ref_logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    n_controls: usize,
    kl_coef: f64,
    entropy_coef: f64,
) -> Result<QuarkLoss> {
    let (b, t) = labels.dims2()?;
    let (pb, pt, vp) = policy_logits.dims3()?;
    let (rb, rt, vr) = ref_logits.dims3()?;
    if pb != b || rb != b || pt != n_controls + t || rt != t || vr > vp {
        bail!(
            "quark_loss: shapes policy {:?}, reference {:?}, labels {:?} with {n_controls} controls",
            policy_logits.dims(),
            ref_logits.dims(),
            labels.dims()
        );
    }
    let pol = policy_logits
        .narrow(1, n_controls, t)?
        .to_dtype(DType::F32)?;
    let log_p = candle_nn::ops::log_softmax(&pol, D::Minus1)?;
    let nll = log_p
        .gather(&labels.contiguous()?.unsqueeze(2)?, 2)?
        .squeeze(2)?
        .neg()?;
    let p = log_p.exp()?;
    let entropy = (&p * &log_p)?.sum(D::Minus1)?.neg()?;
    // KL over the reference vocabulary, both sides renormalised there
    let log_p_r = candle_nn::ops::log_softmax(&pol.narrow(2, 0, vr)?, D::Minus1)?;
    let p_r = log_p_r.exp()?;
    let log_q = candle_nn::ops::log_softmax(&ref_logits.to_dtype(DType::F32)?.detach(), D::Minus1)?;
    let kl = (&p_r * (log_p_r - log_q)?)?.sum(D::Minus1)?;
    let mask = mask.to_dtype(DType::F32)?.contiguous()?;
    let denom = mask.sum_all()?.to_scalar::<f32>()? as f64;
    if denom <= 0.0 {
        bail!("quark_loss: no response token in the batch");
    }
    let mean = |x: &Tensor| -> Result<Tensor> { Ok(((x * &mask)?.sum_all()? / denom)?) };
    let (nll_m, kl_m, h_m) = (mean(&nll)?, mean(&kl)?, mean(&entropy)?);
    let total = ((&nll_m + (&kl_m * kl_coef)?)? - (&h_m * entropy_coef)?)?;
    Ok(QuarkLoss {
        nll: nll_m.to_scalar::<f32>()? as f64,
        kl: kl_m.to_scalar::<f32>()? as f64,
        entropy: h_m.to_scalar::<f32>()? as f64,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// KL is 0 when the policy equals the reference on the shared vocabulary, and the loss is
    /// then the NLL; control positions and padding never count.
    #[test]
    fn kl_is_zero_when_policy_equals_reference() -> Result<()> {
        let dev = Device::Cpu;
        let (b, m, t, v) = (2, 3, 4, 7);
        let resp = Tensor::randn(0f32, 1.0, (b, t, v), &dev)?;
        // control positions hold garbage that must not matter
        let ctrl = Tensor::full(100f32, (b, m, v), &dev)?;
        let policy = Tensor::cat(&[&ctrl, &resp], 1)?;
        let labels = Tensor::new(&[[1u32, 2, 3, 0], [4, 5, 0, 0]], &dev)?;
        let mask = Tensor::new(&[[1f32, 1., 1., 0.], [1., 1., 0., 0.]], &dev)?;
        let l = quark_loss(&policy, &resp, &labels, &mask, m, 0.1, 0.0)?;
        assert!(l.kl.abs() < 1e-6, "kl {}", l.kl);
        assert!((l.total.to_scalar::<f32>()? as f64 - l.nll).abs() < 1e-5);
        // a reference that differs gives a positive KL
        let other = Tensor::randn(0f32, 1.0, (b, t, v), &dev)?;
        let l2 = quark_loss(&policy, &other, &labels, &mask, m, 0.1, 0.0)?;
        assert!(l2.kl > 1e-3);
        assert!((l2.total.to_scalar::<f32>()? as f64 - (l2.nll + 0.1 * l2.kl)).abs() < 1e-4);
        Ok(())
    }

    /// With extra policy rows (control tokens) the KL uses the reference's vocabulary only.
    #[test]
    fn kl_ignores_the_policy_only_vocabulary() -> Result<()> {
        let dev = Device::Cpu;
        let resp = Tensor::randn(0f32, 1.0, (1, 3, 5), &dev)?;
        let extra = Tensor::full(3f32, (1, 3, 2), &dev)?; // two control-token rows
        let policy = Tensor::cat(&[&resp, &extra], 2)?;
        let labels = Tensor::new(&[[1u32, 2, 3]], &dev)?;
        let mask = Tensor::ones((1, 3), DType::F32, &dev)?;
        let l = quark_loss(&policy, &resp, &labels, &mask, 0, 1.0, 0.0)?;
        assert!(l.kl.abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn entropy_term_lowers_the_loss() -> Result<()> {
        let dev = Device::Cpu;
        let resp = Tensor::zeros((1, 2, 4), DType::F32, &dev)?; // uniform: H = ln 4
        let labels = Tensor::new(&[[0u32, 1]], &dev)?;
        let mask = Tensor::ones((1, 2), DType::F32, &dev)?;
        let l = quark_loss(&resp, &resp, &labels, &mask, 0, 0.0, 0.5)?;
        assert!((l.entropy - 4f64.ln()).abs() < 1e-6);
        assert!((l.total.to_scalar::<f32>()? as f64 - (l.nll - 0.5 * l.entropy)).abs() < 1e-5);
        Ok(())
    }
}
