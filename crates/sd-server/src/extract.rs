//! The JSON body extractor of the compatibility routes (axum's `customize-extractor-error` pattern): the body
//! is read within the server's limits, must be a JSON object, and a field of the wrong type is named by its
//! path. What went wrong is a [`JsonRejection`]; each API turns it into its own error shape through `From`.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Why a JSON body was refused.
#[derive(Debug)]
pub enum JsonRejection {
    /// The body could not be read (too large, too slow, broken connection).
    Body(ApiError),
    /// Nothing but white space.
    Empty,
    /// Not JSON at all.
    Syntax(String),
    /// Well-formed JSON, but not an object.
    NotAnObject,
    /// A field has the wrong type; `path` names it (`a.b[0]`).
    Field { path: String, message: String },
}

impl JsonRejection {
    /// The message of a field error, `path: what is wrong`.
    pub fn field_message(path: &str, message: &str) -> String {
        format!("{path}: {message}")
    }
}

/// The native shape: malformed JSON is a 400 `invalid_json`, a body that is not an object or has a field of
/// the wrong type is a 422 `invalid_type`.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::Body(error) => error,
            JsonRejection::Empty => Self::bad_request("invalid_json", "the request body is empty"),
            JsonRejection::Syntax(error) => Self::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {error}"),
            ),
            JsonRejection::NotAnObject => Self::Invalid(FieldError {
                code: "invalid_type",
                message: "the body must be a JSON object".into(),
                field: None,
            }),
            JsonRejection::Field { path, message } => Self::Invalid(FieldError {
                code: "invalid_type",
                message: JsonRejection::field_message(&path, &message),
                field: Some(path),
            }),
        }
    }
}

/// Parses a JSON object body into `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(JsonRejection::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| JsonRejection::Syntax(error.to_string()))?;
    if !value.is_object() {
        return Err(JsonRejection::NotAnObject);
    }
    serde_path_to_error::deserialize(value).map_err(|error| JsonRejection::Field {
        path: error.path().to_string(),
        message: error.into_inner().to_string(),
    })
}

/// A JSON object body as `T`; a refusal answers as the route's error type `E` (match `JsonBody(body, _)`).
#[derive(Debug)]
pub struct JsonBody<T, E = ApiError>(pub T, pub PhantomData<fn() -> E>);

impl<T, E, S> FromRequest<S> for JsonBody<T, E>
where
    T: DeserializeOwned,
    E: From<JsonRejection> + IntoResponse,
    S: Send + Sync,
{
    type Rejection = E;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| JsonRejection::Body(rejection.into()))?;
        Ok(Self(parse_json(&bytes)?, PhantomData))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        n: Option<i64>,
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(parse_json::<Body>(br#"{"n": 2}"#).is_ok());
        assert!(matches!(
            parse_json::<Body>(b"  \n"),
            Err(JsonRejection::Empty)
        ));
        assert!(matches!(
            parse_json::<Body>(b"{not json"),
            Err(JsonRejection::Syntax(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"[1, 2]"),
            Err(JsonRejection::NotAnObject)
        ));
        match parse_json::<Body>(br#"{"n": "two"}"#) {
            Err(JsonRejection::Field { path, .. }) => assert_eq!(path, "n"),
            other => panic!("{other:?}"),
        }
        let error = ApiError::from(JsonRejection::NotAnObject);
        assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ApiError::from(JsonRejection::Empty).code(), "invalid_json");
    }
}
