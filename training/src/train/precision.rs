//! Training precision: f32 throughout, or bf16 mixed precision (the forward and backward
//! passes on bf16 casts of the f32 variables; the variables, gradients reaching them, the loss
//! and AdamW's moments stay f32), as `torch.autocast` trains.

use std::ops::Deref;

use anyhow::Result;
use candle_core::DType;
use mario::model::T5Model;
use serde::{Deserialize, Serialize};

use super::TrainableModel;

/// The compute type of a training run (`precision = "f32"` or `"bf16"` in `[sft]`, `[mario]`
/// and the reward models' sections).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    #[serde(alias = "fp32")]
    F32,
    /// bf16 forward and backward passes on casts of the f32 variables. Meant for GPUs: on the
    /// CPU bf16 is several times slower than f32.
    Bf16,
}

impl Precision {
    /// Logs a warning when this precision is slow on `device` (bf16 on the CPU).
    pub fn warn_if_slow_on(self, device: &candle_core::Device) {
        if self == Self::Bf16 && device.is_cpu() {
            tracing::warn!(
                "precision = \"bf16\" on the CPU: bf16 is several times slower than f32 here; \
                 it is meant for GPUs"
            );
        }
    }

    /// The dtype the network computes in.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// The network one update runs: the model's own (f32) or a cast of its variables.
pub enum Network<'a> {
    /// [`TrainableModel::model`] itself.
    Own(&'a T5Model),
    /// Casts of the variables, rebuilt for this update.
    Cast(Box<T5Model>),
}

impl Deref for Network<'_> {
    type Target = T5Model;
    fn deref(&self) -> &T5Model {
        match self {
            Self::Own(m) => m,
            Self::Cast(m) => m,
        }
    }
}

impl TrainableModel {
    /// The network for one update at `precision`: the model itself in f32, else casts of the
    /// current variables (see [`TrainableModel::cast_network`]); build it again after every
    /// update.
    pub fn network(&self, precision: Precision) -> Result<Network<'_>> {
        Ok(match precision {
            Precision::F32 => Network::Own(&self.model),
            p => Network::Cast(Box::new(self.cast_network(p.dtype())?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        #[serde(default)]
        precision: Precision,
    }

    #[test]
    fn precision_reads_f32_fp32_and_bf16_and_defaults_to_f32() {
        let read = |s: &str| toml::from_str::<Section>(s).map(|x| x.precision);
        assert_eq!(read("").unwrap(), Precision::F32);
        assert_eq!(read("precision = \"fp32\"").unwrap(), Precision::F32);
        assert_eq!(read("precision = \"bf16\"").unwrap(), Precision::Bf16);
        assert!(read("precision = \"f16\"").is_err());
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
    }
}
