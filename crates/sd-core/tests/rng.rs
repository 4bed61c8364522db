//! TorchRng / BatchRng against torch's own draws (tests/fixtures/rng/goldens.json, from
//! tools/make_rng_goldens.py). Every comparison is on f32 bit patterns: the port is exact, so any
//! difference at all is a bug.

// A panic is the right failure in a test, and a missing or malformed fixture should fail loudly.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device};
use sd_core::rng::{BatchRng, TorchRng};
use serde_json::Value;

fn goldens() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rng/goldens.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn seed_of(value: &Value) -> u64 {
    value.as_str().unwrap().parse().unwrap()
}

fn numel(shape: &Value) -> usize {
    shape
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .product()
}

fn u32s(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u32)
        .collect()
}

fn fnv1a64(values: &[f32]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in values.iter().flat_map(|v| v.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Asserts `values` equal the golden record bit for bit, naming the first differing index.
fn assert_matches(values: &[f32], golden: &Value, what: &str) {
    assert_eq!(
        values.len() as u64,
        golden["len"].as_u64().unwrap(),
        "{what}: length"
    );
    let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
    let expected = if golden.get("bits").is_some() {
        u32s(&golden["bits"])
    } else {
        u32s(&golden["head"])
    };
    for (i, (&got, &want)) in bits.iter().zip(&expected).enumerate() {
        assert_eq!(
            got,
            want,
            "{what}: element {i}: got {} want {}",
            f32::from_bits(got),
            f32::from_bits(want)
        );
    }
    if let Some(hash) = golden.get("fnv1a64") {
        let want: u64 = hash.as_str().unwrap().parse().unwrap();
        assert_eq!(
            fnv1a64(values),
            want,
            "{what}: hash of all {} values",
            values.len()
        );
    }
}

#[test]
fn rng_single_draws_match_torch() {
    let goldens = goldens();
    let singles = goldens["singles"].as_array().unwrap();
    assert!(singles.len() >= 60);
    for case in singles {
        let seed = seed_of(&case["seed"]);
        let n = numel(&case["shape"]);
        let values = TorchRng::new(seed).randn(n);
        assert_matches(&values, case, &format!("seed {seed} randn({n})"));
    }
}

#[test]
fn rng_draw_sequences_carry_state_like_torch() {
    let goldens = goldens();
    for sequence in goldens["sequences"].as_array().unwrap() {
        let seed = seed_of(&sequence["seed"]);
        let mut rng = TorchRng::new(seed);
        for (step, draw) in sequence["draws"].as_array().unwrap().iter().enumerate() {
            let n = numel(&draw["shape"]);
            let op = draw["op"].as_str().unwrap();
            let values = match op {
                "randn" => rng.randn(n),
                "rand" => rng.rand(n),
                other => panic!("unknown op {other}"),
            };
            assert_matches(&values, draw, &format!("seed {seed} step {step} {op}({n})"));
        }
    }
}

#[test]
fn rng_batches_match_diffusers_randn_tensor() {
    let goldens = goldens();
    for batch in goldens["batches"].as_array().unwrap() {
        let seeds: Vec<u64> = batch["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(seed_of)
            .collect();
        let shape: Vec<usize> = batch["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let tensor = BatchRng::from_seeds(&seeds)
            .randn(&shape, &Device::Cpu, DType::F32)
            .unwrap();
        assert_eq!(tensor.dims(), shape.as_slice());
        let values = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_matches(&values, batch, &format!("batch {seeds:?} {shape:?}"));
    }
}

#[test]
fn rng_batch_size_mismatch_is_an_error() {
    let mut batch = BatchRng::from_seeds(&[1, 2]);
    assert!(batch
        .randn(&[3, 4, 8, 8], &Device::Cpu, DType::F32)
        .is_err());
    assert!(batch.randn(&[], &Device::Cpu, DType::F32).is_err());
    assert!(batch.randn_vec(&[1, 4]).is_err());
    // A failed call draws nothing: the next good call still starts from the seeds.
    let good = batch.randn_vec(&[2, 5]).unwrap();
    let fresh = BatchRng::from_seeds(&[1, 2]).randn_vec(&[2, 5]).unwrap();
    assert_eq!(good, fresh);
}

#[test]
fn rng_interleaved_batches_do_not_disturb_each_other() {
    let shapes: [&[usize]; 4] = [&[2, 4, 8, 8], &[2, 7], &[2, 1], &[2, 4, 16, 16]];
    let mut alone_a = BatchRng::from_seeds(&[42, 7]);
    let expected_a: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| alone_a.randn_vec(s).unwrap())
        .collect();
    let mut alone_b = BatchRng::from_seeds(&[42, 1234]);
    let expected_b: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| alone_b.randn_vec(s).unwrap())
        .collect();

    let mut a = BatchRng::from_seeds(&[42, 7]);
    let mut b = BatchRng::from_seeds(&[42, 1234]);
    for (i, shape) in shapes.iter().enumerate() {
        assert_eq!(
            b.randn_vec(shape).unwrap(),
            expected_b[i],
            "job b, draw {i}"
        );
        assert_eq!(
            a.randn_vec(shape).unwrap(),
            expected_a[i],
            "job a, draw {i}"
        );
    }
}

#[test]
fn rng_batch_tensor_is_cast_to_the_requested_dtype() {
    let mut batch = BatchRng::from_seeds(&[3]);
    let tensor = batch
        .randn(&[1, 4, 4, 4], &Device::Cpu, DType::F16)
        .unwrap();
    assert_eq!(tensor.dtype(), DType::F16);
    let expected = TorchRng::new(3).randn(64);
    let got = tensor
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(*g, half::f16::from_f32(*e).to_f32());
    }
}
