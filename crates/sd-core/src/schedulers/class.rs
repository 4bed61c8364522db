//! The diffusers scheduler classes we implement, with each class's defaults for keys a config lacks, and the
//! values those keys take (beta schedules, prediction types, timestep spacings).

/// The diffusers scheduler classes we implement; each has its own defaults for missing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerClass {
    Ddim,
    Pndm,
    EulerDiscrete,
    EulerAncestralDiscrete,
    HeunDiscrete,
    DpmSolverMultistep,
    UniPcMultistep,
    Lcm,
}

impl SchedulerClass {
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIMScheduler",
            Self::Pndm => "PNDMScheduler",
            Self::EulerDiscrete => "EulerDiscreteScheduler",
            Self::EulerAncestralDiscrete => "EulerAncestralDiscreteScheduler",
            Self::HeunDiscrete => "HeunDiscreteScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::UniPcMultistep => "UniPCMultistepScheduler",
            Self::Lcm => "LCMScheduler",
        }
    }

    pub(super) fn default_beta_start(self) -> f64 {
        match self {
            Self::HeunDiscrete | Self::Lcm => 0.00085,
            _ => 0.0001,
        }
    }

    pub(super) fn default_beta_end(self) -> f64 {
        match self {
            Self::HeunDiscrete | Self::Lcm => 0.012,
            _ => 0.02,
        }
    }

    pub(super) fn default_beta_schedule(self) -> &'static str {
        match self {
            Self::Lcm => "scaled_linear",
            _ => "linear",
        }
    }

    pub(super) fn default_timestep_spacing(self) -> TimestepSpacing {
        match self {
            Self::Ddim | Self::Pndm | Self::Lcm => TimestepSpacing::Leading,
            _ => TimestepSpacing::Linspace,
        }
    }

    /// PNDM and Heun have no `rescale_betas_zero_snr` argument, so the key is ignored for them.
    pub(super) fn accepts_zero_snr(self) -> bool {
        !matches!(self, Self::Pndm | Self::HeunDiscrete)
    }

    /// The sigma-based classes pin the last `alphas_cumprod` to 2^-24 after a zero-SNR rescale.
    pub(super) fn pins_zero_snr_terminal(self) -> bool {
        matches!(
            self,
            Self::EulerDiscrete
                | Self::EulerAncestralDiscrete
                | Self::DpmSolverMultistep
                | Self::UniPcMultistep
        )
    }

    pub(super) fn prediction_types(self) -> &'static [PredictionType] {
        use PredictionType::*;
        match self {
            Self::Pndm | Self::EulerAncestralDiscrete => &[Epsilon, VPrediction],
            _ => &[Epsilon, VPrediction, Sample],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BetaSchedule {
    Linear {
        start: f64,
        end: f64,
    },
    ScaledLinear {
        start: f64,
        end: f64,
    },
    SquaredCosCapV2,
    /// Only HeunDiscreteScheduler accepts it.
    Exp,
    Trained(Vec<f64>),
}

/// What the UNet predicts. Serialises as diffusers' names (`epsilon`, `v_prediction`, `sample`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Linspace,
    Trailing,
}

impl std::fmt::Display for PredictionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PredictionType {
    /// diffusers' name for it; `original_sample` is EulerDiscreteScheduler's old name for `sample`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "epsilon" => Some(Self::Epsilon),
            "v_prediction" => Some(Self::VPrediction),
            "sample" | "original_sample" => Some(Self::Sample),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::VPrediction => "v_prediction",
            Self::Sample => "sample",
        }
    }
}
