//! The web UI: the app's production build, embedded in the binary (`ui-dist/`, listed in `ui/assets.rs`, both
//! rebuilt by `ui/build-and-embed.sh`) and served at `/`, so `sd-worker serve` needs no files, npm or network
//! at run time.
//!
//! Wire it in as the API router's fallback, outside the API-key layer (the page must load to ask for a key;
//! the data it then fetches goes through the API and its auth):
//! `api.fallback_service(sd_server::ui::ui_router())`, or `.merge(ui_router())` when the API router has no
//! fallback of its own. Paths under the API's namespaces never get the page: they get a JSON 404.

mod assets;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

/// Serves the embedded UI for every path it is given: files by exact path, `index.html` for client-side
/// routes (paths whose last segment has no extension), JSON 404 for the rest.
pub fn ui_router() -> Router {
    Router::new().fallback(serve)
}

async fn serve(method: Method, uri: Uri) -> Response {
    respond(&method, uri.path())
}

/// Prefixes that belong to the API: an unknown path there is an API 404, never the page.
const API_PREFIXES: [&str; 5] = ["/v1", "/openapi.json", "/metrics", "/health", "/ready"];

/// Hashed file names (Vite's `assets/name-HASH.ext`) never change content, so browsers may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html above all) is revalidated so a new worker version is picked up at once.
const REVALIDATE: &str = "no-cache";

fn respond(method: &Method, path: &str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "the web UI only answers GET and HEAD");
    }
    let is_api = API_PREFIXES
        .iter()
        .any(|prefix| path == *prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')));
    if is_api {
        return json_error(StatusCode::NOT_FOUND, "not_found", &format!("no route for {path}"));
    }
    let wanted = if path == "/" { "/index.html" } else { path };
    let (file, bytes) = match find(wanted) {
        Some(bytes) => (wanted, bytes),
        None if is_client_route(path) => match find("/index.html") {
            Some(bytes) => ("/index.html", bytes),
            None => return json_error(StatusCode::NOT_FOUND, "not_found", "the web UI is not built into this binary"),
        },
        None => return json_error(StatusCode::NOT_FOUND, "not_found", &format!("no file {path}")),
    };
    let cache = if file.starts_with("/assets/") { IMMUTABLE } else { REVALIDATE };
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(bytes) };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn find(path: &str) -> Option<&'static [u8]> {
    assets::FILES
        .binary_search_by(|(name, _)| (*name).cmp(path))
        .ok()
        .and_then(|index| assets::FILES.get(index))
        .map(|(_, bytes)| *bytes)
}

/// `/inpaint` is a page of the app; `/missing.png` is a missing file.
fn is_client_route(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    !last.contains('.')
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The API's error shape, `{"error":{"code","message","field"}}`.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message, "field": null } });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(path: &str) -> (StatusCode, String, String, Vec<u8>) {
        let response = respond(&Method::GET, path);
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (content_type, cache) = (header(header::CONTENT_TYPE), header(header::CACHE_CONTROL));
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
        (status, content_type, cache, body)
    }

    fn index_html() -> String {
        String::from_utf8(find("/index.html").expect("index.html is embedded").to_vec()).unwrap()
    }

    #[test]
    fn embedded_files_are_sorted_for_binary_search() {
        assert!(assets::FILES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(assets::FILES.iter().all(|(_, bytes)| !bytes.is_empty()));
    }

    #[test]
    fn index_html_references_only_embedded_files() {
        let html = index_html();
        let referenced: Vec<&str> = html
            .split(['"', '\''])
            .filter(|piece| piece.starts_with('/') && piece.contains('.'))
            .collect();
        assert!(referenced.iter().any(|path| path.ends_with(".js")), "no script in {html}");
        for path in referenced {
            assert!(find(path).is_some(), "index.html references {path}, which is not embedded");
        }
    }

    #[tokio::test]
    async fn root_serves_the_app_page_revalidated() {
        let (status, content_type, cache, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(cache, "no-cache");
        assert_eq!(String::from_utf8(body).unwrap(), index_html());
    }

    #[tokio::test]
    async fn hashed_assets_have_their_type_and_are_cached_for_good() {
        for (path, bytes) in assets::FILES.iter().filter(|(path, _)| path.starts_with("/assets/")) {
            let (status, content_type, cache, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, *bytes, "{path}");
            assert_eq!(cache, IMMUTABLE, "{path}");
            let expected = if path.ends_with(".js") { "text/javascript; charset=utf-8" } else { "text/css; charset=utf-8" };
            assert_eq!(content_type, expected, "{path}");
        }
    }

    #[tokio::test]
    async fn client_routes_get_the_page_and_missing_files_a_json_404() {
        for route in ["/img2img", "/inpaint", "/some/deep/route"] {
            let (status, content_type, _, body) = get(route).await;
            assert_eq!(status, StatusCode::OK, "{route}");
            assert_eq!(content_type, "text/html; charset=utf-8", "{route}");
            assert_eq!(String::from_utf8(body).unwrap(), index_html(), "{route}");
        }
        let (status, content_type, _, body) = get("/assets/missing-123.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, "application/json");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "not_found");
    }

    #[tokio::test]
    async fn api_paths_never_get_the_page() {
        for path in ["/v1", "/v1/nope", "/v1/jobs/x/y/z", "/metrics", "/openapi.json", "/health"] {
            let (status, content_type, _, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(content_type, "application/json", "{path}");
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["code"], "not_found", "{path}");
        }
        // Only the exact namespace counts: /v1x is not under /v1.
        assert_eq!(get("/v1x").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn head_has_headers_but_no_body_and_other_methods_are_refused() {
        let head = respond(&Method::HEAD, "/");
        assert_eq!(head.status(), StatusCode::OK);
        let length: usize = head.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
        assert_eq!(length, index_html().len());
        assert!(to_bytes(head.into_body(), usize::MAX).await.unwrap().is_empty());
        let post = respond(&Method::POST, "/");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn the_router_serves_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, ui_router()).await });
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /inpaint HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        server.abort();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("content-type: text/html; charset=utf-8"));
        assert!(answer.contains("<div id=\"root\"></div>"));
    }
}
