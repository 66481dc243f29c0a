//! Paired differences on the same dev questions: the mean change and its 95 % interval.
//!
//! Two decodings of one dev set (SFT and MaRio, or a reward's best and worst bin) score the same
//! questions, so the change is measured per question: `d_i = b_i - a_i`. Its mean has the
//! standard error `sd(d) / sqrt(n)`; the interval is the mean ± 1.96 standard errors (a normal
//! approximation, fair for the hundreds of questions of a dev split). A question that one side
//! could not score (`None`) is left out of both.
//!
//! ```
//! use mario_training::report::paired::PairedDiff;
//! let a = [Some(0.0), Some(1.0), Some(0.0), Some(1.0)];
//! let b = [Some(1.0), Some(1.0), Some(1.0), Some(1.0)];
//! let d = PairedDiff::of(&a, &b).unwrap();
//! assert_eq!((d.n, d.mean), (4, 0.5));
//! assert!(d.low() < 0.5 && d.high() > 0.5);
//! ```

/// The mean of `b - a` over the questions both sides scored, and its 95 % half-width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDiff {
    /// Questions scored by both sides.
    pub n: usize,
    /// Mean of `b_i - a_i`.
    pub mean: f64,
    /// 1.96 standard errors of that mean (0 when n < 2).
    pub half_width: f64,
}

impl PairedDiff {
    /// `None` when no question was scored by both sides.
    pub fn of(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Self> {
        let d: Vec<f64> = a
            .iter()
            .zip(b)
            .filter_map(|(x, y)| Some(y.filter(|v| v.is_finite())? - x.filter(|v| v.is_finite())?))
            .collect();
        let n = d.len();
        if n == 0 {
            return None;
        }
        let mean = d.iter().sum::<f64>() / n as f64;
        let half_width = if n < 2 {
            0.0
        } else {
            let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            1.96 * (var / n as f64).sqrt()
        };
        Some(Self {
            n,
            mean,
            half_width,
        })
    }

    /// Lower end of the 95 % interval.
    pub fn low(&self) -> f64 {
        self.mean - self.half_width
    }

    /// Upper end of the 95 % interval.
    pub fn high(&self) -> f64 {
        self.mean + self.half_width
    }

    /// `+0.0088 [-0.0031, +0.0207]`.
    pub fn describe(&self) -> String {
        format!(
            "{:+.4} [{:+.4}, {:+.4}]",
            self.mean,
            self.low(),
            self.high()
        )
    }

    /// `above 0`, `below 0` or `within noise`: where the interval lies.
    pub fn verdict(&self) -> &'static str {
        if self.low() > 0.0 {
            "above 0"
        } else if self.high() < 0.0 {
            "below 0"
        } else {
            "within noise"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // d = [1, 2, 3, 6]: mean 3, sample variance (4 + 1 + 0 + 9) / 3 = 14/3,
        // se = sqrt(14/3 / 4) = 1.0801, half-width = 1.96 * se = 2.1170
        let a = [Some(0.0), Some(0.0), Some(1.0), Some(-1.0)];
        let b = [Some(1.0), Some(2.0), Some(4.0), Some(5.0)];
        let d = PairedDiff::of(&a, &b).unwrap();
        assert_eq!(d.n, 4);
        assert!((d.mean - 3.0).abs() < 1e-12);
        assert!((d.half_width - 1.96 * (14.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(d.verdict(), "above 0");
        assert_eq!(d.describe(), "+3.0000 [+0.8830, +5.1170]");
    }

    #[test]
    fn unscored_questions_leave_both_sides() {
        let a = [Some(1.0), None, Some(0.5), Some(f64::NAN)];
        let b = [Some(0.0), Some(9.0), None, Some(1.0)];
        let d = PairedDiff::of(&a, &b).unwrap();
        assert_eq!((d.n, d.mean, d.half_width), (1, -1.0, 0.0));
        assert_eq!(d.verdict(), "below 0");
        assert!(PairedDiff::of(&[None], &[Some(1.0)]).is_none());
    }

    #[test]
    fn a_change_smaller_than_its_noise_is_within_noise() {
        let a: Vec<Option<f64>> = (0..100).map(|i| Some(f64::from(i % 2))).collect();
        let b: Vec<Option<f64>> = (0..100).map(|i| Some(f64::from((i / 2) % 2))).collect();
        let d = PairedDiff::of(&a, &b).unwrap();
        assert_eq!(d.mean, 0.0);
        assert_eq!(d.verdict(), "within noise");
    }
}
