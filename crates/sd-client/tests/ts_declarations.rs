//! The hand-written TypeScript declarations of the wasm package (`src/wasm_types.d.ts`, emitted into the
//! generated `.d.ts` by wasm-bindgen) name exactly the fields of the shared Rust types, as their OpenAPI
//! schemas list them: a field added to `sd-api-types` fails here until the declarations follow.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use std::collections::BTreeSet;

use sd_api_types as api;
use utoipa::PartialSchema;

const DECLARATIONS: &str = include_str!("../src/wasm_types.d.ts");

/// The field names of `export interface NAME { ... }`.
fn ts_fields(name: &str) -> BTreeSet<String> {
    let start = DECLARATIONS
        .find(&format!("export interface {name} {{"))
        .unwrap_or_else(|| panic!("no interface {name}"));
    let body = &DECLARATIONS[start..];
    let open = body.find('{').unwrap();
    let mut depth = 0;
    let mut end = open;
    for (index, character) in body[open..].char_indices() {
        match character {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + index;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut fields = BTreeSet::new();
    let mut depth = 0;
    let mut token = String::new();
    for line in body[open + 1..end].lines() {
        let line = line.trim();
        if line.starts_with("/**") || line.starts_with('*') {
            continue;
        }
        for character in line.chars() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 && !token.trim().is_empty() => {
                    fields.insert(token.trim().trim_end_matches('?').to_owned());
                    token.clear();
                }
                ';' if depth == 0 => token.clear(),
                _ if depth == 0 => token.push(character),
                _ => {}
            }
        }
        token.clear();
    }
    fields
}

fn schema_fields<T: PartialSchema>() -> BTreeSet<String> {
    let schema = serde_json::to_value(T::schema()).unwrap();
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties: {schema}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_declared_interface_matches_its_rust_type() {
    let pairs = [
        ("JobBody", schema_fields::<api::JobBody>()),
        ("LoraField", schema_fields::<api::LoraField>()),
        ("JobAccepted", schema_fields::<api::JobAccepted>()),
        ("JobView", schema_fields::<api::JobView>()),
        ("JobResultView", schema_fields::<api::JobResultView>()),
        ("JobList", schema_fields::<api::JobList>()),
        ("CancelResponse", schema_fields::<api::CancelResponse>()),
        ("Progress", schema_fields::<api::Progress>()),
        ("JobError", schema_fields::<api::JobError>()),
        ("JobTimings", schema_fields::<api::JobTimings>()),
        ("Limits", schema_fields::<api::Limits>()),
        ("Defaults", schema_fields::<api::Defaults>()),
        ("QueueInfo", schema_fields::<api::QueueInfo>()),
        ("Info", schema_fields::<api::Info>()),
    ];
    for (name, rust) in pairs {
        assert_eq!(ts_fields(name), rust, "interface {name}");
    }
}

#[test]
fn every_event_variant_is_declared() {
    let events = [
        api::JobEvent::Queued { position: 1 },
        api::JobEvent::Started {},
        api::JobEvent::Progress {
            step: 1,
            total: 2,
            percent: 50.0,
            eta_ms: 1,
        },
        api::JobEvent::Preview {
            step: 1,
            image: "x".into(),
        },
        api::JobEvent::Complete {
            images: vec![],
            seeds: vec![],
            timings: api::JobTimings::default(),
        },
        api::JobEvent::Error {
            code: "c".into(),
            message: "m".into(),
        },
        api::JobEvent::Cancelled {},
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        let object = json.as_object().unwrap();
        let declared = format!("{{ type: '{}'", event.name());
        let line = DECLARATIONS
            .lines()
            .find(|line| line.contains(&declared))
            .unwrap_or_else(|| panic!("JobEvent lacks {declared}"));
        for key in object.keys().filter(|key| *key != "type") {
            assert!(line.contains(&format!(" {key}:")), "{line} lacks {key}");
        }
    }
}
