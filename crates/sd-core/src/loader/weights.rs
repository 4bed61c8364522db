//! Memory-mapped safetensors weights of one model component (possibly sharded), behind candle's VarBuilder.
//!
//! Every lookup is checked against the file that holds the tensor, so a missing tensor or a wrong shape is
//! reported with the file and the tensor name. Lookups are recorded, which lets a test assert that a real
//! checkpoint's every tensor is consumed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{CoreError, Result};

/// The safetensors files of one component (`unet/`, `vae/`, `text_encoder/`...).
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// tensor name -> index into `files`
    index: HashMap<String, usize>,
    used: Mutex<BTreeSet<String>>,
    /// Names are looked up as `prefix + name` when the file's names carry a prefix the model code does not use.
    prefix: String,
}

impl WeightFiles {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for path in paths {
            // SAFETY: the file is mapped read-only; a checkpoint modified while the worker runs is outside
            // what we support, as in every mmap-based loader (safetensors, candle, diffusers).
            #[allow(unsafe_code)]
            let st = unsafe { MmapedSafetensors::new(path) }
                .map_err(|e| CoreError::file(path, format!("cannot read safetensors: {e}")))?;
            for (name, _) in st.tensors() {
                index.insert(name, files.len());
            }
            files.push((path.clone(), st));
        }
        Ok(Self {
            files,
            index,
            used: Mutex::new(BTreeSet::new()),
            prefix: String::new(),
        })
    }

    /// Looks names up under `prefix` (e.g. `text_model.`) when the files use it.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(&self.full_name(name))
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// Tensors in the files that no model code asked for.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut names: Vec<String> = self
            .index
            .keys()
            .filter(|n| !used.contains(*n))
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn full_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn load(
        &self,
        name: &str,
        shape: Option<&Shape>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let full = self.full_name(name);
        let Some(&file_idx) = self.index.get(&full) else {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            candle_core::bail!("tensor `{full}` is missing from {}", files.join(", "));
        };
        let (path, st) = &self.files[file_idx];
        let tensor = st.load(&full, &Device::Cpu).map_err(|e| {
            candle_core::Error::Msg(format!(
                "{}: tensor `{full}`: cannot load: {e}",
                path.display()
            ))
        })?;
        if let Some(shape) = shape {
            if tensor.shape() != shape {
                candle_core::bail!(
                    "{}: tensor `{full}` has shape {:?}, the config implies {:?}",
                    path.display(),
                    tensor.dims(),
                    shape.dims()
                );
            }
        }
        if let Ok(mut used) = self.used.lock() {
            used.insert(full.clone());
        }
        let tensor = tensor.to_dtype(dtype)?.to_device(device)?;
        crate::adapters::apply::record(&full, &tensor);
        Ok(tensor)
    }
}

/// candle's VarBuilder backend over shared [`WeightFiles`].
struct Backend(Arc<WeightFiles>);

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.load(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.load(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

pub fn var_builder(files: &Arc<WeightFiles>, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Backend(files.clone())), dtype, device.clone())
}
