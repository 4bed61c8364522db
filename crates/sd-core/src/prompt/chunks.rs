//! A1111's long-prompt chunking (`modules/sd_hijack_clip.py::tokenize_line`, 1.10 defaults): weighted runs are
//! tokenized separately and packed into chunks of 75 tokens; when a chunk fills up within 20 tokens of its last
//! comma, the text after that comma moves to the next chunk; `BREAK` closes a chunk early. Each chunk is then
//! BOS + 75 tokens (padded with EOS) + EOS, with one multiplier per token and the embeddings to splice in.

use super::attention::Weighted;
use crate::tokenizer::ClipTokenizer;

/// Tokens per chunk between BOS and EOS.
pub const CHUNK_LENGTH: usize = 75;
/// A1111's `comma_padding_backtrack` default.
pub const COMMA_BACKTRACK: usize = 20;

/// Where an embedding's vectors go: position in the chunk's 77 tokens (BOS is 0) and the embedding's index.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub position: usize,
    pub embedding: usize,
    /// How many of its vectors fit (all of them, unless a plain window cut it).
    pub count: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// BOS + 75 + EOS ids (embedding slots hold 0, as in A1111).
    pub tokens: Vec<u32>,
    pub multipliers: Vec<f64>,
    pub fixes: Vec<Fix>,
}

/// An embedding as the chunker sees it: its name's token ids and its number of vectors.
pub struct EmbeddingTokens {
    pub ids: Vec<u32>,
    pub vectors: usize,
}

struct Builder {
    chunks: Vec<Chunk>,
    current: Chunk,
    last_comma: Option<usize>,
    bos: u32,
    eos: u32,
    pad: u32,
}

impl Builder {
    fn next_chunk(&mut self) {
        let mut chunk = std::mem::take(&mut self.current);
        let missing = CHUNK_LENGTH.saturating_sub(chunk.tokens.len());
        chunk.tokens.extend(std::iter::repeat_n(self.eos, missing));
        chunk.multipliers.extend(std::iter::repeat_n(1.0, missing));
        chunk.tokens.insert(0, self.bos);
        chunk.tokens.push(self.eos);
        chunk.multipliers.insert(0, 1.0);
        chunk.multipliers.push(1.0);
        // After the first EOS the model sees the pad token (SD 2.x / SDXL's OpenCLIP pad with `!`).
        if let Some(first_eos) = chunk.tokens.iter().position(|&t| t == self.eos) {
            for t in &mut chunk.tokens[first_eos + 1..] {
                *t = self.pad;
            }
        }
        for fix in &mut chunk.fixes {
            fix.position += 1;
        }
        self.last_comma = None;
        self.chunks.push(chunk);
    }
}

/// The empty chunk A1111 pads a shorter prompt's chunk list with in a batch: BOS, EOS, padding, weights 1.
pub fn empty_chunk(tokenizer: &ClipTokenizer) -> Chunk {
    let mut b = Builder {
        chunks: Vec::new(),
        current: Chunk::default(),
        last_comma: None,
        bos: tokenizer.bos_id(),
        eos: tokenizer.eos_id(),
        pad: tokenizer.pad_id(),
    };
    b.next_chunk();
    b.chunks.remove(0)
}

fn find_embedding(tokens: &[u32], at: usize, embeddings: &[EmbeddingTokens]) -> Option<usize> {
    // Longest name first, as A1111's `ids_lookup` is sorted.
    let mut best: Option<usize> = None;
    for (i, e) in embeddings.iter().enumerate() {
        if !e.ids.is_empty()
            && tokens[at..].starts_with(&e.ids)
            && best.is_none_or(|b| embeddings[b].ids.len() < e.ids.len())
        {
            best = Some(i);
        }
    }
    best
}

/// Chunks of one prompt's weighted runs; also the number of tokens it used (A1111's token count).
pub fn tokenize_line(
    tokenizer: &ClipTokenizer,
    parsed: &[Weighted],
    embeddings: &[EmbeddingTokens],
) -> (Vec<Chunk>, usize) {
    let comma = tokenizer.encode(",");
    let comma = (comma.len() == 1).then(|| comma[0]);
    let mut b = Builder {
        chunks: Vec::new(),
        current: Chunk::default(),
        last_comma: None,
        bos: tokenizer.bos_id(),
        eos: tokenizer.eos_id(),
        pad: tokenizer.pad_id(),
    };
    let mut token_count = 0;
    for (text, weight) in parsed {
        if text == "BREAK" && *weight == -1.0 {
            token_count += CHUNK_LENGTH;
            b.next_chunk();
            continue;
        }
        let tokens = tokenizer.encode(text);
        let mut position = 0;
        while position < tokens.len() {
            let token = tokens[position];
            let len = b.current.tokens.len();
            if Some(token) == comma {
                b.last_comma = Some(len);
            } else if let Some(last_comma) = b.last_comma.filter(|&c| {
                COMMA_BACKTRACK != 0 && len == CHUNK_LENGTH && len - c <= COMMA_BACKTRACK
            }) {
                let at = last_comma + 1;
                let tokens_moved = b.current.tokens.split_off(at);
                let mults_moved = b.current.multipliers.split_off(at);
                let (fixes_moved, kept): (Vec<Fix>, Vec<Fix>) =
                    std::mem::take(&mut b.current.fixes)
                        .into_iter()
                        .partition(|f| f.position >= at);
                b.current.fixes = kept;
                token_count += CHUNK_LENGTH;
                b.next_chunk();
                b.current.tokens = tokens_moved;
                b.current.multipliers = mults_moved;
                b.current.fixes = fixes_moved
                    .into_iter()
                    .map(|f| Fix {
                        position: f.position - at,
                        ..f
                    })
                    .collect();
            }
            if b.current.tokens.len() == CHUNK_LENGTH {
                token_count += CHUNK_LENGTH;
                b.next_chunk();
            }
            let Some(e) = find_embedding(&tokens, position, embeddings) else {
                b.current.tokens.push(token);
                b.current.multipliers.push(*weight);
                position += 1;
                continue;
            };
            let vectors = embeddings[e].vectors;
            if b.current.tokens.len() + vectors > CHUNK_LENGTH {
                token_count += CHUNK_LENGTH;
                b.next_chunk();
            }
            b.current.fixes.push(Fix {
                position: b.current.tokens.len(),
                embedding: e,
                count: vectors,
            });
            b.current.tokens.extend(std::iter::repeat_n(0, vectors));
            b.current
                .multipliers
                .extend(std::iter::repeat_n(*weight, vectors));
            position += embeddings[e].ids.len();
        }
    }
    if !b.current.tokens.is_empty() || b.chunks.is_empty() {
        token_count += b.current.tokens.len();
        b.next_chunk();
    }
    (b.chunks, token_count)
}
