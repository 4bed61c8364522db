//! `scheduler/scheduler_config.json`, read the way diffusers' `XScheduler.from_config(config)` reads it: every
//! key is optional, a key the file lacks takes the default of the class being built (see [`SchedulerClass`]),
//! unknown keys are ignored, and a value the class cannot handle is a [`CoreError::Config`] naming the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

pub use super::class::{BetaSchedule, PredictionType, SchedulerClass, TimestepSpacing};
use super::schedule;
use crate::{CoreError, Result};

/// The scheduler configuration as the file states it; `None` means "the class default".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<String>,
    pub timestep_spacing: Option<String>,
    pub steps_offset: Option<i64>,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub thresholding: Option<bool>,
    pub skip_prk_steps: Option<bool>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub use_flow_sigmas: Option<bool>,
    pub use_dynamic_shifting: Option<bool>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub final_sigmas_type: Option<String>,
    pub timestep_type: Option<String>,
    pub interpolation_type: Option<String>,
    pub solver_order: Option<usize>,
    pub algorithm_type: Option<String>,
    pub solver_type: Option<String>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: Option<bool>,
    #[serde(deserialize_with = "non_finite_float")]
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<String>,
    pub predict_x0: Option<bool>,
    pub disable_corrector: Option<Vec<usize>>,
    pub original_inference_steps: Option<usize>,
    pub timestep_scaling: Option<f64>,
    /// The file this came from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Boolean options of the diffusers classes that this crate refuses when set.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flag {
    Thresholding,
    ExponentialSigmas,
    BetaSigmas,
    LuLambdas,
    FlowSigmas,
    DynamicShifting,
}

/// The keys every class shares, resolved for one class.
#[derive(Clone, Debug)]
pub(crate) struct CommonParams {
    pub num_train_timesteps: usize,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub alphas_cumprod: Vec<f32>,
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json`. Non-finite numbers (`-Infinity`, as Python writes them) are accepted.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| CoreError::file(path, e.to_string()))?;
        let mut config = Self::from_json(&text).map_err(|e| match e {
            CoreError::Config { message, .. } => CoreError::config(path, message),
            other => other,
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses the JSON text of a scheduler config.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(&quote_non_finite_literals(text))
            .map_err(|e| CoreError::config("scheduler_config.json", e.to_string()))
    }

    /// The prediction type as the file states it (every class defaults to `epsilon`).
    pub fn prediction_type_name(&self) -> &str {
        self.prediction_type.as_deref().unwrap_or("epsilon")
    }

    /// The prediction type the file states (default `epsilon`), or an error naming the file for a name diffusers
    /// does not have.
    pub fn prediction(&self) -> Result<PredictionType> {
        let name = self.prediction_type_name();
        PredictionType::from_name(name).ok_or_else(|| {
            let path = self
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("scheduler_config.json"));
            CoreError::config(
                path,
                format!("unsupported prediction_type `{name}` (expected epsilon, v_prediction or sample)"),
            )
        })
    }

    /// The training `alphas_cumprod` (f32, as diffusers holds it) that `class` derives from this config.
    pub fn alphas_cumprod(&self, class: SchedulerClass) -> Result<Vec<f32>> {
        Ok(self.common(class)?.alphas_cumprod)
    }

    /// An error about this config's value for `class`.
    pub(crate) fn invalid(
        &self,
        class: SchedulerClass,
        message: impl std::fmt::Display,
    ) -> CoreError {
        let path = self
            .source
            .clone()
            .unwrap_or_else(|| PathBuf::from("scheduler_config.json"));
        CoreError::config(path, format!("{}: {message}", class.class_name()))
    }

    /// Rejects `key = true` for an option `class` has but we do not implement.
    /// An error naming the first of `flags` the file sets to true (options of `class` we do not implement).
    pub(crate) fn reject_flags(&self, class: SchedulerClass, flags: &[Flag]) -> Result<()> {
        for flag in flags {
            let (key, value) = match flag {
                Flag::Thresholding => ("thresholding", self.thresholding),
                Flag::ExponentialSigmas => ("use_exponential_sigmas", self.use_exponential_sigmas),
                Flag::BetaSigmas => ("use_beta_sigmas", self.use_beta_sigmas),
                Flag::LuLambdas => ("use_lu_lambdas", self.use_lu_lambdas),
                Flag::FlowSigmas => ("use_flow_sigmas", self.use_flow_sigmas),
                Flag::DynamicShifting => ("use_dynamic_shifting", self.use_dynamic_shifting),
            };
            if value == Some(true) {
                return Err(self.invalid(class, format!("`{key}: true` is not supported")));
            }
        }
        Ok(())
    }

    /// Resolves the shared keys for `class` and computes its `alphas_cumprod`.
    pub(crate) fn common(&self, class: SchedulerClass) -> Result<CommonParams> {
        let num_train_timesteps = self.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(self.invalid(
                class,
                format!("num_train_timesteps {num_train_timesteps} is too small"),
            ));
        }
        let beta_schedule = self.beta_schedule(class)?;
        let mut betas = schedule::betas(&beta_schedule, num_train_timesteps);
        if betas.len() != num_train_timesteps {
            return Err(self.invalid(
                class,
                format!(
                    "trained_betas has {} values but num_train_timesteps is {num_train_timesteps}",
                    betas.len()
                ),
            ));
        }
        let zero_snr = class.accepts_zero_snr() && self.rescale_betas_zero_snr.unwrap_or(false);
        if zero_snr {
            betas = schedule::rescale_zero_terminal_snr(&betas);
        }
        let mut alphas_cumprod = schedule::alphas_cumprod(&betas);
        if zero_snr && class.pins_zero_snr_terminal() {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        Ok(CommonParams {
            num_train_timesteps,
            prediction_type: self.prediction_type(class)?,
            timestep_spacing: self.timestep_spacing(class)?,
            steps_offset: self.steps_offset.unwrap_or(0),
            alphas_cumprod,
        })
    }

    fn beta_schedule(&self, class: SchedulerClass) -> Result<BetaSchedule> {
        if let Some(trained) = &self.trained_betas {
            return Ok(BetaSchedule::Trained(trained.clone()));
        }
        let start = self.beta_start.unwrap_or(class.default_beta_start());
        let end = self.beta_end.unwrap_or(class.default_beta_end());
        let name = self
            .beta_schedule
            .as_deref()
            .unwrap_or(class.default_beta_schedule());
        match name {
            "linear" => Ok(BetaSchedule::Linear { start, end }),
            "scaled_linear" => Ok(BetaSchedule::ScaledLinear { start, end }),
            "squaredcos_cap_v2" => Ok(BetaSchedule::SquaredCosCapV2),
            "exp" if class == SchedulerClass::HeunDiscrete => Ok(BetaSchedule::Exp),
            other => Err(self.invalid(
                class,
                format!("unsupported beta_schedule `{other}` (expected linear, scaled_linear or squaredcos_cap_v2)"),
            )),
        }
    }

    fn prediction_type(&self, class: SchedulerClass) -> Result<PredictionType> {
        let name = self.prediction_type.as_deref().unwrap_or("epsilon");
        let parsed = match name {
            "epsilon" => Some(PredictionType::Epsilon),
            "v_prediction" => Some(PredictionType::VPrediction),
            "sample" => Some(PredictionType::Sample),
            "original_sample" if class == SchedulerClass::EulerDiscrete => {
                Some(PredictionType::Sample)
            }
            _ => None,
        };
        match parsed {
            Some(p) if class.prediction_types().contains(&p) => Ok(p),
            _ => {
                let allowed: Vec<&str> =
                    class.prediction_types().iter().map(|p| p.name()).collect();
                Err(self.invalid(
                    class,
                    format!(
                        "unsupported prediction_type `{name}` (expected one of {})",
                        allowed.join(", ")
                    ),
                ))
            }
        }
    }

    fn timestep_spacing(&self, class: SchedulerClass) -> Result<TimestepSpacing> {
        match self.timestep_spacing.as_deref() {
            None => Ok(class.default_timestep_spacing()),
            Some("leading") => Ok(TimestepSpacing::Leading),
            Some("linspace") => Ok(TimestepSpacing::Linspace),
            Some("trailing") => Ok(TimestepSpacing::Trailing),
            Some(other) => Err(self.invalid(
                class,
                format!("unsupported timestep_spacing `{other}` (expected leading, linspace or trailing)"),
            )),
        }
    }

    /// `final_sigmas_type`: `Ok(true)` for "sigma_min", `Ok(false)` for "zero".
    pub(crate) fn final_sigma_is_min(&self, class: SchedulerClass) -> Result<bool> {
        match self.final_sigmas_type.as_deref().unwrap_or("zero") {
            "zero" => Ok(false),
            "sigma_min" => Ok(true),
            other => Err(self.invalid(
                class,
                format!("unsupported final_sigmas_type `{other}` (expected zero or sigma_min)"),
            )),
        }
    }
}

/// Python's `json.dump` writes infinities and NaN as bare `Infinity`/`-Infinity`/`NaN`, which JSON (and
/// serde_json) reject. Outside strings, turn them into strings that [`non_finite_float`] understands.
fn quote_non_finite_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(literal) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|l| rest.starts_with(l))
        {
            out.push('"');
            out.push_str(literal);
            out.push('"');
            rest = &rest[literal.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn non_finite_float<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrLiteral {
        Number(f64),
        Literal(String),
    }
    match Option::<NumberOrLiteral>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumberOrLiteral::Number(v)) => Ok(Some(v)),
        Some(NumberOrLiteral::Literal(s)) => match s.as_str() {
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "NaN" => Ok(Some(f64::NAN)),
            other => Err(serde::de::Error::custom(format!(
                "expected a number, got `{other}`"
            ))),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SD15: &str = r#"{
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null,
        "clip_sample": false, "some_future_key": [1, 2]
    }"#;

    #[test]
    fn reads_sd15_config_and_ignores_unknown_keys() {
        let c = SchedulerConfig::from_json(SD15).unwrap();
        assert_eq!(c.class_name.as_deref(), Some("PNDMScheduler"));
        assert_eq!(c.steps_offset, Some(1));
        assert_eq!(c.trained_betas, None);
        assert_eq!(c.timestep_spacing, None);
        assert_eq!(c.prediction_type_name(), "epsilon");
        let v = SchedulerConfig::from_json(r#"{"prediction_type": "v_prediction"}"#).unwrap();
        assert_eq!(v.prediction_type_name(), "v_prediction");
    }

    #[test]
    fn missing_keys_take_the_built_class_defaults() {
        let c = SchedulerConfig::from_json(SD15).unwrap();
        assert_eq!(
            c.common(SchedulerClass::Ddim).unwrap().timestep_spacing,
            TimestepSpacing::Leading
        );
        assert_eq!(
            c.common(SchedulerClass::EulerDiscrete)
                .unwrap()
                .timestep_spacing,
            TimestepSpacing::Linspace
        );
        let empty = SchedulerConfig::default();
        assert_eq!(
            empty.beta_schedule(SchedulerClass::Lcm).unwrap(),
            BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012
            }
        );
        assert_eq!(
            empty.beta_schedule(SchedulerClass::HeunDiscrete).unwrap(),
            BetaSchedule::Linear {
                start: 0.00085,
                end: 0.012
            }
        );
        assert_eq!(
            empty.beta_schedule(SchedulerClass::Ddim).unwrap(),
            BetaSchedule::Linear {
                start: 0.0001,
                end: 0.02
            }
        );
    }

    #[test]
    fn python_infinity_is_accepted() {
        let c = SchedulerConfig::from_json(
            r#"{"lambda_min_clipped": -Infinity, "variance_type": "NaN"}"#,
        )
        .unwrap();
        assert_eq!(c.lambda_min_clipped, Some(f64::NEG_INFINITY));
        // Inside strings nothing is rewritten.
        assert_eq!(c.variance_type.as_deref(), Some("NaN"));
    }

    #[test]
    fn unsupported_values_are_errors_naming_the_file() {
        let mut c = SchedulerConfig::from_json(r#"{"beta_schedule": "sigmoid"}"#).unwrap();
        c.source = Some(PathBuf::from("/m/scheduler/scheduler_config.json"));
        let e = c.common(SchedulerClass::Ddim).unwrap_err().to_string();
        assert!(
            e.contains("/m/scheduler/scheduler_config.json") && e.contains("sigmoid"),
            "{e}"
        );
        let c = SchedulerConfig::from_json(r#"{"prediction_type": "sample"}"#).unwrap();
        assert!(c.common(SchedulerClass::Pndm).is_err());
        assert!(c.common(SchedulerClass::Ddim).is_ok());
        let c = SchedulerConfig::from_json(r#"{"timestep_spacing": "sideways"}"#).unwrap();
        assert!(c
            .common(SchedulerClass::EulerDiscrete)
            .unwrap_err()
            .to_string()
            .contains("sideways"));
        let c = SchedulerConfig::from_json(r#"{"trained_betas": [0.1, 0.2]}"#).unwrap();
        assert!(c.common(SchedulerClass::Ddim).is_err());
    }

    #[test]
    fn malformed_json_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("sd-core-sched-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scheduler_config.json");
        std::fs::write(&path, "{\"num_train_timesteps\": \"many\"}").unwrap();
        let e = SchedulerConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let missing = SchedulerConfig::from_file(&dir.join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.json"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_snr_is_ignored_by_classes_without_the_option() {
        let c = SchedulerConfig::from_json(r#"{"rescale_betas_zero_snr": true}"#).unwrap();
        assert_eq!(
            c.common(SchedulerClass::Ddim).unwrap().alphas_cumprod[999],
            0.0
        );
        assert_eq!(
            c.common(SchedulerClass::EulerDiscrete)
                .unwrap()
                .alphas_cumprod[999],
            2f32.powi(-24)
        );
        assert!(c.common(SchedulerClass::Pndm).unwrap().alphas_cumprod[999] > 0.0);
    }
}
