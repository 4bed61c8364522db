//! The server's one error type and its one mapping to a status code and a JSON body
//! `{"error":{"code","message","field"}}`, including axum's own extractor rejections.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sd_engine::Readiness;

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl FieldError {
    pub fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or a query or path parameter does not parse.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// Well-formed, but a field is missing, of the wrong type or out of range.
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    JobNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Refused whatever the credentials (a foreign Host or Origin without an API key).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The client did not send the whole body (or its headers) in time.
    #[error("the request was not received in time: {0}")]
    RequestTimeout(String),
    /// The job's result existed but was dropped after its time to live.
    #[error("{0}")]
    JobExpired(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the queue is full; retry later")]
    QueueFull { retry_after: Duration },
    /// Finished results nobody has read yet fill `--max-results`/`--max-result-mb`; they are kept until read
    /// or expired, so new jobs wait.
    #[error("unread results fill the result budget; fetch them, or retry later")]
    ResultsFull { retry_after: Duration },
    /// The request headers are larger than the worker accepts.
    #[error("the request headers are too large (at most {0} bytes)")]
    HeadersTooLarge(usize),
    #[error("{reason}")]
    NotReady { reason: String },
    #[error("the worker is shutting down")]
    ShuttingDown,
    /// A gateway cannot reach its job queue (Redis); it recovers by itself when the queue returns.
    #[error("the job queue is unavailable, retry later: {0}")]
    QueueUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 503 `not_ready`: the model is still loading, or failed to load.
    pub fn not_ready(readiness: Readiness) -> Self {
        let reason = match readiness {
            Readiness::Loading | Readiness::Ready(_) => "loading model".to_owned(),
            Readiness::Failed(reason) => format!("model failed to load: {reason}"),
        };
        Self::NotReady { reason }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::JobNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::JobExpired(_) => StatusCode::GONE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::QueueFull { .. } | Self::ResultsFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotReady { .. } | Self::ShuttingDown | Self::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Forbidden { code, .. } => code,
            Self::RequestTimeout(_) => "request_timeout",
            Self::JobExpired(_) => "job_expired",
            Self::Invalid(field) => field.code,
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::JobNotFound(_) => "job_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::QueueFull { .. } => "queue_full",
            Self::ResultsFull { .. } => "results_full",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::NotReady { .. } => "not_ready",
            Self::ShuttingDown => "shutting_down",
            Self::QueueUnavailable(_) => "queue_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid(field) => field.field.clone(),
            _ => None,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(error)
    }
}

// The error body lives in `sd-api-types` (shared with the client SDK); re-exported under its old path.
pub use sd_api_types::{ErrorBody, ErrorDetail};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sd-worker\""),
                );
            }
            Self::QueueFull { retry_after } | Self::ResultsFull { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            Self::NotReady { .. } | Self::QueueUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5u64));
            }
            _ => {}
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else if is_timeout(&rejection) {
            Self::RequestTimeout(
                "the body did not arrive within --body-timeout; send it whole, or raise the limit"
                    .into(),
            )
        } else {
            Self::bad_request("invalid_body", rejection.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

/// Whether a body read failed because the body deadline passed.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<crate::listener::BodyTimeout>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_queue_is_a_503_with_retry_after() {
        let error = ApiError::QueueUnavailable("connection refused".to_owned());
        assert_eq!(error.code(), "queue_unavailable");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
