//! `x · Wᵀ` for a few rows on the CPU (decoding steps), streaming each weight row once.
//!
//! With 2 to 16 rows, the general matrix product (the `gemm` crate) spends most of its time
//! repacking the whole weight matrix at every call: a profile of t5-small decoding at batch 8
//! had about half of all samples there, and a step cost 3.5x the batch-1 step. Here every
//! output is one dot product of an input row with a weight row (`W` is stored `(out, in)`, so
//! its rows are contiguous), computed by the same code in the same order whatever the number
//! of rows: results do not depend on the batch.
//!
//! The limit was 16 rows until the AVX-512 kernels of `gemm` were switched on for training:
//! at 32 rows (t5-small decoding at batch 32) those made a decoding step 2.5x slower than this
//! kernel (186 vs 75 ms), so decoding batches up to 64 rows come here (bench/PERF_LOG.md).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::cpu_slice::contiguous_f32;
use rayon::prelude::*;

/// Largest row count sent to this kernel (rows are taken 8 at a time per weight row).
pub const MAX_ROWS: usize = 64;

/// Output columns per parallel task.
const COLS_PER_TASK: usize = 64;

/// How far ahead of the current weight chunk to prefetch, in `f32`s (1 KiB).
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 256;

/// `x (M, K)` times `w (N, K)` transposed: `(M, N)`; f32 CPU tensors, `M <= MAX_ROWS`.
pub fn small_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.contiguous()?
    };
    x.apply_op2_no_bwd(w, &SmallMatmul)
}

struct SmallMatmul;

/// Dot products of `R` input rows with one weight row, each in the same fixed order: 8 lanes
/// accumulated along `k`, the lanes summed pairwise, then the tail. The `R` accumulators are
/// independent chains (keeping the FMA units busy); any `R` gives every row the same result.
#[inline(always)]
fn dots<const R: usize>(x: &[f32], k: usize, rows: usize, w: &[f32], out: &mut [f32]) {
    debug_assert_eq!(rows, R);
    let mut acc = [[0f32; 8]; R];
    let chunks = k / 8;
    for c in 0..chunks {
        let wv: &[f32] = &w[c * 8..c * 8 + 8];
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = &x[r * k + c * 8..r * k + c * 8 + 8];
            for l in 0..8 {
                acc[l] = xv[l].mul_add(wv[l], acc[l]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut s =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for i in chunks * 8..k {
            s = x[r * k + i].mul_add(w[i], s);
        }
        out[r] = s;
    }
}

/// `out[r] = x[r] . w` for `rows` rows of `x` (row length `k`), in groups of up to 8.
#[inline(always)]
fn row_dots(x: &[f32], k: usize, rows: usize, w: &[f32], out: &mut [f32]) {
    let mut r0 = 0;
    while r0 < rows {
        let g = (rows - r0).min(8);
        let (xg, og) = (&x[r0 * k..(r0 + g) * k], &mut out[r0..r0 + g]);
        match g {
            8 => dots::<8>(xg, k, g, w, og),
            7 => dots::<7>(xg, k, g, w, og),
            6 => dots::<6>(xg, k, g, w, og),
            5 => dots::<5>(xg, k, g, w, og),
            4 => dots::<4>(xg, k, g, w, og),
            3 => dots::<3>(xg, k, g, w, og),
            2 => dots::<2>(xg, k, g, w, og),
            _ => dots::<1>(xg, k, g, w, og),
        }
        r0 += g;
    }
}

/// `dots` with AVX2 intrinsics: the same lane-wise FMAs and the same final reduction, so the
/// results are bit-identical to the portable version.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<const R: usize>(x: &[f32], k: usize, w: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= R * k && w.len() >= k && out.len() >= R);
    let chunks = k / 8;
    let mut acc = [_mm256_setzero_ps(); R];
    let xp = x.as_ptr();
    let wp = w.as_ptr();
    for c in 0..chunks {
        if c % 2 == 0 {
            // the weights stream from memory once per call: ask for them ahead of use (a
            // profile at 8 rows had the loop stalled on the weight load); a prefetch past the
            // end of `w` is harmless
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(c * 8 + PREFETCH_AHEAD) as *const i8);
        }
        let wv = _mm256_loadu_ps(wp.add(c * 8));
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = _mm256_loadu_ps(xp.add(r * k + c * 8));
            *a = _mm256_fmadd_ps(xv, wv, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), *a);
        let mut s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for i in chunks * 8..k {
            s = x[r * k + i].mul_add(w[i], s);
        }
        out[r] = s;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dots_avx2(x: &[f32], k: usize, rows: usize, w: &[f32], out: &mut [f32]) {
    let mut r0 = 0;
    while r0 < rows {
        let g = (rows - r0).min(8);
        let (xg, og) = (&x[r0 * k..(r0 + g) * k], &mut out[r0..r0 + g]);
        match g {
            8 => dots_avx2::<8>(xg, k, w, og),
            7 => dots_avx2::<7>(xg, k, w, og),
            6 => dots_avx2::<6>(xg, k, w, og),
            5 => dots_avx2::<5>(xg, k, w, og),
            4 => dots_avx2::<4>(xg, k, w, og),
            3 => dots_avx2::<3>(xg, k, w, og),
            2 => dots_avx2::<2>(xg, k, w, og),
            _ => dots_avx2::<1>(xg, k, w, og),
        }
        r0 += g;
    }
}

fn all_row_dots(x: &[f32], k: usize, rows: usize, w: &[f32], out: &mut [f32], avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller checked that the CPU has AVX2 and FMA.
        return unsafe { row_dots_avx2(x, k, rows, w, out) };
    }
    let _ = avx2;
    row_dots(x, k, rows, w, out)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl CustomOp2 for SmallMatmul {
    fn name(&self) -> &'static str {
        "mario-small-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "small_matmul: x")?;
        let w = contiguous_f32(ws, wl, "small_matmul: weight")?;
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("small_matmul: x {:?} vs weight {:?}", xl.dims(), wl.dims());
        }
        let avx2 = has_avx2();
        // (N, M) first: each task owns whole weight rows
        let mut out_t = vec![0f32; n * m];
        out_t
            .par_chunks_mut(m * COLS_PER_TASK)
            .enumerate()
            .for_each(|(task, o)| {
                let n0 = task * COLS_PER_TASK;
                for (j, o) in o.chunks_mut(m).enumerate() {
                    let wr = &w[(n0 + j) * k..(n0 + j + 1) * k];
                    all_row_dots(x, k, m, wr, o, avx2);
                }
            });
        let mut out = vec![0f32; m * n];
        for (j, col) in out_t.chunks(m).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                out[r * n + j] = v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The AVX2 path and the portable path give bit-identical results.
    #[test]
    fn avx2_and_portable_paths_agree_bitwise() -> Result<()> {
        if !has_avx2() {
            return Ok(());
        }
        let dev = Device::Cpu;
        for (m, k) in [(8, 37), (3, 512), (11, 64)] {
            let x: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), &dev)?
                .flatten_all()?
                .to_vec1()?;
            let w: Vec<f32> = Tensor::randn(0f32, 1.0, k, &dev)?.to_vec1()?;
            let (mut a, mut b) = (vec![0f32; m], vec![0f32; m]);
            all_row_dots(&x, k, m, &w, &mut a, true);
            all_row_dots(&x, k, m, &w, &mut b, false);
            assert_eq!(a, b);
        }
        Ok(())
    }

    /// Equal to the general product within f32 rounding, and bit-identical per row whatever
    /// the number of rows.
    #[test]
    fn matches_matmul_and_does_not_depend_on_the_batch() -> Result<()> {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 512, 300),
            (8, 37, 129),
            (16, 256, 64),
            (3, 7, 5),
            (33, 64, 70),
            (MAX_ROWS, 512, 96),
        ] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 0.1, (n, k), &dev)?;
            let got = small_matmul(&x, &w)?;
            let want = x.matmul(&w.t()?)?;
            let err = (&got - &want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(err < 1e-4, "({m}, {k}, {n}): {err}");
            for r in 0..m {
                let alone = small_matmul(&x.narrow(0, r, 1)?, &w)?;
                let row = got.narrow(0, r, 1)?;
                assert_eq!(alone.to_vec2::<f32>()?, row.to_vec2::<f32>()?, "row {r}");
            }
        }
        Ok(())
    }
}
