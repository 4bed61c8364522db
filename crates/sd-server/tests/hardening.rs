//! Hostile inputs (issue 14, items 10-12): extreme aspect ratios refused before allocating, the cross-site
//! guard (Host, Origin, Content-Type), and the accept loop's timeouts under slow clients.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use common::app;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tall_png_b64() -> String {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(1, 4096))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(out)
}

#[tokio::test]
async fn native_crop_of_an_extreme_aspect_ratio_is_refused() {
    let app = app(Duration::ZERO).await;
    for operation in ["image_transform", "image_inpaint"] {
        let mut body = json!({"operation": operation, "prompt": "x", "width": 2048, "height": 64,
            "resize_mode": "crop"});
        if operation == "image_inpaint" {
            body["init_image"] = json!(tall_png_b64());
            let mut mask = Vec::new();
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
                1,
                4096,
                image::Luma([255]),
            ))
            .write_to(&mut Cursor::new(&mut mask), image::ImageFormat::Png)
            .unwrap();
            body["mask_image"] = json!(base64::engine::general_purpose::STANDARD.encode(mask));
        } else {
            body["input_image"] = json!(tall_png_b64());
        }
        let reply = app.post_json("/v1/jobs", &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text()
        );
        assert_eq!(reply.code(), "image_too_large");
        assert!(reply.text().contains("limit"), "{}", reply.text());
        let field = if operation == "image_inpaint" {
            "mask_image"
        } else {
            "input_image"
        };
        assert_eq!(reply.json()["error"]["field"], field);
    }
}

#[tokio::test]
async fn a1111_crop_of_an_extreme_aspect_ratio_is_refused() {
    let app = app(Duration::ZERO).await;
    let body = json!({"prompt": "x", "width": 2048, "height": 64, "init_images": [tall_png_b64()],
        "resize_mode": 1, "steps": 1});
    let reply = app.post_json("/sdapi/v1/img2img", &body).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text()
    );
    assert_eq!(reply.code(), "image_too_large");
}

fn post(
    path: &str,
    content_type: Option<&str>,
    host: Option<&str>,
    origin: Option<&str>,
) -> Request<Body> {
    let mut request = Request::post(path);
    if let Some(value) = content_type {
        request = request.header(header::CONTENT_TYPE, value);
    }
    if let Some(value) = host {
        request = request.header(header::HOST, value);
    }
    if let Some(value) = origin {
        request = request.header(header::ORIGIN, value);
    }
    request
        .body(Body::from(json!({"prompt": "x", "steps": 1}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn json_routes_need_json_and_a_loopback_host_without_a_key() {
    let app = app(Duration::ZERO).await;
    for path in [
        "/sdapi/v1/txt2img",
        "/v1/images/generations",
        "/sdapi/v1/options",
    ] {
        let reply = app
            .send(post(path, Some("text/plain"), Some("127.0.0.1:7860"), None))
            .await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        assert!(reply.json()["error"].is_object(), "{path}");
    }
    let rebound = app
        .send(post(
            "/sdapi/v1/txt2img",
            Some("application/json"),
            Some("evil.example:7860"),
            None,
        ))
        .await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN);
    assert_eq!(rebound.code(), "host_not_allowed");
    let cross = app
        .send(post(
            "/sdapi/v1/txt2img",
            Some("application/json"),
            Some("localhost:7860"),
            Some("https://evil.example"),
        ))
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    for host in ["localhost:7860", "[::1]:7860", "127.0.0.1"] {
        let reply = app
            .send(post(
                "/sdapi/v1/txt2img",
                Some("application/json"),
                Some(host),
                Some(&format!("http://{host}")),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
    }
}

#[tokio::test]
async fn allowed_hosts_extend_and_a_key_lifts_the_host_check() {
    let server = sd_server::ServerConfig {
        allowed_hosts: vec!["gpu-box".into()],
        ..Default::default()
    };
    let app = common::app_with(Duration::ZERO, Default::default(), server).await;
    let reply = app
        .send(post(
            "/sdapi/v1/txt2img",
            Some("application/json"),
            Some("gpu-box:7860"),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let keyed = sd_server::ServerConfig {
        api_key: Some("k".into()),
        ..Default::default()
    };
    let app = common::app_with(Duration::ZERO, Default::default(), keyed).await;
    let mut request = post(
        "/sdapi/v1/txt2img",
        Some("application/json"),
        Some("anything.example"),
        None,
    );
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer k".parse().unwrap());
    assert_eq!(app.send(request).await.status, StatusCode::OK);
}

async fn live_server(header_timeout: Duration, max_connections: usize) -> std::net::SocketAddr {
    let server = sd_server::ServerConfig {
        body_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let app = common::app_with(Duration::ZERO, Default::default(), server).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let limits = sd_server::listener::ConnectionLimits {
        max_connections,
        header_timeout,
        ..Default::default()
    };
    tokio::spawn(sd_server::listener::serve(
        listener,
        app.router,
        limits,
        std::future::pending(),
    ));
    address
}

async fn health(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn slowloris_connections_are_cut_and_health_still_answers() {
    let address = live_server(Duration::from_millis(500), 16).await;
    // More half-open connections than the cap: some send part of a header, some nothing at all.
    let mut idle = Vec::new();
    for index in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        if index % 2 == 0 {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), health(address))
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A body shorter than its Content-Length is cut off with 408, not awaited forever.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"operation\":",
        )
        .await
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..read]);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
}

#[tokio::test]
async fn openai_edits_stretch_an_extreme_aspect_ratio_without_blowing_up() {
    // The edits API stretches to the output size: no crop intermediate, so this is ordinary work.
    let app = app(Duration::ZERO).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(tall_png_b64())
        .unwrap();
    let boundary = "XBOUNDARY";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n2048x64\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\n1\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&png);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post("/v1/images/edits")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let reply = app.send(request).await;
    assert!(
        reply.status == StatusCode::OK || reply.status.is_client_error(),
        "{} {}",
        reply.status,
        reply.text()
    );
}

#[tokio::test]
async fn a1111_unauthorized_has_detail() {
    let keyed = sd_server::ServerConfig {
        api_key: Some("k".into()),
        ..Default::default()
    };
    let app = common::app_with(Duration::ZERO, Default::default(), keyed).await;
    let reply = app.get("/sdapi/v1/options").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.json()["detail"].is_string(), "{}", reply.text());
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn oversized_headers_on_the_wire_answer_431_with_json() {
    let address = live_server(Duration::from_secs(5), 16).await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "headers_too_large");
}

#[tokio::test]
async fn signed_file_routes_answer_json_errors() {
    let app = app(Duration::ZERO).await;
    for path in [
        "/v1/images/files/abc/0.png?expires=soon&signature=x",
        "/v1/images/files/abc/0.png",
    ] {
        let reply = app.get(path).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
        assert!(
            reply.json()["error"]["message"].is_string(),
            "{path}: {}",
            reply.text()
        );
    }
}
