//! CLIP's byte-level BPE model: vocab.json + merges.txt, the byte-to-unicode map, and the merge loop that turns
//! one pre-tokenized word into ids (its last symbol carries the `</w>` end-of-word suffix).

use std::collections::HashMap;
use std::path::Path;

use crate::{CoreError, Result};

pub const END_OF_WORD: &str = "</w>";

/// GPT-2/CLIP's reversible map from bytes to printable characters: printable Latin-1 bytes map to themselves,
/// the rest (controls, space, soft hyphen, ...) to U+0100.. in byte order, so every vocab entry is printable.
pub fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_substitute = 256u32;
    for (byte, slot) in (0u8..=255).zip(table.iter_mut()) {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next_substitute += 1;
            next_substitute - 1
        };
        *slot = char::from_u32(code).expect("code points below 324 are all valid chars");
    }
    table
}

#[derive(Clone, Copy, Debug)]
struct Merge {
    rank: u32,
    merged_id: u32,
}

pub struct Bpe {
    vocab: HashMap<String, u32>,
    /// Id of each byte's symbol inside a word, and as a word's last symbol (with `</w>`); `None` when the vocab
    /// lacks it (then the unknown token stands in, as in `tokenizers`).
    byte_ids: [Option<u32>; 256],
    final_byte_ids: [Option<u32>; 256],
    merges: HashMap<(u32, u32), Merge>,
}

impl Bpe {
    pub fn from_files(vocab_path: &Path, merges_path: &Path) -> Result<Self> {
        let vocab_text = read_text(vocab_path)?;
        let vocab: HashMap<String, u32> = serde_json::from_str(&vocab_text).map_err(|e| {
            CoreError::file(vocab_path, format!("not a JSON object of token -> id: {e}"))
        })?;
        let merges_text = read_text(merges_path)?;
        Self::new(vocab, &merges_text).map_err(|message| CoreError::file(merges_path, message))
    }

    /// `merges` is merges.txt's text: an optional `#version` line, then one `left right` pair per line, best first.
    pub fn new(vocab: HashMap<String, u32>, merges: &str) -> std::result::Result<Self, String> {
        let mut merge_table = HashMap::new();
        let mut rank = 0u32;
        for (index, line) in merges.lines().enumerate() {
            if (index == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!(
                    "line {}: expected two space-separated symbols, got {line:?}",
                    index + 1
                ));
            };
            let lookup = |symbol: &str| {
                vocab
                    .get(symbol)
                    .copied()
                    .ok_or_else(|| format!("line {}: {symbol:?} is not in vocab.json", index + 1))
            };
            let pair = (lookup(left)?, lookup(right)?);
            let merged_id = lookup(&format!("{left}{right}"))?;
            // Later duplicates win, as when `tokenizers` collects its merge map.
            merge_table.insert(pair, Merge { rank, merged_id });
            rank += 1;
        }
        let chars = byte_to_unicode();
        let byte_ids = chars.map(|c| vocab.get(c.to_string().as_str()).copied());
        let final_byte_ids = chars.map(|c| vocab.get(&format!("{c}{END_OF_WORD}")).copied());
        Ok(Self {
            vocab,
            byte_ids,
            final_byte_ids,
            merges: merge_table,
        })
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
    }

    pub fn max_id(&self) -> Option<u32> {
        self.vocab.values().copied().max()
    }

    /// Appends the ids of one word (its UTF-8 bytes, already split off by the pre-tokenizer) to `out`.
    pub fn encode_word(&self, word: &[u8], unk_id: u32, out: &mut Vec<u32>) {
        let Some((&last, init)) = word.split_last() else {
            return;
        };
        let mut symbols: Vec<u32> = init
            .iter()
            .map(|&b| self.byte_ids[usize::from(b)].unwrap_or(unk_id))
            .collect();
        symbols.push(self.final_byte_ids[usize::from(last)].unwrap_or(unk_id));
        let mut scratch = Vec::with_capacity(symbols.len());
        while let Some((pair, merge)) = self.best_pair(&symbols) {
            // Merging every occurrence of the best pair left to right gives what `tokenizers`' (rank, position)
            // heap gives: a merge creates only pairs of later rank, since a merge's parts are learned before it.
            scratch.clear();
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
                    scratch.push(merge.merged_id);
                    i += 2;
                } else {
                    scratch.push(symbols[i]);
                    i += 1;
                }
            }
            std::mem::swap(&mut symbols, &mut scratch);
        }
        out.extend_from_slice(&symbols);
    }

    fn best_pair(&self, symbols: &[u32]) -> Option<((u32, u32), Merge)> {
        let mut best: Option<((u32, u32), Merge)> = None;
        for window in symbols.windows(2) {
            let pair = (window[0], window[1]);
            if let Some(&merge) = self.merges.get(&pair) {
                if best.is_none_or(|(_, b)| merge.rank < b.rank) {
                    best = Some((pair, merge));
                }
            }
        }
        best
    }
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CoreError::file(path, format!("cannot read: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_matches_clip() {
        let table = byte_to_unicode();
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[usize::from(b'!')], '!');
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[usize::from(b' ')], '\u{120}'); // 'Ġ', GPT-2's familiar space
        assert_eq!(table[0xAD], '\u{143}'); // soft hyphen is the last substitute
        assert_eq!(table[0xE9], 'é');
        let mut sorted = table.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256, "the map must be a bijection");
    }

    fn toy_bpe() -> Bpe {
        let table = byte_to_unicode();
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for c in table {
            let n = vocab.len() as u32;
            vocab.insert(c.to_string(), n);
        }
        for c in table {
            let n = vocab.len() as u32;
            vocab.insert(format!("{c}{END_OF_WORD}"), n);
        }
        for token in [
            "lo",
            "low</w>",
            "er</w>",
            "low",
            "lower</w>",
            "aa",
            "aa</w>",
        ] {
            let n = vocab.len() as u32;
            vocab.insert(token.to_string(), n);
        }
        Bpe::new(
            vocab,
            "#version: 0.2\nl o\nlo w</w>\ne r</w>\nlo w\nlow er</w>\na a\na a</w>\n",
        )
        .unwrap()
    }

    fn word_tokens(bpe: &Bpe, word: &str) -> Vec<String> {
        let mut ids = Vec::new();
        bpe.encode_word(word.as_bytes(), u32::MAX, &mut ids);
        let reverse: HashMap<u32, &str> = bpe.vocab.iter().map(|(k, &v)| (v, k.as_str())).collect();
        ids.iter().map(|id| reverse[id].to_string()).collect()
    }

    #[test]
    fn merges_apply_by_rank_with_end_of_word_suffix() {
        let bpe = toy_bpe();
        assert_eq!(word_tokens(&bpe, "low"), ["low</w>"]);
        assert_eq!(word_tokens(&bpe, "lower"), ["lower</w>"]);
        assert_eq!(word_tokens(&bpe, "lowest"), ["low", "e", "s", "t</w>"]);
        assert_eq!(word_tokens(&bpe, "x"), ["x</w>"]);
        // Overlapping occurrences merge left to right.
        assert_eq!(word_tokens(&bpe, "aaa"), ["aa", "a</w>"]);
        assert_eq!(word_tokens(&bpe, "aaaa"), ["aa", "aa</w>"]);
    }

    #[test]
    fn non_ascii_bytes_become_byte_symbols() {
        let bpe = toy_bpe();
        assert_eq!(word_tokens(&bpe, "é"), ["Ã", "©</w>"]);
    }

    #[test]
    fn bad_merges_are_reported_with_their_line() {
        let vocab: HashMap<String, u32> = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        let err = Bpe::new(vocab.clone(), "#version: 0.2\na b c\n")
            .err()
            .unwrap();
        assert!(err.contains("line 2"), "{err}");
        let err = Bpe::new(vocab, "a b\n").err().unwrap();
        assert!(err.contains("\"ab\" is not in vocab.json"), "{err}");
    }
}
