//! Scaled-dot-product attention over heads, `softmax(q k^T / sqrt(d)) v`: the flash kernel on CUDA where it
//! applies and [`KernelOptions::flash_attention`] allows it, otherwise matrix products around a softmax,
//! sliced by query rows so the scores never exceed [`SCORE_CHUNK_BYTES`].

use candle_core::{DType, Tensor};

use super::KernelOptions;

/// The most bytes of attention scores held at once. Larger problems (SDXL's VAE has 16k x 16k scores per image)
/// run in slices of query rows, so peak memory stays flat whatever the image size.
pub const SCORE_CHUNK_BYTES: usize = 128 << 20;

/// The attention kernel of one attention layer, with the options it was built with.
#[derive(Clone, Copy, Debug)]
pub struct ScaledDotProduct {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    flash: bool,
}

impl ScaledDotProduct {
    pub fn new(options: KernelOptions) -> Self {
        Self {
            flash: options.flash_attention,
        }
    }

    /// `softmax(q k^T / sqrt(d)) v` per head by the flash kernel, for `q` `[b, n, heads * d]` and `k`/`v`
    /// `[b, m, heads * d]` (views with any row stride, such as slices of a fused projection, are read in
    /// place), giving `[b, n, heads * d]`; `None` where it does not apply (then the caller takes the matmul
    /// path).
    pub fn flash(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
    ) -> candle_core::Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if self.flash
            && q.device().is_cuda()
            && heads > 0
            && q.dim(candle_core::D::Minus1)? % heads == 0
            && crate::cuda::flash::supports(q.dtype(), q.dim(candle_core::D::Minus1)? / heads)
            && crate::cuda::flash::device_supports(q.device())
        {
            return crate::cuda::flash::attention(q, k, v, heads).map(Some);
        }
        if crate::cpu::applies(q) {
            return crate::cpu::attention::attention(q, k, v, heads).map(Some);
        }
        Ok(None)
    }

    /// Attention over `heads`, inputs and output `[batch, tokens, heads * d]`. Scores and softmax stay in the
    /// model's dtype (the softmax kernel accumulates in f32) unless `upcast` asks for f32 throughout.
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        upcast: bool,
    ) -> candle_core::Result<Tensor> {
        // f32 on the CPU is already "upcast".
        if !upcast || crate::cpu::applies(q) {
            if let Some(out) = self.flash(q, k, v, heads)? {
                return Ok(out);
            }
        }
        attend_split(
            &split_heads(q, heads)?,
            &split_heads(k, heads)?,
            &split_heads(v, heads)?,
            upcast,
        )
    }
}

/// `[b, n, heads * d]` -> `[b, heads, n, d]` (contiguous).
pub fn split_heads(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, n, inner) = t.dims3()?;
    t.reshape((b, n, heads, inner / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Attention over heads already split: `q` `[b, h, n, d]`, `k`/`v` `[b, h, m, d]` -> `[b, n, h * d]`.
pub fn attend_split(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    upcast: bool,
) -> candle_core::Result<Tensor> {
    let (b, heads, n, d) = q.dims4()?;
    let m = k.dim(2)?;
    let dtype = q.dtype();
    let compute = if upcast { DType::F32 } else { dtype };
    // Scaling q (n x d) is cheaper than scaling the n x m scores.
    let q = (q.to_dtype(compute)? * (d as f64).powf(-0.5))?;
    let k_t = k.to_dtype(compute)?.t()?;
    let attend_rows = |q: &Tensor| -> candle_core::Result<Tensor> {
        let probs = super::softmax_last_dim_owned(q.matmul(&k_t)?)?;
        probs.to_dtype(dtype)?.matmul(v)
    };
    let row_bytes = b * heads * m * compute.size_in_bytes();
    let rows = (SCORE_CHUNK_BYTES / row_bytes.max(1)).max(1);
    let out = if rows >= n {
        attend_rows(&q)?
    } else {
        let mut parts = Vec::with_capacity(n.div_ceil(rows));
        for start in (0..n).step_by(rows) {
            let len = rows.min(n - start);
            parts.push(attend_rows(&q.narrow(2, start, len)?.contiguous()?)?);
        }
        Tensor::cat(&parts, 2)?
    };
    out.transpose(1, 2)?.reshape((b, n, heads * d))
}
