//! A MaRio run stopped in the middle of a round (twice: once in round 0, once in round 1) and
//! resumed ends exactly where an uninterrupted run ends: the same training losses at every
//! logged update, the same pool, the same final weights and optimizer state.

mod common;

use std::path::Path;

use candle_core::Device;
use mario_training::quark::run::{run_mario, MarioOutcome, MarioRun, MarioSettings, RewardName};

fn settings() -> MarioSettings {
    MarioSettings {
        rewards: vec![RewardName::Accuracy, RewardName::Diversity],
        bins: 2,
        rounds: 2,
        steps_per_round: 30,
        rollouts: 1,
        max_new_tokens: Some(8),
        eval_no_repeat_ngram_sizes: vec![0],
        batch_size: 4,
        lr: 1e-3,
        warmup_steps: 2,
        dropout: 0.1,
        save_every: 0,
        eval_limit: 2,
        selection: "dev_accuracy".parse().unwrap(),
        ..MarioSettings::default()
    }
}

fn run(
    dir: &Path,
    sft: &Path,
    train: &Path,
    dev: &Path,
    out: &Path,
    resume: bool,
    stop_after: Option<u64>,
) -> MarioOutcome {
    run_mario(MarioRun {
        settings: settings(),
        sft: sft.to_path_buf(),
        init: None,
        train_files: vec![train.to_path_buf()],
        replay_files: vec![],
        teacher_files: vec![],
        dev_files: vec![dev.to_path_buf()],
        reward_models: Default::default(),
        out: dir.join(out),
        resume,
        max_minutes: None,
        stop_after,
        device: &Device::Cpu,
        progress: false,
    })
    .unwrap()
}

/// The training lines of a metrics log as (round, step, loss), and the log's other kinds.
fn log(dir: &Path) -> (Vec<(u64, u64, f64)>, Vec<String>) {
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train = rows
        .iter()
        .filter(|v| v["kind"] == "train")
        .map(|v| {
            (
                v["round"].as_u64().unwrap(),
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect();
    let kinds = rows
        .iter()
        .filter(|v| v["kind"] != "train")
        .map(|v| format!("{}:{}", v["kind"], v["round"]))
        .collect();
    (train, kinds)
}

#[test]
fn mario_stopped_inside_rounds_and_resumed_ends_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (sft, train, dev) = common::micro_setup(dir.path());
    let d = dir.path();
    let whole = run(d, &sft, &train, &dev, Path::new("whole"), false, None);
    assert!(matches!(whole, MarioOutcome::Finished(_)), "{whole:?}");

    // stopped after 17 updates (inside round 0), then after 25 more (inside round 1)
    let cut = Path::new("cut");
    assert_eq!(
        run(d, &sft, &train, &dev, cut, false, Some(17)),
        MarioOutcome::Stopped { step: 17, round: 0 }
    );
    assert_eq!(
        run(d, &sft, &train, &dev, cut, true, Some(25)),
        MarioOutcome::Stopped { step: 42, round: 1 }
    );
    assert!(matches!(
        run(d, &sft, &train, &dev, cut, true, None),
        MarioOutcome::Finished(_)
    ));

    let (a, b) = (d.join("whole"), d.join("cut"));
    let (train_a, kinds_a) = log(&a);
    let (train_b, kinds_b) = log(&b);
    assert_eq!(train_a.len(), 3, "a training line every 20 updates");
    assert_eq!(train_a, train_b);
    // every sample, bins and eval line once, in order
    assert_eq!(kinds_a, kinds_b);
    let bytes = |p: &Path, f: &str| std::fs::read(p.join(f)).unwrap();
    for f in [
        "pool.jsonl",
        "last/model.safetensors",
        "last/optimizer.safetensors",
        "best/model.safetensors",
        "dev/round-1.jsonl",
    ] {
        assert!(bytes(&a, f) == bytes(&b, f), "{f} differs");
    }
}
