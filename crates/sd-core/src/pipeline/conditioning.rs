//! Text conditioning: CLIP hidden states for SD 1.x/2.x, and for SDXL the two encoders' penultimate states
//! concatenated, the pooled embedding of encoder 2 and the size/crop `add_time_ids`, exactly as diffusers'
//! `encode_prompt` and `_get_add_time_ids` build them; for guidance-distilled (LCM) UNets, the guidance-scale
//! embedding diffusers' `get_guidance_scale_embedding` makes, in place of classifier-free guidance.

use candle_core::Tensor;

use super::encode::EncodedSchedule;
use super::{GenerateRequest, Pipeline};
use crate::models::unet::AddedConditions;
use crate::{CoreError, Result};

/// Everything the UNet is conditioned on at one step. With guidance, batches hold the negative half first.
pub(super) struct Conditioning {
    /// `[negative; positive]` with guidance (`positive` alone when `uncond_context` is set), else positive.
    pub context: Tensor,
    pub guided: bool,
    /// SDXL: pooled text embeddings `[B, pooled]` and `[B, 6]` time ids (negative half first with guidance).
    pub sdxl: Option<(Tensor, Tensor)>,
    /// A negative context of another length than the positive (A1111 prompts of different chunk counts): the
    /// UNet then runs once for each, as A1111 does with its default `pad_cond_uncond` off.
    pub uncond_context: Option<Tensor>,
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

/// The conditioning of every sampling step (prompt editing and alternation change it during sampling).
pub(super) struct CondSchedule {
    conds: Vec<Conditioning>,
    /// Index into `conds` for each step (from 0); later steps use the last.
    per_step: Vec<usize>,
    pub warnings: Vec<String>,
}

impl CondSchedule {
    pub fn at(&self, step: usize) -> &Conditioning {
        let i = self
            .per_step
            .get(step)
            .or(self.per_step.last())
            .copied()
            .unwrap_or(0);
        &self.conds[i]
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
    pub(super) fn check_clip_skip(&self, clip_skip: usize) -> Result<()> {
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

    /// The conditioning schedule of `req` over its sampling steps (`steps` model evaluations, A1111's count).
    pub(super) fn conditioning(&self, req: &GenerateRequest) -> Result<CondSchedule> {
        self.check_clip_skip(req.clip_skip)?;
        let steps = req.steps * self.schedule_multiplier(req);
        let syntax = req.prompt_syntax;
        // A UNet with `time_cond_proj_dim` has guidance distilled into it: as in diffusers
        // (StableDiffusionPipeline and LatentConsistencyModelPipeline alike) it runs without classifier-free
        // guidance and gets the embedding of `guidance_scale - 1` instead.
        let distilled = self.unet.config().time_cond_proj_dim;
        let guided = req.guidance_scale > 1.0 && distilled.is_none();
        let positive = self.encode_schedule(&req.prompt, syntax, steps, req.clip_skip)?;
        let mut warnings = positive.warnings.clone();
        let negative = if guided {
            let mut n = self.encode_schedule(&req.negative_prompt, syntax, steps, req.clip_skip)?;
            warnings.extend(n.warnings.iter().map(|w| format!("negative {w}")));
            if req.negative_prompt.is_empty() && self.force_zeros_for_empty_prompt {
                for c in &mut n.contexts {
                    *c = c.zeros_like()?;
                }
                for p in n.pooled.iter_mut().flatten() {
                    *p = p.zeros_like()?;
                }
            }
            Some(n)
        } else {
            None
        };
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut per_step = Vec::with_capacity(steps);
        for step in 0..steps.max(1) {
            let pair = (
                positive.at(step),
                negative.as_ref().map_or(0, |n| n.at(step)),
            );
            let index = pairs.iter().position(|p| *p == pair).unwrap_or_else(|| {
                pairs.push(pair);
                pairs.len() - 1
            });
            per_step.push(index);
        }
        let mut conds = pairs
            .iter()
            .map(|&(p, n)| self.assemble(req, &positive, p, negative.as_ref().map(|s| (s, n))))
            .collect::<Result<Vec<_>>>()?;
        if let Some(dim) = distilled {
            let embedding = guidance_scale_embedding(req.guidance_scale - 1.0, dim, &self.device)?;
            let batch = Tensor::cat(&vec![&embedding; req.seeds.len()], 0)?.to_dtype(self.dtype)?;
            for cond in &mut conds {
                cond.timestep_cond = Some(batch.clone());
            }
        }
        Ok(CondSchedule {
            conds,
            per_step,
            warnings,
        })
    }

    /// Model evaluations per step in A1111's counting: second-order samplers count double.
    fn schedule_multiplier(&self, req: &GenerateRequest) -> usize {
        match req.sampler.unwrap_or(self.default_sampler) {
            crate::schedulers::SamplerKind::Heun => 2,
            _ => 1,
        }
    }

    /// One step's conditioning from entry `p` of the positive schedule and entry `n` of the negative one.
    fn assemble(
        &self,
        req: &GenerateRequest,
        positive: &EncodedSchedule,
        p: usize,
        negative: Option<(&EncodedSchedule, usize)>,
    ) -> Result<Conditioning> {
        let batch = req.seeds.len();
        let repeat = |t: &Tensor| -> Result<Tensor> { Ok(Tensor::cat(&vec![t; batch], 0)?) };
        let pos_context = &positive.contexts[p];
        let pairs = |neg: &Tensor, pos: &Tensor| -> Result<(Tensor, Option<Tensor>)> {
            if neg.dim(1)? == pos.dim(1)? {
                Ok((Tensor::cat(&[repeat(neg)?, repeat(pos)?], 0)?, None))
            } else {
                Ok((repeat(pos)?, Some(repeat(neg)?)))
            }
        };
        let (context, uncond_context) = match negative {
            Some((n, i)) => pairs(&n.contexts[i], pos_context)?,
            None => (repeat(pos_context)?, None),
        };
        let Some(pooled) = &positive.pooled[p] else {
            return Ok(Conditioning {
                context,
                guided: negative.is_some(),
                sdxl: None,
                uncond_context,
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
        let Some((n, i)) = negative else {
            return Ok(Conditioning {
                context,
                guided: false,
                sdxl: Some((repeat(pooled)?, repeat(&time_ids)?)),
                uncond_context,
                timestep_cond: None,
            });
        };
        let negative_pooled = n.pooled[i].as_ref().ok_or_else(|| {
            CoreError::InvalidInput("second text encoder gave no pooled output".into())
        })?;
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
            context,
            guided: true,
            sdxl: Some((
                Tensor::cat(&[repeat(negative_pooled)?, repeat(pooled)?], 0)?,
                Tensor::cat(&[repeat(&negative_time_ids)?, repeat(&time_ids)?], 0)?,
            )),
            uncond_context,
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
