//! bf16 mixed precision (`precision = "bf16"`): the network is a bf16 cast of the f32
//! variables, its loss and gradients track f32's, and SFT and MaRio runs train with it, keeping
//! f32 weights.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use mario::model::{DropoutRng, Mode};
use mario_training::bench::train::synthetic_examples;
use mario_training::quark::run::{run_mario, MarioOutcome, MarioRun, MarioSettings, RewardName};
use mario_training::sft::{SftSettings, SftTask};
use mario_training::train::loss::{nll_loss, Seq2SeqBatch, Seq2SeqExample};
use mario_training::train::{train, Precision, RunDir, TrainableModel};

/// The bf16 network computes the f32 network's loss within bf16 rounding, and its gradients
/// land on the f32 variables pointing the same way as the f32 network's.
#[test]
fn a_bf16_cast_network_matches_f32_and_its_gradients_reach_the_f32_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, _, _) = common::micro_setup(dir.path());
    let model = TrainableModel::load(&model_dir, &Device::Cpu).unwrap();
    let examples = synthetic_examples(model.config.vocab_size, 4, 10, 12, 0, 3).unwrap();
    let refs: Vec<&Seq2SeqExample> = examples.iter().collect();
    let batch = Seq2SeqBatch::new(
        &refs,
        model.config.decoder_start(),
        model.tokenizer.pad_id(),
        &Device::Cpu,
    )
    .unwrap();
    let loss_grads = |dtype: DType| {
        let net = model.cast_network(dtype).unwrap();
        // training mode (every op differentiable), no dropout
        let no_dropout = DropoutRng::new(0.0, 0);
        let loss = nll_loss(&net, &batch, Mode::Training(&no_dropout)).unwrap();
        let grads = loss.backward().unwrap();
        (loss.to_scalar::<f32>().unwrap(), grads)
    };
    let (l32, g32) = loss_grads(DType::F32);
    let (l16, g16) = loss_grads(DType::BF16);
    assert!(
        (l32 - l16).abs() < 0.02 * l32.abs(),
        "loss f32 {l32} vs bf16 {l16}"
    );
    let vars = model.vars();
    let mut checked = 0;
    for name in [
        "shared.weight",
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        "decoder.block.0.layer.2.DenseReluDense.wo.weight",
    ] {
        let Some(var) = vars.get(name) else { continue };
        let a: Vec<f32> = g32
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("f32: no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let gb = g16
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("bf16: no gradient reaches the f32 variable {name}"));
        assert_eq!(gb.dtype(), DType::F32, "{name}: the gradient is f32");
        let b: Vec<f32> = gb.flatten_all().unwrap().to_vec1().unwrap();
        let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = dot / (norm(&a) * norm(&b));
        assert!(cos > 0.98, "{name}: cosine of f32 and bf16 gradients {cos}");
        checked += 1;
    }
    assert_eq!(checked, 3, "every named variable exists");
}

fn train_losses(run: &RunDir) -> Vec<f64> {
    std::fs::read_to_string(run.metrics())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

fn saved_dtypes(dir: &Path) -> Vec<DType> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .values()
        .map(|t| t.dtype())
        .collect()
}

#[test]
fn sft_in_bf16_follows_the_f32_loss_curve_and_saves_f32_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, train_file, dev_file) = common::micro_setup(dir.path());
    let dev = Device::Cpu;
    let curve = |precision: Precision, name: &str| {
        let settings = SftSettings {
            lr: 3e-3,
            warmup_steps: 3,
            steps: 12,
            batch_size: 8,
            dropout: Some(0.0),
            seed: 5,
            eval_every: 0,
            log_every: 1,
            eval_limit: 2,
            max_new_tokens: 8,
            precision,
            ..SftSettings::default()
        };
        let mut model = TrainableModel::load(&model_dir, &dev).unwrap();
        let task = SftTask::load(
            std::slice::from_ref(&train_file),
            std::slice::from_ref(&dev_file),
            &model.tokenizer,
            settings.clone(),
            &dev,
        )
        .unwrap();
        let opts = settings.train_options(task.train.len());
        let run = RunDir(dir.path().join(name));
        assert!(
            train(&task, &mut model, &opts, &run, false)
                .unwrap()
                .completed
        );
        assert!(
            saved_dtypes(&run.last()).iter().all(|&d| d == DType::F32),
            "{name}: the checkpoint keeps f32 weights"
        );
        train_losses(&run)
    };
    let f32 = curve(Precision::F32, "f32");
    let bf16 = curve(Precision::Bf16, "bf16");
    assert_eq!((f32.len(), bf16.len()), (12, 12));
    assert!(bf16[11] < 0.8 * bf16[0], "bf16 SFT learns: {bf16:?}");
    assert_ne!(f32, bf16, "the bf16 run computes in bf16, not f32");
    for (i, (a, b)) in f32.iter().zip(&bf16).enumerate() {
        assert!(
            (a - b).abs() < 0.05 * a,
            "update {i}: loss f32 {a} vs bf16 {b} ({f32:?} vs {bf16:?})"
        );
    }
}

/// The training lines (nll, kl) of a short MaRio run at `precision`, checking that it
/// finishes and saves f32 weights.
fn mario_run(dir: &Path, precision: Precision) -> Vec<(f64, f64)> {
    let (sft, train_file, dev_file) = common::micro_setup(dir);
    let out = dir.join(format!("mario-{precision:?}"));
    let outcome = run_mario(MarioRun {
        settings: MarioSettings {
            rewards: vec![RewardName::Accuracy, RewardName::Diversity],
            bins: 2,
            rounds: 2,
            steps_per_round: 20,
            rollouts: 1,
            max_new_tokens: Some(8),
            eval_no_repeat_ngram_sizes: vec![0],
            batch_size: 4,
            lr: 1e-3,
            warmup_steps: 2,
            save_every: 0,
            eval_limit: 2,
            selection: "dev_accuracy".parse().unwrap(),
            precision,
            ..MarioSettings::default()
        },
        sft,
        init: None,
        train_files: vec![train_file],
        replay_files: vec![],
        teacher_files: vec![],
        dev_files: vec![dev_file],
        reward_models: Default::default(),
        out: out.clone(),
        resume: false,
        max_minutes: None,
        stop_after: None,
        device: &Device::Cpu,
        progress: false,
    })
    .unwrap();
    assert!(matches!(outcome, MarioOutcome::Finished(_)), "{outcome:?}");
    assert!(saved_dtypes(&out.join("last"))
        .iter()
        .all(|&d| d == DType::F32));
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["nll"].as_f64().unwrap(), v["kl"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_mario_run_in_bf16_tracks_f32_and_saves_f32_weights() {
    let dir = tempfile::tempdir().unwrap();
    let f32 = mario_run(dir.path(), Precision::F32);
    let bf16 = mario_run(dir.path(), Precision::Bf16);
    assert_eq!(bf16.len(), 2, "a training line every 20 updates");
    assert_ne!(f32, bf16, "the bf16 run computes in bf16, not f32");
    for ((n32, k32), (n16, k16)) in f32.iter().zip(&bf16) {
        assert!(
            n16.is_finite() && *k16 >= -1e-6 && k16.is_finite(),
            "{bf16:?}"
        );
        assert!(
            (n32 - n16).abs() < 0.1 * n32,
            "nll f32 {f32:?} vs bf16 {bf16:?}"
        );
        assert!(
            (k32 - k16).abs() < 0.05 + 0.5 * k32,
            "kl f32 {f32:?} vs bf16 {bf16:?}"
        );
    }
}
