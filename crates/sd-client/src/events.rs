//! [`EventStream`]: a job's Server-Sent Events, read with a streaming body (not `EventSource`, which cannot
//! send an `Authorization` header), parsed into typed [`JobEvent`]s, and reconnected when the connection
//! breaks or goes quiet, resuming without repeating events (see [`crate::resume`]).

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use sd_api_types::JobEvent;

use crate::client::{check, segment, Client};
use crate::error::ClientError;
use crate::resume::ResumeCursor;
use crate::sse::{SseEvent, SseParser};

#[cfg(not(target_arch = "wasm32"))]
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;
#[cfg(target_arch = "wasm32")]
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>>>>;

pub struct EventStream {
    client: Client,
    job_id: String,
    cursor: ResumeCursor,
    parser: SseParser,
    body: Option<Body>,
    pending: VecDeque<JobEvent>,
    /// `[DONE]` or the terminal event arrived, or the stream gave up.
    ended: bool,
    connections: u32,
    /// Connections in a row that broke before bringing anything.
    failures: u32,
    last_error: Option<ClientError>,
}

impl EventStream {
    pub(crate) fn new(client: Client, job_id: String) -> Self {
        Self {
            client,
            job_id,
            cursor: ResumeCursor::new(),
            parser: SseParser::new(),
            body: None,
            pending: VecDeque::new(),
            ended: false,
            connections: 0,
            failures: 0,
            last_error: None,
        }
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// How many times the stream was reconnected after a break.
    pub fn reconnects(&self) -> u32 {
        self.connections.saturating_sub(1)
    }

    /// The next event; `None` after the job's terminal event (`complete`, `error` or `cancelled`) and the
    /// server's `[DONE]`. An `Err` ends the stream: the server refused it (e.g. unknown job, bad key), or
    /// every reconnect in a row failed.
    pub async fn next(&mut self) -> Option<Result<JobEvent, ClientError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(error) = self.connect().await {
                    self.ended = true;
                    return Some(Err(error));
                }
                continue;
            };
            match crate::rt::timeout(self.client.options().idle_timeout, body.next()).await {
                Some(Some(Ok(chunk))) => {
                    self.failures = 0;
                    for sse in self.parser.feed(&chunk) {
                        if let Err(error) = self.handle(sse) {
                            self.ended = true;
                            self.body = None;
                            return Some(Err(error));
                        }
                    }
                }
                Some(Some(Err(error))) => self.broken(ClientError::from_reqwest(error)),
                Some(None) => self.broken(ClientError::Transport(
                    "the event stream ended before the job did".into(),
                )),
                None => self.broken(ClientError::Timeout(format!(
                    "no event or keep-alive for {:?}",
                    self.client.options().idle_timeout
                ))),
            }
        }
    }

    /// Reads the stream to its end, handing each event to `on_event`; returns the terminal event.
    pub async fn until_end(
        mut self,
        mut on_event: impl FnMut(&JobEvent),
    ) -> Result<JobEvent, ClientError> {
        let mut last = None;
        while let Some(event) = self.next().await {
            let event = event?;
            on_event(&event);
            last = Some(event);
        }
        last.filter(JobEvent::is_terminal)
            .ok_or_else(|| ClientError::Decode("the stream ended without a terminal event".into()))
    }

    fn broken(&mut self, error: ClientError) {
        self.body = None;
        self.failures += 1;
        self.last_error = Some(error);
    }

    /// Opens (or reopens, after a back-off) the stream. Errors here end it: a refusal by the server is
    /// final; a failed connection is retried until `max_reconnects` in a row failed.
    async fn connect(&mut self) -> Result<(), ClientError> {
        let options = self.client.options().clone();
        loop {
            if self.connections > 0 || self.failures > 0 {
                if self.failures > options.max_reconnects {
                    return Err(self.last_error.take().unwrap_or_else(|| {
                        ClientError::Transport("the event stream kept breaking".into())
                    }));
                }
                let backoff = options.reconnect_delay * 2u32.saturating_pow(self.failures.min(8));
                crate::rt::sleep(backoff.min(options.reconnect_delay * 32)).await;
            }
            let path = format!("/v1/jobs/{}/stream", segment(&self.job_id));
            let request = self
                .client
                .request(Method::GET, &path)
                .header(reqwest::header::ACCEPT, "text/event-stream");
            let opened = match crate::rt::timeout(options.timeout, request.send()).await {
                Some(Ok(response)) => check(response).await,
                Some(Err(error)) => Err(ClientError::from_reqwest(error)),
                None => Err(ClientError::Timeout(format!(
                    "the event stream did not open within {:?}",
                    options.timeout
                ))),
            };
            match opened {
                Ok(response) => {
                    if self.connections > 0 {
                        self.cursor.reconnected();
                    }
                    self.connections += 1;
                    self.parser = SseParser::new();
                    self.body = Some(Box::pin(response.bytes_stream()));
                    return Ok(());
                }
                Err(error)
                    if error.is_retryable() && !matches!(error, ClientError::Busy { .. }) =>
                {
                    self.failures += 1;
                    self.last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn handle(&mut self, sse: SseEvent) -> Result<(), ClientError> {
        if sse.data == "[DONE]" {
            self.ended = true;
            self.body = None;
            return Ok(());
        }
        let event: JobEvent = serde_json::from_str(&sse.data)
            .map_err(|error| ClientError::Decode(format!("event {:?}: {error}", sse.event)))?;
        if self.cursor.accept(&event) {
            self.pending.push_back(event);
        }
        Ok(())
    }
}
