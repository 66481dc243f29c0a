//! `mario-train eval` takes its decoding defaults from the checkpoint's `generation_config.json`
//! (as `mario-server` does), flags override them, and metrics.json / metrics.md state them.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `mario-train eval` on two dev questions; returns metrics.json, metrics.md and the outputs.
fn eval(model: &Path, data: &Path, out: &Path, flags: &[&str]) -> (Value, String, Vec<String>) {
    let status = Command::new(env!("CARGO_BIN_EXE_mario-train"))
        .args(["--no-progress", "eval", "--limit", "2", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(flags)
        .status()
        .unwrap();
    assert!(status.success());
    let metrics =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(out.join("metrics.md")).unwrap();
    let outputs = std::fs::read_to_string(out.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["output"].to_string())
        .collect();
    (metrics, md, outputs)
}

#[test]
fn eval_uses_the_checkpoints_generation_config_unless_a_flag_says_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, dev) = common::micro_setup(tmp.path());
    let o = |n: &str| tmp.path().join(n);

    // no generation_config.json: the built-in defaults, as before
    let (m, md, _) = eval(&model, &dev, &o("plain"), &[]);
    assert_eq!(m["max_new_tokens"], 128);
    assert_eq!(m["no_repeat_ngram_size"], 0);
    assert!(
        md.contains(
            "Decoding: greedy, max_new_tokens 128 (built-in), no_repeat_ngram_size 0 (built-in)."
        ),
        "{md}"
    );

    // the same decoding given by flags ...
    let (m, _, by_flags) = eval(
        &model,
        &dev,
        &o("flags"),
        &["--max-new-tokens", "6", "--no-repeat-ngram-size", "1"],
    );
    assert_eq!(m["decoding_settings"]["max_new_tokens"]["from"], "flag");
    // ... and by the checkpoint's file decode alike
    std::fs::write(
        model.join(mario::checkpoint::GENERATION_CONFIG_FILE),
        r#"{"max_new_tokens": 6, "no_repeat_ngram_size": 1}"#,
    )
    .unwrap();
    let (m, md, by_file) = eval(&model, &dev, &o("file"), &[]);
    assert_eq!(by_file, by_flags);
    assert_eq!(m["max_new_tokens"], 6);
    assert_eq!(m["no_repeat_ngram_size"], 1);
    assert!(
        md.contains(
            "max_new_tokens 6 (generation_config.json), no_repeat_ngram_size 1 \
             (generation_config.json)"
        ),
        "{md}"
    );

    // a flag wins over the file, field by field
    let (m, md, _) = eval(
        &model,
        &dev,
        &o("override"),
        &["--no-repeat-ngram-size", "0"],
    );
    assert_eq!(m["max_new_tokens"], 6);
    assert_eq!(m["no_repeat_ngram_size"], 0);
    assert!(md.contains("no_repeat_ngram_size 0 (flag)"), "{md}");

    // a config's [eval] table sits between the file and the flags
    let cfg = o("eval.toml");
    std::fs::write(&cfg, "[eval]\nmax_new_tokens = 5\nbatch_size = 1\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let (m, md, _) = eval(&model, &dev, &o("config"), &["--config", cfg]);
    assert_eq!(m["max_new_tokens"], 5);
    assert_eq!(m["no_repeat_ngram_size"], 1);
    assert!(
        md.contains("max_new_tokens 5 (config), no_repeat_ngram_size 1 (generation_config.json)"),
        "{md}"
    );
    let (m, _, _) = eval(
        &model,
        &dev,
        &o("config-flag"),
        &["--config", cfg, "--max-new-tokens", "4"],
    );
    assert_eq!(m["max_new_tokens"], 4);
    assert_eq!(m["decoding_settings"]["max_new_tokens"]["from"], "flag");
}
