//! Tiled flash-style attention on the CPU: `softmax(q k^T / sqrt(d)) v` per head without materialising the
//! `n x m` score matrix. Each task takes one image and a block of query rows (all heads, so it owns a
//! contiguous block of the output), and walks the keys in blocks with an online softmax: scores of one
//! query block against one key block (a GEMM), running max/sum per row, the output block rescaled and
//! accumulated with a second GEMM. Scratch per task is `BQ x BK` scores plus `BQ x d` accumulators.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, Mat};
use super::{math, with_f32};

/// Query rows per task.
const BQ: usize = 64;
/// Keys per online-softmax step.
const BK: usize = 512;

/// `q` `[b, n, heads * d]`, `k`/`v` `[b, m, heads * d]` (f32, CPU) -> `[b, n, heads * d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, n, inner) = q.dims3()?;
    let (kb, m, k_inner) = k.dims3()?;
    if v.dims() != k.dims()
        || kb != b
        || k_inner != inner
        || heads == 0
        || !inner.is_multiple_of(heads)
    {
        candle_core::bail!(
            "cpu attention: q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let d = inner / heads;
    let mut out = vec![0f32; b * n * inner];
    if m == 0 || n == 0 || d == 0 {
        return Tensor::from_vec(out, (b, n, inner), &Device::Cpu);
    }
    with_f32(q, |q| {
        with_f32(k, |k| {
            with_f32(v, |v| {
                let shape = Shape { n, m, heads, d };
                out.par_chunks_mut(n * inner)
                    .enumerate()
                    .for_each(|(bi, out)| {
                        let q = &q[bi * n * inner..(bi + 1) * n * inner];
                        let k = &k[bi * m * inner..(bi + 1) * m * inner];
                        let v = &v[bi * m * inner..(bi + 1) * m * inner];
                        out.par_chunks_mut(BQ * inner)
                            .enumerate()
                            .for_each(|(blk, out)| {
                                let q = &q[blk * BQ * inner..];
                                query_block(&shape, q, k, v, out);
                            });
                    });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (b, n, inner), &Device::Cpu)
}

struct Shape {
    n: usize,
    m: usize,
    heads: usize,
    d: usize,
}

/// All heads of the query rows in `out` (`rows x heads * d`), `q` starting at the block's first row.
fn query_block(s: &Shape, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let (d, inner) = (s.d, s.heads * s.d);
    let rows = out.len() / inner;
    debug_assert!(rows <= BQ && rows <= s.n);
    let bk = BK.min(s.m);
    let scale = (d as f32).powf(-0.5);
    let mut qs = vec![0f32; rows * d];
    let mut scores = vec![0f32; rows * bk];
    let mut acc = vec![0f32; rows * d];
    let (mut max, mut sum, mut factor) = (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
    for h in 0..s.heads {
        for (i, dst) in qs.chunks_exact_mut(d).enumerate() {
            let src = &q[i * inner + h * d..i * inner + h * d + d];
            for (a, b) in dst.iter_mut().zip(src) {
                *a = b * scale;
            }
        }
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for j0 in (0..s.m).step_by(bk) {
            let cols = bk.min(s.m - j0);
            let sc = &mut scores[..rows * cols];
            // scores = qs [rows x d] * K[j0.., head]^T [d x cols]
            matmul(
                sc,
                Mat::row_major(rows, cols, cols),
                false,
                &qs,
                Mat::row_major(rows, d, d),
                &k[j0 * inner + h * d..],
                Mat::transposed(d, cols, inner),
            );
            math::online_softmax(sc, cols, &mut max, &mut sum, &mut factor);
            let first = j0 == 0;
            if !first {
                for (row, f) in acc.chunks_exact_mut(d).zip(&factor) {
                    row.iter_mut().for_each(|x| *x *= f);
                }
            }
            // acc += p [rows x cols] * V[j0.., head] [cols x d]
            matmul(
                &mut acc,
                Mat::row_major(rows, d, d),
                !first,
                sc,
                Mat::row_major(rows, cols, cols),
                &v[j0 * inner + h * d..],
                Mat::row_major(cols, d, inner),
            );
        }
        for (i, row) in acc.chunks_exact(d).enumerate() {
            let inv = 1.0 / sum[i];
            let dst = &mut out[i * inner + h * d..i * inner + h * d + d];
            for (o, a) in dst.iter_mut().zip(row) {
                *o = a * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    /// candle's plain composition: split heads, softmax((q / sqrt(d)) k^T) v, merge heads.
    fn plain(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let split = |t: &Tensor| {
            let (b, n, inner) = t.dims3().unwrap();
            t.reshape((b, n, heads, inner / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (b, n, inner) = q.dims3().unwrap();
        let d = inner / heads;
        let q = (split(q) * (d as f64).powf(-0.5)).unwrap();
        let scores = q.matmul(&split(k).t().unwrap()).unwrap();
        let p = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        p.matmul(&split(v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, n, inner))
            .unwrap()
    }

    fn check(b: usize, n: usize, m: usize, heads: usize, d: usize, spread: f64) {
        let dev = Device::Cpu;
        let q = (Tensor::randn(0f32, 1.0, (b, n, heads * d), &dev).unwrap() * spread).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, m, heads * d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, m, heads * d), &dev).unwrap();
        let got = attention(&q, &k, &v, heads).unwrap();
        let want = plain(&q, &k, &v, heads);
        let diff = crate::cpu::relative_diff(&got, &want);
        assert!(diff < 2e-5, "b{b} n{n} m{m} h{heads} d{d}: {diff}");
    }

    #[test]
    fn self_attention_at_sd15_shapes_matches_softmax_of_full_scores() {
        // 64x64 latents (4096 tokens), head dim 40; 32x32 with 80; 16x16 with 160 (fewer heads than the
        // model to keep the reference's full score matrix small).
        check(1, 4096, 4096, 2, 40, 1.0);
        check(2, 1024, 1024, 2, 80, 1.0);
        check(2, 256, 256, 3, 160, 1.0);
    }

    #[test]
    fn cross_attention_over_77_tokens_matches() {
        check(2, 4096, 77, 8, 40, 1.0);
        check(2, 64, 77, 8, 160, 3.0);
    }

    #[test]
    fn odd_sizes_and_peaked_scores_match() {
        check(1, 1, 1, 1, 1, 1.0);
        check(3, 37, 53, 3, 7, 1.0);
        check(1, 130, 1100, 1, 9, 6.0);
        check(1, 300, 300, 1, 512, 1.0);
    }
}
