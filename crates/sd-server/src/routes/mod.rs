//! Route registration in one place. [`app`] assembles every router onto one axum app that shares one
//! engine: the native job API and system routes, OpenAI (`/v1/images/*`), A1111 (`/sdapi/v1/*`) and the
//! static UI, behind the same auth, CORS and error mapping.

pub mod a1111;
pub mod jobs;
pub mod openai;
pub mod system;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::from_fn_with_state;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
}

/// The whole HTTP app.
pub fn app(state: AppState) -> Result<Router, AppError> {
    let protected = Router::new()
        .merge(jobs::routes())
        .merge(system::routes())
        .merge(a1111::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_api_key,
        ));
    // The web UI is public (it asks for the API key itself); the API behind it is not.
    let mut app = Router::new()
        .merge(system::public_routes())
        .merge(crate::ui::ui_router())
        .merge(openai::routes(state.clone()))
        .merge(protected)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), crate::guard::guard))
        .layer(from_fn_with_state(
            state.clone(),
            crate::listener::body_deadline,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(catch_panics());
    if let Some(cors) = cors(&state.config.cors_origins)? {
        app = app.layer(cors);
    }
    Ok(app.with_state(state))
}

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, AppError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| AppError::CorsOrigin(origin.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([header::RETRY_AFTER, header::LOCATION])
            .max_age(std::time::Duration::from_secs(3600)),
    ))
}

/// A panic in a handler answers 500 with the usual JSON body; the worker and its queue live on.
fn catch_panics() -> CatchPanicLayer<PanicResponder> {
    CatchPanicLayer::custom(panic_response as PanicResponder)
}

type PanicResponder = fn(Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response;

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!(%detail, "a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::Internal(
        "the request failed inside the worker; the worker keeps running".into(),
    ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A handler that panics gets the 500 JSON answer, and the same router (the same layer `app` uses) goes on
    /// serving the next request.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_the_router_keeps_serving() {
        async fn boom() -> &'static str {
            panic!("a bug in a handler")
        }
        let router: Router = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(catch_panics());
        let request = |path: &str| {
            Request::get(path)
                .body(Body::empty())
                .unwrap_or_else(|error| panic!("{error}"))
        };
        for _ in 0..2 {
            let response = router
                .clone()
                .oneshot(request("/boom"))
                .await
                .unwrap_or_else(|error| match error {});
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = response
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|error| panic!("{error}"))
                .to_bytes();
            let json: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(json["error"]["code"], "internal_error");
            let ok = router
                .clone()
                .oneshot(request("/ok"))
                .await
                .unwrap_or_else(|error| match error {});
            assert_eq!(ok.status(), StatusCode::OK);
        }
    }
}
