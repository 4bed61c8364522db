//! `stream: true`: Server-Sent Events in OpenAI's shapes. Up to `partial_images` previews arrive as
//! `image_generation.partial_image` (`image_edit.partial_image` for edits), each image as
//! `image_generation.completed` (`image_edit.completed`), then `data: [DONE]`. A failure after the stream
//! began is an `error` event with OpenAI's error object. A client that hangs up cancels the generation.
//!
//! The run happens in a task that only forwards raw results; image conversion happens as the stream is read,
//! off the async workers.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::Stream;
use image::imageops::FilterType;
use sd_core::pipeline::GenerateRequest;
use sd_engine::metadata::{self, ImageFormat};
use sd_engine::Operation;
use serde_json::json;
use tokio::sync::mpsc;

use super::error::OpenAiError;
use super::output;
use super::signing::unix_now;
use crate::compat::CompatError;
use crate::state::AppState;
use crate::sync_run::{self as run, Control, RunEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Generation,
    Edit,
}

impl Kind {
    fn partial(self) -> &'static str {
        match self {
            Self::Generation => "image_generation.partial_image",
            Self::Edit => "image_edit.partial_image",
        }
    }

    fn completed(self) -> &'static str {
        match self {
            Self::Generation => "image_generation.completed",
            Self::Edit => "image_edit.completed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    pub partial_images: usize,
    /// Echoed in the events (one of OpenAI's names; `auto` otherwise).
    pub quality: &'static str,
}

/// The `quality` value the events report.
pub fn quality_name(quality: Option<&str>) -> &'static str {
    match quality {
        Some("low") => "low",
        Some("medium") => "medium",
        Some("high") => "high",
        _ => "auto",
    }
}

/// What the run task forwards to the stream.
enum Raw {
    Partial { index: usize, preview: String },
    Image(Bytes),
    Failed(OpenAiError),
}

struct Shape {
    kind: Kind,
    format: ImageFormat,
    width: u32,
    height: u32,
    quality: &'static str,
    /// The bounded pool the conversions run on.
    cpu: Arc<crate::cpu::CpuPool>,
}

/// Starts the generation and answers with its event stream.
pub fn respond(
    app: AppState,
    model: Option<String>,
    operation: Operation,
    request: GenerateRequest,
    format: ImageFormat,
    options: StreamOptions,
    kind: Kind,
) -> Response {
    let shape = Arc::new(Shape {
        kind,
        format,
        width: request.width as u32,
        height: request.height as u32,
        quality: options.quality,
        cpu: Arc::clone(&app.cpu),
    });
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(produce(
        app,
        model,
        operation,
        request,
        options.partial_images,
        sender,
    ));
    let events = Sse::new(events(receiver, shape)).keep_alive(KeepAlive::default());
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        events,
    )
        .into_response()
}

/// The step at which partial image `index` of `count` is due, for a job of `total` steps.
fn partial_due(index: usize, count: usize, total: usize) -> usize {
    ((index + 1) * total).div_ceil(count + 1)
}

async fn produce(
    app: AppState,
    model: Option<String>,
    operation: Operation,
    request: GenerateRequest,
    partial_images: usize,
    sender: mpsc::UnboundedSender<Raw>,
) {
    let control = Arc::new(Control::default());
    let mut batch = 0;
    let mut total = request.steps;
    let mut partials_sent = 0;
    let engine = app.engine.clone();
    let forward = |raw: Raw, control: &Control| {
        if sender.send(raw).is_err() {
            // The client hung up.
            control.interrupt(&engine);
        }
    };
    let result = {
        let control_for_events = Arc::clone(&control);
        run::run(
            &app.engine,
            model.as_deref(),
            &app.config.limits,
            operation,
            request,
            usize::MAX,
            Arc::clone(&control),
            &mut |event| match event {
                RunEvent::Submitted { batch: index, .. } => batch = index,
                RunEvent::Progress { total: steps, .. } => total = steps,
                RunEvent::Preview { step, image } => {
                    if batch == 0
                        && partials_sent < partial_images
                        && step >= partial_due(partials_sent, partial_images, total)
                    {
                        forward(
                            Raw::Partial {
                                index: partials_sent,
                                preview: image.to_owned(),
                            },
                            &control_for_events,
                        );
                        partials_sent += 1;
                    }
                }
                RunEvent::Image { image, .. } => {
                    forward(Raw::Image(image.png.clone()), &control_for_events)
                }
            },
        )
        .await
    };
    match result {
        Ok(outcome) if outcome.interrupted => {
            let _ = sender.send(Raw::Failed(CompatError::Cancelled.into()));
        }
        Ok(_) => {}
        Err(error) => {
            let _ = sender.send(Raw::Failed(error.into()));
        }
    }
}

fn events(
    receiver: mpsc::UnboundedReceiver<Raw>,
    shape: Arc<Shape>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Some(receiver), move |state| {
        let shape = Arc::clone(&shape);
        async move {
            let mut receiver = state?;
            match receiver.recv().await {
                Some(raw) => Some((Ok(render(raw, shape).await), Some(receiver))),
                None => Some((Ok(Event::default().data("[DONE]")), None)),
            }
        }
    })
}

async fn render(raw: Raw, shape: Arc<Shape>) -> Event {
    let failed = |error: OpenAiError| {
        let body = error.body();
        Event::default()
            .event("error")
            .data(json!({"type": "error", "error": body.error}).to_string())
    };
    let base = move |shape: &Shape, kind: &str| {
        json!({
            "type": kind,
            "created_at": unix_now(),
            "size": format!("{}x{}", shape.width, shape.height),
            "quality": shape.quality,
            "background": "opaque",
            "output_format": output::format_name(shape.format),
        })
    };
    match raw {
        Raw::Failed(error) => failed(error),
        Raw::Partial { index, preview } => {
            let converted = {
                let shape = Arc::clone(&shape);
                let cpu = Arc::clone(&shape.cpu);
                cpu.run(move || partial_image(&preview, &shape)).await
            };
            match converted {
                Ok(Ok(b64)) => {
                    let mut data = base(&shape, shape.kind.partial());
                    data["b64_json"] = b64.into();
                    data["partial_image_index"] = index.into();
                    Event::default()
                        .event(shape.kind.partial())
                        .data(data.to_string())
                }
                Ok(Err(error)) => failed(error),
                Err(error) => failed(join_failed(error)),
            }
        }
        Raw::Image(png) => {
            let format = shape.format;
            let converted = shape.cpu.run(move || output::convert(&png, format)).await;
            match converted {
                Ok(Ok(bytes)) => {
                    let mut data = base(&shape, shape.kind.completed());
                    data["b64_json"] = base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .into();
                    data["usage"] = json!({
                        "input_tokens": 0,
                        "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                        "output_tokens": 0,
                        "total_tokens": 0,
                    });
                    Event::default()
                        .event(shape.kind.completed())
                        .data(data.to_string())
                }
                Ok(Err(error)) => failed(error),
                Err(error) => failed(join_failed(error)),
            }
        }
    }
}

fn join_failed(error: crate::cpu::CpuTaskFailed) -> OpenAiError {
    OpenAiError::internal(format!("conversion task failed: {error}"))
}

/// A preview scaled to the output size, in the output format.
fn partial_image(preview_b64: &str, shape: &Shape) -> Result<String, OpenAiError> {
    let invalid = OpenAiError::internal;
    let png = base64::engine::general_purpose::STANDARD
        .decode(preview_b64)
        .map_err(|error| invalid(format!("bad preview: {error}")))?;
    let preview = image::load_from_memory(&png)
        .map_err(|error| invalid(format!("bad preview: {error}")))?
        .to_rgb8();
    let scaled = image::imageops::resize(&preview, shape.width, shape.height, FilterType::Triangle);
    let bytes = metadata::encode_image(&scaled, shape.format, None)
        .map_err(|error| invalid(error.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_spread_over_the_steps() {
        assert_eq!(partial_due(0, 1, 20), 10);
        assert_eq!(
            (0..3)
                .map(|index| partial_due(index, 3, 20))
                .collect::<Vec<_>>(),
            vec![5, 10, 15]
        );
        assert_eq!(partial_due(0, 3, 2), 1);
    }
}
