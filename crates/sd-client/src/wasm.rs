//! The wasm-bindgen face of the client for browsers: `SdClient` (promises over the same [`Client`]) and
//! `SdEventStream` (`next()` until `undefined`). Values cross as plain JS objects shaped exactly like the
//! server's JSON (the `sd-api-types` types, via JSON), typed for TypeScript by the declarations below;
//! failures reject with an `Error` carrying `kind`, `status`, `code`, `field` and `retryAfterMs`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::{Client, ClientError, ClientOptions, EventStream};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = include_str!("wasm_types.d.ts");

/// `new SdClient(baseUrl, config?)` options, all optional.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Config {
    api_key: Option<String>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_reconnects: Option<u32>,
    reconnect_delay_ms: Option<u64>,
}

fn from_js<T: DeserializeOwned>(value: &JsValue, what: &str) -> Result<T, JsValue> {
    let text: String = js_sys::JSON::stringify(value)
        .map(String::from)
        .map_err(|_| {
            error(&ClientError::Config(format!(
                "{what} is not JSON-serializable"
            )))
        })?;
    serde_json::from_str(&text).map_err(|e| error(&ClientError::Config(format!("{what}: {e}"))))
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let text =
        serde_json::to_string(value).map_err(|e| error(&ClientError::Decode(e.to_string())))?;
    js_sys::JSON::parse(&text)
}

/// A JS `Error` with the typed error's fields as properties.
fn error(failure: &ClientError) -> JsValue {
    let js = js_sys::Error::new(&failure.to_string());
    let kind = match failure {
        ClientError::Invalid { .. } => "invalid",
        ClientError::Unauthorized { .. } => "unauthorized",
        ClientError::Forbidden { .. } => "forbidden",
        ClientError::NotFound { .. } => "not_found",
        ClientError::Expired { .. } => "expired",
        ClientError::Conflict { .. } => "conflict",
        ClientError::Busy { .. } => "busy",
        ClientError::Server { .. } => "server",
        ClientError::Timeout(_) => "timeout",
        ClientError::Transport(_) => "transport",
        ClientError::Decode(_) => "decode",
        ClientError::Config(_) => "config",
    };
    js.set_name("SdError");
    let set = |key: &str, value: JsValue| {
        let _ = js_sys::Reflect::set(&js, &key.into(), &value);
    };
    set("kind", kind.into());
    set(
        "status",
        failure.status().map_or(JsValue::NULL, JsValue::from),
    );
    set("code", failure.code().map_or(JsValue::NULL, JsValue::from));
    let (field, retry_after) = match failure {
        ClientError::Invalid { field, .. } => (field.clone(), None),
        ClientError::Busy { retry_after, .. } => (None, *retry_after),
        _ => (None, None),
    };
    set("field", field.map_or(JsValue::NULL, JsValue::from));
    set(
        "retryAfterMs",
        retry_after.map_or(JsValue::NULL, |after| {
            JsValue::from(after.as_millis() as f64)
        }),
    );
    js.into()
}

#[wasm_bindgen]
pub struct SdClient {
    inner: Client,
}

#[wasm_bindgen]
impl SdClient {
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = baseUrl)] base_url: &str,
        #[wasm_bindgen(unchecked_param_type = "SdClientConfig | undefined")] config: JsValue,
    ) -> Result<SdClient, JsValue> {
        let config: Config = if config.is_undefined() || config.is_null() {
            Config::default()
        } else {
            from_js(&config, "config")?
        };
        let defaults = ClientOptions::default();
        let options = ClientOptions {
            api_key: config.api_key.filter(|key| !key.is_empty()),
            timeout: config
                .timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            idle_timeout: config
                .idle_timeout_ms
                .map_or(defaults.idle_timeout, Duration::from_millis),
            max_reconnects: config.max_reconnects.unwrap_or(defaults.max_reconnects),
            reconnect_delay: config
                .reconnect_delay_ms
                .map_or(defaults.reconnect_delay, Duration::from_millis),
            ..defaults
        };
        let inner = Client::with_options(base_url, options).map_err(|e| error(&e))?;
        Ok(Self { inner })
    }

    /// Queues a job (`POST /v1/jobs`).
    #[wasm_bindgen(unchecked_return_type = "Promise<JobAccepted>")]
    pub fn submit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "JobBody")] body: JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let body: sd_api_types::JobBody = from_js(&body, "body")?;
        let client = self.inner.clone();
        Ok(promise(async move { client.submit(&body).await }))
    }

    /// A job's status, progress, result or error.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobView>")]
    pub fn job(&self, #[wasm_bindgen(js_name = jobId)] job_id: String) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.job(&job_id).await })
    }

    /// Recent jobs, newest first.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobList>")]
    pub fn jobs(&self, limit: Option<u32>) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.jobs(limit.map(|limit| limit as usize)).await })
    }

    /// Cancels a job: `cancelled` if it was waiting, `cancelling` if it was running.
    #[wasm_bindgen(unchecked_return_type = "Promise<CancelResponse>")]
    pub fn cancel(&self, #[wasm_bindgen(js_name = jobId)] job_id: String) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.cancel(&job_id).await })
    }

    /// Image `index` of a succeeded job, PNG bytes.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array>")]
    pub fn image(
        &self,
        #[wasm_bindgen(js_name = jobId)] job_id: String,
        index: u32,
    ) -> js_sys::Promise {
        let client = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let png = client
                .image(&job_id, index as usize)
                .await
                .map_err(|e| error(&e))?;
            Ok(js_sys::Uint8Array::from(png.as_slice()).into())
        })
    }

    /// The model, its defaults, samplers, limits and the queue.
    #[wasm_bindgen(unchecked_return_type = "Promise<Info>")]
    pub fn info(&self) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.info().await })
    }

    /// The LoRAs a job may name.
    #[wasm_bindgen(unchecked_return_type = "Promise<LoraList>")]
    pub fn loras(&self) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.loras().await })
    }

    /// The models served (OpenAI's list format).
    #[wasm_bindgen(unchecked_return_type = "Promise<ModelList>")]
    pub fn models(&self) -> js_sys::Promise {
        let client = self.inner.clone();
        promise(async move { client.models().await })
    }

    /// The job's events (reconnecting and resuming without repeats); read them with `next()`.
    pub fn events(&self, #[wasm_bindgen(js_name = jobId)] job_id: String) -> SdEventStream {
        SdEventStream {
            inner: Rc::new(RefCell::new(Some(self.inner.events(&job_id)))),
            reconnects: Rc::new(RefCell::new(0)),
        }
    }
}

#[wasm_bindgen]
pub struct SdEventStream {
    /// Taken out while a `next()` is pending, so a second concurrent `next()` is refused, not interleaved.
    inner: Rc<RefCell<Option<EventStream>>>,
    reconnects: Rc<RefCell<u32>>,
}

#[wasm_bindgen]
impl SdEventStream {
    /// The next event, or `undefined` after the job's terminal event.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobEvent | undefined>")]
    pub fn next(&self) -> js_sys::Promise {
        let slot = Rc::clone(&self.inner);
        let reconnects = Rc::clone(&self.reconnects);
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = slot.borrow_mut().take();
            let Some(mut stream) = taken else {
                return Err(error(&ClientError::Config(
                    "next() called again before the previous one settled".into(),
                )));
            };
            let next = stream.next().await;
            *reconnects.borrow_mut() = stream.reconnects();
            *slot.borrow_mut() = Some(stream);
            match next {
                Some(Ok(event)) => to_js(&event),
                Some(Err(failure)) => Err(error(&failure)),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// Reconnects made after the connection broke.
    pub fn reconnects(&self) -> u32 {
        *self.reconnects.borrow()
    }
}

/// A promise of `future`'s value as a plain JS object, or of its typed error.
fn promise<T, F>(future: F) -> js_sys::Promise
where
    T: Serialize,
    F: std::future::Future<Output = Result<T, ClientError>> + 'static,
{
    wasm_bindgen_futures::future_to_promise(async move {
        let value = future.await.map_err(|e| error(&e))?;
        to_js(&value)
    })
}
