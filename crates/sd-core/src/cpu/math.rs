//! Vectorisable element-wise maths for the CPU kernels: a branch-free exp (Cephes polynomial, ~1 ulp over
//! the range softmax uses) that the compiler turns into SIMD. Each loop is compiled twice, for AVX2+FMA
//! (picked at run time when the CPU has them) and for the baseline target.
#![allow(unsafe_code)] // calling `#[target_feature]` functions after checking the CPU has the features.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LANES: usize = 16;

/// exp(x) for finite x; results below ~1e-38 flush towards the smallest normal (softmax weights that small
/// change nothing).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and removing 1.5 * 2^23 (SIMD on every x86, unlike a `round` call).
    let n = (x * LOG2E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    f32::from_bits(((n as i32 + 127) as u32) << 23) * y
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One online-softmax step over a block of scores `s` (`rows x cols`, row-major): per row, the running max
/// `max` grows to cover the block, `s` becomes `exp(s - max)`, `sum` is rescaled and grows by the row's sum,
/// and `scale` receives the factor the row's earlier output must be multiplied by (exp(old max - new max)).
pub(crate) fn online_softmax(
    s: &mut [f32],
    cols: usize,
    max: &mut [f32],
    sum: &mut [f32],
    scale: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { online_softmax_avx2(s, cols, max, sum, scale) };
    }
    online_softmax_body(s, cols, max, sum, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn online_softmax_avx2(
    s: &mut [f32],
    cols: usize,
    max: &mut [f32],
    sum: &mut [f32],
    scale: &mut [f32],
) {
    online_softmax_body(s, cols, max, sum, scale)
}

#[inline(always)]
fn online_softmax_body(
    s: &mut [f32],
    cols: usize,
    max: &mut [f32],
    sum: &mut [f32],
    scale: &mut [f32],
) {
    for (i, row) in s.chunks_exact_mut(cols).enumerate() {
        let block_max = row_max(row);
        let new_max = max[i].max(block_max);
        let mut acc = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
                *v = exp(*v - new_max);
                *a += *v;
            }
        }
        let mut total: f32 = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - new_max);
            total += *v;
        }
        total += acc.iter().sum::<f32>();
        let factor = if max[i] == f32::NEG_INFINITY {
            0.0
        } else {
            exp(max[i] - new_max)
        };
        scale[i] = factor;
        sum[i] = sum[i] * factor + total;
        max[i] = new_max;
    }
}

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for v in chunks.remainder().iter().chain(acc.iter()) {
        m = if *v > m { *v } else { m };
    }
    m
}

/// `dst = src * a + b`, then SiLU (`y / (1 + exp(-y))`) if `silu`.
pub(crate) fn affine(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { affine_avx2(dst, src, a, b, silu) };
    }
    affine_body(dst, src, a, b, silu)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn affine_avx2(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool) {
    affine_body(dst, src, a, b, silu)
}

#[inline(always)]
fn affine_body(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool) {
    if silu {
        for (d, x) in dst.iter_mut().zip(src) {
            let y = x * a + b;
            *d = y / (1.0 + exp(-y));
        }
    } else {
        for (d, x) in dst.iter_mut().zip(src) {
            *d = x * a + b;
        }
    }
}

/// Sum and sum of squared deviations from `center` of `x`, accumulated in f32 lanes over short runs and in
/// f64 across them (GroupNorm statistics over up to millions of values).
pub(crate) fn sums(x: &[f32], center: f32) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { sums_avx2(x, center) };
    }
    sums_body(x, center)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sums_avx2(x: &[f32], center: f32) -> (f64, f64) {
    sums_body(x, center)
}

#[inline(always)]
fn sums_body(x: &[f32], center: f32) -> (f64, f64) {
    let (mut s, mut q) = (0f64, 0f64);
    for run in x.chunks(1024) {
        let mut a = [0f32; LANES];
        let mut b = [0f32; LANES];
        let mut chunks = run.chunks_exact(LANES);
        for c in &mut chunks {
            for ((a, b), v) in a.iter_mut().zip(b.iter_mut()).zip(c) {
                let d = v - center;
                *a += d;
                *b += d * d;
            }
        }
        for v in chunks.remainder() {
            let d = v - center;
            s += d as f64;
            q += (d * d) as f64;
        }
        s += a.iter().map(|v| *v as f64).sum::<f64>();
        q += b.iter().map(|v| *v as f64).sum::<f64>();
    }
    (s, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_over_the_softmax_range() {
        for i in 0..20_000 {
            let x = -80.0 + i as f32 * 0.0045;
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b, "{x}: {a} vs {b}");
        }
    }

    #[test]
    fn online_softmax_over_two_blocks_equals_softmax_of_the_row() {
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 23) as f32 * 0.37 - 3.0)
            .collect();
        let (mut max, mut sum, mut scale) = ([f32::NEG_INFINITY], [0f32], [0f32]);
        let (mut a, mut b) = (row[..20].to_vec(), row[20..].to_vec());
        online_softmax(&mut a, 20, &mut max, &mut sum, &mut scale);
        online_softmax(&mut b, 17, &mut max, &mut sum, &mut scale);
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let total: f32 = row.iter().map(|v| (v - m).exp()).sum();
        assert_eq!(max[0], m);
        assert!((sum[0] - total).abs() < 1e-5 * total);
        // The first block's weights, rescaled by the second step's factor, are exp(v - max).
        assert!((a[0] * scale[0] - (row[0] - m).exp()).abs() < 1e-6);
    }
}
