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

/// How a network's tensor is made from a tensor of a single-file checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TensorOp {
    /// As stored.
    #[default]
    Plain,
    /// Part `index` of `of` equal slices along dim 0 (OpenCLIP's fused `in_proj` q/k/v).
    Chunk { index: usize, of: usize },
    /// The 2-D transpose (OpenCLIP's `text_projection`, applied as `x @ P`).
    Transpose,
    /// A 1x1 convolution weight `[out, in, 1, 1]` as a linear weight `[out, in]` (LDM VAE attention).
    ToLinear,
}

/// Where a network's tensor comes from in a single-file checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub source: String,
    pub op: TensorOp,
}

impl TensorOp {
    fn apply(self, tensor: Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Plain => Ok(tensor),
            Self::Chunk { index, of } => {
                let rows = tensor.dim(0)?;
                if of == 0 || rows % of != 0 {
                    candle_core::bail!("cannot split {rows} rows into {of} equal parts");
                }
                tensor.narrow(0, index * rows / of, rows / of)?.contiguous()
            }
            Self::Transpose => tensor.t()?.contiguous(),
            Self::ToLinear => match tensor.dims() {
                [out, inp, 1, 1] => tensor.reshape((*out, *inp)),
                _ => Ok(tensor),
            },
        }
    }
}

/// The safetensors files of one component (`unet/`, `vae/`, `text_encoder/`...).
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// tensor name -> index into `files`
    index: HashMap<String, usize>,
    used: Mutex<BTreeSet<String>>,
    /// Names are looked up as `prefix + name` when the file's names carry a prefix the model code does not use.
    prefix: String,
    /// For one component of a single-file checkpoint: network name -> stored tensor (and the only names
    /// this component answers to). Empty for diffusers files, whose names are the network's.
    renames: HashMap<String, Mapped>,
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
            renames: HashMap::new(),
        })
    }

    /// One component of a single-file checkpoint: only the tensors in `renames` belong to it, under the
    /// network's names; the file stays memory-mapped and each tensor is converted when a network loads it.
    pub fn open_mapped(path: &Path, renames: HashMap<String, Mapped>) -> Result<Self> {
        let mut files = Self::open(&[path.to_path_buf()])?;
        let sources: BTreeSet<&str> = renames.values().map(|m| m.source.as_str()).collect();
        files
            .index
            .retain(|name, _| sources.contains(name.as_str()));
        if let Some(missing) = sources.iter().find(|s| !files.index.contains_key(**s)) {
            return Err(CoreError::file(
                path,
                format!("tensor `{missing}` is missing"),
            ));
        }
        files.renames = renames;
        Ok(files)
    }

    /// Looks names up under `prefix` (e.g. `text_model.`) when the files use it.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        if self.renames.is_empty() {
            self.index.contains_key(&self.full_name(name))
        } else {
            self.renames.contains_key(name)
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    /// Every tensor's name and shape, as stored.
    pub fn shapes(&self) -> std::collections::BTreeMap<String, Vec<usize>> {
        self.files
            .iter()
            .flat_map(|(_, st)| st.tensors())
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect()
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
        let (full, op) = if self.renames.is_empty() {
            (self.full_name(name), TensorOp::Plain)
        } else {
            match self.renames.get(name) {
                Some(m) => (m.source.clone(), m.op),
                None => (name.to_string(), TensorOp::Plain),
            }
        };
        let Some(&file_idx) = self
            .index
            .get(&full)
            .filter(|_| self.renames.is_empty() || self.renames.contains_key(name))
        else {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            candle_core::bail!("tensor `{full}` is missing from {}", files.join(", "));
        };
        let (path, st) = &self.files[file_idx];
        let tensor = st
            .load(&full, &Device::Cpu)
            .and_then(|t| op.apply(t))
            .map_err(|e| {
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
