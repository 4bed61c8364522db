//! Cross-site request guard, applied to every route before auth and handlers.
//!
//! Without an API key the worker trusts whoever can reach it, which a browser page the user visits can do:
//! a `text/plain` POST needs no CORS preflight, and DNS rebinding makes a foreign name resolve to 127.0.0.1.
//! So in that mode only loopback `Host` values (plus `--allowed-host`) are served, and a browser `Origin` must
//! be one of those hosts or a configured CORS origin. On every mode, a POST with a body to a JSON route must
//! say `Content-Type: application/json` (a cross-site form or `text/plain` body cannot). With an API key
//! the key is the protection (a page cannot know it), so Host and Origin are not checked. Oversized request
//! headers are refused here too (431 with the usual JSON body).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Routes whose body is multipart, not JSON.
const MULTIPART_ROUTES: &[&str] = &["/v1/images/edits"];

/// Request headers larger than this (or more of them than [`MAX_HEADERS`]) answer 431 with a JSON body. hyper
/// is given more room than this (see [`crate::listener`]) so that its own bodiless 431 is only a backstop.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;

pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    // Content-Length or chunked on the wire; in-process requests only know their body's size.
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|length| length.trim() != "0")
        || request.headers().contains_key(header::TRANSFER_ENCODING)
        || http_body::Body::size_hint(request.body()).lower() > 0;
    match check(
        &app,
        request.method(),
        request.uri(),
        request.headers(),
        has_body,
    ) {
        Ok(()) => next.run(request).await,
        Err(error) => shaped(request.uri().path(), error),
    }
}

fn check(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<(), ApiError> {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge(MAX_HEADER_BYTES));
    }
    let config = &app.config;
    if config.api_key.is_none() {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|authority| authority.to_string()));
        // A request without any Host is not from a browser (browsers always send one).
        if let Some(host) = host {
            if !host_allowed(&host, &config.allowed_hosts) {
                return Err(ApiError::Forbidden {
                    code: "host_not_allowed",
                    message: format!(
                        "Host {host:?} is not allowed without an API key (only loopback names are, to stop \
                         DNS rebinding): use http://127.0.0.1, pass --allowed-host {}, or set an API key",
                        strip_port(&host)
                    ),
                });
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !origin_allowed(origin, &config.allowed_hosts, &config.cors_origins) {
                return Err(ApiError::Forbidden {
                    code: "origin_not_allowed",
                    message: format!(
                        "cross-site request from {origin:?} refused without an API key: list it in \
                         --cors-origin, or set an API key"
                    ),
                });
            }
        }
    }
    if *method == Method::POST
        && has_body
        && !MULTIPART_ROUTES.contains(&uri.path())
        && !is_json(headers)
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(())
}

/// `Content-Type: application/json` (parameters allowed) or `application/*+json`.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The host part of a `Host` value, without port, lowercased (`[::1]:7860` -> `[::1]`).
fn strip_port(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host[..=end].to_owned(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

/// Loopback names, and whatever the operator allowed (a name, with or without port).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host);
    let name = name.trim_end_matches('.');
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || name.ends_with(".localhost")
        || allowed.iter().any(|allowed| {
            let allowed = strip_port(allowed);
            allowed == "*" || allowed.trim_end_matches('.') == name
        })
}

fn origin_allowed(origin: &str, allowed_hosts: &[String], cors_origins: &[String]) -> bool {
    if cors_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // `scheme://host[:port]`; "null" (sandboxed frames, file://) has no host and is refused.
    match origin.split_once("://") {
        Some((_, authority)) => host_allowed(authority, allowed_hosts),
        None => false,
    }
}

/// The error in the shape of the API the path belongs to.
pub fn shaped(path: &str, error: ApiError) -> Response {
    if path.starts_with("/sdapi/") {
        crate::routes::a1111::A1111Error::from(error).into_response()
    } else if path.starts_with("/v1/images/") || path.starts_with("/v1/models") {
        crate::routes::openai::error::OpenAiError::from(error).into_response()
    } else {
        error.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_headers_answer_431_with_a_json_body() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let loader = Box::new(|| {
            Ok(
                Box::new(sd_engine::fake::FakeBackend::new(Default::default()))
                    as Box<dyn sd_engine::Backend>,
            )
        });
        let engine = sd_engine::Engine::start(loader, Default::default())
            .unwrap_or_else(|error| panic!("{error}"));
        let app = crate::app(AppState::new(engine, crate::ServerConfig::default()))
            .unwrap_or_else(|error| panic!("{error}"));
        for path in ["/v1/jobs", "/sdapi/v1/options", "/v1/images/files/x/0.png"] {
            let request = Request::get(path)
                .header("x-big", "a".repeat(MAX_HEADER_BYTES + 1))
                .body(Body::empty())
                .unwrap_or_else(|error| panic!("{error}"));
            let response = app
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|error| match error {});
            assert_eq!(
                response.status(),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            );
            let body = response
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|error| panic!("{error}"))
                .to_bytes();
            let json: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|error| panic!("{path}: {error}"));
            assert!(json["error"]["message"].is_string(), "{path}: {json}");
        }
    }

    #[test]
    fn loopback_hosts_with_any_port_are_allowed() {
        for host in [
            "localhost",
            "localhost:7860",
            "127.0.0.1:8080",
            "[::1]:7860",
            "[::1]",
            "LOCALHOST.",
        ] {
            assert!(host_allowed(host, &[]), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7860",
            "127.0.0.1.evil.example",
            "10.0.0.2",
        ] {
            assert!(!host_allowed(host, &[]), "{host}");
        }
        let allowed = vec!["gpu-box".to_owned(), "10.0.0.2:7860".to_owned()];
        assert!(host_allowed("gpu-box:7860", &allowed));
        assert!(host_allowed("10.0.0.2", &allowed));
        assert!(!host_allowed("other", &allowed));
    }

    #[test]
    fn origins_must_be_allowed_hosts_or_cors_origins() {
        assert!(origin_allowed("http://127.0.0.1:7860", &[], &[]));
        assert!(!origin_allowed("https://evil.example", &[], &[]));
        assert!(!origin_allowed("null", &[], &[]));
        assert!(origin_allowed(
            "https://app.example",
            &[],
            &["https://app.example".to_owned()]
        ));
    }
}
