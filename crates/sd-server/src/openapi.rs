//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers' annotations and the request
//! and response types, so it cannot drift from them: the native API's, with the OpenAI and A1111 routers'
//! documents merged in by [`document`].

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{jobs, system};

#[derive(OpenApi)]
#[openapi(
    info(title = "sd-worker", description = "Stable Diffusion inference worker: native job API."),
    paths(
        jobs::submit, jobs::list, jobs::status, jobs::stream, jobs::image, jobs::cancel,
        system::health, system::ready, system::info, system::embeddings, system::metrics, system::openapi,
    ),
    components(schemas(
        crate::validate::JobBody, crate::validate::OperationName, crate::validate::Limits,
        crate::error::ErrorBody, crate::error::ErrorDetail,
        jobs::JobAccepted, jobs::JobView, jobs::JobResultView, jobs::JobList, jobs::CancelResponse,
        system::Health, system::ReadyStatus, system::Info, system::Embeddings, system::EmbeddingView,
        system::SkippedEmbeddingView, system::Defaults, system::QueueInfo,
        sd_engine::JobEvent, sd_engine::JobStatus, sd_engine::Operation, sd_engine::Progress,
        sd_engine::JobTimings, sd_engine::JobError,
    )),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
    tags((name = "jobs", description = "Native job API"), (name = "system", description = "Health and metadata")),
)]
struct NativeApi;

/// Declares the Bearer scheme (HTTP Basic with the key as password is accepted too).
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The --api-key; also accepted as the password of HTTP Basic",
                    ))
                    .build(),
            ),
        );
    }
}

/// The full document (every router's paths).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = NativeApi::openapi();
    document.merge(crate::routes::openai::OpenAiApi::openapi());
    document.merge(crate::routes::a1111::A1111Api::openapi());
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_json()
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    })
}
