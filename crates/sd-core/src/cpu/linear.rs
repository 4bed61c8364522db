//! `x W^T + b (+ residual)` on the CPU as one GEMM whose destination starts as the bias (plus the residual),
//! instead of a matrix product followed by one broadcast add and one residual add over the activations.

use candle_core::{Device, Tensor};

use super::gemm::{matmul_parallel, Mat};
use super::with_f32;

/// `x` `[..., in]`, `weight` `[out, in]`, `bias` `[out]`, `residual` shaped as the output (f32, CPU).
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&in_dim) {
        candle_core::bail!("cpu linear: input {dims:?}, weight {:?}", weight.dims())
    }
    let rows: usize = dims[..dims.len() - 1].iter().product();
    if let Some(d) = dims.last_mut() {
        *d = out_dim;
    }
    let mut out = match residual {
        Some(r) if r.dims() == dims.as_slice() => r.flatten_all()?.to_vec1::<f32>()?,
        Some(r) => candle_core::bail!("cpu linear: residual {:?} for output {dims:?}", r.dims()),
        None => vec![0f32; rows * out_dim],
    };
    if let Some(b) = bias {
        let b = b.to_vec1::<f32>()?;
        if b.len() != out_dim {
            candle_core::bail!("cpu linear: {} biases for {out_dim} outputs", b.len())
        }
        for row in out.chunks_exact_mut(out_dim) {
            row.iter_mut().zip(&b).for_each(|(o, b)| *o += b);
        }
    }
    let read_dst = residual.is_some() || bias.is_some();
    with_f32(x, |x| {
        with_f32(weight, |w| {
            matmul_parallel(
                &mut out,
                Mat::row_major(rows, out_dim, out_dim),
                read_dst,
                x,
                Mat::row_major(rows, in_dim, in_dim),
                w,
                Mat::transposed(in_dim, out_dim, in_dim),
            );
            Ok(())
        })
    })?;
    Tensor::from_vec(out, dims, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;

    fn check(lead: &[usize], inp: usize, out: usize) {
        let dev = Device::Cpu;
        let mut dims = lead.to_vec();
        dims.push(inp);
        let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (out, inp), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, out, &dev).unwrap();
        let plain = candle_nn::Linear::new(w.clone(), Some(b.clone()));
        let want = plain.forward(&x).unwrap();
        let got = linear(&x, &w, Some(&b), None).unwrap();
        assert!(
            crate::cpu::relative_diff(&got, &want) < 1e-5,
            "{dims:?} -> {out}"
        );
        let res = want.affine(0.0, 0.5).unwrap();
        let got = linear(&x, &w, Some(&b), Some(&res)).unwrap();
        let want2 = (&want + &res).unwrap();
        assert!(
            crate::cpu::relative_diff(&got, &want2) < 1e-5,
            "{dims:?} + residual"
        );
        let got = linear(&x, &w, None, None).unwrap();
        let want3 = candle_nn::Linear::new(w, None).forward(&x).unwrap();
        assert!(
            crate::cpu::relative_diff(&got, &want3) < 1e-5,
            "{dims:?} no bias"
        );
    }

    #[test]
    fn transformer_shapes_and_odd_sizes_match_candle() {
        check(&[2, 4096], 320, 320);
        check(&[2, 64], 1280, 10240);
        check(&[2, 77], 768, 1280);
        check(&[3, 5, 7], 9, 11);
        check(&[1], 1, 1);
    }
}
