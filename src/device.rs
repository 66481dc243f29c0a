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

/// A weight (and activation) type requested on the command line: `f32` (also `fp32`,
/// `float32`), `bf16` (`bfloat16`) or `f16` (`fp16`, `float16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightType {
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

impl FromStr for WeightType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "fp16" | "float16" => Ok(Self::F16),
            other => Err(format!(
                "unknown weight type `{other}`: use f32, bf16 or f16"
            )),
        }
    }
}

impl std::fmt::Display for WeightType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

impl WeightType {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Self::F32 => candle_core::DType::F32,
            Self::Bf16 => candle_core::DType::BF16,
            Self::F16 => candle_core::DType::F16,
        }
    }
}

/// Sets the number of CPU threads for tensor work, once, at the start of a program: the global
/// rayon pool and `RAYON_NUM_THREADS`, which candle reads for its matrix products. `None`
/// keeps `RAYON_NUM_THREADS` when set, else takes all cores.
///
/// Without the variable candle works the count out again (from `/proc/cpuinfo`) at every
/// matrix product, which a profile of sampling showed at about 5 % of the CPU time; and
/// without it a thread count given for the rayon pool alone would not reach the matrix
/// products.
///
/// It also sets `CANDLE_NUM_THREADS=1` unless the variable is set: candle then runs its large
/// element-wise operations on the calling thread instead of on its own "barrier pool", whose
/// worker spins for a while after every operation. Those operations are bound by memory
/// bandwidth, and on the 2-core machine that the benchmarks run on the spinning worker took
/// a core from the matrix products: a profile of a t5-small training step had about 15 % of its
/// samples in that pool, and the variable made training 11-13 % faster (median of 4-5
/// alternating pairs in each of two sessions, bench/PERF_LOG.md). Matrix products still use
/// all `RAYON_NUM_THREADS` threads.
pub fn configure_threads(threads: Option<usize>) -> Result<usize, String> {
    let n = match threads {
        Some(0) => return Err("the thread count must be at least 1".into()),
        Some(n) => n,
        None => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // an error only means a pool exists already (a second call); the variable is what counts
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(n)
}

/// Runs `work` on a thread of the global rayon pool and returns its result.
///
/// The tensor kernels split their work with rayon. Called from a thread outside the pool, every
/// parallel operation hands its job to the pool's workers and puts the caller to sleep until
/// they are done: two thread wake-ups per operation, hundreds of operations per decoding step.
/// A profile of t5-small decoding at batch 8 had 16 % of its samples in those system calls
/// (`futex`, `sched_yield`). Run from a pool thread, the caller takes part in the work itself.
///
/// For a program's main work only: `work` holds a pool thread until it returns. A long-lived
/// loop that waits for input (the server's model thread) uses `run_in_own_pool` instead.
pub fn run_in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// `run_in_pool` on a new pool of its own, with as many threads as the global pool, named
/// `name-<i>`; the pool ends when `work` returns.
///
/// For loops that live long and block while idle: on the global pool such a loop would hold
/// one of its threads the whole time, a second one would wait for a free thread (forever, once
/// every thread holds one), and another loop's parallel work could be run inside it while it
/// waits. If the pool cannot be built, `work` runs on the calling thread (with a warning).
pub fn run_in_own_pool<R: Send>(name: &str, work: impl FnOnce() -> R + Send) -> R {
    let prefix = name.to_string();
    match rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(e) => {
            tracing::warn!("cannot start the `{name}` thread pool ({e}); running on one thread");
            work()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_types_parse_in_every_usual_spelling_and_refuse_others() {
        for (s, t) in [
            ("f32", WeightType::F32),
            ("FP32", WeightType::F32),
            ("float32", WeightType::F32),
            ("bf16", WeightType::Bf16),
            ("bfloat16", WeightType::Bf16),
            ("f16", WeightType::F16),
            ("fp16", WeightType::F16),
        ] {
            assert_eq!(s.parse::<WeightType>(), Ok(t), "{s}");
        }
        assert_eq!(WeightType::Bf16.dtype(), candle_core::DType::BF16);
        assert_eq!(WeightType::Bf16.to_string(), "bf16");
        let e = "int8".parse::<WeightType>().unwrap_err();
        assert!(e.contains("int8") && e.contains("f32, bf16 or f16"), "{e}");
    }
}
