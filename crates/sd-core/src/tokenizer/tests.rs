//! End-to-end checks of [`ClipTokenizer`] on the committed fixtures (tests/fixtures/tokenizer/); the full
//! transformers corpus is checked by crates/sd-core/tests/tokenizer.rs.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use super::*;
use crate::tokenizer::test_dir::TestDir;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer")
}

fn clip_vit_l() -> ClipTokenizer {
    ClipTokenizer::from_dir(&fixtures().join("clip-vit-l")).unwrap()
}

fn padded(ids: &[u32], pad: u32) -> Vec<u32> {
    let mut out = ids.to_vec();
    out.resize(77, pad);
    out
}

#[test]
fn full_vocab_gives_the_familiar_ids() {
    let tok = clip_vit_l();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (49406, 49407, 49407)
    );
    assert_eq!((tok.max_length(), tok.vocab_size()), (77, 49408));
    assert_eq!(tok.encode("a photo of a cat"), [320, 1125, 539, 320, 2368]);
    assert_eq!(
        tok.encode_padded("a photo of a cat"),
        padded(&[49406, 320, 1125, 539, 320, 2368, 49407], 49407)
    );
    assert_eq!(tok.encode_padded(""), padded(&[49406, 49407], 49407));
}

#[test]
fn text_is_lowercased_and_whitespace_dropped() {
    let tok = clip_vit_l();
    assert_eq!(
        tok.encode("  A\tPHOTO\n of a   Cat "),
        tok.encode("a photo of a cat")
    );
    assert_eq!(tok.encode("IT'S"), tok.encode("it's"));
}

#[test]
fn special_tokens_in_the_text_become_their_ids() {
    let tok = clip_vit_l();
    assert_eq!(tok.encode("a<|endoftext|>b"), [320, 49407, 321]);
    // Matched on the raw text only (plain-string special tokens): other casings are ordinary text.
    assert_eq!(tok.encode("<|ENDOFTEXT|>"), [27, 347, 40786, 4160, 91, 285]);
}

#[test]
fn long_prompts_are_truncated_keeping_eos_last() {
    let tok = clip_vit_l();
    let text = vec!["cat"; 200].join(" ");
    let ids = tok.encode_padded(&text);
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    assert!(ids[1..76].iter().all(|&id| id == 2368));
    assert_eq!(ids[76], 49407);
    // 75 words exactly fill the budget; no padding after EOS.
    assert_eq!(tok.encode_padded(&vec!["cat"; 75].join(" ")), ids);
}

#[test]
fn sd2_config_pads_with_bang_and_splits_it_out() {
    let vocab = fixtures().join("clip-vit-l");
    let tok = ClipTokenizer::from_parts(
        &vocab.join("vocab.json"),
        &vocab.join("merges.txt"),
        &fixtures().join("sd2-config"),
    )
    .unwrap();
    assert_eq!((tok.pad_id(), tok.eos_id()), (0, 49407));
    // `!` is a special token there, so every `!` is its own id 0 ("!!!" is one token with the plain config).
    assert_eq!(
        tok.encode_padded("wow!"),
        padded(&[49406, 2781, 0, 49407], 0)
    );
    assert_eq!(tok.encode("!!!"), [0, 0, 0]);
    assert_eq!(clip_vit_l().encode("!!!"), [995]);
    // Its eos/unk are AddedToken objects with normalized=true: matched after lower-casing.
    assert_eq!(tok.encode("<|ENDOFTEXT|>"), [49407]);
}

#[test]
fn tiny_vocab_uses_its_own_special_ids() {
    let tok = ClipTokenizer::from_dir(&fixtures().join("tiny-500")).unwrap();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id(), tok.vocab_size()),
        (1012, 1013, 1013, 1014)
    );
    assert_eq!(
        tok.encode("a photo of a cat"),
        [320, 816, 531, 539, 320, 66, 536]
    );
}

#[test]
fn special_tokens_missing_from_the_vocab_get_new_ids() {
    let vocab: HashMap<String, u32> = [("a</w>", 0), ("<|startoftext|>", 1), ("<|endoftext|>", 2)]
        .map(|(t, i)| (t.to_string(), i))
        .into();
    let config = TokenizerConfig {
        pad: "<pad>".into(),
        added: ["<|startoftext|>", "<|endoftext|>", "<pad>"]
            .map(|content| AddedToken {
                content: content.into(),
                normalized: false,
            })
            .into(),
        max_length: 5,
        ..TokenizerConfig::default()
    };
    let tok = ClipTokenizer::from_vocab(vocab, "#version: 0.2\n", &config).unwrap();
    assert_eq!((tok.pad_id(), tok.vocab_size()), (3, 4));
    assert_eq!(tok.encode_padded("a<pad>"), [1, 0, 3, 2, 3]);
    // A byte missing from the vocab becomes the unknown token (here `<|endoftext|>`).
    assert_eq!(tok.encode("b a"), [2, 0]);
}

#[test]
fn missing_or_invalid_files_are_named() {
    let dir = TestDir::new("files");
    let err = ClipTokenizer::from_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vocab.json"), "{err}");

    std::fs::write(
        dir.path().join("vocab.json"),
        r#"{"a": 0, "b": 1, "ab": 2}"#,
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("merges.txt"), "{err}");

    std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    assert!(ClipTokenizer::from_dir(dir.path()).is_ok());

    std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\na c\n").unwrap();
    let err = ClipTokenizer::from_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("merges.txt") && err.contains("line 2"),
        "{err}"
    );

    std::fs::write(dir.path().join("vocab.json"), "[1, 2]").unwrap();
    let err = ClipTokenizer::from_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vocab.json"), "{err}");

    std::fs::write(dir.path().join("tokenizer_config.json"), "{").unwrap();
    let err = ClipTokenizer::from_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer_config.json"), "{err}");
}

#[test]
fn a_full_prompt_tokenizes_well_under_a_millisecond() {
    let tok = clip_vit_l();
    let prompt = "masterpiece, best quality, (ultra-detailed:1.2), 1girl, solo, long hair, café, 日本語, 👩🏽‍💻, \
                  cinematic lighting, depth of field, bokeh, highly detailed face, intricate, elegant, sharp focus, \
                  trending on artstation, by greg rutkowski and alphonse mucha, 8k wallpaper, award winning, \
                  portrait of a knight in ornate armor, castle in the background, dramatic clouds";
    assert!(
        tok.encode(prompt).len() > 75,
        "the prompt should fill all 77 ids"
    );
    let runs = 200;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(tok.encode_padded(std::hint::black_box(prompt)));
    }
    let per_prompt = start.elapsed() / runs;
    // Generous for an unoptimised test build; a release build takes a few microseconds.
    assert!(
        per_prompt < std::time::Duration::from_millis(1),
        "{per_prompt:?} per prompt"
    );
}
