//! A run's LoRAs: the prompt's `<lora:NAME:WEIGHT>` tags are taken out of the text (before any prompt
//! parsing or encoding, as A1111 does), their files found in the pipeline's [`LoraLibrary`] and merged into
//! the weights for the run; a run without tags gets the base model back, bit for bit.

use std::borrow::Cow;

use super::{GenerateRequest, Pipeline};
use crate::adapters::{extract_lora_tags, AppliedLoras, LoraLibrary, LoraUse};
use crate::{CoreError, Result};

impl Pipeline {
    /// Where `<lora:NAME>` finds `NAME.safetensors` (the `--lora-dir` folders).
    pub fn set_lora_library(&mut self, library: LoraLibrary) {
        self.lora_library = library;
    }

    /// Whether the merged weights of the LoRA set last taken off are kept, so going back to it is a copy, not
    /// a merge (on by default on GPUs, off on the CPU where it would cost host memory for little).
    pub fn keep_merged_loras(&mut self, on: bool) {
        self.lora_targets.keep_merged(on);
    }

    pub fn lora_library(&self) -> &LoraLibrary {
        &self.lora_library
    }

    /// The request with its prompt's LoRA tags removed, after applying those LoRAs (or none).
    pub(super) fn prepare_loras<'a>(
        &self,
        req: &'a GenerateRequest,
    ) -> Result<(Cow<'a, GenerateRequest>, AppliedLoras)> {
        let (text, tags) =
            extract_lora_tags(&req.prompt).map_err(|e| CoreError::InvalidInput(e.to_string()))?;
        let mut uses = Vec::with_capacity(tags.len());
        for tag in tags {
            // The same LoRA named twice counts once with the weights added, as A1111 lists it once.
            if let Some(u) = uses.iter_mut().find(|u: &&mut LoraUse| u.name == tag.name) {
                u.te_weight += tag.te_weight;
                u.unet_weight += tag.unet_weight;
                continue;
            }
            uses.push(LoraUse {
                file: self.lora_library.load(&tag.name)?,
                name: tag.name,
                te_weight: tag.te_weight,
                unet_weight: tag.unet_weight,
            });
        }
        let applied = self.lora_targets.set(&uses)?;
        if uses.is_empty() {
            return Ok((Cow::Borrowed(req), applied));
        }
        let mut stripped = req.clone();
        stripped.prompt = text;
        Ok((Cow::Owned(stripped), applied))
    }
}
