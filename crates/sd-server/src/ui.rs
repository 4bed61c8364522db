//! The web UI: the app's production build, embedded in the binary (`ui-dist/`, listed in `ui/assets.rs`, both
//! rebuilt by `ui/build-and-embed.sh`) and served at `/`, so `sd-worker serve` needs no files, npm or network
//! at run time.
//!
//! [`ui_router`] has one route per embedded file plus the app's own pages (`/`, `/img2img`, `/inpaint`, which
//! answer `index.html`) and no fallback, so it merges next to the API without taking over its 404s. Merge it
//! outside the API-key layer: the page must load to ask for the key; what it fetches afterwards goes through
//! the API and its auth. E.g. `Router::new().merge(public_routes).merge(ui::ui_router()).merge(protected)`.

mod assets;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// Pages of the app (client-side routes); each serves `index.html` and the app picks the screen.
pub const APP_PAGES: [&str; 3] = ["/", "/img2img", "/inpaint"];

/// Hashed file names (Vite's `assets/name-HASH.ext`) never change content, so browsers may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html above all) is revalidated so a new worker version is picked up at once.
const REVALIDATE: &str = "no-cache";

/// Routes serving the embedded UI. Generic over the state so it merges into the app's router as it is.
pub fn ui_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::new();
    for &(path, bytes) in assets::FILES {
        router = router.route(path, get(move || async move { file_response(path, bytes) }));
    }
    if let Some(index) = find("/index.html") {
        for page in APP_PAGES {
            router = router.route(
                page,
                get(move || async move { file_response("/index.html", index) }),
            );
        }
    }
    router
}

/// GET answers with the bytes; axum answers HEAD from the same route without the body.
fn file_response(path: &str, bytes: &'static [u8]) -> Response {
    let cache = if path.starts_with("/assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn find(path: &str) -> Option<&'static [u8]> {
    assets::FILES
        .binary_search_by(|(name, _)| (*name).cmp(path))
        .ok()
        .and_then(|index| assets::FILES.get(index))
        .map(|(_, bytes)| *bytes)
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
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One raw HTTP/1.1 exchange with the router on a real socket: (status line, lower-cased head, body).
    async fn exchange(method: &str, path: &str) -> (String, String, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, ui_router::<()>()).await });
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        server.abort();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(answer[..split].to_vec()).unwrap();
        let body = answer[split + 4..].to_vec();
        let status = head.lines().next().unwrap().to_owned();
        (status, head.to_ascii_lowercase(), body)
    }

    fn index_html() -> &'static [u8] {
        find("/index.html").expect("index.html is embedded")
    }

    #[test]
    fn embedded_files_are_sorted_and_not_empty() {
        assert!(assets::FILES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(assets::FILES.iter().all(|(_, bytes)| !bytes.is_empty()));
    }

    #[test]
    fn index_html_references_only_embedded_files() {
        let html = String::from_utf8(index_html().to_vec()).unwrap();
        let referenced: Vec<&str> = html
            .split(['"', '\''])
            .filter(|piece| piece.starts_with('/') && piece.contains('.'))
            .collect();
        assert!(
            referenced.iter().any(|path| path.ends_with(".js")),
            "no script in {html}"
        );
        for path in referenced {
            assert!(
                find(path).is_some(),
                "index.html references {path}, which is not embedded"
            );
        }
    }

    #[tokio::test]
    async fn app_pages_serve_index_html_revalidated() {
        for page in APP_PAGES {
            let (status, head, body) = exchange("GET", page).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{page}");
            assert!(
                head.contains("content-type: text/html; charset=utf-8"),
                "{page}: {head}"
            );
            assert!(head.contains("cache-control: no-cache"), "{page}: {head}");
            assert_eq!(body, index_html(), "{page}");
        }
    }

    #[tokio::test]
    async fn every_embedded_file_is_served_with_its_type_and_cache_policy() {
        for &(path, bytes) in assets::FILES {
            let (status, head, body) = exchange("GET", path).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
            assert_eq!(body, bytes, "{path}");
            assert!(
                head.contains(&format!("content-type: {}", content_type(path))),
                "{path}: {head}"
            );
            let cache = if path.starts_with("/assets/") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            assert!(
                head.contains(&format!("cache-control: {cache}")),
                "{path}: {head}"
            );
        }
        let script = assets::FILES
            .iter()
            .find(|(path, _)| path.ends_with(".js"))
            .unwrap()
            .0;
        assert_eq!(content_type(script), "text/javascript; charset=utf-8");
    }

    #[tokio::test]
    async fn head_has_no_body_and_unknown_paths_are_left_to_the_api() {
        let (status, head, body) = exchange("HEAD", "/").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            head.contains(&format!("content-length: {}", index_html().len())),
            "{head}"
        );
        assert!(body.is_empty());
        // No fallback: these reach whatever 404 the app around this router gives.
        for path in ["/assets/missing-123.js", "/v1/nope", "/some/page"] {
            assert_eq!(
                exchange("GET", path).await.0,
                "HTTP/1.1 404 Not Found",
                "{path}"
            );
        }
        assert_eq!(
            exchange("POST", "/").await.0,
            "HTTP/1.1 405 Method Not Allowed"
        );
    }
}
