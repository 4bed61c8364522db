//! A1111's `<lora:NAME:WEIGHT>` prompt tags: found, parsed and removed from the prompt text before it is
//! encoded, as A1111's extra-networks code does (`<lora:NAME>` is weight 1; `<lora:NAME:TE:UNET>` gives the
//! text encoders and the UNet their own weights; `<lyco:...>` is the same). Other text is left as it is.

/// One LoRA asked for in a prompt (or a request field).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraTag {
    pub name: String,
    /// Multiplier for the text-encoder layers.
    pub te_weight: f64,
    /// Multiplier for the UNet layers (A1111's third argument; the same as `te_weight` when absent).
    pub unet_weight: f64,
}

impl LoraTag {
    pub fn new(name: impl Into<String>, weight: f64) -> Self {
        Self {
            name: name.into(),
            te_weight: weight,
            unet_weight: weight,
        }
    }

    /// The tag as A1111 writes it.
    pub fn to_tag(&self) -> String {
        if self.te_weight == self.unet_weight {
            format!("<lora:{}:{}>", self.name, self.te_weight)
        } else {
            format!(
                "<lora:{}:{}:{}>",
                self.name, self.te_weight, self.unet_weight
            )
        }
    }
}

/// A tag that names a LoRA but cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad LoRA tag `{tag}`: {reason} (write `<lora:NAME:WEIGHT>`, e.g. `<lora:style:0.8>`)")]
pub struct TagError {
    pub tag: String,
    pub reason: String,
}

/// The prompt without its LoRA tags, and the tags in the order they appear.
pub fn extract_lora_tags(prompt: &str) -> Result<(String, Vec<LoraTag>), TagError> {
    let mut text = String::with_capacity(prompt.len());
    let mut tags = Vec::new();
    let mut rest = prompt;
    while let Some(open) = rest.find('<') {
        let (before, from) = rest.split_at(open);
        text.push_str(before);
        let Some(close) = from.find('>') else {
            text.push_str(from);
            rest = "";
            break;
        };
        let inner = &from[1..close];
        match parse_tag(inner) {
            Some(parsed) => tags.push(parsed.map_err(|reason| TagError {
                tag: from[..=close].to_string(),
                reason,
            })?),
            None => text.push_str(&from[..=close]),
        }
        rest = &from[close + 1..];
    }
    text.push_str(rest);
    Ok((text, tags))
}

/// `None`: not a LoRA tag (kept as text); `Some(Err)`: a LoRA tag that does not parse.
fn parse_tag(inner: &str) -> Option<Result<LoraTag, String>> {
    let (kind, args) = inner.split_once(':')?;
    // A1111's pattern is `<(\w+):([^>]+)>`; only LoRA-like networks are ours.
    if !matches!(kind, "lora" | "lyco") {
        return None;
    }
    let parts: Vec<&str> = args.split(':').collect();
    let name = parts[0].trim();
    if name.is_empty() {
        return Some(Err("the name is empty".into()));
    }
    let number = |s: &str| -> Result<f64, String> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a number", s.trim()))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("`{}` is not a finite number", s.trim()))
        }
    };
    let result = (|| {
        let te = match parts.get(1) {
            Some(w) => number(w)?,
            None => 1.0,
        };
        let unet = match parts.get(2) {
            Some(w) => number(w)?,
            None => te,
        };
        if parts.len() > 3 {
            return Err("more than three arguments".to_string());
        }
        Ok(LoraTag {
            name: name.to_string(),
            te_weight: te,
            unet_weight: unet,
        })
    })();
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_removed_and_parsed() {
        let (text, tags) =
            extract_lora_tags("a cat, <lora:style v2:0.8> (red:1.2) <lora:b> <lyco:c:0.5:0.25>")
                .unwrap();
        assert_eq!(text, "a cat,  (red:1.2)  ");
        assert_eq!(
            tags,
            vec![
                LoraTag::new("style v2", 0.8),
                LoraTag::new("b", 1.0),
                LoraTag {
                    name: "c".into(),
                    te_weight: 0.5,
                    unet_weight: 0.25
                }
            ]
        );
    }

    #[test]
    fn other_angle_brackets_stay_text() {
        let (text, tags) = extract_lora_tags("<hypernet:x:1> a < b > c <unclosed").unwrap();
        assert_eq!(text, "<hypernet:x:1> a < b > c <unclosed");
        assert!(tags.is_empty());
    }

    #[test]
    fn bad_weights_are_errors() {
        let err = extract_lora_tags("x <lora:a:heavy>").unwrap_err();
        assert!(err.to_string().contains("heavy"), "{err}");
        assert!(extract_lora_tags("<lora::1>").is_err());
    }

    #[test]
    fn to_tag_round_trips() {
        let tag = LoraTag::new("s", 0.8);
        let (_, tags) = extract_lora_tags(&tag.to_tag()).unwrap();
        assert_eq!(tags, vec![tag]);
    }
}
