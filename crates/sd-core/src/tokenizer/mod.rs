//! CLIP's byte-level BPE tokenizer, read from a diffusers `tokenizer/` folder (vocab.json + merges.txt, with
//! tokenizer_config.json / special_tokens_map.json for the special tokens and max length). Matches transformers
//! 5's `CLIPTokenizer` (the `tokenizers`-backed one a default `pip install diffusers transformers` gets): see
//! [`pretokenize`] for the text pipeline, [`bpe`] for the model and [`config`] for the special tokens.

mod bpe;
mod config;
mod pretokenize;
#[cfg(test)]
mod test_dir;

use std::collections::HashMap;
use std::path::Path;

pub use bpe::byte_to_unicode;
pub use config::{AddedToken, TokenizerConfig};

use crate::{CoreError, Result};
use bpe::Bpe;
use pretokenize::{normalize, Piece, TokenMatcher, WordSplitter};

pub struct ClipTokenizer {
    bpe: Bpe,
    words: WordSplitter,
    /// Added tokens matched on the raw text, and those matched after normalization.
    raw_tokens: TokenMatcher,
    normalized_tokens: TokenMatcher,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    unk_id: u32,
    vocab_size: usize,
    max_length: usize,
}

impl ClipTokenizer {
    /// Loads `dir/vocab.json`, `dir/merges.txt` and, when present, `dir/tokenizer_config.json` and
    /// `dir/special_tokens_map.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_parts(&dir.join("vocab.json"), &dir.join("merges.txt"), dir)
    }

    /// Like [`Self::from_dir`], with the vocabulary files and the folder holding the (optional) config files
    /// given separately.
    pub fn from_parts(vocab_json: &Path, merges_txt: &Path, config_dir: &Path) -> Result<Self> {
        let config = TokenizerConfig::from_dir(config_dir)?;
        let bpe = Bpe::from_files(vocab_json, merges_txt)?;
        Ok(Self::new(bpe, &config))
    }

    /// Builds a tokenizer from in-memory vocab.json / merges.txt contents.
    pub fn from_vocab(
        vocab: HashMap<String, u32>,
        merges_txt: &str,
        config: &TokenizerConfig,
    ) -> Result<Self> {
        let bpe = Bpe::new(vocab, merges_txt)
            .map_err(|message| CoreError::file("merges.txt", message))?;
        Ok(Self::new(bpe, config))
    }

    fn new(bpe: Bpe, config: &TokenizerConfig) -> Self {
        // Added tokens missing from vocab.json get the next free ids, in registration order, as in `tokenizers`.
        let mut next_id = bpe.max_id().map_or(0, |max| max + 1);
        let mut extra_ids = 0;
        let mut ids: HashMap<&str, u32> = HashMap::new();
        for token in &config.added {
            let id = bpe.token_id(&token.content).unwrap_or_else(|| {
                next_id += 1;
                extra_ids += 1;
                next_id - 1
            });
            ids.insert(&token.content, id);
        }
        let matcher = |normalized: bool| {
            TokenMatcher::new(
                config
                    .added
                    .iter()
                    .filter(|t| t.normalized == normalized)
                    .map(|t| (t.content.clone(), ids[t.content.as_str()])),
            )
        };
        let id_of = |content: &str| ids.get(content).copied().unwrap_or(0);
        Self {
            raw_tokens: matcher(false),
            normalized_tokens: matcher(true),
            bos_id: id_of(&config.bos),
            eos_id: id_of(&config.eos),
            pad_id: id_of(&config.pad),
            unk_id: id_of(&config.unk),
            vocab_size: bpe.vocab_len() + extra_ids,
            max_length: config.max_length,
            words: WordSplitter::new(),
            bpe,
        }
    }

    /// Token ids of `text`, without BOS/EOS, padding or truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut raw_pieces = Vec::new();
        self.raw_tokens.split(text, &mut raw_pieces);
        for raw in raw_pieces {
            match raw {
                Piece::Token(id) => ids.push(id),
                Piece::Text(segment) => {
                    let normalized = normalize(segment);
                    let mut pieces = Vec::new();
                    self.normalized_tokens.split(&normalized, &mut pieces);
                    for piece in pieces {
                        match piece {
                            Piece::Token(id) => ids.push(id),
                            Piece::Text(text) => self.words.for_each_word(text, |word| {
                                self.bpe.encode_word(word.as_bytes(), self.unk_id, &mut ids);
                            }),
                        }
                    }
                }
            }
        }
        ids
    }

    /// Token ids with BOS/EOS, truncated to `max_length` (EOS kept last) and padded with the pad token to
    /// `max_length`: what `tokenizer(text, padding="max_length", truncation=True)` returns.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        let content = self.encode(text);
        let room = self.max_length.saturating_sub(2);
        ids.extend_from_slice(&content[..content.len().min(room)]);
        ids.push(self.eos_id);
        ids.resize(self.max_length.max(ids.len()), self.pad_id);
        ids
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Number of ids: vocab.json's entries plus any special token it lacks (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

#[cfg(test)]
mod tests;
