//! Hub downloads against an in-process HTTP server that answers as the Hugging Face hub does
//! (`/{repo}/resolve/main/{file}` with ranges, `etag` and `x-repo-commit`): a model downloads into the cache
//! with progress reported per file, the token is sent, and failures say what happened (401 needs a token,
//! 404 no such repo, an unreachable endpoint the network error) instead of one vague message.

#![cfg(feature = "hub")]
#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::*;
use sd_core::loader::hub::{DownloadObserver, DownloadProgress, HubOptions};
use sd_core::pipeline::{LoadOptions, Pipeline};

/// Serves `root`'s files as repo `repo`; with `token`, only to requests that carry it.
fn fake_hub(root: PathBuf, repo: &'static str, token: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let (mut range_start, mut authorized) = (None, token.is_none());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(range) = lower.strip_prefix("range: bytes=") {
                    range_start = range
                        .split('-')
                        .next()
                        .and_then(|n| n.trim().parse::<usize>().ok());
                }
                if let Some(token) = token {
                    if line.trim() == format!("authorization: Bearer {token}")
                        || line.trim() == format!("Authorization: Bearer {token}")
                    {
                        authorized = true;
                    }
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            let prefix = format!("/{repo}/resolve/main/");
            let file = path.strip_prefix(&prefix).map(|f| root.join(f));
            let respond =
                |stream: &mut std::net::TcpStream, status: &str, headers: &str, body: &[u8]| {
                    let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                    body.len()
                );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body);
                };
            if !authorized {
                respond(&mut stream, "401 Unauthorized", "", b"Invalid credentials");
                continue;
            }
            let Some(bytes) = file
                .filter(|f| f.is_file())
                .map(|f| std::fs::read(f).unwrap())
            else {
                respond(&mut stream, "404 Not Found", "", b"Entry not found");
                continue;
            };
            // Both the metadata request (`bytes=0-0`, of which hf-hub reads only the headers) and downloads
            // (`bytes=N-`) get the file from the range's start to its end.
            let (start, end) = (range_start.unwrap_or(0).min(bytes.len()), bytes.len());
            let etag: u64 = bytes.iter().fold(1469598103934665603u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(1099511628211)
            });
            let headers = format!(
                "etag: \"{etag:016x}\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\ncontent-range: bytes {start}-{}/{}\r\n",
                end.saturating_sub(1),
                bytes.len()
            );
            respond(
                &mut stream,
                "206 Partial Content",
                &headers,
                &bytes[start..end],
            );
        }
    });
    format!("http://{address}")
}

fn options(endpoint: &str, cache: &std::path::Path, token: Option<&str>) -> HubOptions {
    HubOptions {
        cache_dir: Some(cache.to_path_buf()),
        offline: false,
        token: token.map(str::to_owned),
        endpoint: Some(endpoint.to_owned()),
        progress: None,
    }
}

fn load_error(model: &str, hub: HubOptions) -> String {
    match Pipeline::load(model, &LoadOptions { hub, ..cpu_f32() }) {
        Ok(_) => panic!("{model} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_hub_model_downloads_with_progress_and_the_token() {
    let endpoint = fake_hub(model_dir("tiny-sd1"), "tiny/sd1", Some("secret"));
    let cache = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<DownloadProgress>>> = Arc::default();
    let log = Arc::clone(&seen);
    let hub = HubOptions {
        progress: Some(DownloadObserver(Arc::new(move |p: &DownloadProgress| {
            log.lock().unwrap().push(p.clone());
        }))),
        ..options(&endpoint, cache.path(), Some("secret"))
    };
    let pipeline = Pipeline::load("tiny/sd1", &LoadOptions { hub, ..cpu_f32() }).unwrap();
    assert_eq!(pipeline.info().model, "tiny/sd1");
    let seen = seen.lock().unwrap();
    let unet = "unet/diffusion_pytorch_model.safetensors";
    let size = std::fs::metadata(model_dir("tiny-sd1").join(unet))
        .unwrap()
        .len();
    assert!(
        seen.iter()
            .any(|p| p.file == unet && p.done == size && p.total == size && p.percent() == 100),
        "no completed progress for {unet}"
    );
    assert!(
        seen.iter().any(|p| p.file == unet && p.done < size),
        "no partial progress for {unet}"
    );
}

#[test]
fn hub_failures_say_why() {
    let cache = tempfile::tempdir().unwrap();
    let gated = fake_hub(model_dir("tiny-sd1"), "tiny/sd1", Some("secret"));
    let denied = load_error("tiny/sd1", options(&gated, cache.path(), None));
    assert!(
        denied.contains("401") && denied.contains("HF_TOKEN"),
        "{denied}"
    );
    let wrong = load_error("tiny/sd1", options(&gated, cache.path(), Some("wrong")));
    assert!(wrong.contains("401"), "{wrong}");

    let open = fake_hub(model_dir("tiny-sd1"), "tiny/sd1", None);
    let missing = load_error("nobody/nothing", options(&open, cache.path(), None));
    assert!(
        missing.contains("404") && missing.contains("nobody/nothing"),
        "{missing}"
    );

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = load_error(
        "tiny/sd1",
        options(&format!("http://{closed}"), cache.path(), None),
    );
    assert!(unreachable.contains("cannot reach"), "{unreachable}");
}
