//! Micro models and synthetic data for the trainer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mario::model::T5Config;
use mario_training::init::{init_weights, write_model_folder};
use mario_training::tokenizer::{corpus, save_tokenizer, train_tokenizer, TokenizerSettings};

/// A synthetic yes/no task: "Is A larger than B?" with a one-sentence rationale.
pub fn synthetic_rows(n: usize, offset: usize) -> Vec<(String, String, String)> {
    (0..n)
        .map(|i| {
            let a = (i * 7 + offset * 13) % 50;
            let b = (i * 11 + 3 + offset) % 50;
            let q = format!("Is {a} larger than {b}?");
            let (r, ans) = if a > b {
                (format!("{a} is more than {b}."), "yes")
            } else {
                (format!("{a} is not more than {b}."), "no")
            };
            (q, r, ans.to_string())
        })
        .collect()
}

/// Writes rows as a JSON Lines split.
pub fn write_split(path: &Path, rows: &[(String, String, String)]) {
    let mut s = String::new();
    for (q, r, a) in rows {
        s.push_str(&serde_json::json!({"question": q, "rationale": r, "answer": a}).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// A micro T5 (d_model 32, one block each side) with a tokenizer trained on the rows;
/// returns (model dir, train file, dev file).
pub fn micro_setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let train = synthetic_rows(64, 0);
    let dev = synthetic_rows(8, 5);
    let train_path = dir.join("train.jsonl");
    let dev_path = dir.join("dev.jsonl");
    write_split(&train_path, &train);
    write_split(&dev_path, &dev);
    let mut texts: Vec<String> = train
        .iter()
        .flat_map(|(q, r, _)| [q.clone(), r.clone()])
        .collect();
    texts.push("So the answer is yes. So the answer is no.".into());
    let tok = train_tokenizer(
        &corpus(texts.iter().map(String::as_str)),
        &TokenizerSettings {
            vocab_size: 300,
            min_frequency: 2,
        },
    )
    .unwrap();
    let tok_path = dir.join("tokenizer.json");
    save_tokenizer(&tok, &tok_path).unwrap();
    let cfg = T5Config {
        vocab_size: tok.get_vocab_size(true),
        d_model: 32,
        d_kv: 8,
        d_ff: 64,
        num_layers: 1,
        num_decoder_layers: Some(1),
        num_heads: 4,
        ..T5Config::preset("tiny", 10).unwrap()
    };
    let model_dir = dir.join("init");
    write_model_folder(&model_dir, &cfg, &init_weights(&cfg, 0).unwrap(), &tok_path).unwrap();
    (model_dir, train_path, dev_path)
}
