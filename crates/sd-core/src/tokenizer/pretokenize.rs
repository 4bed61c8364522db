//! Text -> words, as transformers 5's `CLIPTokenizer` (a `tokenizers` pipeline) does it:
//! 1. split out added/special tokens matched on the raw text (leftmost, longest first);
//! 2. normalize each remaining segment: NFC, then lower-case char by char (no HTML unescaping, no ftfy);
//! 3. split out added tokens flagged `normalized`, matched on the normalized text;
//! 4. cut the rest with CLIP's pattern, dropping whatever it does not match (whitespace).
//!
//! The normalizer's `\s+ -> " "` step is skipped: step 4 drops whitespace anyway and no special token contains any.

use std::borrow::Cow;

use regex::Regex;
use unicode_normalization_alignments::UnicodeNormalization;

/// CLIP's word pattern (case-sensitive here: `tokenizers` applies it after lower-casing).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+";

/// A piece of the input: text still to be split into words, or an added token's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Token(u32),
}

/// Finds added tokens in text: at the leftmost position where any matches, the longest one wins.
#[derive(Clone, Debug, Default)]
pub struct TokenMatcher {
    tokens: Vec<(String, u32)>,
}

impl TokenMatcher {
    pub fn new(tokens: impl IntoIterator<Item = (String, u32)>) -> Self {
        let mut tokens: Vec<(String, u32)> = tokens
            .into_iter()
            .filter(|(content, _)| !content.is_empty())
            .collect();
        // Longest first, so the first hit at a position is the longest.
        tokens.sort_by_key(|(content, _)| std::cmp::Reverse(content.len()));
        Self { tokens }
    }

    pub fn split<'a>(&self, text: &'a str, out: &mut Vec<Piece<'a>>) {
        let mut segment_start = 0;
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            if let Some((content, id)) = self
                .tokens
                .iter()
                .find(|(content, _)| rest.starts_with(content.as_str()))
            {
                if segment_start < pos {
                    out.push(Piece::Text(&text[segment_start..pos]));
                }
                out.push(Piece::Token(*id));
                pos += content.len();
                segment_start = pos;
            } else {
                pos += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        if segment_start < text.len() {
            out.push(Piece::Text(&text[segment_start..]));
        }
    }
}

/// NFC then per-char lower-casing. Char by char (not `str::to_lowercase`) because `tokenizers` maps each char on
/// its own: a final capital sigma becomes `σ`, not `ς`.
pub fn normalize(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .all(|b| !b.is_ascii_uppercase() && b.is_ascii())
    {
        return Cow::Borrowed(text);
    }
    if text.is_ascii() {
        return Cow::Owned(text.to_ascii_lowercase());
    }
    // unicode-normalization-alignments is the crate `tokenizers` itself uses, so the NFC tables (Unicode 9) are
    // the reference's, not a newer Unicode's.
    Cow::Owned(
        text.nfc()
            .map(|(c, _)| c)
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

pub struct WordSplitter {
    pattern: Regex,
}

impl Default for WordSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl WordSplitter {
    pub fn new() -> Self {
        Self {
            pattern: Regex::new(CLIP_PATTERN).expect("CLIP_PATTERN is a valid regex"),
        }
    }

    /// Calls `word` with each word of already-normalized text.
    pub fn for_each_word<'a>(&self, text: &'a str, mut word: impl FnMut(&'a str)) {
        for m in self.pattern.find_iter(text) {
            let piece = m.as_str();
            // `tokenizers` runs GPT-2's byte-level split after CLIP's. It splits nothing else CLIP's pattern
            // yields, but it does cut an unmatched (e.g. differently cased) `<|endoftext|>` at the `|`s.
            if piece == "<|startoftext|>" || piece == "<|endoftext|>" {
                word("<|");
                word(&piece[2..piece.len() - 2]);
                word("|>");
            } else {
                word(piece);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        WordSplitter::new().for_each_word(text, |w| out.push(w));
        out
    }

    #[test]
    fn clip_pattern_splits_letters_digits_punctuation_and_contractions() {
        assert_eq!(words("a photo of a cat"), ["a", "photo", "of", "a", "cat"]);
        assert_eq!(
            words("(masterpiece:1.2), 1024x768"),
            [
                "(",
                "masterpiece",
                ":",
                "1",
                ".",
                "2",
                "),",
                "1",
                "0",
                "2",
                "4",
                "x",
                "7",
                "6",
                "8"
            ]
        );
        assert_eq!(
            words("it's they're ''s"),
            ["it", "'s", "they", "'re", "''", "s"]
        );
        assert_eq!(
            words("  tabs\tand\nnew\u{3000}lines  "),
            ["tabs", "and", "new", "lines"]
        );
        assert_eq!(words("日本語 café"), ["日本語", "café"]);
        assert_eq!(words("e\u{301}"), ["e", "\u{301}"]);
        assert_eq!(words("<|endoftext|>x"), ["<|", "endoftext", "|>", "x"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn normalize_composes_and_lowercases_per_char() {
        assert_eq!(normalize("a photo"), "a photo");
        assert!(matches!(normalize("a photo"), Cow::Borrowed(_)));
        assert_eq!(normalize("A PHOTO"), "a photo");
        assert_eq!(normalize("Cafe\u{301}"), "café");
        assert_eq!(normalize("ΟΔΟΣ"), "οδοσ");
        assert_eq!(normalize("İ"), "i\u{307}");
        assert_eq!(normalize("&amp;"), "&amp;");
    }

    #[test]
    fn matcher_prefers_leftmost_then_longest() {
        let matcher = TokenMatcher::new([
            ("!".to_string(), 0),
            ("<|endoftext|>".to_string(), 7),
            ("<|end".to_string(), 9),
        ]);
        let mut out = Vec::new();
        matcher.split("wow!<|endoftext|>é!", &mut out);
        use Piece::{Text, Token};
        assert_eq!(out, [Text("wow"), Token(0), Token(7), Text("é"), Token(0)]);
        out.clear();
        matcher.split("plain", &mut out);
        assert_eq!(out, [Text("plain")]);
    }
}
