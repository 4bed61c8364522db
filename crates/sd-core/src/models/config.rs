//! Helpers for diffusers config values that may be a scalar or a per-block list.

use serde::Deserialize;

/// A config value given once for all blocks or once per block (`attention_head_dim: 8` vs `[5, 10, 20, 20]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    /// The value for every one of `n` blocks; `None` when a list has the wrong length.
    pub fn expand(&self, n: usize) -> Option<Vec<T>> {
        match self {
            Self::One(v) => Some(vec![v.clone(); n]),
            Self::Each(vs) if vs.len() == n => Some(vs.clone()),
            Self::Each(_) => None,
        }
    }
}

/// Reads a JSON config file into `T`, naming the file in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> crate::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::CoreError::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| crate::CoreError::config(path, e.to_string()))
}
