//! Every prompt of tests/fixtures/tokenizer/corpus.json must tokenize exactly as transformers' CLIPTokenizer did
//! (tools/make_tokenizer_fixtures.py), for each tokenizer variant listed there.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sd_core::tokenizer::ClipTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    variants: std::collections::BTreeMap<String, Variant>,
    differs_with_ftfy: Vec<serde_json::Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Variant {
    config_dir: String,
    vocab_dir: String,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: std::collections::BTreeMap<String, Vec<u32>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer")
}

fn load_corpus() -> Corpus {
    let text = std::fs::read_to_string(fixtures().join("corpus.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn tokenizer_matches_transformers_on_the_corpus() {
    let corpus = load_corpus();
    assert!(
        corpus.cases.len() >= 300,
        "corpus too small: {}",
        corpus.cases.len()
    );
    assert_eq!(corpus.variants.len(), 4);
    for (name, variant) in &corpus.variants {
        let vocab = fixtures().join(&variant.vocab_dir);
        let tok = ClipTokenizer::from_parts(
            &vocab.join("vocab.json"),
            &vocab.join("merges.txt"),
            &fixtures().join(&variant.config_dir),
        )
        .unwrap();
        let mut failures = Vec::new();
        for case in &corpus.cases {
            let expected = &case.ids[name];
            let actual = tok.encode_padded(&case.text);
            if &actual != expected {
                failures.push(format!(
                    "{:?}\n  expected {expected:?}\n  actual   {actual:?}",
                    case.text
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} of {} prompts differ; first ones:\n{}",
            failures.len(),
            corpus.cases.len(),
            failures
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn tokenizer_corpus_was_made_without_ftfy_and_ftfy_changes_nothing() {
    let corpus = load_corpus();
    assert!(corpus.differs_with_ftfy.is_empty());
    let text = std::fs::read_to_string(fixtures().join("corpus.json")).unwrap();
    let head: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(head["reference"]["ftfy_importable"], false);
}
