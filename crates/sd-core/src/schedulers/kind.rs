//! [`SamplerKind`]: the samplers users pick by name, under our names and A1111's, and the sampler a model's
//! own `scheduler_config.json` implies.

use std::fmt;
use std::str::FromStr;

use super::config::{SchedulerClass, SchedulerConfig};

/// The samplers users pick by name. `parse` accepts our CLI/API names and A1111's display names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    Heun,
    DpmPp2M,
    DpmPp2MKarras,
    UniPc,
    Lcm,
}

/// A sampler or schedule name we do not know, or a sampler/schedule pair we cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerNameError {
    #[error("unknown sampler `{name}`; valid samplers: {valid}")]
    UnknownSampler { name: String, valid: String },
    #[error("unknown schedule type `{name}`; valid schedule types: Automatic, Karras")]
    UnknownSchedule { name: String },
    #[error("sampler `{sampler}` cannot use the `{schedule}` schedule type; use Automatic{hint}")]
    UnsupportedCombination {
        sampler: String,
        schedule: String,
        hint: &'static str,
    },
}

const ALL: [SamplerKind; 9] = [
    SamplerKind::Ddim,
    SamplerKind::Pndm,
    SamplerKind::Euler,
    SamplerKind::EulerAncestral,
    SamplerKind::Heun,
    SamplerKind::DpmPp2M,
    SamplerKind::DpmPp2MKarras,
    SamplerKind::UniPc,
    SamplerKind::Lcm,
];

impl SamplerKind {
    pub fn all() -> &'static [SamplerKind] {
        &ALL
    }

    /// Our sampler names ([`SamplerKind::name`] of each), as the APIs advertise them.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|kind| kind.name()).collect()
    }

    /// Our name, as the CLI and API take it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Pndm => "pndm",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_a",
            Self::Heun => "heun",
            Self::DpmPp2M => "dpmpp_2m",
            Self::DpmPp2MKarras => "dpmpp_2m_karras",
            Self::UniPc => "unipc",
            Self::Lcm => "lcm",
        }
    }

    /// The name AUTOMATIC1111's web UI shows (and its API accepts as `sampler_name`).
    pub fn a1111_name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIM",
            Self::Pndm => "PLMS",
            Self::Euler => "Euler",
            Self::EulerAncestral => "Euler a",
            Self::Heun => "Heun",
            Self::DpmPp2M => "DPM++ 2M",
            Self::DpmPp2MKarras => "DPM++ 2M Karras",
            Self::UniPc => "UniPC",
            Self::Lcm => "LCM",
        }
    }

    /// The diffusers class [`super::build_scheduler`] uses for this sampler.
    pub fn class(self) -> SchedulerClass {
        match self {
            Self::Ddim => SchedulerClass::Ddim,
            Self::Pndm => SchedulerClass::Pndm,
            Self::Euler => SchedulerClass::EulerDiscrete,
            Self::EulerAncestral => SchedulerClass::EulerAncestralDiscrete,
            Self::Heun => SchedulerClass::HeunDiscrete,
            Self::DpmPp2M | Self::DpmPp2MKarras => SchedulerClass::DpmSolverMultistep,
            Self::UniPc => SchedulerClass::UniPcMultistep,
            Self::Lcm => SchedulerClass::Lcm,
        }
    }

    /// Extra spellings: A1111's k-diffusion aliases and the diffusers family names.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Ddim => &[],
            Self::Pndm => &["plms"],
            Self::Euler => &["k_euler"],
            Self::EulerAncestral => &["k_euler_a", "k_euler_ancestral", "euler_ancestral"],
            Self::Heun => &["k_heun"],
            Self::DpmPp2M => &["k_dpmpp_2m"],
            Self::DpmPp2MKarras => &["k_dpmpp_2m_ka"],
            Self::UniPc => &[],
            Self::Lcm => &[],
        }
    }

    /// Our names, A1111's display names and aliases, case-insensitively.
    pub fn parse(name: &str) -> Result<Self, SamplerNameError> {
        let wanted = name.trim();
        ALL.iter()
            .copied()
            .find(|k| {
                std::iter::once(k.name())
                    .chain(std::iter::once(k.a1111_name()))
                    .chain(k.aliases().iter().copied())
                    .any(|n| n.eq_ignore_ascii_case(wanted))
            })
            .ok_or_else(|| SamplerNameError::UnknownSampler {
                name: name.to_string(),
                valid: valid_names(),
            })
    }

    /// Applies A1111's separate "Schedule type" field (`Automatic` keeps the sampler as it is).
    pub fn with_schedule(self, schedule: &str) -> Result<Self, SamplerNameError> {
        let schedule = schedule.trim();
        if schedule.is_empty() || schedule.eq_ignore_ascii_case("automatic") {
            return Ok(self);
        }
        if !schedule.eq_ignore_ascii_case("karras") {
            return Err(SamplerNameError::UnknownSchedule {
                name: schedule.to_string(),
            });
        }
        match self {
            Self::DpmPp2M | Self::DpmPp2MKarras => Ok(Self::DpmPp2MKarras),
            other => Err(SamplerNameError::UnsupportedCombination {
                sampler: other.a1111_name().to_string(),
                schedule: schedule.to_string(),
                hint: " (Karras is available with DPM++ 2M)",
            }),
        }
    }

    /// The sampler matching a diffusers scheduler class name; `DPMSolverMultistepScheduler` gives DPM++ 2M
    /// (see [`SamplerKind::from_config`] to honour its `use_karras_sigmas`).
    pub fn from_class_name(class_name: &str) -> Option<Self> {
        match class_name {
            "DDIMScheduler" => Some(Self::Ddim),
            "PNDMScheduler" => Some(Self::Pndm),
            "EulerDiscreteScheduler" => Some(Self::Euler),
            "EulerAncestralDiscreteScheduler" => Some(Self::EulerAncestral),
            "HeunDiscreteScheduler" => Some(Self::Heun),
            "DPMSolverMultistepScheduler" => Some(Self::DpmPp2M),
            "UniPCMultistepScheduler" => Some(Self::UniPc),
            "LCMScheduler" => Some(Self::Lcm),
            _ => None,
        }
    }

    /// A model's default sampler: the one its scheduler config describes, or Euler (diffusers' usual default;
    /// logged) where the config names a class we do not implement, or none.
    pub fn default_for(config: &SchedulerConfig) -> Self {
        Self::from_config(config).unwrap_or_else(|| {
            let class = config.class_name.as_deref().unwrap_or("(none)");
            tracing::warn!(
                class,
                "the model's scheduler class is not one we implement: default sampler euler"
            );
            Self::Euler
        })
    }

    /// The sampler a model's own scheduler config describes, if we implement its class.
    pub fn from_config(config: &SchedulerConfig) -> Option<Self> {
        match Self::from_class_name(config.class_name.as_deref()?)? {
            Self::DpmPp2M if config.use_karras_sigmas == Some(true) => Some(Self::DpmPp2MKarras),
            kind => Some(kind),
        }
    }
}

fn valid_names() -> String {
    ALL.iter()
        .map(|k| format!("{} ({})", k.name(), k.a1111_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serialises as [`SamplerKind::name`].
impl serde::Serialize for SamplerKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Reads any name [`SamplerKind::parse`] takes.
impl<'de> serde::Deserialize<'de> for SamplerKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = SamplerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn every_advertised_name_parses_and_serialises_as_itself() {
        let names = super::SamplerKind::names();
        assert_eq!(names.len(), 9);
        for name in names {
            let kind = super::SamplerKind::parse(name).unwrap();
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            let back: super::SamplerKind = serde_json::from_value(name.into()).unwrap();
            assert_eq!(back, kind);
        }
        assert!(serde_json::from_value::<super::SamplerKind>("bogus".into()).is_err());
    }
    use super::*;

    #[test]
    fn our_names_round_trip() {
        for &k in SamplerKind::all() {
            assert_eq!(SamplerKind::parse(k.name()), Ok(k));
            assert_eq!(SamplerKind::parse(k.a1111_name()), Ok(k));
            assert_eq!(k.to_string().parse::<SamplerKind>(), Ok(k));
        }
        assert_eq!(SamplerKind::all().len(), 9);
    }

    #[test]
    fn a1111_names_parse_case_insensitively() {
        assert_eq!(
            SamplerKind::parse("Euler a"),
            Ok(SamplerKind::EulerAncestral)
        );
        assert_eq!(
            SamplerKind::parse("euler A"),
            Ok(SamplerKind::EulerAncestral)
        );
        assert_eq!(
            SamplerKind::parse("DPM++ 2M Karras"),
            Ok(SamplerKind::DpmPp2MKarras)
        );
        assert_eq!(SamplerKind::parse("dpm++ 2m"), Ok(SamplerKind::DpmPp2M));
        assert_eq!(SamplerKind::parse("PLMS"), Ok(SamplerKind::Pndm));
        assert_eq!(SamplerKind::parse(" UniPC "), Ok(SamplerKind::UniPc));
        assert_eq!(
            SamplerKind::parse("k_euler_a"),
            Ok(SamplerKind::EulerAncestral)
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = SamplerKind::parse("DPM++ SDE").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("DPM++ SDE"), "{text}");
        assert!(
            text.contains("euler_a (Euler a)") && text.contains("lcm (LCM)"),
            "{text}"
        );
        assert!(SamplerKind::parse("").is_err());
    }

    #[test]
    fn schedule_type_combines_with_the_sampler() {
        assert_eq!(
            SamplerKind::DpmPp2M.with_schedule("Karras"),
            Ok(SamplerKind::DpmPp2MKarras)
        );
        assert_eq!(
            SamplerKind::DpmPp2MKarras.with_schedule("karras"),
            Ok(SamplerKind::DpmPp2MKarras)
        );
        assert_eq!(
            SamplerKind::Euler.with_schedule("Automatic"),
            Ok(SamplerKind::Euler)
        );
        assert_eq!(
            SamplerKind::DpmPp2MKarras.with_schedule("Automatic"),
            Ok(SamplerKind::DpmPp2MKarras)
        );
        assert_eq!(SamplerKind::Ddim.with_schedule(""), Ok(SamplerKind::Ddim));
        assert!(matches!(
            SamplerKind::Euler.with_schedule("Karras"),
            Err(SamplerNameError::UnsupportedCombination { .. })
        ));
        assert!(matches!(
            SamplerKind::DpmPp2M.with_schedule("Exponential"),
            Err(SamplerNameError::UnknownSchedule { .. })
        ));
    }

    #[test]
    fn class_names_map_to_samplers() {
        assert_eq!(
            SamplerKind::from_class_name("PNDMScheduler"),
            Some(SamplerKind::Pndm)
        );
        assert_eq!(
            SamplerKind::from_class_name("DDIMScheduler"),
            Some(SamplerKind::Ddim)
        );
        assert_eq!(
            SamplerKind::from_class_name("EulerDiscreteScheduler"),
            Some(SamplerKind::Euler)
        );
        assert_eq!(
            SamplerKind::from_class_name("LCMScheduler"),
            Some(SamplerKind::Lcm)
        );
        assert_eq!(SamplerKind::from_class_name("LMSDiscreteScheduler"), None);
        let karras = SchedulerConfig::from_json(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true}"#,
        )
        .unwrap();
        assert_eq!(
            SamplerKind::from_config(&karras),
            Some(SamplerKind::DpmPp2MKarras)
        );
        let plain = SchedulerConfig::from_json(r#"{"_class_name": "DPMSolverMultistepScheduler"}"#)
            .unwrap();
        assert_eq!(SamplerKind::from_config(&plain), Some(SamplerKind::DpmPp2M));
        assert_eq!(SamplerKind::from_config(&SchedulerConfig::default()), None);
    }
}
