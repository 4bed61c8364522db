//! diffusers' `Attention` (self- and cross-attention with heads) and the UNet's `Transformer2DModel` /
//! `BasicTransformerBlock`, plus the single-head spatial attention of the VAE's mid block.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::nn::{
    attend_split, conv2d, group_norm, layer_norm, linear, split_heads, Conv2d, GroupNorm,
    KernelOptions, LayerNorm, Linear, ScaledDotProduct,
};

/// Multi-head attention: `to_q`, `to_k`, `to_v`, `to_out.0`.
///
/// On GPUs the projections that read the same input are stored concatenated (q/k/v of self-attention, k/v of
/// cross-attention): one matrix product and one head-splitting copy instead of three; `to_q`/`to_k`/`to_v`
/// are then views into that storage, so nothing is held twice.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    qkv: Option<Linear>,
    kv: Option<Linear>,
    heads: usize,
    sdp: ScaledDotProduct,
    /// Scores and softmax in f32 even for half-precision models (diffusers' `upcast_attention`/`upcast_softmax`).
    upcast: bool,
}

impl Attention {
    pub fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: Option<usize>,
        head_dim: usize,
        qkv_bias: bool,
        spec: &TransformerSpec,
    ) -> candle_core::Result<Self> {
        let (heads, upcast) = (spec.heads, spec.upcast);
        let sdp = ScaledDotProduct::new(spec.kernels);
        let inner = heads * head_dim;
        let self_attention = context_dim.is_none();
        let context_dim = context_dim.unwrap_or(query_dim);
        let weight = |name: &str, inp: usize| vb.pp(name).get((inner, inp), "weight");
        let bias = |name: &str| -> candle_core::Result<Option<Tensor>> {
            if qkv_bias {
                Ok(Some(vb.pp(name).get(inner, "bias")?))
            } else {
                Ok(None)
            }
        };
        let (wq, wk, wv) = (
            weight("to_q", query_dim)?,
            weight("to_k", context_dim)?,
            weight("to_v", context_dim)?,
        );
        let (bq, bk, bv) = (bias("to_q")?, bias("to_k")?, bias("to_v")?);
        let to_out = linear(inner, query_dim, vb.pp("to_out.0"))?;
        let cat_bias = |bs: &[&Option<Tensor>]| -> candle_core::Result<Option<Tensor>> {
            let parts: Option<Vec<&Tensor>> = bs.iter().map(|b| b.as_ref()).collect();
            parts.map(|p| Tensor::cat(&p, 0)).transpose()
        };
        // Row range [start, start + inner) of a fused layer, as a layer of its own (a view, no copy).
        let view = |fused: &Tensor, fused_bias: &Option<Tensor>, start: usize| {
            Ok::<_, candle_core::Error>(Linear::new(
                fused.narrow(0, start, inner)?,
                fused_bias
                    .as_ref()
                    .map(|b| b.narrow(0, start, inner))
                    .transpose()?,
            ))
        };
        let fuse = vb.device().is_cuda();
        // LoRAs change the weights the layers use: with fused projections those are views into the fused one.
        let record = |name: &str, layer: &Linear| {
            crate::adapters::apply::record(
                &format!("{}.weight", vb.pp(name).prefix()),
                layer.weight(),
            )
        };
        if fuse && self_attention {
            let w = Tensor::cat(&[&wq, &wk, &wv], 0)?;
            let b = cat_bias(&[&bq, &bk, &bv])?;
            let (to_q, to_k, to_v) = (
                view(&w, &b, 0)?,
                view(&w, &b, inner)?,
                view(&w, &b, 2 * inner)?,
            );
            record("to_q", &to_q);
            record("to_k", &to_k);
            record("to_v", &to_v);
            return Ok(Self {
                to_q,
                to_k,
                to_v,
                qkv: Some(Linear::new(w, b)),
                kv: None,
                to_out,
                heads,
                sdp,
                upcast,
            });
        }
        if fuse {
            let w = Tensor::cat(&[&wk, &wv], 0)?;
            let b = cat_bias(&[&bk, &bv])?;
            let (to_k, to_v) = (view(&w, &b, 0)?, view(&w, &b, inner)?);
            record("to_k", &to_k);
            record("to_v", &to_v);
            return Ok(Self {
                to_q: Linear::new(wq, bq),
                to_k,
                to_v,
                qkv: None,
                kv: Some(Linear::new(w, b)),
                to_out,
                heads,
                sdp,
                upcast,
            });
        }
        Ok(Self {
            to_q: Linear::new(wq, bq),
            to_k: Linear::new(wk, bk),
            to_v: Linear::new(wv, bv),
            qkv: None,
            kv: None,
            to_out,
            heads,
            sdp,
            upcast,
        })
    }

    /// `x`: `[batch, tokens, query_dim]`; `context`: `[batch, ctx_tokens, context_dim]` (None = self-attention).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> candle_core::Result<Tensor> {
        self.to_out.forward(&self.attend_heads(x, context)?)
    }

    /// [`Self::forward`] plus `residual`, added with the output projection's bias.
    pub fn forward_residual(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        self.to_out
            .forward_residual(&self.attend_heads(x, context)?, residual)
    }

    /// Everything before the output projection: `[batch, tokens, heads * head_dim]`.
    fn attend_heads(&self, x: &Tensor, context: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let heads = self.heads;
        let flash = |q: &Tensor, k: &Tensor, v: &Tensor| -> candle_core::Result<Option<Tensor>> {
            // f32 on the CPU is already "upcast".
            if self.upcast && !crate::cpu::applies(q) {
                return Ok(None);
            }
            self.sdp.flash(q, k, v, heads)
        };
        let (q, k, v) = match (&self.qkv, &self.kv, context) {
            (Some(qkv), _, None) => {
                let fused = qkv.forward(x)?;
                let inner = fused.dim(2)? / 3;
                let part = |i: usize| fused.narrow(2, i * inner, inner);
                if let Some(out) = flash(&part(0)?, &part(1)?, &part(2)?)? {
                    return Ok(out);
                }
                let mut parts = split_fused_heads(&fused, 3, heads)?.into_iter();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(q), Some(k), Some(v)) => (q, k, v),
                    _ => candle_core::bail!("fused attention projection lost a part"),
                }
            }
            (_, Some(kv), Some(ctx)) => {
                let fused = kv.forward(ctx)?;
                let inner = fused.dim(2)? / 2;
                let q = self.to_q.forward(x)?;
                if let Some(out) = flash(
                    &q,
                    &fused.narrow(2, 0, inner)?,
                    &fused.narrow(2, inner, inner)?,
                )? {
                    return Ok(out);
                }
                let mut parts = split_fused_heads(&fused, 2, heads)?.into_iter();
                match (parts.next(), parts.next()) {
                    (Some(k), Some(v)) => (split_heads(&q, heads)?, k, v),
                    _ => candle_core::bail!("fused attention projection lost a part"),
                }
            }
            _ => {
                let context = context.unwrap_or(x);
                let (q, k, v) = (
                    self.to_q.forward(x)?,
                    self.to_k.forward(context)?,
                    self.to_v.forward(context)?,
                );
                if let Some(out) = flash(&q, &k, &v)? {
                    return Ok(out);
                }
                (
                    split_heads(&q, heads)?,
                    split_heads(&k, heads)?,
                    split_heads(&v, heads)?,
                )
            }
        };
        attend_split(&q, &k, &v, self.upcast)
    }
}

/// `[b, n, parts * heads * d]` -> `parts` tensors `[b, heads, n, d]`, with one copy for all of them.
fn split_fused_heads(t: &Tensor, parts: usize, heads: usize) -> candle_core::Result<Vec<Tensor>> {
    let (b, n, total) = t.dims3()?;
    let d = total / parts / heads;
    let all = t
        .reshape((b, n, parts, heads, d))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?;
    (0..parts).map(|i| all.get(i)).collect()
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

    /// `ff(x) + residual`.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.proj_out
            .forward_residual(&self.proj_in.forward_geglu(x)?, residual)
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
            attn1: Attention::new(vb.pp("attn1"), dim, self_ctx, head_dim, false, spec)?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(
                vb.pp("attn2"),
                dim,
                Some(spec.context_dim),
                head_dim,
                false,
                spec,
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
        let x = self
            .attn1
            .forward_residual(&self.norm1.forward(x)?, self_ctx, x)?;
        let x = self
            .attn2
            .forward_residual(&self.norm2.forward(&x)?, Some(context), &x)?;
        self.ff.forward_residual(&self.norm3.forward(&x)?, &x)
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
    /// Options of the layers built from this spec (flash attention, the 1x1 projections' convolutions).
    pub kernels: KernelOptions,
}

enum Projection {
    Conv(Conv2d),
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
                    spec.kernels,
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
        let out = self.out.forward(&attend_split(
            &split_heads(&q, 1)?,
            &split_heads(&k, 1)?,
            &split_heads(&v, 1)?,
            true,
        )?)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + x
    }
}
