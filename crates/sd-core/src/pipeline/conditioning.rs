//! Text conditioning: CLIP hidden states for SD 1.x/2.x, and for SDXL the two encoders' penultimate states
//! concatenated, the pooled embedding of encoder 2 and the size/crop `add_time_ids`, exactly as diffusers'
//! `encode_prompt` and `_get_add_time_ids` build them; for guidance-distilled (LCM) UNets, the guidance-scale
//! embedding diffusers' `get_guidance_scale_embedding` makes, in place of classifier-free guidance.

use candle_core::Tensor;

use super::{GenerateRequest, Pipeline};
use crate::models::unet::AddedConditions;
use crate::{CoreError, Result};

/// Everything the UNet is conditioned on for one request. With guidance, batches hold the negative half first.
pub(super) struct Conditioning {
    pub context: Tensor,
    pub guided: bool,
    /// SDXL: pooled text embeddings `[B, pooled]` and `[B, 6]` time ids.
    pub sdxl: Option<(Tensor, Tensor)>,
    /// UNets with `time_cond_proj_dim` (LCM-distilled): the guidance-scale embedding `[B, dim]` added to the
    /// time embedding (diffusers' `timestep_cond`).
    pub timestep_cond: Option<Tensor>,
}

impl Conditioning {
    pub fn added(&self) -> Option<AddedConditions<'_>> {
        self.sdxl
            .as_ref()
            .map(|(text_embeds, time_ids)| AddedConditions {
                text_embeds,
                time_ids,
            })
    }
}

/// SDXL's size conditioning (diffusers' `original_size`, `crops_coords_top_left`, `target_size` and the
/// negative variants), as (height, width) pairs; `None` = the output size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SizeConditioning {
    pub original_size: Option<(usize, usize)>,
    pub crop_top_left: (usize, usize),
    pub target_size: Option<(usize, usize)>,
    pub negative_original_size: Option<(usize, usize)>,
    pub negative_target_size: Option<(usize, usize)>,
}

impl Pipeline {
    fn check_clip_skip(&self, clip_skip: usize) -> Result<()> {
        let layers = self.text_encoder.num_layers();
        if clip_skip == 0 || clip_skip >= layers {
            return Err(CoreError::InvalidInput(format!(
                "clip_skip must be between 1 and {}",
                layers - 1
            )));
        }
        Ok(())
    }

    /// The UNet's text context for one prompt, `[1, tokens, dim]`: for SD 1.x/2.x the layer `clip_skip` selects
    /// (1 = last) after the final layer norm; for SDXL both encoders' states concatenated.
    pub fn encode_prompt(&self, prompt: &str, clip_skip: usize) -> Result<Tensor> {
        Ok(self.encode_prompt_pooled(prompt, clip_skip)?.0)
    }

    /// Context and, for SDXL, the pooled embedding of encoder 2.
    pub fn encode_prompt_pooled(
        &self,
        prompt: &str,
        clip_skip: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.check_clip_skip(clip_skip)?;
        let ids = self.tokenizer.encode_padded(prompt);
        match &self.second_text {
            None => {
                let out = self.text_encoder.forward(&[ids], clip_skip - 1, true)?;
                Ok((out.hidden, None))
            }
            Some((tokenizer_2, encoder_2)) => {
                // SDXL takes hidden_states[-(clip_skip + 1)] without the final norm: the penultimate by default.
                let first = self.text_encoder.forward(&[ids], clip_skip, false)?;
                let second =
                    encoder_2.forward(&[tokenizer_2.encode_padded(prompt)], clip_skip, false)?;
                let context = Tensor::cat(&[&first.hidden, &second.hidden], 2)?;
                Ok((context, Some(second.pooled)))
            }
        }
    }

    /// The request's conditioning. A UNet with `time_cond_proj_dim` has guidance distilled into it: as in
    /// diffusers (StableDiffusionPipeline and LatentConsistencyModelPipeline alike) it runs without
    /// classifier-free guidance and gets the embedding of `guidance_scale - 1` instead.
    pub(super) fn conditioning(&self, req: &GenerateRequest) -> Result<Conditioning> {
        let Some(dim) = self.unet.config().time_cond_proj_dim else {
            return self.text_conditioning(req, req.guidance_scale > 1.0);
        };
        let mut cond = self.text_conditioning(req, false)?;
        let embedding = guidance_scale_embedding(req.guidance_scale - 1.0, dim, &self.device)?;
        let batch = req.seeds.len();
        cond.timestep_cond = Some(Tensor::cat(&vec![&embedding; batch], 0)?.to_dtype(self.dtype)?);
        Ok(cond)
    }

    fn text_conditioning(&self, req: &GenerateRequest, guided: bool) -> Result<Conditioning> {
        let batch = req.seeds.len();
        let repeat = |t: &Tensor| -> Result<Tensor> { Ok(Tensor::cat(&vec![t; batch], 0)?) };
        let (positive, pooled) = self.encode_prompt_pooled(&req.prompt, req.clip_skip)?;
        let Some(pooled) = pooled else {
            let context = if guided {
                let negative = self.encode_prompt(&req.negative_prompt, req.clip_skip)?;
                Tensor::cat(&[repeat(&negative)?, repeat(&positive)?], 0)?
            } else {
                repeat(&positive)?
            };
            return Ok(Conditioning {
                context,
                guided,
                sdxl: None,
                timestep_cond: None,
            });
        };
        let sizes = &req.size_conditioning;
        let out_size = (req.height, req.width);
        let time_ids = self.time_ids(
            sizes.original_size.unwrap_or(out_size),
            sizes.crop_top_left,
            sizes.target_size.unwrap_or(out_size),
        )?;
        if !guided {
            return Ok(Conditioning {
                context: repeat(&positive)?,
                guided,
                sdxl: Some((repeat(&pooled)?, repeat(&time_ids)?)),
                timestep_cond: None,
            });
        }
        let (negative, negative_pooled) =
            if req.negative_prompt.is_empty() && self.force_zeros_for_empty_prompt {
                (positive.zeros_like()?, pooled.zeros_like()?)
            } else {
                let (n, p) = self.encode_prompt_pooled(&req.negative_prompt, req.clip_skip)?;
                let p = p.ok_or_else(|| {
                    CoreError::InvalidInput("second text encoder gave no pooled output".into())
                })?;
                (n, p)
            };
        let negative_time_ids = self.time_ids(
            sizes
                .negative_original_size
                .or(sizes.original_size)
                .unwrap_or(out_size),
            sizes.crop_top_left,
            sizes
                .negative_target_size
                .or(sizes.target_size)
                .unwrap_or(out_size),
        )?;
        Ok(Conditioning {
            context: Tensor::cat(&[repeat(&negative)?, repeat(&positive)?], 0)?,
            guided,
            sdxl: Some((
                Tensor::cat(&[repeat(&negative_pooled)?, repeat(&pooled)?], 0)?,
                Tensor::cat(&[repeat(&negative_time_ids)?, repeat(&time_ids)?], 0)?,
            )),
            timestep_cond: None,
        })
    }

    /// `[1, 6]`: original (h, w), crop top-left (y, x), target (h, w).
    fn time_ids(
        &self,
        original: (usize, usize),
        crop: (usize, usize),
        target: (usize, usize),
    ) -> Result<Tensor> {
        let values = [original.0, original.1, crop.0, crop.1, target.0, target.1].map(|v| v as f32);
        Ok(Tensor::from_vec(values.to_vec(), (1, 6), &self.device)?.to_dtype(self.dtype)?)
    }
}

/// diffusers' `get_guidance_scale_embedding(w, embedding_dim)` for one `w`: `[1, dim]` f32, the sines then the
/// cosines of `1000 w` at frequencies `10000^(-i / (dim/2 - 1))`, zero-padded to an odd `dim`.
pub(crate) fn guidance_scale_embedding(
    w: f64,
    dim: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let half = dim / 2;
    // Computed in f32 as torch does, so the embedding matches to the last bit that matters.
    let w = (w as f32) * 1000.0;
    let step = 10000f32.ln() / (half as f32 - 1.0).max(1.0);
    let angles: Vec<f32> = (0..half).map(|i| w * (i as f32 * -step).exp()).collect();
    let mut values: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    values.extend(angles.iter().map(|a| a.cos()));
    values.resize(dim, 0.0);
    Ok(Tensor::from_vec(values, (1, dim), device)?)
}
