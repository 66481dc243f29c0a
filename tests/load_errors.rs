//! A bad checkpoint folder is refused with a message naming the file and the problem.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use common::*;
use mario::checkpoint::Checkpoint;

const NAME: &str = "t5-v1_0-tied";

fn load_err(dir: &Path) -> String {
    match Checkpoint::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn errors_missing_folder_or_config_json() {
    let msg = load_err(Path::new("/nonexistent/model"));
    assert_mentions(&msg, &["/nonexistent/model", "missing"]);
    let dir = copy_fixture(NAME);
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert_mentions(&load_err(dir.path()), &["config.json", "missing"]);
}

#[test]
fn errors_malformed_config_json() {
    let dir = copy_fixture(NAME);
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, "{ not json").unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["config.json", "key must be a string"],
    );

    let dir = copy_fixture(NAME);
    let cfg = dir.path().join("config.json");
    edit_json(&cfg, |v| {
        v.as_object_mut().unwrap().remove("d_model");
    });
    assert_mentions(
        &load_err(dir.path()),
        &["config.json", "missing field `d_model`"],
    );

    let dir = copy_fixture(NAME);
    let cfg = dir.path().join("config.json");
    edit_json(&cfg, |v| v["feed_forward_proj"] = "gated-swish-x".into());
    assert_mentions(&load_err(dir.path()), &["config.json", "feed_forward_proj"]);

    let dir = copy_fixture(NAME);
    let cfg = dir.path().join("config.json");
    edit_json(&cfg, |v| v["num_heads"] = 0.into());
    assert_mentions(
        &load_err(dir.path()),
        &["config.json", "`num_heads` must be positive"],
    );
}

/// The token ids config.json names are checked against vocab_size (a decoder start beyond it
/// once loaded fine and failed only at the first generation).
#[test]
fn errors_token_ids_of_config_json_beyond_the_vocabulary() {
    for (field, value) in [
        ("decoder_start_token_id", 512),
        ("pad_token_id", 600),
        ("eos_token_id", 512),
    ] {
        let dir = copy_fixture(NAME);
        edit_json(&dir.path().join("config.json"), |v| v[field] = value.into());
        assert_mentions(
            &load_err(dir.path()),
            &["config.json", &format!("`{field}`"), "vocab_size"],
        );
    }
}

/// A tokenizer that can produce ids the model has no embedding row for does not belong to the
/// weights: refused at load, naming the token (it used to fail the batch of whichever question
/// contained it).
#[test]
fn errors_tokenizer_with_ids_beyond_the_vocabulary() {
    let dir = copy_fixture(NAME);
    edit_json(&dir.path().join("tokenizer.json"), |v| {
        let vocab = v["model"]["vocab"].as_array_mut().unwrap();
        vocab.push(serde_json::json!(["\u{2581}zzzq", -30.0]));
    });
    assert_mentions(
        &load_err(dir.path()),
        &["tokenizer.json", "zzzq", "id 512", "512 embedding rows"],
    );
}

#[test]
fn errors_missing_or_malformed_tokenizer_json() {
    let dir = copy_fixture(NAME);
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_mentions(&load_err(dir.path()), &["tokenizer.json", "missing"]);

    let dir = copy_fixture(NAME);
    std::fs::write(dir.path().join("tokenizer.json"), "[1, 2").unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["tokenizer.json", "not a valid tokenizers file"],
    );
}

#[test]
fn errors_missing_truncated_or_incomplete_safetensors() {
    let dir = copy_fixture(NAME);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert_mentions(&load_err(dir.path()), &["model.safetensors", "missing"]);

    let dir = copy_fixture(NAME);
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["model.safetensors", "not a valid safetensors file"],
    );

    std::fs::write(&st, b"garbage").unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["model.safetensors", "not a valid safetensors file"],
    );

    // a tensor the config requires is absent
    let dir = copy_fixture(NAME);
    let st = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&st, &Device::Cpu).unwrap();
    tensors.remove("decoder.block.1.layer.1.EncDecAttention.k.weight");
    candle_core::safetensors::save(&tensors, &st).unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &[
            "model.safetensors",
            "decoder.block.1.layer.1.EncDecAttention.k.weight",
            "missing",
        ],
    );

    // a tensor has the wrong shape for config.json
    let dir = copy_fixture(NAME);
    edit_json(&dir.path().join("config.json"), |v| v["d_ff"] = 100.into());
    assert_mentions(
        &load_err(dir.path()),
        &[
            "model.safetensors",
            "encoder.block.0.layer.1.DenseReluDense.wi.weight",
            "[96, 64]",
            "[100, 64]",
        ],
    );
}

#[test]
fn errors_malformed_mario_json() {
    let cases: [(&str, &[&str]); 4] = [
        ("{", &["mario.json", "EOF"]),
        (
            r#"{"format": 1, "rewards": [{"name": "a", "kind": "binary", "tokens": ["X", "Y", "Z"]}]}"#,
            &["mario.json", "binary and needs exactly 2 tokens"],
        ),
        (
            r#"{"format": 1, "rewards": [{"name": "a", "kind": "quantile", "tokens": ["X", "Y"]},
                {"name": "b", "kind": "quantile", "tokens": ["Y", "Z"]}]}"#,
            &["mario.json", "token `Y` is used twice"],
        ),
        (
            r#"{"format": 1, "rewards": [{"name": "a", "kind": "quantile", "tokens": ["X", "Y"], "best": 1}]}"#,
            &["mario.json", "unknown field `best`"],
        ),
    ];
    for (text, parts) in cases {
        let dir = copy_fixture(NAME);
        std::fs::write(dir.path().join("mario.json"), text).unwrap();
        assert_mentions(&load_err(dir.path()), parts);
    }
    // control tokens that do not fit in the model's embedding
    let dir = copy_fixture(NAME);
    mario::control::ControlTokens::quark(&[("plausibility", 5)], &[])
        .save(&dir.path().join("mario.json"))
        .unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["mario.json", "_TOKEN0_00000", "embedding rows"],
    );
}

#[test]
fn sharded_checkpoints_load_and_a_missing_shard_is_named() {
    let dir = copy_fixture(NAME);
    let st = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&st, &Device::Cpu).unwrap();
    std::fs::remove_file(&st).unwrap();
    let (mut a, mut b) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut map = serde_json::Map::new();
    for (name, t) in tensors {
        let (shard, file) = if name.starts_with("encoder") {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        shard.insert(name.clone(), t);
        map.insert(name, file.into());
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let sharded = Checkpoint::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let single = load(NAME, DType::F32);
    let case = &reference(NAME).inputs[0];
    let run = |c: &Checkpoint| {
        let input = mario::model::EncoderInput::from_rows(
            std::slice::from_ref(&case.input_ids),
            0,
            c.model.device(),
        )
        .unwrap();
        flat(
            &c.model
                .encode(&input, mario::model::Mode::Inference)
                .unwrap()
                .hidden,
        )
    };
    assert_eq!(run(&sharded), run(&single));

    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    assert_mentions(
        &load_err(dir.path()),
        &["model-00002-of-00002.safetensors", "missing"],
    );
}
