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

/// Keys whose `null` means something other than "the default" (a UNet without a mid block).
const MEANINGFUL_NULLS: &[&str] = &["mid_block_type"];

/// Reads a diffusers/transformers model config. Released configs write `null` for "use the default"
/// (SDXL's `upcast_attention: null`), so nulls are dropped before serde fills in defaults, except where
/// `null` has its own meaning.
pub fn read_model_config<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> crate::Result<T> {
    let mut value: serde_json::Value = read_json(path)?;
    if let Some(map) = value.as_object_mut() {
        map.retain(|key, v| !v.is_null() || MEANINGFUL_NULLS.contains(&key.as_str()));
    }
    serde_json::from_value(value).map_err(|e| crate::CoreError::config(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_block_values_expand_or_refuse_a_wrong_length() {
        assert_eq!(PerBlock::One(8).expand(3), Some(vec![8, 8, 8]));
        assert_eq!(
            PerBlock::Each(vec![5, 10, 20]).expand(3),
            Some(vec![5, 10, 20])
        );
        assert_eq!(PerBlock::Each(vec![5, 10]).expand(3), None);
    }

    #[test]
    fn nulls_take_defaults_except_where_they_mean_something() {
        #[derive(serde::Deserialize)]
        struct Cfg {
            #[serde(default)]
            upcast_attention: bool,
            #[serde(default = "mid")]
            mid_block_type: Option<String>,
        }
        fn mid() -> Option<String> {
            Some("UNetMidBlock2DCrossAttn".into())
        }
        let dir = std::env::temp_dir().join(format!("sd-core-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"upcast_attention": null, "mid_block_type": null}"#,
        )
        .unwrap();
        let cfg: Cfg = read_model_config(&path).unwrap();
        assert!(!cfg.upcast_attention);
        assert_eq!(cfg.mid_block_type, None);
        std::fs::write(&path, r#"{"upcast_attention": null}"#).unwrap();
        let cfg: Cfg = read_model_config(&path).unwrap();
        assert_eq!(
            cfg.mid_block_type.as_deref(),
            Some("UNetMidBlock2DCrossAttn")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
