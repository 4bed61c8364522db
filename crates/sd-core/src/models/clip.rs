//! CLIP text encoder as transformers' `CLIPTextModel` / `CLIPTextModelWithProjection` (the text side of SD).
//!
//! Returns the hidden states a pipeline asks for: the last layer or an earlier one (A1111's "clip skip"), with or
//! without the final layer norm, and the pooled (EOS-token) embedding, projected when the model has a projection.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{
    embedding, layer_norm, linear, linear_no_bias, Embedding, LayerNorm, Linear, VarBuilder,
};
use serde::Deserialize;

use crate::Result;

#[derive(Clone, Debug, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_max_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> u32 {
    2
}

#[derive(Clone, Copy, Debug)]
enum Activation {
    QuickGelu,
    Gelu,
    GeluTanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            other => Err(crate::CoreError::Unsupported(format!(
                "CLIP hidden_act `{other}`"
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
        }
    }
}

struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    fn new(vb: VarBuilder, c: &ClipTextConfig) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            q: linear(h, h, vb.pp("q_proj"))?,
            k: linear(h, h, vb.pp("k_proj"))?,
            v: linear(h, h, vb.pp("v_proj"))?,
            out: linear(h, h, vb.pp("out_proj"))?,
            heads: c.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor, causal_mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let head_dim = c / self.heads;
        let split = |t: Tensor| {
            t.reshape((b, n, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = (head_dim as f64).powf(-0.5);
        let q = split((self.q.forward(x)? * scale)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let dtype = q.dtype();
        let scores = q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?;
        let scores = scores.broadcast_add(causal_mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.out.forward(&out)
    }
}

struct EncoderLayer {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, c: &ClipTextConfig, act: Activation) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("layer_norm1"))?,
            attn: SelfAttention::new(vb.pp("self_attn"), c)?,
            norm2: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear(c.hidden_size, c.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: linear(c.intermediate_size, c.hidden_size, vb.pp("mlp.fc2"))?,
            act,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let h = (x + self.attn.forward(&self.norm1.forward(x)?, mask)?)?;
        let mlp = self.fc2.forward(
            &self
                .act
                .apply(&self.fc1.forward(&self.norm2.forward(&h)?)?)?,
        )?;
        h + mlp
    }
}

/// What the encoder returns for one batch of token ids.
pub struct ClipOutput {
    /// `[batch, tokens, hidden]` from the requested layer.
    pub hidden: Tensor,
    /// `[batch, hidden]` (or `[batch, projection_dim]` with a projection): the final-layer EOS embedding.
    pub pooled: Tensor,
}

pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    projection: Option<Linear>,
    eos_token_id: u32,
    device: Device,
}

impl ClipTextModel {
    /// `vb` points at the `text_model` scope; `projection_vb` at the root when the model has
    /// `text_projection` (CLIPTextModelWithProjection).
    pub fn new(
        vb: VarBuilder,
        projection_vb: Option<VarBuilder>,
        c: &ClipTextConfig,
    ) -> Result<Self> {
        let act = Activation::parse(&c.hidden_act)?;
        let emb = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp(format!("encoder.layers.{i}")), c, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let projection = match projection_vb {
            Some(pvb) => {
                let dim = c.projection_dim.unwrap_or(c.hidden_size);
                Some(linear_no_bias(
                    c.hidden_size,
                    dim,
                    pvb.pp("text_projection"),
                )?)
            }
            None => None,
        };
        Ok(Self {
            token_embedding: embedding(c.vocab_size, c.hidden_size, emb.pp("token_embedding"))?,
            position_embedding: embedding(
                c.max_position_embeddings,
                c.hidden_size,
                emb.pp("position_embedding"),
            )?,
            layers,
            final_layer_norm: layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            projection,
            eos_token_id: c.eos_token_id,
            device: vb.device().clone(),
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Encodes `[batch, tokens]` ids. `skip` layers are dropped from the end (0 = last layer); `final_norm`
    /// applies the final layer norm to that layer's output, as SD 1.x/2.x pipelines do (SDXL does not).
    pub fn forward(&self, ids: &[Vec<u32>], skip: usize, final_norm: bool) -> Result<ClipOutput> {
        self.forward_with_vectors(ids, &[], skip, final_norm)
    }

    /// Width of the token embeddings (and hidden states).
    pub fn hidden_size(&self) -> usize {
        self.token_embedding.hidden_size()
    }

    /// [`Self::forward`] with token embeddings replaced before the position embeddings are added: each
    /// `(row, position, vectors [n, hidden])` overwrites `n` tokens of `row` from `position` (textual inversion,
    /// as A1111's `EmbeddingsWithFixes`).
    pub fn forward_with_vectors(
        &self,
        ids: &[Vec<u32>],
        vectors: &[(usize, usize, Tensor)],
        skip: usize,
        final_norm: bool,
    ) -> Result<ClipOutput> {
        let batch = ids.len();
        let n = ids.first().map(|v| v.len()).unwrap_or(0);
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (batch, n), &self.device)?;
        let positions = Tensor::arange(0u32, n as u32, &self.device)?;
        let mut tokens = self.token_embedding.forward(&input)?;
        for (row, position, v) in vectors {
            let count = v.dim(0)?.min(n.saturating_sub(*position));
            if count == 0 {
                continue;
            }
            let v = v
                .narrow(0, 0, count)?
                .to_device(&self.device)?
                .to_dtype(tokens.dtype())?
                .unsqueeze(0)?;
            tokens = tokens.slice_assign(
                &[
                    *row..*row + 1,
                    *position..*position + count,
                    0..self.hidden_size(),
                ],
                &v,
            )?;
        }
        let mut x = tokens.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(n, &self.device)?;
        let keep = self.layers.len().saturating_sub(skip);
        let mut selected = None;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &mask)?;
            if i + 1 == keep {
                selected = Some(x.clone());
            }
        }
        let last = self.final_layer_norm.forward(&x)?;
        let hidden = match (skip, selected) {
            (0, _) if final_norm => last.clone(),
            (_, Some(h)) if final_norm => self.final_layer_norm.forward(&h)?,
            (_, Some(h)) => h,
            (_, None) => x.clone(),
        };
        let pooled = self.pool(&last, ids)?;
        Ok(ClipOutput { hidden, pooled })
    }

    /// transformers' pooling: the EOS position (legacy configs with eos_token_id 2 take the argmax id).
    fn pool(&self, last: &Tensor, ids: &[Vec<u32>]) -> Result<Tensor> {
        let rows = ids
            .iter()
            .enumerate()
            .map(|(b, row)| {
                let pos = if self.eos_token_id == 2 {
                    row.iter()
                        .enumerate()
                        .max_by_key(|(i, &id)| (id, std::cmp::Reverse(*i)))
                        .map(|(i, _)| i)
                } else {
                    row.iter().position(|&id| id == self.eos_token_id)
                }
                .unwrap_or(row.len().saturating_sub(1));
                last.i((b, pos))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::stack(&rows, 0)?;
        Ok(match &self.projection {
            Some(p) => p.forward(&pooled)?,
            None => pooled,
        })
    }
}

fn causal_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (1, 1, n, n), device)
}
