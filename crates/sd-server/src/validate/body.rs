//! The native job request as clients send it, and parsing it from raw bytes with errors that name the field.
//! Every field is optional here so that validation, not serde, decides what is required and says why.

use crate::error::{ApiError, FieldError};

// The body type lives in `sd-api-types` (shared with the client SDK); re-exported under its old path.
pub use sd_api_types::{JobBody, OperationName};

/// Parses a JSON body: malformed JSON is a 400; a well-formed body with a field of the wrong shape is a 422
/// naming that field.
pub fn parse_job_body(bytes: &[u8]) -> Result<JobBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(FieldError {
            code: "invalid_type",
            message: "the body must be a JSON object".into(),
            field: None,
        }
        .into());
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner().to_string();
        let code = if field == "operation" {
            "invalid_operation"
        } else {
            "invalid_type"
        };
        FieldError {
            code,
            message: format!("{field}: {inner}"),
            field: Some(field),
        }
        .into()
    })
}
