//! Reading a CPU tensor's storage as one `f32` slice, for the fused CPU kernels
//! (`CustomOp` implementations here and in the trainer).

use candle_core::{CpuStorage, Layout, Result};

/// The elements of a contiguous f32 CPU tensor, in order; an error naming `what` otherwise.
pub fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{what} must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}
