//! Shared helpers of the integration tests: fixture paths and the transformers reference.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine;
use candle_core::{DType, Device, Tensor};
use mario::checkpoint::Checkpoint;
use serde::Deserialize;

/// The two reference checkpoints written by scripts/make_reference.py.
pub const FIXTURES: [&str; 2] = ["t5-v1_0-tied", "t5-v1_1-gated"];

/// `tests/fixtures/<name>`.
/// `tests/fixtures/<name>`; `MARIO_FIXTURES` points elsewhere (test binaries run on another
/// machine, e.g. by scripts/gpu-check.sh).
pub fn fixture_dir(name: &str) -> PathBuf {
    match std::env::var_os("MARIO_FIXTURES") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join(name),
    }
}

/// The device the engine tests run on: `MARIO_TEST_DEVICE` (cpu, cuda or auto; default cpu).
/// A requested CUDA device that cannot be opened fails the test instead of falling back.
/// `MARIO_TEST_ATTENTION=tensor` makes CPU inference take the GPU's attention path (tensor
/// ops and an additive mask) instead of the fused CPU kernel.
pub fn test_device() -> Device {
    if std::env::var("MARIO_TEST_ATTENTION").as_deref() == Ok("tensor") {
        mario::model::force_tensor_attention(true);
    }
    let choice: mario::device::DeviceChoice = std::env::var("MARIO_TEST_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("MARIO_TEST_DEVICE");
    choice.open().expect("MARIO_TEST_DEVICE opens")
}

/// A float array stored as base64 little-endian f32.
#[derive(Debug, Deserialize)]
pub struct F32Array {
    pub shape: Vec<usize>,
    #[serde(rename = "f32le-base64")]
    pub data: String,
}

impl F32Array {
    pub fn values(&self) -> Vec<f32> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .expect("valid base64");
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(v.len(), self.shape.iter().product::<usize>());
        v
    }
}

#[derive(Debug, Deserialize)]
pub struct RefInput {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub encoder_hidden: F32Array,
    pub target_text: String,
    pub decoder_input_ids: Vec<u32>,
    pub logits: F32Array,
    pub greedy_ids: Vec<u32>,
    pub greedy_ids_eos: Vec<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub inputs: Vec<RefInput>,
    pub batched_greedy_ids: Vec<Vec<u32>>,
}

pub fn reference(name: &str) -> Reference {
    let path = fixture_dir(name).join("reference.json");
    let text = std::fs::read_to_string(&path).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

pub fn load(name: &str, dtype: DType) -> Checkpoint {
    Checkpoint::load(&fixture_dir(name), dtype, &test_device()).expect("fixture loads")
}

/// Flattened f32 values of a tensor.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies a fixture folder into a fresh temporary directory.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// A copy of a fixture with `extra` more embedding rows (and head rows when untied), as a
/// trainer that adds control tokens leaves it. The new rows are deterministic.
pub fn with_extra_vocab(name: &str, extra: usize) -> tempfile::TempDir {
    let dir = copy_fixture(name);
    let path = dir.path().join("model.safetensors");
    let dev = Device::Cpu;
    let mut tensors = candle_core::safetensors::load(&path, &dev).unwrap();
    let mut vocab = 0;
    for key in ["shared.weight", "lm_head.weight"] {
        if let Some(t) = tensors.get(key).cloned() {
            let (v, d) = t.dims2().unwrap();
            vocab = v;
            let vals: Vec<f32> = (0..extra * d).map(|i| (i as f32 * 0.37).sin()).collect();
            let rows = Tensor::from_vec(vals, (extra, d), &dev).unwrap();
            tensors.insert(key.to_string(), Tensor::cat(&[&t, &rows], 0).unwrap());
        }
    }
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["vocab_size"] = serde_json::json!(vocab + extra);
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dir
}
