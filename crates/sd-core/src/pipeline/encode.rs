//! A prompt -> its text conditioning over the sampling steps: A1111 syntax (schedules, weighted 75-token
//! chunks, embeddings, "Original" emphasis) or plain diffusers encoding. The UNet-facing assembly (negative +
//! positive, SDXL extras) is in `conditioning`.

use candle_core::{DType, Tensor};

use super::Pipeline;
use crate::models::clip::ClipTextModel;
use crate::prompt::chunks::{empty_chunk, tokenize_line, Chunk, EmbeddingTokens, Fix};
use crate::prompt::{parse_prompt_attention, prompt_schedule, PromptSyntax};
use crate::tokenizer::ClipTokenizer;
use crate::{CoreError, Result};

/// One prompt's conditioning over the steps: entry `k` is used while the step (from 0) is <= `ends[k]`.
pub(super) struct EncodedSchedule {
    pub ends: Vec<usize>,
    /// `[1, tokens, dim]` per entry (tokens = 77 x chunks).
    pub contexts: Vec<Tensor>,
    /// SDXL: `[1, pooled]` per entry, from the first chunk.
    pub pooled: Vec<Option<Tensor>>,
    pub warnings: Vec<String>,
}

impl EncodedSchedule {
    pub fn at(&self, step: usize) -> usize {
        crate::prompt::schedule::entry_at(&self.ends, step)
    }
}

/// Which encoder a pass runs: the first (index 0) or SDXL's second (1).
struct EncoderPass<'a> {
    tokenizer: &'a ClipTokenizer,
    encoder: &'a ClipTextModel,
    index: usize,
    skip: usize,
    final_norm: bool,
}

impl Pipeline {
    fn encoder_passes(&self, clip_skip: usize) -> Vec<EncoderPass<'_>> {
        match &self.second_text {
            None => vec![EncoderPass {
                tokenizer: &self.tokenizer,
                encoder: &self.text_encoder,
                index: 0,
                skip: clip_skip - 1,
                final_norm: true,
            }],
            // SDXL takes hidden_states[-(clip_skip + 1)] without the final norm: the penultimate by default.
            Some((tokenizer_2, encoder_2)) => vec![
                EncoderPass {
                    tokenizer: &self.tokenizer,
                    encoder: &self.text_encoder,
                    index: 0,
                    skip: clip_skip,
                    final_norm: false,
                },
                EncoderPass {
                    tokenizer: tokenizer_2,
                    encoder: encoder_2,
                    index: 1,
                    skip: clip_skip,
                    final_norm: false,
                },
            ],
        }
    }

    fn embedding_tokens(&self, tokenizer: &ClipTokenizer) -> Vec<EmbeddingTokens> {
        self.embeddings
            .loaded
            .iter()
            .map(|e| EmbeddingTokens {
                ids: tokenizer.encode(&e.name),
                vectors: e.vectors(),
            })
            .collect()
    }

    /// Encodes one batch of chunks (one per text, same chunk index): hidden states with the embeddings spliced
    /// in and A1111's "Original" emphasis (multipliers, then the batch's original mean restored).
    fn encode_chunks(&self, pass: &EncoderPass<'_>, chunks: &[&Chunk]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<Vec<u32>> = chunks.iter().map(|c| c.tokens.clone()).collect();
        let mut vectors = Vec::new();
        for (row, chunk) in chunks.iter().enumerate() {
            for Fix {
                position,
                embedding,
                count,
            } in &chunk.fixes
            {
                let emb = &self.embeddings.loaded[*embedding];
                let v = if pass.index == 0 {
                    &emb.first
                } else {
                    emb.second.as_ref().ok_or_else(|| {
                        CoreError::InvalidInput(format!(
                            "embedding `{}` has no vectors for the second text encoder",
                            emb.name
                        ))
                    })?
                };
                vectors.push((row, *position, v.narrow(0, 0, (*count).min(v.dim(0)?))?));
            }
        }
        let out = pass
            .encoder
            .forward_with_vectors(&ids, &vectors, pass.skip, pass.final_norm)?;
        let z = out.hidden;
        if chunks
            .iter()
            .all(|c| c.multipliers.iter().all(|&m| m == 1.0))
        {
            return Ok((z, out.pooled));
        }
        let dtype = z.dtype();
        let z32 = z.to_dtype(DType::F32)?;
        let mults: Vec<f32> = chunks
            .iter()
            .flat_map(|c| c.multipliers.iter().map(|&m| m as f32))
            .collect();
        let mults = Tensor::from_vec(mults, (chunks.len(), chunks[0].tokens.len(), 1), z.device())?;
        let original_mean = z32.mean_all()?.to_scalar::<f32>()?;
        let weighted = z32.broadcast_mul(&mults)?;
        let new_mean = weighted.mean_all()?.to_scalar::<f32>()?;
        let z = (weighted * f64::from(original_mean / new_mean))?.to_dtype(dtype)?;
        Ok((z, out.pooled))
    }

    /// Chunks of each text for one encoder, padded to the longest with A1111's empty chunk.
    fn chunk_texts(&self, pass: &EncoderPass<'_>, texts: &[String]) -> Vec<Vec<Chunk>> {
        let embeddings = self.embedding_tokens(pass.tokenizer);
        let mut all: Vec<Vec<Chunk>> = texts
            .iter()
            .map(|t| tokenize_line(pass.tokenizer, &parse_prompt_attention(t), &embeddings).0)
            .collect();
        let count = all.iter().map(Vec::len).max().unwrap_or(1);
        for chunks in &mut all {
            while chunks.len() < count {
                chunks.push(empty_chunk(pass.tokenizer));
            }
        }
        all
    }

    /// The plain (diffusers) window: BOS + up to 75 tokens + EOS + padding, with a warning when truncated.
    fn plain_chunk(&self, pass: &EncoderPass<'_>, text: &str) -> (Chunk, Option<String>) {
        let embeddings = self.embedding_tokens(pass.tokenizer);
        let limit = pass.tokenizer.max_length().saturating_sub(2);
        // Re-pack: the plain window ignores A1111's comma back-off and takes tokens in order.
        let content = pass.tokenizer.encode(text);
        let mut tokens = Vec::new();
        let mut fixes = Vec::new();
        let mut position = 0;
        while position < content.len() {
            let hit = embeddings
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.ids.is_empty() && content[position..].starts_with(&e.ids))
                .max_by_key(|(_, e)| e.ids.len());
            match hit {
                Some((i, e)) => {
                    fixes.push(Fix {
                        position: tokens.len() + 1,
                        embedding: i,
                        count: e.vectors,
                    });
                    tokens.extend(std::iter::repeat_n(0, e.vectors));
                    position += e.ids.len();
                }
                None => {
                    tokens.push(content[position]);
                    position += 1;
                }
            }
        }
        let warning = (tokens.len() > limit).then(|| {
            format!(
                "prompt truncated to {} tokens (CLIP's window; plain syntax): {} of its {} tokens were dropped",
                limit + 2,
                tokens.len() - limit,
                tokens.len()
            )
        });
        tokens.truncate(limit);
        fixes.retain(|f| f.position <= limit);
        for f in &mut fixes {
            f.count = f.count.min(limit + 1 - f.position);
        }
        let mut ids = vec![pass.tokenizer.bos_id()];
        ids.extend(tokens);
        ids.push(pass.tokenizer.eos_id());
        let length = pass.tokenizer.max_length().max(ids.len());
        ids.resize(length, pass.tokenizer.pad_id());
        let multipliers = vec![1.0; ids.len()];
        (
            Chunk {
                tokens: ids,
                multipliers,
                fixes,
            },
            warning,
        )
    }

    /// The conditioning schedule of `prompt` sampled in `steps` steps.
    pub(super) fn encode_schedule(
        &self,
        prompt: &str,
        syntax: PromptSyntax,
        steps: usize,
        clip_skip: usize,
    ) -> Result<EncodedSchedule> {
        let (ends, texts): (Vec<usize>, Vec<String>) = match syntax {
            PromptSyntax::A1111 => prompt_schedule(prompt, steps.max(1)).into_iter().unzip(),
            PromptSyntax::Plain => (vec![steps.max(1)], vec![prompt.to_string()]),
        };
        let mut warnings = Vec::new();
        let mut per_encoder: Vec<(Tensor, Option<Tensor>)> = Vec::new();
        for pass in self.encoder_passes(clip_skip) {
            let chunked: Vec<Vec<Chunk>> = match syntax {
                PromptSyntax::A1111 => self.chunk_texts(&pass, &texts),
                PromptSyntax::Plain => {
                    let (chunk, warning) = self.plain_chunk(&pass, prompt);
                    if pass.index == 0 {
                        warnings.extend(warning);
                    }
                    vec![vec![chunk]]
                }
            };
            let count = chunked.first().map(Vec::len).unwrap_or(0);
            let mut hidden = Vec::with_capacity(count);
            let mut pooled = None;
            for c in 0..count {
                let batch: Vec<&Chunk> = chunked.iter().map(|chunks| &chunks[c]).collect();
                let (z, p) = self.encode_chunks(&pass, &batch)?;
                hidden.push(z);
                if c == 0 {
                    pooled = Some(p);
                }
            }
            let context = Tensor::cat(&hidden, 1)?;
            per_encoder.push((context, pooled.filter(|_| pass.index == 1)));
        }
        let (context, pooled) = match per_encoder.as_slice() {
            [(only, _)] => (only.clone(), None),
            [(first, _), (second, pooled)] => {
                if first.dim(1)? != second.dim(1)? {
                    return Err(CoreError::InvalidInput(
                        "the two text encoders split this prompt into different numbers of chunks"
                            .into(),
                    ));
                }
                (Tensor::cat(&[first, second], 2)?, pooled.clone())
            }
            _ => return Err(CoreError::InvalidInput("no text encoder".into())),
        };
        let contexts = (0..ends.len())
            .map(|i| context.narrow(0, i, 1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = (0..ends.len())
            .map(|i| pooled.as_ref().map(|p| p.narrow(0, i, 1)).transpose())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(EncodedSchedule {
            ends,
            contexts,
            pooled,
            warnings,
        })
    }
}

/// One entry of a prompt's conditioning schedule, as [`Pipeline::prompt_conditioning`] returns it.
pub struct ScheduledContext {
    /// Used while the sampler step (from 0) is <= this.
    pub end_at_step: usize,
    /// `[1, 77 x chunks, dim]`.
    pub context: Tensor,
    /// SDXL: `[1, pooled]`.
    pub pooled: Option<Tensor>,
}

impl Pipeline {
    /// The conditioning schedule of one prompt over `steps` sampler calls (for tools and tests; generation
    /// calls this internally).
    pub fn prompt_conditioning(
        &self,
        prompt: &str,
        syntax: PromptSyntax,
        steps: usize,
        clip_skip: usize,
    ) -> Result<Vec<ScheduledContext>> {
        self.check_clip_skip(clip_skip)?;
        let s = self.encode_schedule(prompt, syntax, steps, clip_skip)?;
        Ok(s.ends
            .into_iter()
            .zip(s.contexts)
            .zip(s.pooled)
            .map(|((end_at_step, context), pooled)| ScheduledContext {
                end_at_step,
                context,
                pooled,
            })
            .collect())
    }
}
