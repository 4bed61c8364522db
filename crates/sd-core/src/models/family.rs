//! Which Stable Diffusion family a model is (SD 1.x, SD 2.x, SDXL).

use crate::{CoreError, Result};

/// The Stable Diffusion family of a model: what its networks are (detected from configs or tensors). Serialises
/// as [`Family::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Sd1,
    Sd2,
    Sdxl,
}

impl Family {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sd1" | "sd15" | "sd1.5" | "v1" => Ok(Self::Sd1),
            "sd2" | "sd21" | "sd2.1" | "v2" => Ok(Self::Sd2),
            "sdxl" | "xl" => Ok(Self::Sdxl),
            _ => Err(CoreError::InvalidInput(format!(
                "family `{text}`: use sd1, sd2 or sdxl"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sd1 => "sd1",
            Self::Sd2 => "sd2",
            Self::Sdxl => "sdxl",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
