//! The wasm32 build in headless Chromium against the real worker (started by tools/test-wasm-sdk.sh, which
//! passes its URL in SD_WASM_TEST_WORKER at build time): through the wasm-bindgen exports a page would use,
//! submit, events in order to the end, the image, cancel, and a typed error.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use sd_client::wasm::{SdClient, SdEventStream};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn client() -> SdClient {
    let Some(url) = option_env!("SD_WASM_TEST_WORKER") else {
        panic!("build with SD_WASM_TEST_WORKER=http://HOST:PORT (tools/test-wasm-sdk.sh does)");
    };
    SdClient::new(url, JsValue::UNDEFINED).unwrap()
}

fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap()
}

fn get(value: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(value, &key.into()).unwrap()
}

async fn next(stream: &SdEventStream) -> Option<JsValue> {
    let event = JsFuture::from(stream.next()).await.unwrap();
    (!event.is_undefined()).then_some(event)
}

#[wasm_bindgen_test]
async fn submit_stream_in_order_and_fetch_the_png() {
    let client = client();
    let body = json(
        r#"{"operation":"image_generation","prompt":"a red square","steps":4,"width":64,"height":64,"seed":7}"#,
    );
    let accepted = JsFuture::from(client.submit(body).unwrap()).await.unwrap();
    let id = get(&accepted, "job_id").as_string().unwrap();
    let stream = client.events(id.clone());
    let mut kinds = Vec::new();
    let mut steps = Vec::new();
    let mut last = JsValue::UNDEFINED;
    while let Some(event) = next(&stream).await {
        let kind = get(&event, "type").as_string().unwrap();
        if kind == "progress" {
            steps.push(get(&event, "step").as_f64().unwrap());
        }
        kinds.push(kind);
        last = event;
    }
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("complete"),
        "{kinds:?}"
    );
    let started = kinds.iter().position(|kind| kind == "started").unwrap();
    let first_progress = kinds.iter().position(|kind| kind == "progress").unwrap();
    assert!(started < first_progress, "{kinds:?}");
    assert!(steps.windows(2).all(|pair| pair[0] <= pair[1]), "{steps:?}");
    assert_eq!(steps.last(), Some(&4.0));
    let seeds: js_sys::Array = get(&last, "seeds").dyn_into().unwrap();
    assert_eq!(seeds.get(0).as_f64(), Some(7.0));
    let png: js_sys::Uint8Array = JsFuture::from(client.image(id, 0))
        .await
        .unwrap()
        .dyn_into()
        .unwrap();
    assert_eq!(png.slice(0, 8).to_vec(), b"\x89PNG\r\n\x1a\n");
}

#[wasm_bindgen_test]
async fn cancel_a_running_job() {
    let client = client();
    let body = json(
        r#"{"operation":"image_generation","prompt":"long","steps":150,"width":128,"height":128}"#,
    );
    let accepted = JsFuture::from(client.submit(body).unwrap()).await.unwrap();
    let id = get(&accepted, "job_id").as_string().unwrap();
    let stream = client.events(id.clone());
    let mut answer = None;
    let mut last = String::new();
    while let Some(event) = next(&stream).await {
        last = get(&event, "type").as_string().unwrap();
        if last == "progress" && answer.is_none() {
            answer = Some(JsFuture::from(client.cancel(id.clone())).await.unwrap());
        }
    }
    assert_eq!(
        get(&answer.unwrap(), "status").as_string().as_deref(),
        Some("cancelling")
    );
    assert_eq!(last, "cancelled");
    let view = JsFuture::from(client.job(id)).await.unwrap();
    assert_eq!(
        get(&view, "status").as_string().as_deref(),
        Some("cancelled")
    );
}

#[wasm_bindgen_test]
async fn a_refused_request_rejects_with_a_typed_error() {
    let client = client();
    let body = json(r#"{"operation":"image_generation","prompt":"x","steps":0}"#);
    let error = JsFuture::from(client.submit(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(get(&error, "kind").as_string().as_deref(), Some("invalid"));
    assert_eq!(
        get(&error, "code").as_string().as_deref(),
        Some("invalid_steps")
    );
    assert_eq!(get(&error, "field").as_string().as_deref(), Some("steps"));
    assert_eq!(get(&error, "status").as_f64(), Some(422.0));
    let missing = JsFuture::from(client.job("no-such-job".into()))
        .await
        .unwrap_err();
    assert_eq!(
        get(&missing, "kind").as_string().as_deref(),
        Some("not_found")
    );
}
