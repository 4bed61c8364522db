//! Prompt text -> what the text encoders see. Two syntaxes:
//! - [`PromptSyntax::A1111`] (default): A1111 1.10's prompt language with its default "Original" emphasis:
//!   [`attention`] weights and `BREAK`, [`schedule`] prompt editing and alternation, [`chunks`] of 75 tokens
//!   for prompts of any length, textual-inversion [`embeddings`] by name.
//! - [`PromptSyntax::Plain`]: the text as diffusers reads it, one 77-token window (longer is truncated).

pub mod attention;
pub mod chunks;
pub mod embeddings;
pub mod schedule;

use crate::{CoreError, Result};

pub use attention::parse_prompt_attention;
pub use embeddings::{EmbeddingInfo, EmbeddingListing, EmbeddingStore, TextualInversion};
pub use schedule::prompt_schedule;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptSyntax {
    /// A1111's weights, `BREAK`, `[from:to:when]`, `[a|b]`, chunks of 75 tokens.
    #[default]
    A1111,
    /// diffusers-exact: the literal text, 77 tokens, longer truncated (and said so in the result).
    Plain,
}

impl PromptSyntax {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "a1111" | "webui" | "auto1111" => Ok(Self::A1111),
            "plain" | "diffusers" => Ok(Self::Plain),
            _ => Err(CoreError::InvalidInput(format!(
                "prompt syntax `{text}`: use a1111 or plain"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::A1111 => "a1111",
            Self::Plain => "plain",
        }
    }
}
