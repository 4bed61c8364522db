//! Generates one image with the Rust SDK and saves it:
//!   cargo run -p sd-client --example generate -- http://127.0.0.1:8600 "a lighthouse at dusk" out.png
//! The API key, if the worker wants one, comes from SD_API_KEY.

use std::time::Duration;

use sd_client::{Client, ClientOptions, JobEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8600".into());
    let prompt = args.next().unwrap_or_else(|| "a lighthouse at dusk".into());
    let out = args.next().unwrap_or_else(|| "out.png".into());
    let client = Client::with_options(
        &url,
        ClientOptions {
            api_key: std::env::var("SD_API_KEY").ok(),
            timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        },
    )?;
    let info = client.info().await?;
    println!(
        "{} ({}), {} steps by default",
        info.model, info.family, info.defaults.steps
    );
    let job = client.submit(&sd_client::txt2img(prompt)).await?;
    println!("job {} queued at position {}", job.job_id, job.position);
    let last = client
        .events(&job.job_id)
        .until_end(|event| match event {
            JobEvent::Queued { position } => println!("queued: position {position}"),
            JobEvent::Progress { step, total, .. } => println!("step {step}/{total}"),
            other => println!("{}", other.name()),
        })
        .await?;
    match last {
        JobEvent::Complete { seeds, .. } => {
            std::fs::write(&out, client.image(&job.job_id, 0).await?)?;
            println!("saved {out} (seeds {seeds:?})");
            Ok(())
        }
        JobEvent::Error { code, message } => Err(format!("job failed ({code}): {message}").into()),
        other => Err(format!("job ended {}", other.name()).into()),
    }
}
