//! Reads a tokenizer folder's tokenizer_config.json / special_tokens_map.json the way transformers 5 does for
//! `CLIPTokenizer`: which strings are special tokens, whether each is matched before or after normalization,
//! and the model's maximum length.
//!
//! The precedence mirrors `PreTrainedTokenizerBase.from_pretrained`: CLIPTokenizer's defaults, overridden by
//! tokenizer_config.json's keys, overridden by special_tokens_map.json's keys (read only when the config has no
//! `added_tokens_decoder`). A special token given as a plain string is matched on the raw text
//! (`normalized: false`); an `{"content": ...}` object keeps its `normalized` flag; an entry of
//! `added_tokens_decoder` with the same content overrides both. When two named tokens share a content
//! (eos, unk and pad are often all `<|endoftext|>`), the later one in bos, eos, unk, sep, pad, cls, mask order
//! decides the flag, as `tokenizers` keeps the last registration.

use std::path::Path;

use serde_json::{Map, Value};

use super::bpe::read_text;
use crate::{CoreError, Result};

/// CLIP's context length, used when the config gives none (transformers then has no limit at all).
pub const DEFAULT_MAX_LENGTH: usize = 77;
/// transformers writes `model_max_length` as 1e30 for "no limit"; anything above this is taken as unset.
const MAX_SENSIBLE_LENGTH: u64 = 1 << 20;

const NAMED_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    pub content: String,
    /// Matched on the normalized (NFC, lower-cased) text rather than the raw text.
    pub normalized: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerConfig {
    pub bos: String,
    pub eos: String,
    pub unk: String,
    pub pad: String,
    /// Every string split out of the text as a single token, each content once, in registration order (which
    /// decides the ids of tokens missing from vocab.json).
    pub added: Vec<AddedToken>,
    pub max_length: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self::resolve(Map::new(), Vec::new(), DEFAULT_MAX_LENGTH)
    }
}

impl TokenizerConfig {
    /// Reads `dir/tokenizer_config.json` and `dir/special_tokens_map.json`; both are optional.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_optional_object(&config_path)?.unwrap_or_default();
        let max_length = parse_max_length(&config_path, config.get("model_max_length"))?;
        let mut named = Map::new();
        for key in NAMED_KEYS {
            if let Some(value) = config.get(key).filter(|v| !v.is_null()) {
                named.insert(key.to_string(), value.clone());
            }
        }
        let decoder = match config.get("added_tokens_decoder") {
            Some(value) => parse_added_tokens_decoder(&config_path, value)?,
            None => {
                let map_path = dir.join("special_tokens_map.json");
                for (key, value) in read_optional_object(&map_path)?.unwrap_or_default() {
                    if NAMED_KEYS.contains(&key.as_str()) && !value.is_null() {
                        named.insert(key, value);
                    }
                }
                Vec::new()
            }
        };
        for (key, value) in &named {
            parse_token(value).ok_or_else(|| {
                CoreError::config(
                    &config_path,
                    format!("`{key}` must be a string or an object with a string `content`"),
                )
            })?;
        }
        Ok(Self::resolve(named, decoder, max_length))
    }

    /// From special-token entries as tokenizer_config.json writes them (`bos_token`, `pad_token`, ...), for
    /// tokenizers built into the binary; CLIP's 77-token length.
    pub fn from_named(named: Map<String, Value>) -> Self {
        Self::resolve(named, Vec::new(), DEFAULT_MAX_LENGTH)
    }

    fn resolve(named: Map<String, Value>, decoder: Vec<AddedToken>, max_length: usize) -> Self {
        let content_of = |key: &str, default: &str| {
            named
                .get(key)
                .and_then(parse_token)
                .map_or_else(|| default.to_string(), |t| t.content)
        };
        let bos = content_of("bos_token", "<|startoftext|>");
        let eos = content_of("eos_token", "<|endoftext|>");
        let unk = content_of("unk_token", "<|endoftext|>");
        let pad = content_of("pad_token", "<|endoftext|>");

        let mut added: Vec<AddedToken> = Vec::new();
        let mut register = |token: AddedToken| {
            if token.content.is_empty() {
                return;
            }
            match added.iter_mut().find(|t| t.content == token.content) {
                Some(existing) => existing.normalized = token.normalized,
                None => added.push(token),
            }
        };
        for token in &decoder {
            register(token.clone());
        }
        for key in NAMED_KEYS {
            let token = match named.get(key).and_then(parse_token) {
                Some(token) => token,
                None => match key {
                    "bos_token" => AddedToken {
                        content: bos.clone(),
                        normalized: false,
                    },
                    "eos_token" => AddedToken {
                        content: eos.clone(),
                        normalized: false,
                    },
                    "unk_token" => AddedToken {
                        content: unk.clone(),
                        normalized: false,
                    },
                    "pad_token" => AddedToken {
                        content: pad.clone(),
                        normalized: false,
                    },
                    _ => continue,
                },
            };
            let token = decoder
                .iter()
                .find(|t| t.content == token.content)
                .cloned()
                .unwrap_or(token);
            register(token);
        }
        Self {
            bos,
            eos,
            unk,
            pad,
            added,
            max_length,
        }
    }
}

fn read_optional_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(CoreError::file(path, "expected a JSON object")),
        Err(e) => Err(CoreError::file(path, format!("invalid JSON: {e}"))),
    }
}

/// A special token as a plain string (matched on raw text) or an AddedToken object.
fn parse_token(value: &Value) -> Option<AddedToken> {
    match value {
        Value::String(content) => Some(AddedToken {
            content: content.clone(),
            normalized: false,
        }),
        Value::Object(fields) => {
            let content = fields.get("content")?.as_str()?.to_string();
            let normalized = fields
                .get("normalized")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some(AddedToken {
                content,
                normalized,
            })
        }
        _ => None,
    }
}

fn parse_added_tokens_decoder(path: &Path, value: &Value) -> Result<Vec<AddedToken>> {
    let entries = value.as_object().ok_or_else(|| {
        CoreError::config(
            path,
            "`added_tokens_decoder` must be an object of id -> token",
        )
    })?;
    let mut tokens = Vec::with_capacity(entries.len());
    for (id, entry) in entries {
        let id: u64 = id.parse().map_err(|_| {
            CoreError::config(
                path,
                format!("`added_tokens_decoder` key {id:?} is not an id"),
            )
        })?;
        let fields = entry
            .as_object()
            .and_then(|fields| Some((fields, fields.get("content")?.as_str()?)));
        let Some((fields, content)) = fields else {
            return Err(CoreError::config(
                path,
                format!("`added_tokens_decoder[{id}]` needs a string `content`"),
            ));
        };
        // Python's AddedToken defaults `normalized` to `not special`.
        let special = fields
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let normalized = fields
            .get("normalized")
            .and_then(Value::as_bool)
            .unwrap_or(!special);
        tokens.push((
            id,
            AddedToken {
                content: content.to_string(),
                normalized,
            },
        ));
    }
    tokens.sort_by_key(|(id, _)| *id);
    Ok(tokens.into_iter().map(|(_, token)| token).collect())
}

fn parse_max_length(path: &Path, value: Option<&Value>) -> Result<usize> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(DEFAULT_MAX_LENGTH);
    };
    let invalid = || {
        CoreError::config(
            path,
            format!("`model_max_length` must be an integer of at least 2, got {value}"),
        )
    };
    match value.as_u64() {
        Some(n) if n > MAX_SENSIBLE_LENGTH => Ok(DEFAULT_MAX_LENGTH),
        Some(n) if n >= 2 => usize::try_from(n).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
        // 1e30 does not fit a u64 and may be written as a float.
        None if value
            .as_f64()
            .is_some_and(|f| f > MAX_SENSIBLE_LENGTH as f64) =>
        {
            Ok(DEFAULT_MAX_LENGTH)
        }
        None => Err(invalid()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tokenizer::test_dir::TestDir;

    fn config_dir(files: &[(&str, &str)]) -> TestDir {
        let dir = TestDir::new("config");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn token(content: &str, normalized: bool) -> AddedToken {
        AddedToken {
            content: content.to_string(),
            normalized,
        }
    }

    #[test]
    fn missing_files_give_clip_defaults() {
        let dir = config_dir(&[]);
        let config = TokenizerConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config, TokenizerConfig::default());
        assert_eq!(
            (config.bos.as_str(), config.pad.as_str()),
            ("<|startoftext|>", "<|endoftext|>")
        );
        assert_eq!(config.max_length, 77);
        assert_eq!(
            config.added,
            [
                token("<|startoftext|>", false),
                token("<|endoftext|>", false)
            ]
        );
    }

    #[test]
    fn strings_and_objects_both_name_special_tokens() {
        let dir = config_dir(&[(
            "tokenizer_config.json",
            r#"{"model_max_length": 64, "pad_token": "!",
                "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "normalized": true},
                "eos_token": {"content": "<|endoftext|>", "normalized": true}}"#,
        )]);
        let config = TokenizerConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.max_length, 64);
        assert_eq!(config.pad, "!");
        assert_eq!(config.eos, "<|endoftext|>");
        // The unk default (a plain string) comes after eos and so wins for `<|endoftext|>`.
        assert_eq!(
            config.added,
            [
                token("<|startoftext|>", true),
                token("<|endoftext|>", false),
                token("!", false)
            ]
        );
    }

    #[test]
    fn special_tokens_map_overrides_config_unless_added_tokens_decoder_is_present() {
        let map = r#"{"pad_token": {"content": "<pad>", "normalized": true}}"#;
        let dir = config_dir(&[
            ("tokenizer_config.json", r#"{"pad_token": "!"}"#),
            ("special_tokens_map.json", map),
        ]);
        let config = TokenizerConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.pad, "<pad>");
        assert!(config.added.contains(&token("<pad>", true)));

        let with_decoder = r#"{"pad_token": "!", "added_tokens_decoder":
            {"49407": {"content": "<|endoftext|>", "normalized": true, "special": true}}}"#;
        let dir = config_dir(&[
            ("tokenizer_config.json", with_decoder),
            ("special_tokens_map.json", map),
        ]);
        let config = TokenizerConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.pad, "!");
        assert!(
            config.added.contains(&token("<|endoftext|>", true)),
            "decoder flags win: {:?}",
            config.added
        );
    }

    #[test]
    fn no_limit_max_length_falls_back_to_clip_context() {
        let dir = config_dir(&[(
            "tokenizer_config.json",
            r#"{"model_max_length": 1000000000000000019884624838656}"#,
        )]);
        assert_eq!(
            TokenizerConfig::from_dir(dir.path()).unwrap().max_length,
            77
        );
    }

    #[test]
    fn invalid_configs_name_the_file() {
        for bad in [
            "{not json",
            "[1, 2]",
            r#"{"model_max_length": 1}"#,
            r#"{"pad_token": 5}"#,
        ] {
            let dir = config_dir(&[("tokenizer_config.json", bad)]);
            let err = TokenizerConfig::from_dir(dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("tokenizer_config.json"), "{bad}: {err}");
        }
        let dir = config_dir(&[("special_tokens_map.json", "nope")]);
        let err = TokenizerConfig::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("special_tokens_map.json"), "{err}");
    }
}
