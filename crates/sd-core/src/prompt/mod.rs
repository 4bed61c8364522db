//! Prompt text -> what the text encoders see. Two syntaxes:
//! - [`PromptSyntax::A1111`] (default): A1111 1.10's prompt language with its default "Original" emphasis:
//!   [`attention`] weights and `BREAK`, [`schedule`] prompt editing and alternation, [`chunks`] of 75 tokens
//!   for prompts of any length, textual-inversion [`embeddings`] by name.
//! - [`PromptSyntax::Plain`]: the text as diffusers reads it, one 77-token window (longer is truncated).

pub mod attention;
pub mod chunks;
pub mod embeddings;
pub mod schedule;

pub use attention::parse_prompt_attention;
pub use embeddings::{EmbeddingInfo, EmbeddingListing, EmbeddingStore, TextualInversion};
pub use schedule::prompt_schedule;

// The syntax names are part of the API (`prompt_syntax`, `/v1/info`): the enum lives in `sd-api-types`.
pub use sd_api_types::PromptSyntax;
