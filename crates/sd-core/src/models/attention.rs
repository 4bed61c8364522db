//! diffusers' `Attention` (self- and cross-attention with heads) and the UNet's `Transformer2DModel` /
//! `BasicTransformerBlock`, plus the single-head spatial attention of the VAE's mid block.

use candle_core::{DType, Module, Tensor};
use candle_nn::{
    conv2d, group_norm, layer_norm, linear, linear_no_bias, Conv2dConfig, GroupNorm, LayerNorm,
    Linear, VarBuilder,
};

/// Multi-head attention: `to_q`, `to_k`, `to_v`, `to_out.0`.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    /// Scores and softmax in f32 even for half-precision models (diffusers' `upcast_attention`/`upcast_softmax`).
    upcast: bool,
}

impl Attention {
    pub fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        head_dim: usize,
        qkv_bias: bool,
        upcast: bool,
    ) -> candle_core::Result<Self> {
        let inner = heads * head_dim;
        let context_dim = context_dim.unwrap_or(query_dim);
        let proj = |name: &str, inp: usize| {
            if qkv_bias {
                linear(inp, inner, vb.pp(name))
            } else {
                linear_no_bias(inp, inner, vb.pp(name))
            }
        };
        Ok(Self {
            to_q: proj("to_q", query_dim)?,
            to_k: proj("to_k", context_dim)?,
            to_v: proj("to_v", context_dim)?,
            to_out: linear(inner, query_dim, vb.pp("to_out.0"))?,
            heads,
            upcast,
        })
    }

    /// `x`: `[batch, tokens, query_dim]`; `context`: `[batch, ctx_tokens, context_dim]` (None = self-attention).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let context = context.unwrap_or(x);
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let out = scaled_dot_product(&q, &k, &v, self.heads, self.upcast)?;
        self.to_out.forward(&out)
    }
}

/// softmax(q k^T / sqrt(d)) v over `heads`, inputs and output `[batch, tokens, heads * d]`.
pub fn scaled_dot_product(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    upcast: bool,
) -> candle_core::Result<Tensor> {
    let (b, n, inner) = q.dims3()?;
    let m = k.dim(1)?;
    let d = inner / heads;
    let split =
        |t: &Tensor, len: usize| t.reshape((b, len, heads, d))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q, n)?, split(k, m)?, split(v, m)?);
    let dtype = q.dtype();
    let scale = (d as f64).powf(-0.5);
    let compute = if upcast || dtype == DType::F32 {
        DType::F32
    } else {
        dtype
    };
    let scores = (q.to_dtype(compute)?.matmul(&k.to_dtype(compute)?.t()?)? * scale)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, inner))
}

/// GEGLU feed-forward: `ff.net.0.proj` (to 2x inner), gelu gate, `ff.net.2`.
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> candle_core::Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            proj_in: linear(dim, inner * 2, vb.pp("net.0.proj"))?,
            proj_out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.proj_in.forward(x)?;
        let half = h.dim(candle_core::D::Minus1)? / 2;
        let value = h.narrow(candle_core::D::Minus1, 0, half)?;
        let gate = h.narrow(candle_core::D::Minus1, half, half)?;
        self.proj_out.forward(&(value * gate.gelu_erf()?)?)
    }
}

struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
    only_cross_attention: bool,
}

impl TransformerBlock {
    fn new(vb: VarBuilder, dim: usize, spec: &TransformerSpec) -> candle_core::Result<Self> {
        let head_dim = dim / spec.heads;
        let self_ctx = if spec.only_cross_attention {
            Some(spec.context_dim)
        } else {
            None
        };
        Ok(Self {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(
                vb.pp("attn1"),
                dim,
                self_ctx,
                spec.heads,
                head_dim,
                false,
                spec.upcast,
            )?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(
                vb.pp("attn2"),
                dim,
                Some(spec.context_dim),
                spec.heads,
                head_dim,
                false,
                spec.upcast,
            )?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
            only_cross_attention: spec.only_cross_attention,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> candle_core::Result<Tensor> {
        let self_ctx = if self.only_cross_attention {
            Some(context)
        } else {
            None
        };
        let x = (self.attn1.forward(&self.norm1.forward(x)?, self_ctx)? + x)?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + &x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

/// How one `Transformer2DModel` is shaped, from the UNet config and its block.
#[derive(Clone, Debug)]
pub struct TransformerSpec {
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
    pub upcast: bool,
    pub only_cross_attention: bool,
}

enum Projection {
    Conv(candle_nn::Conv2d),
    Linear(Linear),
}

/// `Transformer2DModel`: group norm, project in, transformer blocks over H*W tokens, project out, residual.
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        spec: &TransformerSpec,
    ) -> candle_core::Result<Self> {
        let proj = |name: &str| -> candle_core::Result<Projection> {
            Ok(if spec.linear_projection {
                Projection::Linear(linear(channels, channels, vb.pp(name))?)
            } else {
                Projection::Conv(conv2d(
                    channels,
                    channels,
                    1,
                    Conv2dConfig::default(),
                    vb.pp(name),
                )?)
            })
        };
        let blocks = (0..spec.layers)
            .map(|i| {
                TransformerBlock::new(vb.pp(format!("transformer_blocks.{i}")), channels, spec)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(spec.groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let residual = x;
        let x = self.norm.forward(x)?;
        let to_tokens = |t: Tensor| t.permute((0, 2, 3, 1))?.reshape((b, h * w, c));
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(&x)?)?,
            Projection::Linear(lin) => lin.forward(&to_tokens(x)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let to_image = |t: Tensor| t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(tokens)?)?,
            Projection::Linear(lin) => to_image(lin.forward(&tokens)?)?,
        };
        out + residual
    }
}

/// The VAE mid block's single-head attention over pixels (`group_norm`, `to_q/k/v` with bias, `to_out.0`).
/// Old checkpoints name the projections `query`/`key`/`value`/`proj_attn`; both are read.
pub struct VaeAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl VaeAttention {
    pub fn new(vb: VarBuilder, channels: usize, groups: usize) -> candle_core::Result<Self> {
        let legacy = !vb.contains_tensor("to_q.weight") && vb.contains_tensor("query.weight");
        let name = |modern: &'static str, old: &'static str| if legacy { old } else { modern };
        let lin = |n: &str| -> candle_core::Result<Linear> {
            if legacy {
                // Legacy names hold 1x1 conv-shaped or linear weights; reshape to linear.
                let w = vb.pp(n).get_unchecked("weight")?;
                let w = w.reshape((channels, channels))?;
                let b = vb.pp(n).get(channels, "bias")?;
                Ok(Linear::new(w, Some(b)))
            } else {
                linear(channels, channels, vb.pp(n))
            }
        };
        Ok(Self {
            norm: group_norm(groups, channels, 1e-6, vb.pp("group_norm"))?,
            q: lin(name("to_q", "query"))?,
            k: lin(name("to_k", "key"))?,
            v: lin(name("to_v", "value"))?,
            out: lin(name("to_out.0", "proj_attn"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let tokens = self
            .norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.q.forward(&tokens)?;
        let k = self.k.forward(&tokens)?;
        let v = self.v.forward(&tokens)?;
        let out = self
            .out
            .forward(&scaled_dot_product(&q, &k, &v, 1, true)?)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + x
    }
}
