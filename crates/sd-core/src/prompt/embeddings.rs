//! Textual-inversion embeddings (A1111's `modules/textual_inversion`): `.safetensors` files from embedding
//! folders, named by their file name without extension. Formats: A1111's (`emb_params`, or a
//! `string_to_param.*` tensor), a diffusers concept (one tensor), SDXL's (`clip_l` + `clip_g`). A prompt's
//! token sequence equal to an embedding name's tokens is replaced by its vectors, as A1111 does.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::{CoreError, Result};

/// One loaded embedding: `[vectors, width]` per text encoder (f32 on the CPU; cast where it is used).
#[derive(Clone, Debug)]
pub struct TextualInversion {
    pub name: String,
    pub path: PathBuf,
    /// Vectors for the first (or only) text encoder.
    pub first: Tensor,
    /// SDXL: vectors for the second text encoder (`clip_g`).
    pub second: Option<Tensor>,
}

impl TextualInversion {
    pub fn vectors(&self) -> usize {
        self.first.dims().first().copied().unwrap_or(0)
    }

    /// Width of all vectors together, as A1111 reports `shape` (768, 1024, or 768 + 1280 for SDXL).
    pub fn shape(&self) -> usize {
        let width = |t: &Tensor| t.dims().last().copied().unwrap_or(0);
        width(&self.first) + self.second.as_ref().map_or(0, width)
    }
}

/// What `GET /sdapi/v1/embeddings` lists for one embedding.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EmbeddingInfo {
    pub step: Option<u64>,
    pub sd_checkpoint: Option<String>,
    pub sd_checkpoint_name: Option<String>,
    pub shape: usize,
    pub vectors: usize,
}

/// The embeddings a model can use, and the files it could not (with why).
#[derive(Clone, Debug, Default)]
pub struct EmbeddingStore {
    pub loaded: Vec<TextualInversion>,
    pub skipped: Vec<SkippedEmbedding>,
}

#[derive(Clone, Debug)]
pub struct SkippedEmbedding {
    pub name: String,
    pub reason: String,
    /// Shape and vector count, when the file could be read (A1111 lists those under `skipped`).
    pub info: Option<EmbeddingInfo>,
}

/// What a server lists: A1111's `GET /sdapi/v1/embeddings` body (`{loaded: {name: info}, skipped: {...}}`),
/// plus why each skipped file was skipped.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EmbeddingListing {
    pub loaded: std::collections::BTreeMap<String, EmbeddingInfo>,
    pub skipped: std::collections::BTreeMap<String, EmbeddingInfo>,
    #[serde(skip)]
    pub reasons: std::collections::BTreeMap<String, String>,
}

fn as_2d(t: Tensor) -> Result<Tensor> {
    Ok(match t.rank() {
        1 => t.unsqueeze(0)?,
        2 => t,
        r => {
            let dims = t.dims().to_vec();
            let width = dims[r - 1];
            t.reshape(((), width))?
        }
    }
    .to_dtype(DType::F32)?)
}

/// Reads one embedding file (without checking its width against a model).
pub fn read_embedding(path: &Path) -> Result<TextualInversion> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| CoreError::file(path, format!("not a safetensors embedding: {e}")))?;
    let take = |key: &str| tensors.get(key).cloned();
    let (first, second) = if let (Some(l), Some(g)) = (take("clip_l"), take("clip_g")) {
        (as_2d(l)?, Some(as_2d(g)?))
    } else if let Some(t) = take("emb_params") {
        (as_2d(t)?, None)
    } else if let Some((_, t)) = tensors
        .iter()
        .find(|(k, _)| k.starts_with("string_to_param"))
    {
        (as_2d(t.clone())?, None)
    } else if tensors.len() == 1 {
        let t = tensors
            .values()
            .next()
            .cloned()
            .ok_or_else(|| CoreError::file(path, "embedding file holds no tensor"))?;
        (as_2d(t)?, None)
    } else {
        let mut keys: Vec<&String> = tensors.keys().collect();
        keys.sort();
        return Err(CoreError::file(
            path,
            format!(
                "not a textual-inversion embedding: expected `emb_params`, `string_to_param.*`, \
                 `clip_l`+`clip_g` or a single tensor, found {keys:?}"
            ),
        ));
    };
    Ok(TextualInversion {
        name,
        path: path.to_path_buf(),
        first,
        second,
    })
}

impl EmbeddingStore {
    /// Loads every `.safetensors` file in `dirs` (not recursing) whose widths fit encoders of `widths` (the
    /// first encoder's hidden size, and the second's for SDXL); the others are listed as skipped. A later
    /// folder's file replaces an earlier one of the same name. A missing folder is an error.
    pub fn load(dirs: &[PathBuf], widths: (usize, Option<usize>)) -> Result<Self> {
        let mut store = Self::default();
        for dir in dirs {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| CoreError::file(dir, format!("embeddings folder: {e}")))?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|x| x.eq_ignore_ascii_case("safetensors"))
                })
                .collect();
            paths.sort();
            for path in paths {
                let emb = match read_embedding(&path) {
                    Ok(emb) => emb,
                    Err(e) => {
                        tracing::warn!("skipping embedding: {e}");
                        let name = path.file_stem().unwrap_or_default().to_string_lossy();
                        store.skipped.retain(|s| s.name != name);
                        store.skipped.push(SkippedEmbedding {
                            name: name.to_string(),
                            reason: e.to_string(),
                            info: None,
                        });
                        continue;
                    }
                };
                let width = |t: &Tensor| t.dims().last().copied().unwrap_or(0);
                let fits = match (widths.1, &emb.second) {
                    (None, None) => width(&emb.first) == widths.0,
                    (Some(w2), Some(second)) => {
                        width(&emb.first) == widths.0
                            && width(second) == w2
                            && second.dims()[0] == emb.vectors()
                    }
                    _ => false,
                };
                store.loaded.retain(|e| e.name != emb.name);
                store.skipped.retain(|s| s.name != emb.name);
                if fits {
                    store.loaded.push(emb);
                } else {
                    store.skipped.push(SkippedEmbedding {
                        name: emb.name.clone(),
                        reason: format!("vectors of width {} do not fit this model", emb.shape()),
                        info: Some(info_of(&emb)),
                    });
                }
            }
        }
        store.loaded.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(store)
    }

    /// The listing servers show.
    pub fn listing(&self) -> EmbeddingListing {
        EmbeddingListing {
            loaded: self
                .loaded
                .iter()
                .map(|e| (e.name.clone(), info_of(e)))
                .collect(),
            skipped: self
                .skipped
                .iter()
                .filter_map(|s| s.info.clone().map(|i| (s.name.clone(), i)))
                .collect(),
            reasons: self
                .skipped
                .iter()
                .map(|s| (s.name.clone(), s.reason.clone()))
                .collect(),
        }
    }
}

fn info_of(e: &TextualInversion) -> EmbeddingInfo {
    EmbeddingInfo {
        step: None,
        sd_checkpoint: None,
        sd_checkpoint_name: None,
        shape: e.shape(),
        vectors: e.vectors(),
    }
}
