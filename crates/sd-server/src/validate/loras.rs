//! LoRA parts of a request: the native `loras: [{name, weight}]` field (written into the prompt as A1111
//! tags, so the core, the PNG metadata and the job see one prompt), and the check at submission that every
//! `<lora:NAME:...>` tag is well formed and names a file in the `--lora-dir` folders (else 422 listing them).

use sd_core::adapters::library::unknown_message;
use sd_core::adapters::{extract_lora_tags, LoraLibrary, LoraTag};

use crate::error::FieldError;

pub use sd_api_types::LoraField;

/// `prompt` with `loras` appended as `<lora:NAME:WEIGHT>` tags.
pub fn append_lora_tags(prompt: String, loras: &[LoraField]) -> Result<String, FieldError> {
    let mut prompt = prompt;
    for lora in loras {
        let weight = lora.weight.unwrap_or(1.0);
        if lora.name.trim().is_empty() || lora.name.contains(['<', '>', ':']) {
            return Err(FieldError::new(
                "invalid_lora",
                "loras",
                format!("LoRA name `{}` is empty or contains <, > or :", lora.name),
            ));
        }
        if !weight.is_finite() {
            return Err(FieldError::new(
                "invalid_lora",
                "loras",
                "LoRA weight must be a finite number",
            ));
        }
        prompt.push(' ');
        prompt.push_str(&LoraTag::new(lora.name.trim(), weight).to_tag());
    }
    Ok(prompt)
}

/// Every tag of `prompt` parses and names a LoRA of `library`.
pub fn check_lora_tags(prompt: &str, library: &LoraLibrary) -> Result<(), FieldError> {
    let (_, tags) = extract_lora_tags(prompt)
        .map_err(|e| FieldError::new("invalid_lora", "prompt", e.to_string()))?;
    if tags.is_empty() {
        return Ok(());
    }
    let available = library.list();
    for tag in tags {
        if !available.iter().any(|e| e.name == tag.name) {
            let names: Vec<&str> = available.iter().map(|e| e.name.as_str()).collect();
            return Err(FieldError::new(
                "unknown_lora",
                "prompt",
                unknown_message(&tag.name, &names, library.dirs()),
            ));
        }
    }
    Ok(())
}
