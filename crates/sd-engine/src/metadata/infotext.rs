//! A1111's `parameters` infotext: the text AUTOMATIC1111's web UI writes into every image and that A1111,
//! ComfyUI, civitai and most metadata readers parse back.
//!
//! The layout is the prompt, an optional `Negative prompt: ...` line, then one line of comma-separated
//! `Key: value` pairs. A value holding `,`, `:` or a newline is written as a JSON string (A1111's `quote`);
//! numbers are written as Python's `str` would (`7.0`, `0.75`, `1e-05`). [`Infotext::to_text`] and
//! [`Infotext::parse`] follow A1111's `create_infotext` and `parse_generation_parameters` so that what we
//! write reads back the same in A1111 and what A1111 writes reads back here.

use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;
use sd_core::schedulers::SamplerKind;

/// One image's generation parameters as A1111 writes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Infotext {
    pub prompt: String,
    pub negative_prompt: String,
    /// `Key: value` pairs in the order they are written; values unquoted.
    pub params: Vec<(String, String)>,
}

/// The typed fields our generations produce, in the order A1111's `create_infotext` writes them.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub sampler: SamplerKind,
    pub cfg_scale: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    /// A1111's short hash: the first 10 hex digits of the weights' SHA-256.
    pub model_hash: Option<String>,
    pub model_name: Option<String>,
    /// img2img and inpainting only.
    pub denoising_strength: Option<f64>,
    /// 1 = last layer; written only when above 1, as A1111 does.
    pub clip_skip: usize,
    /// Written after the standard fields and before `Version`, like A1111's `extra_generation_params`.
    pub extra: Vec<(String, String)>,
    pub version: Option<String>,
}

impl GenerationParams {
    pub fn to_infotext(&self) -> Infotext {
        let (sampler, schedule) = a1111_sampler_and_schedule(self.sampler);
        let mut params: Vec<(String, String)> = vec![
            ("Steps".into(), self.steps.to_string()),
            ("Sampler".into(), sampler.into()),
            ("Schedule type".into(), schedule.into()),
            ("CFG scale".into(), python_float(self.cfg_scale)),
            ("Seed".into(), self.seed.to_string()),
            ("Size".into(), format!("{}x{}", self.width, self.height)),
        ];
        let mut optional = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                params.push((key.into(), value));
            }
        };
        optional("Model hash", self.model_hash.clone());
        optional("Model", self.model_name.clone());
        optional(
            "Denoising strength",
            self.denoising_strength.map(python_float),
        );
        optional(
            "Clip skip",
            (self.clip_skip > 1).then(|| self.clip_skip.to_string()),
        );
        params.extend(self.extra.iter().cloned());
        if let Some(version) = &self.version {
            params.push(("Version".into(), version.clone()));
        }
        Infotext {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            params,
        }
    }
}

/// The (sampler, schedule type) pair A1111 shows: Karras is a separate "Schedule type" since A1111 1.9.
pub fn a1111_sampler_and_schedule(kind: SamplerKind) -> (&'static str, &'static str) {
    match kind {
        SamplerKind::DpmPp2MKarras => (SamplerKind::DpmPp2M.a1111_name(), "Karras"),
        other => (other.a1111_name(), "Automatic"),
    }
}

impl Infotext {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The text A1111 would write: byte for byte what its `create_infotext` returns for the same fields.
    pub fn to_text(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.params {
            if !line.is_empty() {
                line.push_str(", ");
            }
            if key == value {
                line.push_str(key);
            } else {
                let _ = write!(line, "{key}: {}", quote(value));
            }
        }
        let negative = if self.negative_prompt.is_empty() {
            String::new()
        } else {
            format!("\nNegative prompt: {}", self.negative_prompt)
        };
        python_strip(&format!("{}{negative}\n{line}", self.prompt)).to_owned()
    }

    /// Reads an infotext as A1111's `parse_generation_parameters` does: the last line holds the parameters when
    /// it has at least three `Key: value` pairs; lines from `Negative prompt:` on are the negative prompt.
    pub fn parse(text: &str) -> Self {
        let stripped = python_strip(text);
        let mut lines: Vec<&str> = stripped.split('\n').collect();
        let mut last = lines.pop().unwrap_or("");
        if param_regex().captures_iter(last).count() < 3 {
            lines.push(last);
            last = "";
        }
        let (mut prompt, mut negative) = (String::new(), String::new());
        let mut in_negative = false;
        for line in lines {
            let mut line = python_strip(line);
            if let Some(rest) = line.strip_prefix("Negative prompt:") {
                in_negative = true;
                line = python_strip(rest);
            }
            let target = if in_negative {
                &mut negative
            } else {
                &mut prompt
            };
            if !target.is_empty() {
                target.push('\n');
            }
            target.push_str(line);
        }
        let params = param_regex()
            .captures_iter(last)
            .map(|captures| {
                let key = captures.get(1).map_or("", |m| m.as_str()).to_owned();
                let value = captures.get(2).map_or("", |m| m.as_str());
                (key, unquote(value))
            })
            .collect();
        Self {
            prompt,
            negative_prompt: negative,
            params,
        }
    }
}

impl std::fmt::Display for Infotext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A1111's `re_param`: `Key: value` where the value is a JSON-quoted string or runs to the next comma.
fn param_regex() -> &'static Regex {
    static PARAM: OnceLock<Regex> = OnceLock::new();
    PARAM.get_or_init(|| {
        Regex::new(r#"\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"#)
            .expect("the parameter pattern is valid")
    })
}

/// A1111's `quote`: values with a comma, colon or newline become JSON strings (non-ASCII kept as is).
pub fn quote(value: &str) -> String {
    if !value.contains([',', '\n', ':']) {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A1111's `unquote`: a value in double quotes is read as JSON, falling back to the raw text.
fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        if let Ok(text) = serde_json::from_str::<String>(value) {
            return text;
        }
    }
    value.to_owned()
}

/// Python's `str.strip()`: Unicode whitespace plus the four ASCII separators Python also counts.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation from 1e-4 up to 1e16 with at
/// least one decimal (`7.0`), scientific outside it (`1e-05`, `1.5e+16`).
pub fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..16).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let fixed = format!("{value}");
    if fixed.contains('.') {
        fixed
    } else {
        format!("{fixed}.0")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams {
            prompt: "a photo of a cat".into(),
            negative_prompt: "blurry, low quality".into(),
            steps: 20,
            sampler: SamplerKind::EulerAncestral,
            cfg_scale: 7.0,
            seed: 42,
            width: 512,
            height: 768,
            model_hash: Some("6ce0161689".into()),
            model_name: Some("v1-5-pruned-emaonly".into()),
            denoising_strength: None,
            clip_skip: 1,
            extra: Vec::new(),
            version: Some("v1.10.1".into()),
        }
    }

    #[test]
    fn writes_what_a1111_writes() {
        // The exact text A1111 1.10 produces for this txt2img API call (cfg_scale is a float there).
        assert_eq!(
            params().to_infotext().to_text(),
            "a photo of a cat\nNegative prompt: blurry, low quality\n\
             Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 42, Size: 512x768, \
             Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
        );
    }

    #[test]
    fn karras_is_a_schedule_type_and_optional_fields_follow_a1111_order() {
        let mut params = params();
        params.negative_prompt.clear();
        params.sampler = SamplerKind::DpmPp2MKarras;
        params.cfg_scale = 7.5;
        params.denoising_strength = Some(0.75);
        params.clip_skip = 2;
        params.extra = vec![("Mask blur".into(), "4".into())];
        assert_eq!(
            params.to_infotext().to_text(),
            "a photo of a cat\n\
             Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x768, \
             Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Clip skip: 2, \
             Mask blur: 4, Version: v1.10.1"
        );
    }

    #[test]
    fn quotes_values_with_commas_colons_and_newlines_as_json() {
        assert_eq!(quote("plain value"), "plain value");
        assert_eq!(quote("has \"quotes\" only"), "has \"quotes\" only");
        assert_eq!(quote("a, b"), "\"a, b\"");
        assert_eq!(quote("k: v"), "\"k: v\"");
        assert_eq!(quote("line\nbreak"), "\"line\\nbreak\"");
        assert_eq!(quote("say \"hi\", ok"), "\"say \\\"hi\\\", ok\"");
        assert_eq!(quote("back\\slash, é"), "\"back\\\\slash, é\"");
        assert_eq!(quote("tab\t, bell\u{7}"), "\"tab\\t, bell\\u0007\"");
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (value, text) in [
            (7.0, "7.0"),
            (7.5, "7.5"),
            (0.75, "0.75"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(python_float(value), text, "{value}");
        }
    }

    #[test]
    fn parses_a1111_text_and_round_trips() {
        let mut params = params();
        params.prompt = "masterpiece, (cat:1.2)\nsecond line".into();
        params.negative_prompt = "ugly\nworse".into();
        params.model_name = Some("my model, v2: final".into());
        params.extra = vec![("Note".into(), "said \"hi\"\nthen left".into())];
        let infotext = params.to_infotext();
        let text = infotext.to_text();
        let parsed = Infotext::parse(&text);
        assert_eq!(parsed, infotext);
        assert_eq!(parsed.to_text(), text);
        assert_eq!(parsed.get("Model"), Some("my model, v2: final"));
        assert_eq!(parsed.get("Seed"), Some("42"));
        assert_eq!(parsed.get("Size"), Some("512x768"));
    }

    #[test]
    fn parses_text_written_by_a1111() {
        let text = "girl with a beret, blue eyes\nNegative prompt: ugly, (extra_limb)\n\
                    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, \
                    Model hash: 45dee52b, Lora hashes: \"a: 1234, b: 5678\"";
        let parsed = Infotext::parse(text);
        assert_eq!(parsed.prompt, "girl with a beret, blue eyes");
        assert_eq!(parsed.negative_prompt, "ugly, (extra_limb)");
        assert_eq!(parsed.get("CFG scale"), Some("7"));
        assert_eq!(parsed.get("Lora hashes"), Some("a: 1234, b: 5678"));
        assert_eq!(parsed.params.len(), 7);
        assert_eq!(parsed.to_text(), text);
    }

    #[test]
    fn a_last_line_with_few_pairs_is_prompt() {
        let parsed = Infotext::parse("just a prompt: with a colon");
        assert_eq!(parsed.prompt, "just a prompt: with a colon");
        assert!(parsed.params.is_empty());
        let no_prompt = GenerationParams {
            prompt: String::new(),
            negative_prompt: String::new(),
            ..params()
        };
        let text = no_prompt.to_infotext().to_text();
        assert!(text.starts_with("Steps: 20, "), "{text}");
        assert_eq!(Infotext::parse(&text).params.len(), 9);
    }
}
