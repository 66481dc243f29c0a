//! Choosing where the model runs.

use std::str::FromStr;

use candle_core::Device;

/// The device requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU; an error when mario was built without the `cuda` feature or no GPU
    /// is usable.
    Cuda,
    /// CUDA when available, otherwise the CPU.
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown device `{other}`: use cpu, cuda or auto")),
        }
    }
}

impl DeviceChoice {
    /// Opens the device.
    pub fn open(self) -> Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => {
                if !cfg!(feature = "cuda") {
                    return Err("this binary was built without CUDA support; rebuild with \
                         `--features cuda` or use --device cpu"
                        .into());
                }
                Device::new_cuda(0).map_err(|e| format!("cannot open CUDA device 0: {e}"))
            }
            Self::Auto => {
                if cfg!(feature = "cuda") {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}
