//! Reading a LoRA file: kohya/A1111 (`lora_unet_*`, `lora_te_*`, `lora_te1_*`/`lora_te2_*` with
//! `lora_down`/`lora_up`/`alpha`, LoCon/LyCORIS convolutions with `lora_mid`), diffusers/PEFT
//! (`unet.`/`text_encoder.`/`text_encoder_2.` + `lora_A`/`lora_B`, or the older `lora.down`/`lora.up`).
//! Each module becomes a target (component + layer name in underscore form, as kohya writes it) and the
//! factors of its delta `(alpha / rank) * up @ down`; matching to the model's layers happens in `apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::{CoreError, Result};

/// Which network a LoRA module changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    Unet,
    /// The first (or only) text encoder.
    TextEncoder,
    /// SDXL's second text encoder (OpenCLIP bigG).
    TextEncoder2,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unet => "unet",
            Self::TextEncoder => "text_encoder",
            Self::TextEncoder2 => "text_encoder_2",
        }
    }
}

/// One low-rank module: `delta = scale * up @ (mid) @ down`, reshaped to the layer's weight.
#[derive(Debug)]
pub struct LoraModule {
    /// The key prefix in the file, for messages.
    pub key: String,
    pub component: Component,
    /// The layer's name with dots as underscores, without a text encoder's `text_model_` prefix.
    pub layer: String,
    /// `[out, rank]` or `[out, rank, 1, 1]`, f32 on the CPU.
    pub up: Tensor,
    /// `[rank, in]` or `[rank, in, kh, kw]` (`[rank, in, 1, 1]` with `mid`).
    pub down: Tensor,
    /// LyCORIS CP decomposition: `[rank, rank, kh, kw]`.
    pub mid: Option<Tensor>,
    /// `alpha / rank` (1 when the file has no alpha).
    pub scale: f64,
}

/// A parsed LoRA file.
#[derive(Debug)]
pub struct LoraFile {
    pub path: PathBuf,
    pub modules: Vec<LoraModule>,
    /// Keys no module format explains (reported with the unmatched layers).
    pub unknown_keys: Vec<String>,
}

#[derive(Default)]
struct Parts {
    up: Option<Tensor>,
    down: Option<Tensor>,
    mid: Option<Tensor>,
    alpha: Option<f64>,
}

/// Splits a key into (module prefix, role).
fn role_of(key: &str) -> Option<(&str, &'static str)> {
    const SUFFIXES: [(&str, &str); 9] = [
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
        (".lora_mid.weight", "mid"),
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".lora.down.weight", "down"),
        (".lora.up.weight", "up"),
        (".alpha", "alpha"),
        (".lora_A.alpha", "alpha"),
    ];
    SUFFIXES
        .iter()
        .find_map(|(suffix, role)| key.strip_suffix(suffix).map(|base| (base, *role)))
}

/// The component and underscore-form layer name of a module prefix.
fn target_of(base: &str) -> Option<(Component, String)> {
    const PREFIXES: [(&str, Component); 7] = [
        ("lora_unet_", Component::Unet),
        ("lora_te1_", Component::TextEncoder),
        ("lora_te2_", Component::TextEncoder2),
        ("lora_te_", Component::TextEncoder),
        ("unet.", Component::Unet),
        ("text_encoder_2.", Component::TextEncoder2),
        ("text_encoder.", Component::TextEncoder),
    ];
    let (rest, component) = PREFIXES
        .iter()
        .find_map(|(p, c)| base.strip_prefix(p).map(|rest| (rest, *c)))?;
    let underscored = rest.replace('.', "_");
    // SDXL LoRAs name UNet modules after the original checkpoint's blocks.
    let underscored = match component {
        Component::Unet => super::ldm_names::ldm_to_diffusers(&underscored).unwrap_or(underscored),
        _ => underscored,
    };
    Some((component, layer_key(component, &underscored)))
}

/// The form both sides are compared in: underscores, and no `text_model_` prefix for text encoders (the
/// checkpoint's names may or may not carry it).
pub(crate) fn layer_key(component: Component, underscored: &str) -> String {
    match component {
        Component::Unet => underscored.to_string(),
        _ => underscored
            .strip_prefix("text_model_")
            .unwrap_or(underscored)
            .to_string(),
    }
}

impl LoraFile {
    /// Reads every tensor of a `.safetensors` LoRA (as f32 on the CPU) and groups them into modules.
    pub fn read(path: &Path) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| CoreError::file(path, format!("cannot read LoRA safetensors: {e}")))?;
        let mut groups: BTreeMap<String, Parts> = BTreeMap::new();
        let mut unknown_keys = Vec::new();
        for (key, tensor) in tensors {
            let Some((base, role)) = role_of(&key) else {
                unknown_keys.push(key);
                continue;
            };
            let tensor = tensor.to_dtype(DType::F32)?;
            let parts = groups.entry(base.to_string()).or_default();
            match role {
                "up" => parts.up = Some(tensor),
                "down" => parts.down = Some(tensor),
                "mid" => parts.mid = Some(tensor),
                _ => {
                    let v = tensor.flatten_all()?.to_vec1::<f32>()?;
                    parts.alpha = v.first().map(|&a| f64::from(a));
                }
            }
        }
        let mut modules = Vec::new();
        for (base, parts) in groups {
            let (Some(up), Some(down)) = (parts.up, parts.down) else {
                unknown_keys.push(format!("{base} (needs both up and down weights)"));
                continue;
            };
            let Some((component, layer)) = target_of(&base) else {
                unknown_keys.push(base);
                continue;
            };
            let rank = down.dim(0)?;
            if up.dims().get(1) != Some(&rank) {
                return Err(CoreError::file(
                    path,
                    format!(
                        "LoRA module `{base}`: up {:?} and down {:?} disagree on the rank",
                        up.dims(),
                        down.dims()
                    ),
                ));
            }
            let scale = parts.alpha.map_or(1.0, |alpha| alpha / rank as f64);
            modules.push(LoraModule {
                key: base,
                component,
                layer,
                up,
                down,
                mid: parts.mid,
                scale,
            });
        }
        unknown_keys.sort();
        Ok(Self {
            path: path.to_path_buf(),
            modules,
            unknown_keys,
        })
    }
}

impl LoraModule {
    /// `scale * up @ down` (CP-decomposed through `mid` for LyCORIS), f32, in the shape `target` has
    /// (a 1x1 convolution and a linear layer take each other's deltas, as in A1111).
    pub fn delta(&self, target: &[usize], device: &Device) -> Result<Tensor> {
        let up = self.up.to_device(device)?;
        let down = self.down.to_device(device)?;
        let out = up.dim(0)?;
        let rank = down.dim(0)?;
        let up = up.reshape((out, rank))?;
        let delta = match &self.mid {
            Some(mid) => {
                // A1111's rebuild_cp_decomposition: einsum('n m k l, i n, m j -> i j k l', mid, up, down).
                let (_, _, kh, kw) = mid.dims4()?;
                let down = down.reshape((rank, ()))?;
                let inp = down.dim(1)?;
                let mid = mid.to_device(device)?.permute((2, 3, 0, 1))?.contiguous()?;
                let prod = up
                    .broadcast_left((kh, kw))?
                    .contiguous()?
                    .matmul(&mid)?
                    .matmul(&down.broadcast_left((kh, kw))?.contiguous()?)?;
                prod.permute((2, 3, 0, 1))?
                    .contiguous()?
                    .reshape((out, inp, kh, kw))?
            }
            None => {
                let down_dims = down.dims().to_vec();
                let d = up.matmul(&down.reshape((rank, ()))?)?;
                let mut shape = vec![out];
                shape.extend_from_slice(&down_dims[1..]);
                d.reshape(shape)?
            }
        };
        let numel: usize = target.iter().product();
        if delta.elem_count() != numel {
            return Err(CoreError::InvalidInput(format!(
                "LoRA module `{}` makes a {:?} change for a {:?} layer (a LoRA for another model \
                 architecture?)",
                self.key,
                delta.dims(),
                target
            )));
        }
        Ok((delta.reshape(target)? * self.scale)?)
    }
}
