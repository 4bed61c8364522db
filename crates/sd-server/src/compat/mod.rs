//! What the OpenAI and A1111 layers share: validating their common fields through the native validator (so
//! every API obeys the same limits), naming fields the way each API spells them, and [`CompatError`], the
//! failures of a synchronous request before each API shapes them. Running such a request is
//! [`crate::sync_run`]; images are [`crate::images`].

use axum::http::StatusCode;
use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_engine::JobError;

use crate::error::{ApiError, FieldError};
use crate::validate::{validate, JobBody, Limits, OperationName, ValidJob};

/// The scalar fields every API has, before validation.
#[derive(Clone, Debug, Default)]
pub struct CommonFields {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub steps: Option<i64>,
    pub guidance_scale: Option<f64>,
    /// -1 or `None`: random.
    pub seed: Option<i128>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub clip_skip: Option<i64>,
    /// Our names or A1111's; `None`: the model's default.
    pub sampler: Option<String>,
}

/// Validates `fields` exactly as `POST /v1/jobs` would, into a request for one image (`seeds` holds the first
/// seed; callers extend it).
pub fn validate_common(
    fields: CommonFields,
    model: &ModelInfo,
    limits: &Limits,
) -> Result<GenerateRequest, FieldError> {
    let body = JobBody {
        operation: Some(OperationName::ImageGeneration),
        prompt: fields.prompt,
        negative_prompt: fields.negative_prompt,
        steps: fields.steps,
        guidance_scale: fields.guidance_scale,
        seed: fields.seed,
        width: fields.width,
        height: fields.height,
        sampler: fields.sampler,
        clip_skip: fields.clip_skip,
        ..JobBody::default()
    };
    let ValidJob(job) = validate(body, model, limits)?;
    Ok(job.generate)
}

/// `count` consecutive seeds from the first one of `request` (A1111's and our batches both use seed + i).
pub fn consecutive_seeds(first: u64, count: usize) -> Vec<u64> {
    (0..count as u64)
        .map(|index| first.wrapping_add(index))
        .collect()
}

/// Names a field the way the calling API spells it, in the field and in the message.
pub fn rename_field(mut error: FieldError, ours: &str, theirs: &str) -> FieldError {
    if error.field.as_deref() == Some(ours) {
        error.field = Some(theirs.to_owned());
        error.message = error.message.replace(ours, theirs);
    }
    error
}

/// Failures of a compatibility request, before each API shapes them its own way.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The job ran and failed.
    #[error("generation failed: {}", .0.message)]
    JobFailed(JobError),
    /// The job was cancelled (DELETE /v1/jobs/{id}, shutdown) before it produced its images.
    #[error("the generation was cancelled")]
    Cancelled,
}

impl From<FieldError> for CompatError {
    fn from(error: FieldError) -> Self {
        Self::Api(ApiError::Invalid(error))
    }
}

impl CompatError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Api(error) => error.status(),
            Self::JobFailed(error) if error.code == "out_of_memory" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::JobFailed(error) if error.code == "invalid_input" => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::JobFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Cancelled => StatusCode::CONFLICT,
        }
    }

    pub fn code(&self) -> String {
        match self {
            Self::Api(error) => error.code().to_owned(),
            Self::JobFailed(error) => error.code.clone(),
            Self::Cancelled => "cancelled".to_owned(),
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Api(ApiError::Invalid(error)) => error.field.as_deref(),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Api(
                ApiError::QueueFull { retry_after } | ApiError::ResultsFull { retry_after },
            ) => Some(retry_after.as_secs().max(1)),
            Self::Api(ApiError::NotReady { .. }) => Some(5),
            _ => None,
        }
    }
}
