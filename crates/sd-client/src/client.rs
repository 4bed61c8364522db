//! [`Client`]: the native job API over HTTP, on reqwest for both targets (hyper + rustls natively, the
//! browser's `fetch` on wasm32). Bearer auth, a per-request timeout, every failure a [`ClientError`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use sd_api_types::{
    CancelResponse, Info, JobAccepted, JobBody, JobList, JobView, LoraList, ModelList,
};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::events::EventStream;

/// How the client talks to the server.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer KEY` (the server's `--api-key`).
    pub api_key: Option<String>,
    /// Whole-request limit for everything but event streams.
    pub timeout: Duration,
    /// Connection set-up limit (native only; a browser has its own).
    pub connect_timeout: Duration,
    /// An event stream that brings nothing, not even the server's keep-alive (every 15 s), for this long
    /// is taken as broken and reconnected.
    pub idle_timeout: Duration,
    /// Reconnects in a row that may fail before the stream gives up with the last error.
    pub max_reconnects: u32,
    /// First reconnect delay; doubles with every failure in a row.
    pub reconnect_delay: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            max_reconnects: 5,
            reconnect_delay: Duration::from_millis(250),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    options: ClientOptions,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8600`), with default options.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_options(base_url, ClientOptions::default())
    }

    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base)
            .map_err(|error| ClientError::Config(format!("base URL {base_url:?}: {error}")))?;
        let builder = reqwest::Client::builder();
        #[cfg(not(target_arch = "wasm32"))]
        let builder = builder.connect_timeout(options.connect_timeout);
        let http = builder
            .build()
            .map_err(|error| ClientError::Config(error.to_string()))?;
        Ok(Self {
            http,
            base,
            options,
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Queues a job (`POST /v1/jobs`); build the body with [`crate::txt2img`], [`crate::img2img`] or
    /// [`crate::inpaint`].
    pub async fn submit(&self, body: &JobBody) -> Result<JobAccepted, ClientError> {
        let request = self.request(Method::POST, "/v1/jobs").json(body);
        self.json(request).await
    }

    /// A job's status, progress, result or error (`GET /v1/jobs/{id}`).
    pub async fn job(&self, job_id: &str) -> Result<JobView, ClientError> {
        let path = format!("/v1/jobs/{}", segment(job_id));
        self.json(self.request(Method::GET, &path)).await
    }

    /// Recent jobs, newest first (`GET /v1/jobs?limit=`).
    pub async fn jobs(&self, limit: Option<usize>) -> Result<JobList, ClientError> {
        let path = match limit {
            Some(limit) => format!("/v1/jobs?limit={limit}"),
            None => "/v1/jobs".to_owned(),
        };
        self.json(self.request(Method::GET, &path)).await
    }

    /// Cancels a job: a waiting one at once (`cancelled`), a running one after its step (`cancelling`).
    pub async fn cancel(&self, job_id: &str) -> Result<CancelResponse, ClientError> {
        let path = format!("/v1/jobs/{}", segment(job_id));
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// Image `index` of a succeeded job, as PNG bytes.
    pub async fn image(&self, job_id: &str, index: usize) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/jobs/{}/images/{index}", segment(job_id));
        let response = self.send(self.request(Method::GET, &path)).await?;
        let bytes = response.bytes().await.map_err(ClientError::from_reqwest)?;
        Ok(bytes.to_vec())
    }

    /// The model, its defaults, samplers, limits and the queue (`GET /v1/info`).
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.json(self.request(Method::GET, "/v1/info")).await
    }

    /// The LoRAs a job may name (`GET /v1/loras`).
    pub async fn loras(&self) -> Result<LoraList, ClientError> {
        self.json(self.request(Method::GET, "/v1/loras")).await
    }

    /// The models served (`GET /v1/models`, OpenAI's list format).
    pub async fn models(&self) -> Result<ModelList, ClientError> {
        self.json(self.request(Method::GET, "/v1/models")).await
    }

    /// The job's events from now to its end, reconnecting (and resuming without repeats) if the connection
    /// breaks.
    pub fn events(&self, job_id: &str) -> EventStream {
        EventStream::new(self.clone(), job_id.to_owned())
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.options.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends with the request timeout; a failure status becomes the mapped error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .timeout(self.options.timeout)
            .send()
            .await
            .map_err(ClientError::from_reqwest)?;
        check(response).await
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let text = response.text().await.map_err(ClientError::from_reqwest)?;
        serde_json::from_str(&text)
            .map_err(|error| ClientError::Decode(format!("{error}: {text:.200}")))
    }
}

/// `response` if it succeeded, else its error body mapped to a [`ClientError`].
pub(crate) async fn check(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    Err(ClientError::from_response(
        status.as_u16(),
        &body,
        retry_after,
    ))
}

/// A job id as one URL path segment (ids are UUIDs; anything else is escaped rather than trusted).
pub(crate) fn segment(id: &str) -> String {
    id.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(super::segment("ab-12"), "ab-12");
        assert_eq!(super::segment("../x?y"), "..%2Fx%3Fy");
    }

    #[test]
    fn a_bad_base_url_is_a_config_error() {
        let error = super::Client::new("not a url").err();
        assert!(
            matches!(error, Some(super::ClientError::Config(_))),
            "{error:?}"
        );
    }
}
