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

/// Writes teacher records to `dir/teacher.jsonl`.
fn write_teacher(
    dir: &std::path::Path,
    recs: &[mario_training::data::TeacherRecord],
) -> std::path::PathBuf {
    let teacher = dir.join("teacher.jsonl");
    let text: String = recs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(&teacher, text).unwrap();
    teacher
}

/// A stage run on the CPU, from scratch, without a time limit or progress bars.
fn cpu_stage() -> mario_training::stages::StageOptions {
    mario_training::stages::StageOptions {
        resume: false,
        max_minutes: None,
        progress: false,
        device: Device::Cpu,
    }
}

/// The AUC a plausibility report's table gives for `metric`.
fn report_auc(report: &str, metric: &str) -> f64 {
    report
        .lines()
        .find(|l| l.starts_with(&format!("| {metric} |")))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in {report}"))
}

/// The plausibility scorer learns to tell real rationales from degenerate ones, and reports a
/// held-out AUC per kind of negative.
#[test]
fn plausibility_scorer_learns_a_separable_problem() {
    use mario_training::config::PlausibilityDataSection;
    use mario_training::data::TeacherRecord;
    use mario_training::stages::plausibility::train_plausibility;
    use mario_training::stages::StageOutcome;
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, _, _) = common::micro_setup(dir.path());
    let mut recs = Vec::new();
    for i in 0..120 {
        let a = i % 50;
        let b = (i * 7 + 3) % 50;
        let q = format!("Is {a} larger than {b}?");
        let gold = if a > b { "yes" } else { "no" };
        let wrong = if a > b { "no" } else { "yes" };
        recs.push(TeacherRecord {
            question: q.clone(),
            gold_label: gold.into(),
            predicted_label: gold.into(),
            predicted_rationale: format!("{a} is more than {b} and that is the reason."),
        });
        recs.push(TeacherRecord {
            question: q,
            gold_label: gold.into(),
            predicted_label: wrong.into(),
            predicted_rationale: "no no no no".into(),
        });
    }
    let teacher = write_teacher(dir.path(), &recs);
    let settings = SftSettings {
        lr: 3e-3,
        warmup_steps: 5,
        steps: 80,
        batch_size: 16,
        eval_every: 10,
        seed: 2,
        ..SftSettings::default()
    };
    let o = cpu_stage();
    let StageOutcome::Done((scorer, auc)) = train_plausibility(
        &model_dir,
        &[teacher],
        &settings,
        &PlausibilityDataSection::default(),
        &dir.path().join("pl"),
        &o,
    )
    .unwrap() else {
        panic!("no time limit was set, so the stage runs to its end")
    };
    // the corrupted rationales ("no no no no") are told apart from the real ones; the other
    // negatives (shuffled words, another question's rationale) need arithmetic this model lacks
    let report = std::fs::read_to_string(dir.path().join("pl/report.md")).unwrap();
    let wrong = report_auc(&report, "auc_wrong_label");
    assert!(
        wrong > 0.9,
        "AUC against wrong-label rationales {wrong}: {report}"
    );
    assert!(auc > 0.5 && auc <= 1.0, "overall AUC {auc}");
    assert!(scorer.join("plausibility.json").is_file());
    // the saved scorer loads and ranks a positive above a negative
    let s =
        mario::rewards::PlausibilityScorer::load(&scorer, candle_core::DType::F32, &Device::Cpu)
            .unwrap();
    let l = s
        .logits(&[
            "Is 40 larger than 3? 40 is more than 3 and that is the reason.".into(),
            "Is 40 larger than 3? no no no no".into(),
        ])
        .unwrap();
    assert!(l[0] > l[1], "{l:?}");
}

/// A likelihood scorer made from a model that learnt the rationales tells them from their
/// corruptions, with no training of its own: the stage fits a calibration, writes the scorer
/// and a report, and the scorer loads and ranks a real rationale above its shuffle.
#[test]
fn likelihood_scorer_is_calibrated_from_a_model_that_knows_the_rationales() {
    use mario_training::config::{PlausibilityDataSection, ScorerKind};
    use mario_training::data::TeacherRecord;
    use mario_training::stages::plausibility::train_plausibility;
    use mario_training::stages::StageOutcome;
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, train_file, dev_file) = common::micro_setup(dir.path());
    let dev = Device::Cpu;
    // SFT on the rationales first: the scorer is only as good as what its model knows
    let mut model = TrainableModel::load(&model_dir, &dev).unwrap();
    let sft = SftSettings {
        steps: 60,
        eval_every: 60,
        dropout: Some(0.0),
        ..settings()
    };
    let task = SftTask::load(
        std::slice::from_ref(&train_file),
        std::slice::from_ref(&dev_file),
        &model.tokenizer,
        sft.clone(),
        &dev,
    )
    .unwrap();
    let run = RunDir(dir.path().join("sft"));
    train(
        &task,
        &mut model,
        &sft.train_options(task.train.len()),
        &run,
        false,
    )
    .unwrap();
    let recs: Vec<TeacherRecord> = common::synthetic_rows(64, 0)
        .into_iter()
        .map(|(q, r, a)| TeacherRecord {
            question: q,
            gold_label: a.clone(),
            predicted_label: a,
            predicted_rationale: r,
        })
        .collect();
    let teacher = write_teacher(dir.path(), &recs);
    let o = cpu_stage();
    // with finetune, the model is first trained further on the positives (as a language model)
    for (finetune, out) in [(true, "pl-ft"), (false, "pl")] {
        let data = PlausibilityDataSection {
            scorer: ScorerKind::Likelihood,
            finetune,
            ..Default::default()
        };
        let lm = SftSettings {
            steps: 8,
            ..sft.clone()
        };
        let StageOutcome::Done(_) = train_plausibility(
            &run.last(),
            std::slice::from_ref(&teacher),
            &lm,
            &data,
            &dir.path().join(out),
            &o,
        )
        .unwrap() else {
            panic!("no time limit was set, so the stage runs to its end")
        };
        assert_eq!(
            dir.path().join(out).join("lm/run/last").is_dir(),
            finetune,
            "a language-model run exactly when asked for"
        );
        let report = std::fs::read_to_string(dir.path().join(out).join("report.md")).unwrap();
        assert_eq!(
            report.contains("first fine-tuned from"),
            finetune,
            "the report says whether weights were trained: {report}"
        );
    }
    let scorer = dir.path().join("pl/scorer");
    let report = std::fs::read_to_string(dir.path().join("pl/report.md")).unwrap();
    assert!(
        report.contains("calibrated by logistic regression"),
        "{report}"
    );
    let shuffled = report_auc(&report, "auc_shuffled");
    assert!(
        shuffled > 0.9,
        "AUC against shuffled rationales {shuffled}: {report}"
    );
    assert!(
        !dir.path().join("pl/run").exists(),
        "no classifier was trained"
    );
    let s =
        mario::rewards::PlausibilityScorer::load(&scorer, candle_core::DType::F32, &Device::Cpu)
            .unwrap();
    let got = s
        .scores(&[
            (
                "Is 40 larger than 3?",
                "40 is more than 3. So the answer is yes.",
            ),
            (
                "Is 40 larger than 3?",
                "more 3. 40 is than So the answer is yes.",
            ),
        ])
        .unwrap();
    assert!(got[0] > got[1], "{got:?}");
}
