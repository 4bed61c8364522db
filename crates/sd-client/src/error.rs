//! The client's one error type: every non-2xx answer is mapped from the server's stable JSON error body
//! (`{"error":{"code","message","field"}}`) by status, keeping the machine-readable `code`; transport,
//! timeout and decoding failures are their own variants.

use std::time::Duration;

use sd_api_types::ErrorBody;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// 400, 413, 415, 422: the request is wrong; `field` names the field at fault when there is one.
    #[error("invalid request ({code}): {message}")]
    Invalid {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// 401: the API key is missing or wrong.
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    /// 403: refused whatever the credentials (e.g. a foreign Origin).
    #[error("forbidden ({code}): {message}")]
    Forbidden { code: String, message: String },
    /// 404: no such job (`job_not_found`), image or route.
    #[error("not found ({code}): {message}")]
    NotFound { code: String, message: String },
    /// 410: the job's result was dropped after the server's `--result-ttl`.
    #[error("expired: {message}")]
    Expired { message: String },
    /// 409: e.g. cancelling a finished job (`job_finished`), the image of a job that did not succeed.
    #[error("conflict ({code}): {message}")]
    Conflict { code: String, message: String },
    /// 429 (`queue_full`, `results_full`) or 503 (`not_ready`, `shutting_down`, `queue_unavailable`):
    /// try again, after `retry_after` when the server said.
    #[error("busy ({code}): {message}")]
    Busy {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other failure status (500s included).
    #[error("server error {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer within the configured timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed or broke.
    #[error("transport error: {0}")]
    Transport(String),
    /// An answer that is not what the API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// A bad client configuration (e.g. an unparsable base URL or API key).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The server's stable error code, for errors that came from the server.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Invalid { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Busy { code, .. }
            | Self::Server { code, .. } => Some(code),
            Self::Unauthorized { .. } => Some("unauthorized"),
            Self::Expired { .. } => Some("job_expired"),
            Self::Timeout(_) | Self::Transport(_) | Self::Decode(_) | Self::Config(_) => None,
        }
    }

    /// The HTTP status, for errors that came from the server.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Invalid { status, .. }
            | Self::Busy { status, .. }
            | Self::Server { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::Expired { .. } => Some(410),
            Self::Conflict { .. } => Some(409),
            Self::Timeout(_) | Self::Transport(_) | Self::Decode(_) | Self::Config(_) => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Busy { .. } | Self::Timeout(_) | Self::Transport(_)
        )
    }

    /// Maps a failure status and its body (the JSON error body, or anything else) to the error.
    pub fn from_response(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let (code, message, field) = match serde_json::from_str::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => (error.code, error.message, error.field),
            Err(_) => (
                format!("http_{status}"),
                body.chars().take(500).collect(),
                None,
            ),
        };
        match status {
            400 | 413 | 415 | 422 => Self::Invalid {
                status,
                code,
                message,
                field,
            },
            401 => Self::Unauthorized { message },
            403 => Self::Forbidden { code, message },
            404 => Self::NotFound { code, message },
            409 => Self::Conflict { code, message },
            410 => Self::Expired { message },
            429 | 503 => Self::Busy {
                status,
                code,
                message,
                retry_after,
            },
            _ => Self::Server {
                status,
                code,
                message,
            },
        }
    }

    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout(error.to_string())
        } else if error.is_decode() {
            Self::Decode(error.to_string())
        } else if error.is_builder() {
            Self::Config(error.to_string())
        } else {
            Self::Transport(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_error_body_keeps_its_code_and_field() {
        let body = r#"{"error":{"code":"invalid_steps","message":"steps must be between 1 and 150","field":"steps"}}"#;
        let error = ClientError::from_response(422, body, None);
        assert_eq!(error.code(), Some("invalid_steps"));
        assert_eq!(error.status(), Some(422));
        assert!(matches!(error, ClientError::Invalid { field: Some(ref f), .. } if f == "steps"));
        let busy = ClientError::from_response(
            429,
            r#"{"error":{"code":"queue_full","message":"m"}}"#,
            Some(Duration::from_secs(3)),
        );
        assert!(busy.is_retryable());
        let proxy = ClientError::from_response(502, "<html>bad gateway</html>", None);
        assert_eq!(proxy.code(), Some("http_502"));
    }
}
