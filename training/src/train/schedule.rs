//! Learning-rate schedule: linear warm-up from 0, then linear decay to 0 at the last step
//! (transformers' `get_linear_schedule_with_warmup`, which the paper uses).

use serde::{Deserialize, Serialize};

/// Linear warm-up then linear decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Steps of warm-up.
    pub warmup_steps: u64,
    /// Step at which the rate reaches 0.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// Learning rate for the update numbered `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let remaining = self.total_steps.saturating_sub(step) as f64;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak * (remaining / span).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay_like_transformers() {
        let s = LinearSchedule {
            peak: 3e-5,
            warmup_steps: 1000,
            total_steps: 3000,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(500) - 1.5e-5).abs() < 1e-12);
        assert!((s.lr(1000) - 3e-5).abs() < 1e-12);
        assert!((s.lr(2000) - 1.5e-5).abs() < 1e-12);
        assert_eq!(s.lr(3000), 0.0);
        assert_eq!(s.lr(5000), 0.0);
        let no_warmup = LinearSchedule {
            peak: 1.0,
            warmup_steps: 0,
            total_steps: 4,
        };
        assert_eq!(no_warmup.lr(0), 1.0);
        assert_eq!(no_warmup.lr(2), 0.5);
    }
}
