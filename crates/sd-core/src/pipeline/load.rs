//! Loading a pipeline: resolve the folder, read every config, build the networks on the chosen device/dtype,
//! and work out the model's family and defaults.

use std::path::Path;

use candle_core::{DType, Device};

use super::preview::LatentPreviewer;
use super::sources;
use super::{DTypeSpec, LoadOptions, ModelInfo, Pipeline};
use crate::adapters::apply::capture;
use crate::adapters::{Component, LoraLibrary, LoraTargets};
use crate::loader::components::{build_text_encoder, build_unet, build_vae};
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::unet::{UNet, UNetConfig};
use crate::models::vae::AutoencoderKl;
use crate::models::Family;
use crate::schedulers::SamplerKind;
use crate::tokenizer::ClipTokenizer;
use crate::Result;

impl Pipeline {
    /// Loads a diffusers folder, a hub id (`org/name`, from the hub cache or, with a network, the hub) or a
    /// single-file `.safetensors` checkpoint.
    pub fn load(model: &str, options: &LoadOptions) -> Result<Self> {
        let device = options.device.open()?;
        let kernels = options.kernels();
        let dtype = options.dtype.dtype();
        if device.is_cpu() && options.dtype != DTypeSpec::F32 {
            tracing::warn!("half precision on the CPU is slow and imprecise; f32 is recommended");
        }
        let path = Path::new(model);
        let checkpoint_ext = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ["safetensors", "ckpt", "pt", "pth", "bin"].contains(&e.to_ascii_lowercase().as_str())
        });
        if checkpoint_ext && !path.exists() {
            return Err(crate::CoreError::file(path, "no such checkpoint file"));
        }
        let parts = if path.is_file() {
            sources::from_single_file(path, options)?
        } else {
            sources::from_folder(model, options)?
        };
        let te = parts.text_encoder;
        let te_config = te.config.clone();
        let mut lora_targets = LoraTargets::default();
        let (text_encoder, recorded) =
            capture(|| build_text_encoder(&te.config, &te.config_path, te.weights, dtype, &device));
        let text_encoder = text_encoder?;
        lora_targets.add(Component::TextEncoder, recorded);
        let second = match parts.second {
            Some((tokenizer_2, te2)) => {
                let (encoder_2, recorded) = capture(|| {
                    build_text_encoder(&te2.config, &te2.config_path, te2.weights, dtype, &device)
                });
                lora_targets.add(Component::TextEncoder2, recorded);
                Some((tokenizer_2, encoder_2?))
            }
            None => None,
        };
        let unet_config = parts.unet.config.clone();
        let (unet, recorded) = capture(|| {
            build_unet(
                parts.unet.config,
                &parts.unet.config_path,
                parts.unet.weights,
                dtype,
                &device,
                kernels,
            )
        });
        let unet = unet?;
        lora_targets.add(Component::Unet, recorded);
        lora_targets.keep_merged(!device.is_cpu());
        let family = parts
            .family
            .unwrap_or_else(|| detect_family(&te_config, &unet_config));
        let vae_part = sources::open_vae(parts.vae, family, options)?;
        let vae_config = vae_part.config.clone();
        // As diffusers: only the SDXL pipelines honour `force_upcast` (SD 1.x/2.x decode in the model's dtype,
        // although their configs leave `force_upcast` at its default of true).
        let vae_dtype = if family == Family::Sdxl && vae_config.force_upcast && dtype == DType::F16
        {
            DType::F32
        } else {
            dtype
        };
        let vae = build_vae(
            vae_part.config,
            &vae_part.config_path,
            vae_part.weights,
            vae_dtype,
            &device,
            kernels,
        )?;
        let tokenizer = parts.tokenizer;
        let scheduler_config = parts.scheduler;
        let default_sampler = SamplerKind::default_for(&scheduler_config);

        let force_zeros_for_empty_prompt = parts
            .force_zeros_for_empty_prompt
            .unwrap_or(family == Family::Sdxl);
        let turbo = scheduler_config.timestep_spacing.as_deref() == Some("trailing");
        let size_multiple = vae_config.downscale_factor();
        let default_side = unet_config
            .sample_size
            .map(|s| s * size_multiple)
            .unwrap_or(512);
        let info = ModelInfo {
            model: parts.reference.clone(),
            family,
            prediction_type: scheduler_config.prediction()?,
            device: options.device.to_string(),
            dtype: options.dtype,
            default_width: default_side,
            default_height: default_side,
            // Turbo/distilled models (trailing timestep spacing) are meant for 1-4 steps without guidance.
            default_steps: if turbo { 1 } else { 20 },
            default_guidance: if turbo { 0.0 } else { 7.5 },
            default_sampler,
            size_multiple,
            inpainting: unet_config.in_channels == 9,
            embeddings: Default::default(),
        };
        // Loading leaves freed staging memory in the pool (the separate q/k/v weights that were concatenated,
        // f32 copies of half weights): hand it back so it does not count towards the process for good.
        crate::device::release_cached_memory(&device)?;
        tracing::info!(model = %info.model, family = %family, device = %info.device, dtype = %info.dtype, "model loaded");
        let embeddings = crate::prompt::EmbeddingStore::load(
            &options.embedding_dirs,
            (
                text_encoder.model.hidden_size(),
                second.as_ref().map(|(_, e)| e.model.hidden_size()),
            ),
        )?;
        if !options.embedding_dirs.is_empty() {
            tracing::info!(
                loaded = embeddings.loaded.len(),
                skipped = embeddings.skipped.len(),
                "textual-inversion embeddings"
            );
        }
        let mut info = info;
        info.embeddings = embeddings.listing();
        Ok(Self {
            embeddings,
            previewer: LatentPreviewer::for_family(family, vae_config.latent_channels),
            weights: [
                Some(("text_encoder".to_string(), text_encoder.weights)),
                second
                    .as_ref()
                    .map(|(_, e)| ("text_encoder_2".to_string(), e.weights.clone())),
                Some(("unet".into(), unet.weights)),
                Some(("vae".into(), vae.weights)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            second_text: second.map(|(t, e)| (t, e.model)),
            lora_targets,
            lora_library: LoraLibrary::default(),
            force_zeros_for_empty_prompt,
            root: parts.root,
            device,
            dtype,
            vae_dtype,
            vae_tiling: options.vae_tiling,
            vae_memory_budget: options.vae_memory_budget,
            tokenizer,
            text_encoder: text_encoder.model,
            unet: unet.model,
            vae: vae.model,
            scheduler_config,
            default_sampler,
            info,
        })
    }

    /// The dtype the VAE runs in: the model's, or f32 for an SDXL VAE whose config asks for `force_upcast`.
    pub fn vae_dtype(&self) -> DType {
        self.vae_dtype
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn unet(&self) -> &UNet {
        &self.unet
    }

    pub fn vae(&self) -> &AutoencoderKl {
        &self.vae
    }

    pub fn text_encoder(&self) -> &ClipTextModel {
        &self.text_encoder
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The textual-inversion embeddings loaded from the embedding folders.
    pub fn embeddings(&self) -> &crate::prompt::EmbeddingStore {
        &self.embeddings
    }

    /// Re-reads the embedding folders (A1111's `refresh-embeddings`).
    pub fn reload_embeddings(&mut self, dirs: &[std::path::PathBuf]) -> Result<()> {
        let widths = (
            self.text_encoder.hidden_size(),
            self.second_text.as_ref().map(|(_, e)| e.hidden_size()),
        );
        self.embeddings = crate::prompt::EmbeddingStore::load(dirs, widths)?;
        self.info.embeddings = self.embeddings.listing();
        Ok(())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Tensors present in the weight files that the networks did not consume, per component.
    pub fn unused_tensors(&self) -> Vec<(String, Vec<String>)> {
        self.weights
            .iter()
            .map(|(name, w)| (name.clone(), w.unused()))
            .filter(|(_, u)| !u.is_empty())
            .collect()
    }
}

/// The family, from what the configs say the networks are (not from names).
fn detect_family(te: &ClipTextConfig, unet: &UNetConfig) -> Family {
    if unet.addition_embed_type.as_deref() == Some("text_time") {
        Family::Sdxl
    } else if te.hidden_act == "gelu" {
        // OpenCLIP ViT-H text encoders (SD 2.x) use exact GELU; OpenAI CLIP ViT-L (SD 1.x) uses quick GELU.
        Family::Sd2
    } else {
        Family::Sd1
    }
}
