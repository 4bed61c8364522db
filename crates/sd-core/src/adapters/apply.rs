//! Applying LoRAs to a loaded model and taking them off again, without reloading it.
//!
//! While a network is built, every linear/convolution weight it keeps is recorded by name ([`capture`]);
//! those tensors share storage with the layers. A job's LoRAs are merged into the affected weights in place
//! (`W + sum(weight_i * delta_i)`, computed in f32) after saving a copy of each original, and the copies are
//! written back when a job asks for a different set, so the base model is restored bit for bit. Consecutive
//! jobs with the same LoRAs and weights reuse the merged weights. On a GPU the merged weights of the set last
//! taken off are kept too (one set), so jobs alternating between the base model and one LoRA set pay a copy, not
//! a merge: the merge is ~100 us per layer there, several percent of a 20-step job.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};

use super::lora::{layer_key, Component, LoraFile};
use crate::{CoreError, Result};

thread_local! {
    static CAPTURE: RefCell<Option<HashMap<String, Tensor>>> = const { RefCell::new(None) };
}

/// Runs `build` with weight recording on (this thread only) and returns what it recorded: the weights
/// (rank 2 and 4 tensors named `*.weight`) by their full name.
pub fn capture<T>(build: impl FnOnce() -> T) -> (T, HashMap<String, Tensor>) {
    let previous = CAPTURE.with(|c| c.replace(Some(HashMap::new())));
    let out = build();
    let recorded = CAPTURE.with(|c| c.replace(previous)).unwrap_or_default();
    (out, recorded)
}

/// Records the tensor a layer keeps as `name` (replacing an earlier record, e.g. when a layer's weight became
/// a view into a fused one). Does nothing unless [`capture`] is running on this thread.
pub fn record(name: &str, tensor: &Tensor) {
    if !name.ends_with(".weight") || !matches!(tensor.rank(), 2 | 4) {
        return;
    }
    CAPTURE.with(|c| {
        if let Some(map) = c.borrow_mut().as_mut() {
            map.insert(name.to_string(), tensor.clone());
        }
    });
}

/// A LoRA as one job asks for it.
#[derive(Clone)]
pub struct LoraUse {
    pub name: String,
    pub file: Arc<LoraFile>,
    pub te_weight: f64,
    pub unet_weight: f64,
}

/// What a job ran with: the LoRAs applied, and warnings (keys that matched no layer).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AppliedLoras {
    pub loras: Vec<AppliedLora>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AppliedLora {
    pub name: String,
    pub te_weight: f64,
    pub unet_weight: f64,
    #[serde(skip)]
    pub path: PathBuf,
}

struct Active {
    key: Vec<(PathBuf, u64, u64)>,
    /// (the layer's weight, its base value)
    saved: Vec<(Tensor, Tensor)>,
    /// The merged values, in the order of `saved`.
    merged: Vec<Tensor>,
    applied: AppliedLoras,
}

/// The model's LoRA-targetable weights and the LoRAs merged into them now.
#[derive(Default)]
pub struct LoraTargets {
    layers: HashMap<(Component, String), Tensor>,
    active: Mutex<Option<Active>>,
    /// The set last taken off, with its merged weights, when [`LoraTargets::keep_merged`] is on.
    parked: Mutex<Option<Active>>,
    keep_merged: bool,
}

impl LoraTargets {
    /// Adds a component's recorded weights (names as [`capture`] returned them).
    pub fn add(&mut self, component: Component, recorded: HashMap<String, Tensor>) {
        for (name, tensor) in recorded {
            let Some(layer) = name.strip_suffix(".weight") else {
                continue;
            };
            let key = layer_key(component, &layer.replace('.', "_"));
            self.layers.insert((component, key), tensor);
        }
    }

    /// Keeps the merged weights of the set last taken off, so returning to it is a copy (the pipeline turns
    /// this on for GPUs; on the CPU it would hold gigabytes of host memory to save a merge that is negligible
    /// next to a CPU job).
    pub fn keep_merged(&mut self, on: bool) {
        self.keep_merged = on;
    }

    /// Makes the model's weights those of the base model plus `loras` (none: the base model).
    pub fn set(&self, loras: &[LoraUse]) -> Result<AppliedLoras> {
        let key: Vec<(PathBuf, u64, u64)> = loras
            .iter()
            .map(|l| {
                (
                    l.file.path.clone(),
                    l.te_weight.to_bits(),
                    l.unet_weight.to_bits(),
                )
            })
            .collect();
        let mut active = self
            .active
            .lock()
            .map_err(|_| CoreError::InvalidInput("a LoRA job panicked earlier".into()))?;
        if let Some(a) = active.as_ref() {
            if a.key == key {
                return Ok(a.applied.clone());
            }
        }
        let mut parked = self
            .parked
            .lock()
            .map_err(|_| CoreError::InvalidInput("a LoRA job panicked earlier".into()))?;
        if let Some(a) = active.take() {
            restore(&a.saved)?;
            *parked = (self.keep_merged && a.merged.len() == a.saved.len()).then_some(a);
        }
        if loras.is_empty() {
            return Ok(AppliedLoras::default());
        }
        if parked.as_ref().is_some_and(|p| p.key == key) {
            if let Some(p) = parked.take() {
                for ((target, _), merged) in p.saved.iter().zip(&p.merged) {
                    target.slice_set(merged, 0, 0)?;
                }
                let applied = p.applied.clone();
                *active = Some(p);
                return Ok(applied);
            }
        }
        let (deltas, applied) = self.deltas(loras)?;
        let mut saved = Vec::with_capacity(deltas.len());
        let mut merged_all = Vec::with_capacity(deltas.len());
        let result = (|| -> Result<()> {
            for (target, delta) in deltas.values() {
                let original = target.copy()?;
                let merged = (target.to_dtype(DType::F32)? + delta)?
                    .to_dtype(target.dtype())?
                    .contiguous()?;
                saved.push((target.clone(), original));
                target.slice_set(&merged, 0, 0)?;
                if self.keep_merged {
                    merged_all.push(merged);
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            restore(&saved)?;
            return Err(e);
        }
        *active = Some(Active {
            key,
            saved,
            merged: merged_all,
            applied: applied.clone(),
        });
        Ok(applied)
    }

    /// The summed f32 delta per affected weight, or an error naming the keys of a LoRA none of whose
    /// modules match a layer.
    #[allow(clippy::type_complexity)]
    fn deltas(
        &self,
        loras: &[LoraUse],
    ) -> Result<(
        BTreeMap<(Component, String), (Tensor, Tensor)>,
        AppliedLoras,
    )> {
        let mut deltas: BTreeMap<(Component, String), (Tensor, Tensor)> = BTreeMap::new();
        let mut applied = AppliedLoras::default();
        for lora in loras {
            let mut unmatched: Vec<String> = lora.file.unknown_keys.clone();
            let mut matched = 0usize;
            for module in &lora.file.modules {
                let id = (module.component, module.layer.clone());
                let Some(target) = self.layers.get(&id) else {
                    unmatched.push(module.key.clone());
                    continue;
                };
                let weight = match module.component {
                    Component::Unet => lora.unet_weight,
                    _ => lora.te_weight,
                };
                matched += 1;
                if weight == 0.0 {
                    continue;
                }
                let delta = (module.delta(target.dims(), target.device())? * weight)?;
                match deltas.get_mut(&id) {
                    Some((_, sum)) => *sum = (&*sum + delta)?,
                    None => {
                        deltas.insert(id, (target.clone(), delta));
                    }
                }
            }
            if matched == 0 {
                return Err(CoreError::InvalidInput(format!(
                    "LoRA `{}` ({}) matches no layer of this model; its keys: {}",
                    lora.name,
                    lora.file.path.display(),
                    preview(&unmatched)
                )));
            }
            if !unmatched.is_empty() {
                let warning = format!(
                    "LoRA `{}`: {} key(s) matched no layer and were skipped: {}",
                    lora.name,
                    unmatched.len(),
                    preview(&unmatched)
                );
                tracing::warn!("{warning}");
                applied.warnings.push(warning);
            }
            applied.loras.push(AppliedLora {
                name: lora.name.clone(),
                te_weight: lora.te_weight,
                unet_weight: lora.unet_weight,
                path: lora.file.path.clone(),
            });
        }
        Ok((deltas, applied))
    }
}

fn restore(saved: &[(Tensor, Tensor)]) -> Result<()> {
    for (target, original) in saved {
        target.slice_set(original, 0, 0)?;
    }
    Ok(())
}

/// The first few names, then a count.
fn preview(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
