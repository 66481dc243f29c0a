//! The copy recipe in miniature: a from-scratch micro T5, the shipped tokenizer trainer and
//! SFT without dropout learn to copy names they never saw from the question into the
//! rationale. This guards the recipe of `training/reports/copy-probe/` (the old Unigram
//! tokenizer kept every training name whole and split unseen ones into characters, and
//! dropout 0.1 slowed copying several-fold): a change that breaks copying fails here. With
//! this data, a tokenizer trained with `min_frequency = 0` (every name a piece of its own)
//! copies 0 % of the dev names; the shipped settings copy all of them within 300 updates.

use std::collections::BTreeSet;

use candle_core::Device;
use mario::model::T5Config;
use mario_training::eval::{evaluate_model, EvalOptions};
use mario_training::init::{init_weights, write_model_folder};
use mario_training::sft::{SftSettings, SftTask};
use mario_training::tokenizer::{
    corpus_from_files, save_tokenizer, train_tokenizer, TokenizerSettings,
};
use mario_training::train::{train, RunDir, TrainableModel};

const SYLLABLES: [&str; 12] = [
    "ka", "ki", "ko", "ma", "mi", "mo", "ta", "ti", "to", "ra", "ri", "ro",
];

fn write(path: &std::path::Path, names: &[String]) {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        let a = if i % 2 == 0 { "yes" } else { "no" };
        s.push_str(
            &serde_json::json!({
                "question": format!("Is the name {n} and is it {a}?"),
                "rationale": format!("The name is {n}."),
                "answer": a,
            })
            .to_string(),
        );
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_micro_t5_learns_to_copy_unseen_names() {
    let dir = tempfile::tempdir().unwrap();
    // every two-syllable name, shuffled by a fixed permutation; 1 in 6 held out for dev
    let mut names: Vec<String> = Vec::new();
    for a in SYLLABLES {
        for b in SYLLABLES {
            names.push(format!("{a}{b}"));
        }
    }
    let names: Vec<String> = (0..names.len())
        .map(|i| names[(i * 61) % names.len()].clone())
        .collect();
    let (dev_names, train_names) = names.split_at(names.len() / 6);
    let seen: BTreeSet<&String> = train_names.iter().collect();
    assert!(dev_names.iter().all(|n| !seen.contains(n)));
    let (train_file, dev_file) = (dir.path().join("train.jsonl"), dir.path().join("dev.jsonl"));
    write(&train_file, train_names);
    write(&dev_file, dev_names);

    let tok = train_tokenizer(
        &corpus_from_files(std::slice::from_ref(&train_file)).unwrap(),
        &TokenizerSettings::default(),
    )
    .unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    save_tokenizer(&tok, &tok_path).unwrap();
    let cfg = T5Config {
        vocab_size: tok.get_vocab_size(true),
        d_model: 64,
        d_kv: 16,
        d_ff: 128,
        num_layers: 2,
        num_decoder_layers: Some(2),
        num_heads: 4,
        ..T5Config::preset("tiny", 10).unwrap()
    };
    let init = dir.path().join("init");
    write_model_folder(&init, &cfg, &init_weights(&cfg, 0).unwrap(), &tok_path).unwrap();

    let device = Device::Cpu;
    let mut model = TrainableModel::load(&init, &device).unwrap();
    let settings = SftSettings {
        lr: 3e-3,
        warmup_steps: 50,
        steps: 300,
        batch_size: 16,
        dropout: Some(0.0),
        eval_every: 0,
        eval_limit: 8,
        max_new_tokens: 16,
        ..SftSettings::default()
    };
    let task = SftTask::load(
        std::slice::from_ref(&train_file),
        std::slice::from_ref(&dev_file),
        &model.tokenizer,
        settings.clone(),
        &device,
    )
    .unwrap();
    let opts = settings.train_options(task.train.len());
    train(
        &task,
        &mut model,
        &opts,
        &RunDir(dir.path().join("sft")),
        false,
    )
    .unwrap();

    let (m, results) = evaluate_model(
        &model.model,
        &model.tokenizer,
        &task.dev,
        &EvalOptions {
            max_new_tokens: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let copied = m.rationale_exact_rate.unwrap();
    let outputs: Vec<&str> = results.iter().take(6).map(|r| r.output.as_str()).collect();
    assert!(
        copied >= 0.8,
        "copied {copied:.2} of {} unseen names: {outputs:?}",
        results.len()
    );
}
