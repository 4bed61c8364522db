//! The images an OpenAI route hands back: converted to the requested `output_format` (keeping A1111's
//! infotext, in EXIF for JPEG/WebP), as base64 or as a signed URL served by `GET /v1/images/files/...`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use sd_engine::metadata::{self, ImageFormat};
use sd_engine::ImageError;
use serde::{Deserialize, Serialize};

use super::error::OpenAiError;
use super::signing::UrlSigner;
use crate::cpu::CpuPool;
use crate::error::ApiError;
use crate::state::AppState;
use crate::sync_run::Produced;

/// Signed URLs live at most this long (and never longer than the results themselves).
const MAX_URL_LIFETIME: Duration = Duration::from_secs(3600);

/// `output_format` (+ `output_compression` for JPEG).
pub fn parse_format(
    format: Option<&str>,
    compression: Option<i64>,
) -> Result<ImageFormat, OpenAiError> {
    let compression = match compression {
        None => 100,
        Some(value) if (0..=100).contains(&value) => value,
        Some(value) => {
            return Err(OpenAiError::invalid(
                "output_compression",
                "invalid_value",
                format!("output_compression must be between 0 and 100, got {value}"),
            ))
        }
    };
    match format.map(str::to_ascii_lowercase).as_deref() {
        None | Some("png") => Ok(ImageFormat::Png),
        Some("jpeg" | "jpg") => Ok(ImageFormat::Jpeg(compression.clamp(1, 100) as u8)),
        Some("webp") => Ok(ImageFormat::Webp),
        Some(other) => Err(OpenAiError::invalid(
            "output_format",
            "invalid_value",
            format!("output_format {other:?} is not supported; use png, jpeg or webp"),
        )),
    }
}

/// `png`, `jpeg` or `webp`, as OpenAI names them.
pub fn format_name(format: ImageFormat) -> &'static str {
    format.extension()
}

/// The engine's PNG in `format`, with the same infotext.
pub fn convert(png: &[u8], format: ImageFormat) -> Result<Vec<u8>, OpenAiError> {
    if format == ImageFormat::Png {
        return Ok(png.to_vec());
    }
    let parameters = metadata::read_parameters(png);
    let decoded = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|error| {
            OpenAiError::internal(format!("cannot decode the generated PNG: {error}"))
        })?
        .to_rgb8();
    metadata::encode_image(&decoded, format, parameters.as_deref())
        .map_err(|error| OpenAiError::internal(error.to_string()))
}

/// One element of `data`.
#[derive(Debug, Serialize)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub revised_prompt: String,
}

/// Base64 images in `format` (conversion off the async workers).
pub async fn base64_images(
    cpu: &CpuPool,
    images: Vec<Produced>,
    format: ImageFormat,
) -> Result<Vec<String>, OpenAiError> {
    cpu.run(move || {
        images
            .iter()
            .map(|image| {
                convert(&image.png, format)
                    .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|error| OpenAiError::internal(format!("conversion task failed: {error}")))?
}

/// Absolute signed URLs for `images`, on the host the client reached us by.
pub fn urls(
    images: &[Produced],
    format: ImageFormat,
    signer: &UrlSigner,
    headers: &HeaderMap,
    result_ttl: Duration,
    trust_forwarded: bool,
) -> Vec<String> {
    let base = base_url(headers, trust_forwarded);
    let lifetime = result_ttl.min(MAX_URL_LIFETIME);
    images
        .iter()
        .map(|image| {
            let path = format!(
                "/v1/images/files/{}/{}",
                image.job_id,
                file_name(image.offset, format)
            );
            format!("{base}{}", signer.sign(&path, lifetime))
        })
        .collect()
}

fn file_name(index: usize, format: ImageFormat) -> String {
    match format {
        ImageFormat::Jpeg(quality) => format!("{index}-q{quality}.jpeg"),
        other => format!("{index}.{}", other.extension()),
    }
}

/// (image index, format) from a file name made by [`file_name`].
fn parse_file_name(name: &str) -> Option<(usize, ImageFormat)> {
    let (stem, extension) = name.rsplit_once('.')?;
    match extension {
        "png" => Some((stem.parse().ok()?, ImageFormat::Png)),
        "webp" => Some((stem.parse().ok()?, ImageFormat::Webp)),
        "jpeg" => {
            let (index, quality) = stem.split_once("-q")?;
            let quality: u8 = quality.parse().ok()?;
            (1..=100)
                .contains(&quality)
                .then_some((index.parse().ok()?, ImageFormat::Jpeg(quality)))
        }
        _ => None,
    }
}

/// `scheme://host` from `Host`, or from `X-Forwarded-Proto`/`X-Forwarded-Host` when they are trusted (any client
/// can send them, and a link built from them would point wherever that client says).
fn base_url(headers: &HeaderMap, trust_forwarded: bool) -> String {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let forwarded = |name: &str| value(name).filter(|_| trust_forwarded);
    let scheme = forwarded("x-forwarded-proto").unwrap_or_else(|| "http".to_owned());
    let host = forwarded("x-forwarded-host")
        .or_else(|| value(header::HOST.as_str()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{scheme}://{host}")
}

#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    pub expires: Option<u64>,
    pub signature: Option<String>,
}

/// OpenAI: an image behind a signed URL from `response_format: url` (no API key needed).
#[utoipa::path(get, path = "/v1/images/files/{job_id}/{file}", tag = "openai", security(()),
    params(("job_id" = String, Path), ("file" = String, Path, description = "`N.png`, `N.webp` or `N-qQ.jpeg`"),
        ("expires" = u64, Query, description = "Unix time"), ("signature" = String, Query)),
    responses(
        (status = 200, description = "The image with its A1111 infotext", content_type = "image/png", body = Vec<u8>),
        (status = 403, description = "Unsigned, tampered or expired link", body = super::error::OpenAiErrorBody),
        (status = 404, description = "No such image", body = super::error::OpenAiErrorBody),
        (status = 410, description = "The image expired (`job_expired`)", body = super::error::OpenAiErrorBody),
    ))]
pub async fn file(
    State(app): State<AppState>,
    Extension(signer): Extension<Arc<UrlSigner>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> Result<Response, OpenAiError> {
    // Rejections as JSON errors, like every other route (axum's own are plain text).
    let Path((job_id, name)) = path.map_err(ApiError::from)?;
    let Query(query) = query.map_err(ApiError::from)?;
    let path = format!("/v1/images/files/{job_id}/{name}");
    let (Some(expires), Some(signature)) = (query.expires, query.signature.as_deref()) else {
        return Err(OpenAiError::forbidden("the link is not signed"));
    };
    signer
        .verify(&path, expires, signature)
        .map_err(|error| OpenAiError::forbidden(&error.to_string()))?;
    let (index, format) =
        parse_file_name(&name).ok_or_else(|| OpenAiError::not_found("no such image"))?;
    let png = app
        .engine
        .image(&job_id, index)
        .map_err(|error| match error {
            ImageError::NotFound if app.engine.expired(&job_id) => OpenAiError::new(
                StatusCode::GONE,
                "job_expired",
                "the image has expired (--result-ttl)",
            ),
            _ => OpenAiError::not_found("no such image"),
        })?;
    let bytes = app
        .cpu
        .run(move || convert(&png, format))
        .await
        .map_err(|error| OpenAiError::internal(format!("conversion task failed: {error}")))??;
    Ok((
        [
            (header::CONTENT_TYPE, format.mime()),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for format in [ImageFormat::Png, ImageFormat::Webp, ImageFormat::Jpeg(85)] {
            assert_eq!(parse_file_name(&file_name(3, format)), Some((3, format)));
        }
        assert_eq!(parse_file_name("3.gif"), None);
        assert_eq!(parse_file_name("x.png"), None);
        assert_eq!(parse_file_name("1-q0.jpeg"), None);
    }

    #[test]
    fn formats_parse_with_compression() {
        assert_eq!(parse_format(None, None).unwrap(), ImageFormat::Png);
        assert_eq!(
            parse_format(Some("jpeg"), Some(60)).unwrap(),
            ImageFormat::Jpeg(60)
        );
        assert_eq!(
            parse_format(Some("JPG"), None).unwrap(),
            ImageFormat::Jpeg(100)
        );
        assert_eq!(
            parse_format(Some("gif"), None)
                .unwrap_err()
                .param
                .as_deref(),
            Some("output_format")
        );
        assert_eq!(
            parse_format(Some("png"), Some(101))
                .unwrap_err()
                .param
                .as_deref(),
            Some("output_compression")
        );
    }

    #[test]
    fn base_urls_honour_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "worker:8600".parse().unwrap());
        assert_eq!(base_url(&headers, false), "http://worker:8600");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-host", "images.example, inner".parse().unwrap());
        // Untrusted by default: any client can send these headers.
        assert_eq!(base_url(&headers, false), "http://worker:8600");
        assert_eq!(base_url(&headers, true), "https://images.example");
    }
}
