//! Single-file checkpoints (A1111 / Civitai / ComfyUI `.safetensors` in the original LDM layout): refusing
//! pickles, recognising the architecture from the tensors, and handing each network its part of the file under
//! diffusers names (see [`keys`]) with configs built into the binary (see [`configs`]).
//!
//! Nothing is copied at open: the file is memory-mapped and only its header is read. Each network then loads
//! its tensors one by one through a renaming view of the map, converting each (split, transpose, reshape,
//! dtype) as it goes, so loading needs no more host memory than the networks themselves.

pub mod configs;
pub mod keys;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;

use self::configs::Shapes;
use self::keys::NameMap;
use crate::loader::weights::WeightFiles;
use crate::{CoreError, Result};

pub use crate::models::Family;

/// `epsilon` or `v_prediction`, as users write it.
pub fn parse_prediction_type(text: &str) -> Result<String> {
    match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "epsilon" | "eps" => Ok("epsilon".into()),
        "v_prediction" | "v" => Ok("v_prediction".into()),
        _ => Err(CoreError::InvalidInput(format!(
            "prediction type `{text}`: use epsilon or v_prediction"
        ))),
    }
}

/// Pickle-based PyTorch formats: loading them runs arbitrary code, so they are refused, never unpickled.
const PICKLE_EXTENSIONS: [&str; 5] = ["ckpt", "pt", "pth", "bin", "pkl"];

/// Refuses pickles by extension or content (zip archives and raw pickles).
pub fn refuse_pickle(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mut head = [0u8; 2];
    let magic = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map(|n| n == 2 && (head == *b"PK" || head[0] == 0x80))
        .unwrap_or(false);
    if PICKLE_EXTENSIONS.contains(&ext.as_str()) || magic {
        return Err(CoreError::file(
            path,
            "is a PyTorch pickle (.ckpt/.pt/.pth/.bin): loading one can run arbitrary code, so sd-worker \
             never unpickles. Convert it once to safetensors in a trusted environment, e.g. \
             `python -c \"import torch, safetensors.torch as st; sd = torch.load('model.ckpt', \
             map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); \
             st.save_file({k: v.contiguous() for k, v in sd.items() if hasattr(v, 'contiguous')}, \
             'model.safetensors')\"`, or download the .safetensors release",
        ));
    }
    Ok(())
}

/// Whether `path` names a single checkpoint file (rather than a diffusers folder or a hub id).
pub fn is_single_file(path: &Path) -> bool {
    path.is_file()
}

/// Prefixes of each part of an LDM checkpoint.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
const SD1_TEXT: &str = "cond_stage_model.transformer.";
const SD2_TEXT: &str = "cond_stage_model.model.";
const XL_TEXT_1: &str = "conditioner.embedders.0.transformer.";
const XL_TEXT_2: &str = "conditioner.embedders.1.model.";

/// An opened single-file checkpoint: its header, what it is, and how its parts map.
pub struct Checkpoint {
    pub path: PathBuf,
    pub family: Family,
    /// The family came from `--family`, not from the tensors.
    pub family_overridden: bool,
    pub shapes: Shapes,
}

/// One network's part of a checkpoint: its weights under diffusers names and the shapes they will have.
pub struct Part {
    pub weights: Arc<WeightFiles>,
    pub shapes: HashMap<String, Vec<usize>>,
}

impl Checkpoint {
    /// Reads the header of `path` and recognises the architecture (or takes `family`).
    pub fn open(path: &Path, family: Option<Family>) -> Result<Self> {
        refuse_pickle(path)?;
        // SAFETY: read-only map of a file we do not modify; see `WeightFiles::open`.
        #[allow(unsafe_code)]
        let st = unsafe { MmapedSafetensors::new(path) }
            .map_err(|e| CoreError::file(path, format!("not a readable safetensors file: {e}")))?;
        let shapes: Shapes = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect();
        Self::from_shapes(path, shapes, family)
    }

    /// A checkpoint from its tensor names and shapes (`open` reads them from the file's header).
    pub fn from_shapes(path: &Path, shapes: Shapes, family: Option<Family>) -> Result<Self> {
        let (family, overridden) = match family {
            Some(f) => (f, true),
            None => (
                detect(&shapes).map_err(|e| CoreError::file(path, e))?,
                false,
            ),
        };
        if !shapes.keys().any(|k| k.starts_with(UNET_PREFIX)) {
            return Err(CoreError::file(
                path,
                format!(
                    "has no UNet (`{UNET_PREFIX}*`); a single file must hold at least the UNet{}",
                    if shapes.keys().any(|k| k.starts_with("encoder.")) {
                        " (this looks like a VAE: pass it with --vae)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            family,
            family_overridden: overridden,
            shapes,
        })
    }

    fn key_list(&self) -> Vec<&str> {
        self.shapes.keys().map(String::as_str).collect()
    }

    fn part(&self, map: NameMap) -> Result<Part> {
        let shapes = self.mapped_shapes(&map);
        let weights = WeightFiles::open_mapped(&self.path, map.into_iter().collect())?;
        Ok(Part {
            weights: Arc::new(weights),
            shapes,
        })
    }

    fn fail(&self, e: String) -> CoreError {
        CoreError::file(&self.path, e)
    }

    pub fn unet_map(&self) -> Result<NameMap> {
        keys::unet_map(&self.key_list(), UNET_PREFIX).map_err(|e| self.fail(e))
    }

    pub fn unet(&self) -> Result<Part> {
        self.part(self.unet_map()?)
    }

    /// Network name -> shape it will have, for a map of this file.
    pub fn mapped_shapes(&self, map: &NameMap) -> HashMap<String, Vec<usize>> {
        map.iter()
            .filter_map(|(name, m)| {
                let stored = self.shapes.get(&m.source)?;
                Some((name.clone(), mapped_shape(stored, m.op)))
            })
            .collect()
    }

    /// The VAE, when the file has one.
    pub fn vae(&self) -> Result<Option<Part>> {
        self.vae_map()?.map(|map| self.part(map)).transpose()
    }

    pub fn vae_map(&self) -> Result<Option<NameMap>> {
        if !self.shapes.keys().any(|k| k.starts_with(VAE_PREFIX)) {
            return Ok(None);
        }
        keys::vae_map(&self.key_list(), VAE_PREFIX)
            .map(Some)
            .map_err(|e| self.fail(e))
    }

    /// The first text encoder (SD 1.x CLIP ViT-L, SD 2.x OpenCLIP ViT-H, SDXL's CLIP ViT-L) and its layer
    /// count, when the file has it.
    pub fn text_encoder(&self) -> Result<Option<(Part, usize)>> {
        match self.text_map()? {
            Some((map, layers)) => Ok(Some((self.part(map)?, layers))),
            None => Ok(None),
        }
    }

    /// The first text encoder's names and layer count (see [`Self::text_encoder`]).
    pub fn text_map(&self) -> Result<Option<(NameMap, usize)>> {
        let keys = self.key_list();
        let (prefix, open_clip) = match self.family {
            Family::Sd1 => (SD1_TEXT, false),
            Family::Sd2 => (SD2_TEXT, true),
            Family::Sdxl => (XL_TEXT_1, false),
        };
        if !keys.iter().any(|k| k.starts_with(prefix)) {
            return Ok(None);
        }
        if open_clip {
            // SD 2.x conditions on OpenCLIP's penultimate layer: diffusers' configs drop the last block.
            let layers = keys::open_clip_layers(&keys, prefix).saturating_sub(1);
            let mut map = keys::open_clip_map(&keys, prefix).map_err(|e| self.fail(e))?;
            // ... and has no projection (diffusers' CLIPTextModel): the file's stays unused.
            map.remove("text_projection.weight");
            return Ok(Some((map, layers)));
        }
        let map = keys::clip_map(&keys, prefix);
        let layers = count_layers(&map);
        Ok(Some((map, layers)))
    }

    /// SDXL's OpenCLIP ViT-bigG encoder (with its projection), when the file has it.
    pub fn text_encoder_2(&self) -> Result<Option<(Part, usize)>> {
        match self.text_map_2()? {
            Some((map, layers)) => Ok(Some((self.part(map)?, layers))),
            None => Ok(None),
        }
    }

    pub fn text_map_2(&self) -> Result<Option<(NameMap, usize)>> {
        let keys = self.key_list();
        if self.family != Family::Sdxl || !keys.iter().any(|k| k.starts_with(XL_TEXT_2)) {
            return Ok(None);
        }
        let layers = keys::open_clip_layers(&keys, XL_TEXT_2);
        let map = keys::open_clip_map(&keys, XL_TEXT_2).map_err(|e| self.fail(e))?;
        Ok(Some((map, layers)))
    }

    /// The prediction type the weights suggest. A file may say so itself (a `v_pred` marker tensor, as
    /// ComfyUI reads it); otherwise only SD 2.x 768-v models are told apart, with ComfyUI's test: the std of the
    /// last output block's first `norm1.bias` exceeds 0.09 in v-prediction models (SD 2.x inpainting models are
    /// epsilon). Everything else is epsilon.
    pub fn detected_prediction_type(&self) -> Result<&'static str> {
        if self.shapes.contains_key("v_pred") {
            return Ok("v_prediction");
        }
        if self.family != Family::Sd2 || self.unet_in_channels() != Some(4) {
            return Ok("epsilon");
        }
        let probe = self
            .shapes
            .keys()
            .filter(|k| {
                k.starts_with(&format!("{UNET_PREFIX}output_blocks."))
                    && k.ends_with(".1.transformer_blocks.0.norm1.bias")
            })
            .max_by_key(|k| {
                k.strip_prefix(&format!("{UNET_PREFIX}output_blocks."))
                    .and_then(|r| r.split('.').next()?.parse::<usize>().ok())
            });
        let Some(probe) = probe else {
            return Ok("epsilon");
        };
        #[allow(unsafe_code)]
        let st = unsafe { MmapedSafetensors::new(&self.path) }
            .map_err(|e| CoreError::file(&self.path, e.to_string()))?;
        let values: Vec<f32> = st
            .load(probe, &candle_core::Device::Cpu)
            .and_then(|t| {
                t.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1()
            })
            .map_err(|e| CoreError::file(&self.path, format!("tensor `{probe}`: {e}")))?;
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Ok(if var.sqrt() > 0.09 {
            "v_prediction"
        } else {
            "epsilon"
        })
    }

    pub fn unet_in_channels(&self) -> Option<usize> {
        self.shapes
            .get(&format!("{UNET_PREFIX}input_blocks.0.0.weight"))
            .and_then(|s| s.get(1).copied())
    }
}

fn count_layers(map: &NameMap) -> usize {
    map.keys()
        .filter_map(|k| {
            k.strip_prefix("text_model.encoder.layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

fn mapped_shape(stored: &[usize], op: crate::loader::weights::TensorOp) -> Vec<usize> {
    use crate::loader::weights::TensorOp;
    match (op, stored) {
        (TensorOp::Plain, s) => s.to_vec(),
        (TensorOp::Chunk { of, .. }, [rows, rest @ ..]) => {
            let mut s = vec![rows / of.max(1)];
            s.extend_from_slice(rest);
            s
        }
        (TensorOp::Transpose, [a, b]) => vec![*b, *a],
        (TensorOp::ToLinear, [o, i, 1, 1]) => vec![*o, *i],
        (_, s) => s.to_vec(),
    }
}

/// Recognises the family from key families first (which text encoders the file holds, SDXL's `label_emb`),
/// then from the UNet's cross-attention width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL) for files without
/// text encoders.
pub fn detect(shapes: &Shapes) -> std::result::Result<Family, String> {
    let has = |prefix: &str| shapes.keys().any(|k| k.starts_with(prefix));
    if !has(UNET_PREFIX) {
        let hint = if has("down_blocks.") || has("unet.") {
            "; this looks like a diffusers-layout file: pass its diffusers folder instead"
        } else if has("double_blocks.")
            || has("joint_blocks.")
            || has("model.diffusion_model.joint_blocks.")
        {
            "; FLUX/SD3 checkpoints are not supported"
        } else if has("encoder.down.") || has("encoder.down_blocks.") {
            "; this looks like a VAE: pass it with --vae"
        } else {
            ""
        };
        return Err(format!(
            "not a Stable Diffusion checkpoint: no `{UNET_PREFIX}*` tensors{hint}"
        ));
    }
    if has("conditioner.embedders.0.model.") {
        return Err("an SDXL refiner checkpoint (OpenCLIP-only conditioner): not supported".into());
    }
    let label = has(&format!("{UNET_PREFIX}label_emb."));
    if label && (has(XL_TEXT_2) || has(XL_TEXT_1)) {
        return Ok(Family::Sdxl);
    }
    if has(SD2_TEXT) {
        return Ok(Family::Sd2);
    }
    if has(SD1_TEXT) {
        return Ok(Family::Sd1);
    }
    let context = shapes
        .iter()
        .find(|(k, _)| k.starts_with(UNET_PREFIX) && k.ends_with("attn2.to_k.weight"))
        .and_then(|(_, s)| s.get(1).copied());
    match (context, label) {
        (Some(2048), true) => Ok(Family::Sdxl),
        (Some(768), false) => Ok(Family::Sd1),
        (Some(1024), false) => Ok(Family::Sd2),
        (context, label) => Err(format!(
            "unrecognised UNet: cross-attention width {} and {} (expected 768 for SD 1.x, 1024 for SD 2.x, \
             2048 with `label_emb` for SDXL); name the family with --family sd1|sd2|sdxl",
            context.map_or("unknown".into(), |c| c.to_string()),
            if label { "a `label_emb`" } else { "no `label_emb`" }
        )),
    }
}
