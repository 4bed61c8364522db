//! The native job request as clients send it, and parsing it from raw bytes with errors that name the field.
//! Every field is optional here so that validation, not serde, decides what is required and says why.

use crate::error::{ApiError, FieldError};
use crate::extract::{parse_json, JsonRejection};

// The body type lives in `sd-api-types` (shared with the client SDK); re-exported under its old path.
pub use sd_api_types::{JobBody, OperationName};

/// Parses a JSON body: malformed JSON is a 400; a well-formed body with a field of the wrong shape is a 422
/// naming that field (an unknown `operation` is `invalid_operation`).
pub fn parse_job_body(bytes: &[u8]) -> Result<JobBody, ApiError> {
    parse_json(bytes).map_err(|rejection| match rejection {
        JsonRejection::Field { path, message } if path == "operation" => FieldError {
            code: "invalid_operation",
            message: JsonRejection::field_message(&path, &message),
            field: Some(path),
        }
        .into(),
        other => other.into(),
    })
}
