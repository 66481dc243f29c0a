//! `mario-train bench-train` on a micro model: one row per (dtype, step, batch), with
//! consistent rates, and updates that train (on a fixed batch the loss falls).

mod common;

use candle_core::{DType, Device};
use mario_training::bench::train::{bench_train, markdown, TrainBench, TrainStep};

#[test]
fn bench_train_times_sft_and_mario_updates_that_lower_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, _, _) = common::micro_setup(dir.path());
    let bench = TrainBench {
        dtypes: vec![DType::F32],
        steps: vec![TrainStep::Sft, TrainStep::Mario],
        batch_sizes: vec![2, 3],
        src: 6,
        tgt: 8,
        controls: 3,
        warmup: 1,
        repeats: 4,
        dropout: 0.0,
        lr: 3e-3,
        seed: 5,
    };
    let mut seen = 0;
    let rows = bench_train(&model_dir, &bench, &Device::Cpu, |_| seen += 1).unwrap();
    assert_eq!(seen, 4, "on_row is called once per row");
    let keys: Vec<(TrainStep, usize)> = rows.iter().map(|r| (r.step, r.batch)).collect();
    assert_eq!(
        keys,
        vec![
            (TrainStep::Sft, 2),
            (TrainStep::Sft, 3),
            (TrainStep::Mario, 2),
            (TrainStep::Mario, 3)
        ]
    );
    for r in &rows {
        assert_eq!(r.times_s.len(), 4, "only the timed updates are kept");
        let tokens = (r.batch * (6 + 8)) as f64;
        assert!((r.tokens_per_s * r.step_s_median - tokens).abs() < 1e-6 * tokens);
        assert!((r.updates_per_s * r.step_s_median - 1.0).abs() < 1e-9);
        assert!(r.forward_s > 0.0 && r.backward_s > 0.0 && r.optimizer_s > 0.0);
        assert!(
            r.forward_s + r.backward_s + r.optimizer_s <= 3.0 * r.step_s_median,
            "phases are parts of an update"
        );
        assert_eq!(r.controls, if r.step == TrainStep::Mario { 3 } else { 0 });
        assert_eq!((r.device.as_str(), r.dtype.as_str()), ("cpu", "fp32"));
        assert!(
            r.loss_last < r.loss_first,
            "{:?} batch {}: loss {} -> {} over 5 updates on one batch",
            r.step,
            r.batch,
            r.loss_first,
            r.loss_last
        );
    }
    let table = markdown(&rows);
    assert_eq!(table.lines().count(), 2 + rows.len());
    assert!(table.contains("| mario | 3 |"), "{table}");
}

#[test]
fn a_missing_model_folder_is_named() {
    let e = bench_train(
        std::path::Path::new("/nonexistent/model"),
        &TrainBench::default(),
        &Device::Cpu,
        |_| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/model"), "{e:#}");
}

#[test]
fn bf16_rows_are_mixed_precision_updates_that_lower_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, _, _) = common::micro_setup(dir.path());
    let bench = TrainBench {
        dtypes: vec![DType::BF16],
        batch_sizes: vec![2],
        src: 6,
        tgt: 8,
        controls: 2,
        warmup: 1,
        repeats: 3,
        dropout: 0.0,
        lr: 3e-3,
        ..TrainBench::default()
    };
    let rows = bench_train(&model_dir, &bench, &Device::Cpu, |_| {}).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.dtype, "bf16");
        assert!(
            r.loss_last < r.loss_first,
            "{:?}: loss {} -> {}",
            r.step,
            r.loss_first,
            r.loss_last
        );
    }
    let f16 = TrainBench {
        dtypes: vec![DType::F16],
        ..bench
    };
    let e = bench_train(&model_dir, &f16, &Device::Cpu, |_| {}).unwrap_err();
    assert!(e.to_string().contains("--dtypes"), "{e}");
}
