//! The Rust client SDK (`sd-client`) against the real binary on the tiny model: submit and stream to the
//! end, fetch the image, cancel, resume a stream whose connection was cut mid-job (through a proxy that drops
//! it), server errors as typed errors, and the API key.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{tiny_model, Worker};
use sd_api_types::{JobEvent, JobStatus};
use sd_client::{Client, ClientError, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn ready_worker(extra: &[&str]) -> Worker {
    let worker = Worker::start(&tiny_model(), extra);
    worker.wait_listening(Duration::from_secs(10)).await;
    worker
}

fn small(prompt: &str, steps: i64, side: i64) -> sd_client::JobBody {
    let mut body = sd_client::txt2img(prompt);
    body.steps = Some(steps);
    body.width = Some(side);
    body.height = Some(side);
    body.seed = Some(7);
    body
}

fn progress_steps(events: &[JobEvent]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|event| match event {
            JobEvent::Progress { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn submit_stream_to_the_end_fetch_the_image_and_list() {
    let worker = ready_worker(&[]).await;
    worker.wait_ready(Duration::from_secs(120)).await;
    let client = Client::new(&worker.base).unwrap();
    let info = client.info().await.unwrap();
    assert!(info.defaults.steps > 0);
    assert!(info.samplers.iter().any(|name| name == "euler"));
    assert!(client.loras().await.unwrap().loras.is_empty());
    assert_eq!(client.models().await.unwrap().data.len(), 1);

    let accepted = client.submit(&small("a red square", 3, 64)).await.unwrap();
    assert_eq!(accepted.seeds, vec![7]);
    let mut events = Vec::new();
    let last = client
        .events(&accepted.job_id)
        .until_end(|event| events.push(event.clone()))
        .await
        .unwrap();
    let JobEvent::Complete { images, seeds, .. } = &last else {
        panic!("ended with {last:?}");
    };
    assert_eq!(seeds, &vec![7]);
    assert_eq!(images.len(), 1);
    let steps = progress_steps(&events);
    assert!(steps.windows(2).all(|pair| pair[0] <= pair[1]), "{steps:?}");
    assert_eq!(steps.last(), Some(&3));

    let png = client.image(&accepted.job_id, 0).await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let view = client.job(&accepted.job_id).await.unwrap();
    assert_eq!(view.status, JobStatus::Succeeded);
    assert_eq!(view.result.unwrap().images.len(), 1);
    let list = client.jobs(Some(10)).await.unwrap();
    assert!(list.jobs.iter().any(|job| job.id == accepted.job_id));
}

#[tokio::test]
async fn cancel_a_running_job_and_its_stream_ends_cancelled() {
    let worker = ready_worker(&[]).await;
    worker.wait_ready(Duration::from_secs(120)).await;
    let client = Client::new(&worker.base).unwrap();
    let accepted = client.submit(&small("long", 150, 128)).await.unwrap();
    let mut stream = client.events(&accepted.job_id);
    let mut cancelled = None;
    let mut last = None;
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        if matches!(event, JobEvent::Progress { .. }) && cancelled.is_none() {
            cancelled = Some(client.cancel(&accepted.job_id).await.unwrap());
        }
        last = Some(event);
    }
    assert_eq!(cancelled.unwrap().status, "cancelling");
    assert_eq!(last, Some(JobEvent::Cancelled {}));
    let again = client.cancel(&accepted.job_id).await.unwrap_err();
    assert!(
        matches!(&again, ClientError::Conflict { code, .. } if code == "job_finished"),
        "{again:?}"
    );
}

/// A TCP proxy to `upstream` that cuts the first event-stream connection right after it carried `cut_after`
/// `event: progress` lines; everything else passes through.
async fn cutting_proxy(upstream: String, cut_after: usize) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let cut = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cut);
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut server = TcpStream::connect(&upstream).await.unwrap();
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let read = client.read(&mut head).await.unwrap();
                server.write_all(&head[..read]).await.unwrap();
                let is_stream = String::from_utf8_lossy(&head[..read]).contains("/stream ");
                if !is_stream || flag.load(Ordering::SeqCst) {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let mut seen = 0;
                let mut buffer = vec![0u8; 16384];
                loop {
                    let read = server.read(&mut buffer).await.unwrap_or(0);
                    if read == 0 {
                        return;
                    }
                    client.write_all(&buffer[..read]).await.unwrap();
                    seen += String::from_utf8_lossy(&buffer[..read])
                        .matches("event: progress")
                        .count();
                    if seen >= cut_after {
                        flag.store(true, Ordering::SeqCst);
                        return; // Both sockets drop: the client sees the connection break mid-stream.
                    }
                }
            });
        }
    });
    (address, cut)
}

#[tokio::test]
async fn a_stream_cut_mid_job_resumes_without_repeats_or_losses() {
    let worker = ready_worker(&["--preview-interval", "0s"]).await;
    worker.wait_ready(Duration::from_secs(120)).await;
    let direct = Client::new(&worker.base).unwrap();
    let (proxy, cut) = cutting_proxy(worker.base.trim_start_matches("http://").to_owned(), 2).await;
    let through_proxy = Client::with_options(
        &proxy,
        ClientOptions {
            reconnect_delay: Duration::from_millis(20),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let accepted = direct.submit(&small("resume", 40, 64)).await.unwrap();
    let reference = tokio::spawn({
        let direct = direct.clone();
        let id = accepted.job_id.clone();
        async move {
            let mut events = Vec::new();
            direct
                .events(&id)
                .until_end(|event| events.push(event.clone()))
                .await
                .unwrap();
            events
        }
    });
    let mut stream = through_proxy.events(&accepted.job_id);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    assert!(cut.load(Ordering::SeqCst), "the proxy never cut the stream");
    assert!(stream.reconnects() >= 1, "{events:?}");
    let started = events
        .iter()
        .filter(|event| matches!(event, JobEvent::Started {}))
        .count();
    assert_eq!(started, 1, "the catch-up's `started` repeated: {events:?}");
    let terminal: Vec<_> = events.iter().filter(|event| event.is_terminal()).collect();
    assert_eq!(terminal.len(), 1, "{events:?}");
    assert!(matches!(events.last(), Some(JobEvent::Complete { .. })));
    // No step delivered twice across the reconnect, none out of order, and the job's last step reached.
    let steps = progress_steps(&events);
    let reference = reference.await.unwrap();
    let reference_steps = progress_steps(&reference);
    assert!(steps.windows(2).all(|pair| pair[0] <= pair[1]), "{steps:?}");
    let repeats = steps.windows(2).filter(|pair| pair[0] == pair[1]).count();
    let live_repeats = reference_steps
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .count();
    assert!(repeats <= live_repeats, "{steps:?} vs {reference_steps:?}");
    assert_eq!(steps.last(), reference_steps.last());
    assert_eq!(events.last(), reference.last());
}

#[tokio::test]
async fn server_errors_arrive_as_typed_errors() {
    let worker = ready_worker(&[]).await;
    worker.wait_ready(Duration::from_secs(120)).await;
    let client = Client::new(&worker.base).unwrap();
    let error = client.submit(&small("x", 0, 64)).await.unwrap_err();
    match &error {
        ClientError::Invalid {
            status,
            code,
            field,
            ..
        } => {
            assert_eq!(*status, 422);
            assert_eq!(code, "invalid_steps");
            assert_eq!(field.as_deref(), Some("steps"));
        }
        other => panic!("{other:?}"),
    }
    let missing = client.job("no-such-job").await.unwrap_err();
    assert_eq!(missing.code(), Some("job_not_found"));
    assert!(matches!(missing, ClientError::NotFound { .. }));
    let stream = client
        .events("no-such-job")
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(stream, ClientError::NotFound { .. }), "{stream:?}");
    let unreachable = Client::with_options(
        "http://127.0.0.1:9",
        ClientOptions {
            timeout: Duration::from_secs(2),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let error = unreachable.info().await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn the_api_key_is_sent_and_its_absence_is_unauthorized() {
    let worker = ready_worker(&["--api-key", "sdk-secret"]).await;
    worker.wait_ready(Duration::from_secs(120)).await;
    let anonymous = Client::new(&worker.base).unwrap();
    let error = anonymous.info().await.unwrap_err();
    assert!(
        matches!(error, ClientError::Unauthorized { .. }),
        "{error:?}"
    );
    let wrong = Client::with_options(
        &worker.base,
        ClientOptions {
            api_key: Some("nope".into()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        wrong.submit(&small("x", 2, 64)).await.unwrap_err(),
        ClientError::Unauthorized { .. }
    ));
    let keyed = Client::with_options(
        &worker.base,
        ClientOptions {
            api_key: Some("sdk-secret".into()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let accepted = keyed.submit(&small("x", 2, 64)).await.unwrap();
    let stream_error = anonymous
        .events(&accepted.job_id)
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(stream_error, ClientError::Unauthorized { .. }));
    let last = keyed
        .events(&accepted.job_id)
        .until_end(|_| {})
        .await
        .unwrap();
    assert!(matches!(last, JobEvent::Complete { .. }), "{last:?}");
}
