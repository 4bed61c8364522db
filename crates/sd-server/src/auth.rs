//! API-key authentication: `Authorization: Bearer <key>`, or HTTP Basic with the key as the password (what
//! Open WebUI sends). Keys are compared in constant time; failures get 401 with `WWW-Authenticate`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware for the protected routes.
pub async fn require_api_key(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match app.config.api_key.as_deref() {
        Some(key) if !presents_key(request.headers(), key) => {
            // In the shape of the API asked (A1111 clients read `detail`), always with WWW-Authenticate.
            let mut response = crate::guard::shaped(request.uri().path(), ApiError::Unauthorized);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sd-worker\""),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// Whether the request's `Authorization` header carries `key`.
pub fn presents_key(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        same(credentials.as_bytes(), key.as_bytes())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let password = match decoded.iter().position(|&byte| byte == b':') {
            Some(colon) => &decoded[colon + 1..],
            None => &decoded[..],
        };
        same(password, key.as_bytes())
    } else {
        false
    }
}

/// Constant time in the content; only the length can differ in timing.
fn same(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && bool::from(given.ct_eq(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_carry_the_key() {
        assert!(presents_key(&with_auth("Bearer s3cret"), "s3cret"));
        assert!(presents_key(&with_auth("bearer s3cret"), "s3cret"));
        assert!(!presents_key(&with_auth("Bearer s3cre"), "s3cret"));
        assert!(!presents_key(&with_auth("Bearer s3cretx"), "s3cret"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert!(presents_key(
            &with_auth(&format!("Basic {basic}")),
            "s3cret"
        ));
        let wrong = base64::engine::general_purpose::STANDARD.encode("s3cret:nope");
        assert!(!presents_key(
            &with_auth(&format!("Basic {wrong}")),
            "s3cret"
        ));
        assert!(!presents_key(&with_auth("Basic !!!"), "s3cret"));
        assert!(!presents_key(&with_auth("Token s3cret"), "s3cret"));
        assert!(!presents_key(&HeaderMap::new(), "s3cret"));
    }
}
