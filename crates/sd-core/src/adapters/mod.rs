//! Adapters that change a loaded model per job: LoRA / LoCon / PEFT files ([`lora`]), where they come from
//! ([`library`]), merging them into the weights and taking them off again ([`apply`]), and the
//! `<lora:NAME:WEIGHT>` prompt tags that ask for them ([`tags`]).

pub mod apply;
mod ldm_names;
pub mod library;
pub mod lora;
pub mod tags;

pub use apply::{AppliedLora, AppliedLoras, LoraTargets, LoraUse};
pub use library::{LoraEntry, LoraLibrary};
pub use lora::{Component, LoraFile};
pub use tags::{extract_lora_tags, LoraTag, TagError};
