//! 2-D convolution on the CPU as GEMMs, NCHW as it lies. The OIHW weight already is the `[c_out, c_in * kh *
//! kw]` left operand; the right operand is an im2col tile of a few output rows (`[c_in * kh * kw, pixels]`,
//! filled with row copies, sized to stay in cache) and the GEMM writes straight into the output. A 1x1
//! stride-1 kernel needs no tile: the input image is the right operand. The output starts as bias (plus the
//! residual when there is one) and the GEMM accumulates onto it, so neither costs a pass of its own.
//!
//! Tasks are (image, block of output channels): each owns a contiguous part of the output. Channel blocks
//! are only split when there are fewer images than threads, since each block builds its own tiles.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, Mat};
use super::{threads, with_f32};

/// Target im2col tile size in elements (~2 MiB of f32).
const TILE_ELEMS: usize = 512 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct ConvParams {
    pub padding: usize,
    pub stride: usize,
}

struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: ConvParams,
}

/// `conv2d(x, weight) + bias + residual` for `x` `[n, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]` (f32,
/// CPU, dilation 1, one group), `bias` `[c_out]`, `residual` shaped as the output.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    p: ConvParams,
) -> candle_core::Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let (cout, wcin, kh, kw) = weight.dims4()?;
    if wcin != cin || p.stride == 0 || h + 2 * p.padding < kh || w + 2 * p.padding < kw {
        candle_core::bail!(
            "cpu conv2d: input {:?}, weight {:?}, {p:?}",
            x.dims(),
            weight.dims()
        )
    }
    let g = Geometry {
        cin,
        h,
        w,
        kh,
        kw,
        oh: (h + 2 * p.padding - kh) / p.stride + 1,
        ow: (w + 2 * p.padding - kw) / p.stride + 1,
        p,
    };
    let pixels = g.oh * g.ow;
    if let Some(r) = residual {
        if r.dims() != [n, cout, g.oh, g.ow] {
            candle_core::bail!(
                "cpu conv2d: residual {:?} for output {:?}",
                r.dims(),
                (n, cout, g.oh, g.ow)
            )
        }
    }
    let mut out = match residual {
        Some(r) => r.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0f32; n * cout * pixels],
    };
    let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    if let Some(b) = &bias {
        if b.len() != cout {
            candle_core::bail!("cpu conv2d: {} biases for {cout} channels", b.len())
        }
        for img in out.chunks_exact_mut(cout * pixels) {
            for (row, b) in img.chunks_exact_mut(pixels).zip(b) {
                row.iter_mut().for_each(|v| *v += b);
            }
        }
    }
    let read_dst = residual.is_some() || bias.is_some();
    // Channel blocks: enough tasks for every thread, in multiples of 16 rows (the GEMM's register tile).
    let splits = threads().div_ceil(n.max(1)).max(1);
    let block = cout.div_ceil(splits).div_ceil(16) * 16;
    let k = cin * kh * kw;
    with_f32(x, |x| {
        with_f32(weight, |wt| {
            out.par_chunks_mut(cout * pixels)
                .enumerate()
                .for_each(|(img, out)| {
                    let x = &x[img * cin * h * w..(img + 1) * cin * h * w];
                    out.par_chunks_mut(block * pixels)
                        .enumerate()
                        .for_each(|(blk, out)| {
                            let rows = out.len() / pixels;
                            let wt = &wt[blk * block * k..(blk * block + rows) * k];
                            convolve(&g, x, wt, out, read_dst);
                        });
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (n, cout, g.oh, g.ow), &Device::Cpu)
}

/// One image, `out.len() / pixels` output channels whose weights are `wt`.
fn convolve(g: &Geometry, x: &[f32], wt: &[f32], out: &mut [f32], read_dst: bool) {
    let pixels = g.oh * g.ow;
    let rows = out.len() / pixels;
    let k = g.cin * g.kh * g.kw;
    if g.kh == 1 && g.kw == 1 && g.p.stride == 1 && g.p.padding == 0 {
        matmul(
            out,
            Mat::row_major(rows, pixels, pixels),
            read_dst,
            wt,
            Mat::row_major(rows, k, k),
            x,
            Mat::row_major(k, pixels, pixels),
        );
        return;
    }
    let tile_rows = (TILE_ELEMS / (k * g.ow).max(1)).clamp(1, g.oh);
    let mut col = vec![0f32; k * tile_rows * g.ow];
    for oy0 in (0..g.oh).step_by(tile_rows) {
        let ty = tile_rows.min(g.oh - oy0);
        let cols = ty * g.ow;
        let col = &mut col[..k * cols];
        im2col(g, x, oy0, ty, col);
        matmul(
            &mut out[oy0 * g.ow..],
            Mat::row_major(rows, cols, pixels),
            read_dst,
            wt,
            Mat::row_major(rows, k, k),
            col,
            Mat::row_major(k, cols, cols),
        );
    }
}

/// Fills `col` (`[c_in * kh * kw, ty * ow]`) with the input patches of output rows `oy0..oy0 + ty`.
fn im2col(g: &Geometry, x: &[f32], oy0: usize, ty: usize, col: &mut [f32]) {
    let (pad, stride) = (g.p.padding as isize, g.p.stride);
    let cols = ty * g.ow;
    for (r, dst) in col.chunks_exact_mut(cols).enumerate() {
        let (c, ky, kx) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for (t, dst) in dst.chunks_exact_mut(g.ow).enumerate() {
            let iy = ((oy0 + t) * stride + ky) as isize - pad;
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
            // Output columns whose input column kx - pad + ox * stride lies inside the row.
            let shift = kx as isize - pad;
            let first = if shift < 0 {
                ((-shift) as usize).div_ceil(stride)
            } else {
                0
            };
            let last = if (g.w as isize) > shift {
                ((g.w as isize - shift) as usize).div_ceil(stride).min(g.ow)
            } else {
                0
            };
            let first = first.min(last);
            dst[..first].fill(0.0);
            dst[last..].fill(0.0);
            let start = (first * stride) as isize + shift;
            if stride == 1 {
                let s = start as usize;
                dst[first..last].copy_from_slice(&src[s..s + last - first]);
            } else {
                for (j, d) in dst[first..last].iter_mut().enumerate() {
                    *d = src[start as usize + j * stride];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;

    fn check(
        n: usize,
        cin: usize,
        cout: usize,
        k: usize,
        pad: usize,
        stride: usize,
        side: (usize, usize),
    ) {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (n, cin, side.0, side.1), &dev).unwrap();
        let w = (Tensor::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap()
            / ((cin * k * k) as f64).sqrt())
        .unwrap();
        let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
        let cfg = candle_nn::Conv2dConfig {
            padding: pad,
            stride,
            ..Default::default()
        };
        let plain = candle_nn::Conv2d::new(w.clone(), Some(b.clone()), cfg);
        let want = plain.forward(&x).unwrap();
        let p = ConvParams {
            padding: pad,
            stride,
        };
        let got = conv2d(&x, &w, Some(&b), None, p).unwrap();
        let case = format!("n{n} {cin}->{cout} k{k} p{pad} s{stride} {side:?}");
        let diff = crate::cpu::relative_diff(&got, &want);
        assert!(diff < 1e-5, "{case}: {diff}");
        let res = want.ones_like().unwrap().affine(0.5, 0.25).unwrap();
        let got = conv2d(&x, &w, Some(&b), Some(&res), p).unwrap();
        let diff = crate::cpu::relative_diff(&got, &(&want + &res).unwrap());
        assert!(diff < 1e-5, "{case} + residual: {diff}");
        let got = conv2d(&x, &w, None, None, p).unwrap();
        let want = x.conv2d(&w, pad, stride, 1, 1).unwrap();
        let diff = crate::cpu::relative_diff(&got, &want);
        assert!(diff < 1e-5, "{case} without bias: {diff}");
    }

    #[test]
    fn unet_and_vae_shapes_match_candle() {
        check(2, 320, 320, 3, 1, 1, (64, 64));
        check(2, 640, 640, 3, 1, 2, (32, 32));
        check(2, 1280, 1280, 3, 1, 1, (8, 8));
        check(2, 640, 320, 1, 0, 1, (64, 64));
        check(1, 128, 128, 3, 1, 1, (128, 128));
        check(1, 4, 4, 1, 0, 1, (64, 64));
        check(2, 4, 320, 3, 1, 1, (64, 64));
    }

    #[test]
    fn odd_sizes_strides_and_paddings_match_candle() {
        check(1, 3, 5, 3, 1, 1, (7, 9));
        check(3, 7, 17, 3, 1, 2, (9, 11));
        check(1, 5, 3, 3, 0, 2, (10, 10));
        check(2, 6, 33, 1, 0, 1, (5, 3));
        check(1, 2, 3, 5, 2, 3, (13, 8));
        check(1, 3, 2, 1, 1, 2, (4, 4));
    }
}
