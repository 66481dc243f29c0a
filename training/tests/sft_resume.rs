//! An SFT run that is stopped and resumed continues exactly: same losses at every step (so
//! the same data order, dropout masks and optimizer state) and the same final weights.

mod common;

use candle_core::Device;
use mario_training::sft::{SftSettings, SftTask};
use mario_training::train::{train, RunDir, TrainableModel};

fn settings() -> SftSettings {
    SftSettings {
        lr: 3e-3,
        warmup_steps: 3,
        steps: 12,
        batch_size: 8,
        grad_accum: 2,
        dropout: Some(0.1),
        seed: 5,
        eval_every: 6,
        log_every: 1,
        eval_limit: 2,
        max_new_tokens: 8,
        ..SftSettings::default()
    }
}

fn losses(run: &RunDir) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.metrics())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn weights(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let mut t: Vec<_> = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn sft_interrupted_and_resumed_continues_loss_curve_and_data_order_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, train_file, dev_file) = common::micro_setup(dir.path());
    let dev = Device::Cpu;
    let run_task = |model: &TrainableModel| {
        SftTask::load(
            std::slice::from_ref(&train_file),
            std::slice::from_ref(&dev_file),
            &model.tokenizer,
            settings(),
            &dev,
        )
        .unwrap()
    };

    // uninterrupted
    let mut model = TrainableModel::load(&model_dir, &dev).unwrap();
    let task = run_task(&model);
    let opts = settings().train_options(task.train.len());
    let full = RunDir(dir.path().join("full"));
    let summary = train(&task, &mut model, &opts, &full, false).unwrap();
    assert!(summary.completed);

    // stopped after 5 updates (mid-epoch: 64 pairs / (8 x 2) = 4 updates per epoch), resumed
    let mut model = TrainableModel::load(&model_dir, &dev).unwrap();
    let split = RunDir(dir.path().join("split"));
    let mut first = opts.clone();
    first.stop_after = Some(5);
    let s1 = train(&task, &mut model, &first, &split, false).unwrap();
    assert_eq!(s1.steps, 5);
    assert!(!s1.completed);
    // starting again without --resume is refused rather than overwriting the run
    let err = train(&task, &mut model, &opts, &split, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let mut model = TrainableModel::load(&model_dir, &dev).unwrap();
    let s2 = train(&task, &mut model, &opts, &split, true).unwrap();
    assert!(s2.completed);

    let a = losses(&full);
    let b = losses(&split);
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "loss curves differ");
    assert!(a[11].1 < a[0].1, "the loss decreases: {a:?}");
    assert_eq!(
        weights(&full.last()),
        weights(&split.last()),
        "final weights differ"
    );
    assert!(full.curves().is_file());
    assert!(full.best().join("model.safetensors").is_file());
}
