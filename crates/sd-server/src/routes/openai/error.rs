//! Errors on the OpenAI routes, in OpenAI's shape `{"error":{"message","type","param","code"}}` and with
//! OpenAI's status codes (an invalid parameter is a 400). A middleware reshapes the errors that other layers
//! (auth, body limits, axum's rejections) produce in the native shape.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::compat::CompatError;
use crate::error::{ApiError, FieldError};
use crate::extract::JsonRejection;

/// OpenAI's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `requests` (429) or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// An error of an OpenAI route.
#[derive(Debug)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: String,
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    /// An error with no parameter at fault.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: code.to_owned(),
            retry_after: None,
        }
    }

    /// A 400 naming the parameter at fault.
    pub fn invalid(param: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// A 500 `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "invalid_signature", message)
    }

    pub fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message.clone(),
                kind: error_type(self.status).to_owned(),
                param: self.param.clone(),
                code: Some(self.code.clone()),
            },
        }
    }
}

/// OpenAI's error `type` for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::TOO_MANY_REQUESTS => "requests",
        status if status.is_server_error() => "server_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI reports invalid parameters as 400 where the native API says 422.
fn openai_status(status: StatusCode) -> StatusCode {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    }
}

fn openai_code(status: StatusCode, code: String) -> String {
    match status {
        StatusCode::UNAUTHORIZED => "invalid_api_key".to_owned(),
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded".to_owned(),
        _ => code,
    }
}

impl From<CompatError> for OpenAiError {
    fn from(error: CompatError) -> Self {
        let status = openai_status(error.status());
        Self {
            status,
            message: error.to_string(),
            param: error.field().map(str::to_owned),
            code: openai_code(status, error.code()),
            retry_after: error.retry_after(),
        }
    }
}

impl From<FieldError> for OpenAiError {
    fn from(error: FieldError) -> Self {
        CompatError::from(error).into()
    }
}

/// A refused JSON body: malformed JSON keeps the native `invalid_json`; a body that is not an object, or a
/// field of the wrong type, is a 400 `invalid_type` naming the parameter (`body` for the whole body).
impl From<JsonRejection> for OpenAiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::NotAnObject => {
                Self::invalid("body", "invalid_type", "the body must be a JSON object")
            }
            JsonRejection::Field { path, message } => Self::invalid(
                &path,
                "invalid_type",
                JsonRejection::field_message(&path, &message),
            ),
            other => ApiError::from(other).into(),
        }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        CompatError::from(error).into()
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "OpenAI request failed");
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Rewrites native-shaped JSON errors from the layers around the OpenAI handlers into OpenAI's shape.
pub async fn reshape_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status.is_success() || !is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Error bodies are small; the limit only guards against a surprise.
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return (parts.status, parts.headers).into_response();
    };
    let native: Option<(String, String, Option<String>)> = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| {
            let error = value.get("error")?;
            if error.get("type").is_some() {
                return None;
            }
            Some((
                error.get("code")?.as_str()?.to_owned(),
                error.get("message")?.as_str()?.to_owned(),
                error
                    .get("field")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ))
        });
    let Some((code, message, field)) = native else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let status = openai_status(status);
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = OpenAiError {
        param: field,
        ..OpenAiError::new(status, &openai_code(status, code), message)
    }
    .body();
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(json))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}
