//! Reading A1111 request fields from the JSON object as leniently as A1111's pydantic models do (`512.0` is
//! an int, `"7"` a number, `null` means absent), with errors that name the A1111 field.

use serde_json::{Map, Value};

use crate::error::FieldError;

pub type Body = Map<String, Value>;

fn present<'a>(body: &'a Body, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|value| !value.is_null())
}

fn wrong_type(key: &str, expected: &str, value: &Value) -> FieldError {
    FieldError::new(
        "invalid_type",
        key,
        format!("{key} must be {expected}, got {value}"),
    )
}

pub fn int(body: &Body, key: &str) -> Result<Option<i64>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        Value::Bool(flag) => Some(i64::from(*flag)),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| wrong_type(key, "an integer", value))
}

/// Seeds may exceed i64 in principle; we take what fits u64 (and -1).
pub fn seed(body: &Body, key: &str) -> Result<Option<i128>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(number) => number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
                    .map(|float| float as i128)
            }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| wrong_type(key, "an integer", value))
}

pub fn float(body: &Body, key: &str) -> Result<Option<f64>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed
        .filter(|float| float.is_finite())
        .map(Some)
        .ok_or_else(|| wrong_type(key, "a number", value))
}

pub fn boolean(body: &Body, key: &str) -> Result<Option<bool>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(None);
    };
    match value {
        Value::Bool(flag) => Ok(Some(*flag)),
        Value::Number(number) if number.as_i64() == Some(0) => Ok(Some(false)),
        Value::Number(number) if number.as_i64() == Some(1) => Ok(Some(true)),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" | "" => Ok(Some(false)),
            _ => Err(wrong_type(key, "a boolean", value)),
        },
        _ => Err(wrong_type(key, "a boolean", value)),
    }
}

pub fn string(body: &Body, key: &str) -> Result<Option<String>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(None);
    };
    match value {
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        _ => Err(wrong_type(key, "a string", value)),
    }
}

pub fn strings(body: &Body, key: &str) -> Result<Vec<String>, FieldError> {
    let Some(value) = present(body, key) else {
        return Ok(Vec::new());
    };
    match value {
        Value::Array(items) => items
            .iter()
            .filter(|item| !item.is_null())
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(wrong_type(key, "a list of strings", other)),
            })
            .collect(),
        Value::String(text) => Ok(vec![text.clone()]),
        other => Err(wrong_type(key, "a list of strings", other)),
    }
}

pub fn object<'a>(body: &'a Body, key: &str) -> Result<Option<&'a Body>, FieldError> {
    match present(body, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(wrong_type(key, "an object", other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Body {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn numbers_are_read_leniently() {
        let b =
            body(json!({"a": 512.0, "b": "7", "c": null, "d": 7.5, "e": "x", "s": -1, "t": true}));
        assert_eq!(int(&b, "a").unwrap(), Some(512));
        assert_eq!(int(&b, "b").unwrap(), Some(7));
        assert_eq!(int(&b, "c").unwrap(), None);
        assert_eq!(int(&b, "missing").unwrap(), None);
        assert_eq!(int(&b, "d").unwrap_err().field.as_deref(), Some("d"));
        assert!(int(&b, "e").is_err());
        assert_eq!(float(&b, "d").unwrap(), Some(7.5));
        assert_eq!(float(&b, "b").unwrap(), Some(7.0));
        assert_eq!(seed(&b, "s").unwrap(), Some(-1));
        assert_eq!(boolean(&b, "t").unwrap(), Some(true));
        assert!(boolean(&b, "a").is_err());
        assert_eq!(string(&b, "b").unwrap().as_deref(), Some("7"));
        assert_eq!(strings(&b, "e").unwrap(), vec!["x".to_owned()]);
        assert!(strings(&b, "a").is_err());
    }
}
