//! CLIP's byte-level BPE tokenizer, read from a diffusers `tokenizer/` folder (vocab.json + merges.txt, with
//! tokenizer_config.json for the pad token and max length). Matches transformers' `CLIPTokenizer`.

use std::path::Path;

use crate::Result;

pub struct ClipTokenizer {}

impl ClipTokenizer {
    /// Loads `dir/vocab.json`, `dir/merges.txt` and, when present, `dir/tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let _ = dir;
        Err(crate::CoreError::Unsupported(
            "tokenizer not implemented yet".into(),
        ))
    }

    /// Token ids with BOS/EOS, truncated to `max_length` (EOS kept last) and padded with the pad token to
    /// `max_length`: what `tokenizer(text, padding="max_length", truncation=True)` returns.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let _ = text;
        Vec::new()
    }
}
