//! A1111's emphasis syntax (`modules/prompt_parser.py::parse_prompt_attention` in 1.10): `(text)` x1.1,
//! `[text]` /1.1, `(text:1.3)`, nesting, `\(` escapes and `BREAK`, parsed into runs of text with one weight.

use std::sync::OnceLock;

use regex::Regex;

/// One run of text and its weight; `BREAK` (start a new chunk) is `("BREAK", -1.0)` as in A1111.
pub type Weighted = (String, f64);

fn attention_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:",
        )
        .unwrap_or_else(|e| panic!("static regex: {e}"))
    })
}

fn break_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?s)\s*\bBREAK\b\s*").unwrap_or_else(|e| panic!("static regex: {e}"))
    })
}

/// Python's `float()` on what the weight group matched (`[+-]?[.\d]+`); `None` where Python would raise.
fn parse_weight(text: &str) -> Option<f64> {
    let digits = text.trim_start_matches(['+', '-']);
    if digits.matches('.').count() > 1 || !digits.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .or_else(|| format!("{text}0").parse().ok())
}

/// The weighted runs of `text`, exactly as A1111's `parse_prompt_attention` (adjacent runs of equal weight
/// merged; an empty prompt is one empty run).
pub fn parse_prompt_attention(text: &str) -> Vec<Weighted> {
    let mut res: Vec<Weighted> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let multiply = |res: &mut Vec<Weighted>, start: usize, m: f64| {
        for item in res.iter_mut().skip(start) {
            item.1 *= m;
        }
    };
    for caps in attention_re().captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        let s = whole.as_str();
        let weight = caps.get(1).map(|w| w.as_str());
        if let Some(rest) = s.strip_prefix('\\') {
            res.push((rest.to_string(), 1.0));
        } else if s == "(" {
            round.push(res.len());
        } else if s == "[" {
            square.push(res.len());
        } else if let (Some(w), false) = (weight, round.is_empty()) {
            // Python raises on e.g. `1.2.3`; we keep going with the text's weight unchanged (1.0 factor).
            let factor = parse_weight(w).unwrap_or(1.0);
            if let Some(start) = round.pop() {
                multiply(&mut res, start, factor);
            }
        } else if s == ")" && !round.is_empty() {
            if let Some(start) = round.pop() {
                multiply(&mut res, start, 1.1);
            }
        } else if s == "]" && !square.is_empty() {
            if let Some(start) = square.pop() {
                multiply(&mut res, start, 1.0 / 1.1);
            }
        } else {
            for (i, part) in break_re().split(s).enumerate() {
                if i > 0 {
                    res.push(("BREAK".into(), -1.0));
                }
                res.push((part.to_string(), 1.0));
            }
        }
    }
    for start in round {
        multiply(&mut res, start, 1.1);
    }
    for start in square {
        multiply(&mut res, start, 1.0 / 1.1);
    }
    if res.is_empty() {
        res.push((String::new(), 1.0));
    }
    let mut i = 0;
    while i + 1 < res.len() {
        if res[i].1 == res[i + 1].1 {
            let next = res.remove(i + 1);
            res[i].0.push_str(&next.0);
        } else {
            i += 1;
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, f64)> {
        parse_prompt_attention(text)
    }

    fn w(items: &[(&str, f64)]) -> Vec<(String, f64)> {
        items.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    // The examples from A1111's own docstring.
    #[test]
    fn a1111_docstring_examples() {
        assert_eq!(p("normal text"), w(&[("normal text", 1.0)]));
        assert_eq!(
            p("an (important) word"),
            w(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        );
        assert_eq!(p("(unbalanced"), w(&[("unbalanced", 1.1)]));
        assert_eq!(p("\\(literal\\]"), w(&[("(literal]", 1.0)]));
        assert_eq!(p("(unnecessary)(parens)"), w(&[("unnecessaryparens", 1.1)]));
        let got = p("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).");
        let want = [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((t, g), (wt, ww)) in got.iter().zip(want) {
            assert_eq!(t, wt);
            assert!((g - ww).abs() < 1e-12, "{t}: {g} vs {ww}");
        }
    }

    #[test]
    fn break_and_empty() {
        assert_eq!(p(""), w(&[("", 1.0)]));
        assert_eq!(
            p("a BREAK b"),
            w(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)])
        );
        assert_eq!(p("BREAKfast"), w(&[("BREAKfast", 1.0)]));
        assert_eq!(p("(a:1.2) x:y"), w(&[("a", 1.2), (" x:y", 1.0)]));
    }
}
