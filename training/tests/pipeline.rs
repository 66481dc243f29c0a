//! The whole pipeline on a micro configuration: tokenizer → init → SFT → consistency models →
//! plausibility scorer → MaRio → sweep → report, first cut by a time limit inside SFT, then a
//! resumed invocation that has nothing left to do.

mod common;

use std::path::Path;

use candle_core::Device;
use mario_training::config::RunConfig;
use mario_training::pipeline::{run_pipeline, PipelineOutcome};
use mario_training::quark::run::RewardModels;
use mario_training::stages::sweep::{sweep, SWEEP_PARTIAL_FILE};
use mario_training::stages::StageOptions;
use mario_training::train::RunDir;

fn write_dataset(dir: &Path) {
    let ds = dir.join("synthetic");
    std::fs::create_dir_all(&ds).unwrap();
    common::write_split(&ds.join("train.jsonl"), &common::synthetic_rows(48, 0));
    common::write_split(&ds.join("dev.jsonl"), &common::synthetic_rows(6, 5));
    // teacher file: every other sample answers wrongly
    let mut t = String::new();
    for (i, (q, r, a)) in common::synthetic_rows(48, 0).into_iter().enumerate() {
        let pred = if i % 3 == 0 {
            if a == "yes" {
                "no"
            } else {
                "yes"
            }
        } else {
            a.as_str()
        };
        t.push_str(
            &serde_json::json!({"question": q, "gold_label": a, "predicted_label": pred, "predicted_rationale": r})
                .to_string(),
        );
        t.push('\n');
    }
    std::fs::write(ds.join("teacher_gpt3_train.jsonl"), t).unwrap();
}

/// A micro T5 architecture file (`[init] arch`) in `dir`.
fn write_micro_arch(dir: &Path) -> std::path::PathBuf {
    let arch = dir.join("micro.json");
    std::fs::write(
        &arch,
        r#"{"vocab_size": 100, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1,
            "num_decoder_layers": 1, "num_heads": 4, "feed_forward_proj": "relu"}"#,
    )
    .unwrap();
    arch
}

#[test]
fn pipeline_runs_every_stage_on_a_micro_configuration_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let arch = write_micro_arch(dir.path());
    let stage = |steps: u64| {
        format!(
            "lr = 3e-3\nwarmup_steps = 2\nsteps = {steps}\nbatch_size = 8\neval_every = 0\n\
             log_every = 5\nmax_new_tokens = 12\neval_limit = 4\neval_no_repeat_ngram_size = 3\n"
        )
    };
    let toml = format!(
        "[data]\ndatasets = [\"synthetic\"]\ndir = {:?}\n\n[tokenizer]\nvocab_size = 120\n\n\
         [init]\narch = {:?}\nseed = 0\n\n[sft]\n{}\n[consistency]\n{}\n[plausibility]\n{}\n\
         [mario]\nrewards = [\"consistency\", \"accuracy\", \"plausibility\", \"diversity\"]\n\
         bins = 3\nrounds = 2\nsteps_per_round = 4\nquestions_per_round = 8\nmax_new_tokens = 12\n\
         eval_no_repeat_ngram_sizes = [3]\nbatch_size = 4\nlr = 1e-3\nwarmup_steps = 1\neval_limit = 4\n",
        dir.path(),
        arch,
        stage(20),
        stage(10),
        stage(10)
    );
    let cfg_path = dir.path().join("micro.toml");
    std::fs::write(&cfg_path, toml).unwrap();
    let cfg = RunConfig::from_file(&cfg_path).unwrap();
    let out = dir.path().join("run");
    let o = StageOptions {
        resume: true,
        max_minutes: None,
        progress: false,
        device: Device::Cpu,
    };
    // a time limit of 0 minutes stops SFT after its first update: the pipeline ends there and
    // nothing downstream takes the cut SFT model as done
    let cut = StageOptions {
        max_minutes: Some(0.0),
        ..o.clone()
    };
    match run_pipeline(&cfg, &out, &cut).unwrap() {
        PipelineOutcome::Stopped(s) => {
            assert_eq!((s.stage.as_str(), s.steps), ("sft", 1), "{s}");
            assert!(s.to_string().contains("--resume"), "{s}");
        }
        other => panic!("expected a stop inside SFT, got {other:?}"),
    }
    assert!(out.join("sft/last/trainer_state.json").is_file());
    assert!(!out.join("reward-models").exists());
    let sft_run = RunDir(out.join("sft"));
    assert!(!sft_run.completed());
    // the SFT stage writes report.md (and keeps best/) when its time runs out, as the
    // standalone `sft` command does: the pipeline must still see an unfinished stage and
    // resume it
    assert!(out.join("sft/best/config.json").is_file());
    let cut_report = std::fs::read_to_string(out.join("sft/report.md")).unwrap();
    assert!(
        cut_report.contains("| updates | 1 (stopped early) |"),
        "{cut_report}"
    );
    assert_eq!(
        run_pipeline(&cfg, &out, &o).unwrap(),
        PipelineOutcome::Finished
    );
    assert!(
        sft_run.completed(),
        "the rerun finished SFT instead of skipping it"
    );
    for p in [
        "tokenizer.json",
        "init/config.json",
        "sft/best/model.safetensors",
        "sft/report.md",
        "reward-models/consistency-i2o/config.json",
        "reward-models/consistency-ir2o/config.json",
        "plausibility/scorer/plausibility.json",
        "mario/best/mario.json",
        "mario/pool.jsonl",
        "mario/rewards.png",
        "mario/dev/sft.jsonl",
        "mario/dev/round-0.jsonl",
        "mario/dev/round-1.jsonl",
        "sweep/sweep.md",
        "sweep/sweep.png",
        "report.md",
    ] {
        assert!(out.join(p).exists(), "{p} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| metric | SFT | MaRio | change |"),
        "{report}"
    );
    assert!(report.contains("plausibility") && report.contains("consistency"));
    // paired intervals: one per reward row in both tables (the micro run's numbers vary, the
    // layout does not)
    let accuracy_row = report
        .lines()
        .find(|l| l.starts_with("| accuracy |"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(accuracy_row.matches('|').count(), 7, "{accuracy_row}");
    assert!(
        ["above 0", "below 0", "within noise"]
            .iter()
            .any(|v| accuracy_row.contains(v)),
        "{accuracy_row}"
    );
    assert!(report.contains("best - worst [95 %]"), "{report}");
    // the pool holds the silver data, and both rounds sampled
    let pool = std::fs::read_to_string(out.join("mario/pool.jsonl")).unwrap();
    assert!(
        pool.contains("\"silver\""),
        "the silver data enters the pool"
    );
    let log = std::fs::read_to_string(out.join("mario/metrics.jsonl")).unwrap();
    assert!(
        log.contains("\"kind\":\"sample\"") && log.contains("\"round\":1"),
        "{log}"
    );
    // a second invocation finds every stage done
    let before = std::fs::metadata(out.join("mario/pool.jsonl"))
        .unwrap()
        .len();
    run_pipeline(&cfg, &out, &o).unwrap();
    assert_eq!(
        std::fs::metadata(out.join("mario/pool.jsonl"))
            .unwrap()
            .len(),
        before
    );

    // the sweep resumes from its partial file: a decoding recorded there is not redone, and
    // the all-best setting (every reward's bin 0) is one decoding shared by four rows
    let sweep_dir = out.join("sweep");
    let partial = sweep_dir.join(SWEEP_PARTIAL_FILE);
    assert!(!partial.exists(), "removed once the sweep is written");
    let model = out.join("mario/best");
    let models = RewardModels {
        consistency: Some(out.join("reward-models")),
        plausibility: Some(out.join("plausibility/scorer")),
    };
    let dev = cfg.data.files("dev.jsonl");
    let header = serde_json::json!({"model": model.display().to_string(), "questions": 4});
    let recorded = serde_json::json!({"bins": [0, 0, 0, 0], "accuracy": 0.123,
        "per_question": vec![vec![0.5; 4]; 4]});
    std::fs::write(&partial, format!("{header}\n{recorded}\n")).unwrap();
    let rows = sweep(
        &model,
        &dev,
        &models,
        &cfg.mario,
        &Default::default(),
        &sweep_dir,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(rows.len(), 3 + 2 + 3 + 3, "one row per reward and bin");
    for r in &rows {
        let reused = r.bin == 0;
        assert_eq!(r.accuracy == 0.123, reused, "{} bin {}", r.reward, r.bin);
        assert_eq!(r.means.iter().all(|m| m.1 == 0.5), reused, "{r:?}");
    }
    assert!(!partial.exists());
    // a partial file of another dev set is refused, not mixed in
    let other = serde_json::json!({"model": model.display().to_string(), "questions": 5});
    std::fs::write(&partial, format!("{other}\n{recorded}\n")).unwrap();
    let err = sweep(
        &model,
        &dev,
        &models,
        &cfg.mario,
        &Default::default(),
        &sweep_dir,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(err.to_string().contains("remove it"), "{err}");
    // the pipeline writes its report before the sweep: when the sweep then fails (here on
    // that partial file), report.md compares SFT and MaRio and says the sweep is unfinished
    std::fs::remove_file(sweep_dir.join("sweep.json")).unwrap();
    std::fs::remove_file(sweep_dir.join("sweep.md")).unwrap();
    let err = run_pipeline(&cfg, &out, &o).unwrap_err();
    assert!(err.to_string().contains("remove it"), "{err}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| accuracy |"), "{report}");
    assert!(report.contains("Not finished yet"), "{report}");
    assert!(!report.contains("best - worst [95 %]"), "{report}");

    // `[init] model`: SFT starts from an existing model folder (here the first run's init),
    // without training a tokenizer or initialising weights
    let mut pretrained = cfg.clone();
    pretrained.init.model = Some(out.join("init"));
    let out2 = dir.path().join("run-from-folder");
    match run_pipeline(&pretrained, &out2, &cut).unwrap() {
        PipelineOutcome::Stopped(s) => assert_eq!((s.stage.as_str(), s.steps), ("sft", 1)),
        other => panic!("expected a stop inside SFT, got {other:?}"),
    }
    assert!(out2.join("sft/last/trainer_state.json").is_file());
    assert!(!out2.join("tokenizer.json").exists() && !out2.join("init").exists());
    pretrained.init.model = Some(dir.path().join("no-such-model"));
    let err = run_pipeline(&pretrained, &out2, &cut).unwrap_err();
    assert!(
        err.to_string().contains("no-such-model") && err.to_string().contains("config.json"),
        "{err}"
    );
}

/// The proving ground on a micro scale: a `[world]` table makes the pipeline generate its
/// data, and the ground-truth measures appear next to the learned rewards in the MaRio dev
/// files, the report and the sweep.
#[test]
fn a_world_pipeline_generates_its_data_and_reports_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let arch = write_micro_arch(dir.path());
    let stage = |steps: u64| {
        format!(
            "lr = 3e-3\nwarmup_steps = 2\nsteps = {steps}\nbatch_size = 8\neval_every = 0\n\
             log_every = 5\nmax_new_tokens = 16\neval_limit = 6\n"
        )
    };
    let toml = format!(
        "[world]\nseed = 3\nwhich_hot = 4\nteacher_samples = 2\nheld_out = 0.2\nunsolved = 0.3\n\
         [world.sizes]\nobjects = 6\nmaterials = 3\ncreatures = 6\nplaces = 3\nfoods = 3\n\n\
         [tokenizer]\nvocab_size = 200\nmin_frequency = 2\n\n\
         [init]\narch = {:?}\nseed = 0\n\n[sft]\n{}\n[consistency]\n{}\n[plausibility]\n{}\n\
         [mario]\nrewards = [\"consistency\", \"accuracy\", \"plausibility\", \"diversity\"]\n\
         bins = 2\nrounds = 1\nsteps_per_round = 3\nrollouts = 1\nmax_new_tokens = 16\n\
         eval_no_repeat_ngram_sizes = [0]\nbatch_size = 4\nlr = 1e-3\nwarmup_steps = 1\n\
         eval_limit = 6\nsample_unsolved = true\nteacher_wrong_answers = true\n",
        arch,
        stage(12),
        stage(6),
        stage(6)
    );
    let cfg_path = dir.path().join("world.toml");
    std::fs::write(&cfg_path, toml).unwrap();
    let cfg = RunConfig::from_file(&cfg_path).unwrap();
    let out = dir.path().join("run");
    let o = StageOptions {
        resume: true,
        max_minutes: None,
        progress: false,
        device: Device::Cpu,
    };
    assert_eq!(
        run_pipeline(&cfg, &out, &o).unwrap(),
        PipelineOutcome::Finished
    );
    let world_dir = out.join("data/world");
    for f in ["world.json", "train.jsonl", "dev.jsonl", "test.jsonl"] {
        assert!(world_dir.join(f).is_file(), "{f} missing");
    }
    // the questions the teacher never answered right are not in the silver data, and MaRio
    // samples them too
    let world: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world_dir.join("world.json")).unwrap())
            .unwrap();
    let unsolved: Vec<&str> = world["unsolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap())
        .collect();
    assert!(!unsolved.is_empty());
    let silver = std::fs::read_to_string(world_dir.join("train.jsonl")).unwrap();
    let mut silver_questions = std::collections::HashSet::new();
    for line in silver.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        silver_questions.insert(row["question"].as_str().unwrap().to_string());
    }
    assert!(unsolved.iter().all(|q| !silver_questions.contains(*q)));
    let metrics = std::fs::read_to_string(out.join("mario/metrics.jsonl")).unwrap();
    let sampled = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "sample")
        .unwrap()["sampled"]
        .as_u64()
        .unwrap();
    // one rollout of every training question: those with silver rationales, the unsolved
    // ones, and any whose few teacher samples all missed by chance
    let train_questions = world["train"].as_array().unwrap().len();
    assert!(silver_questions.len() + unsolved.len() <= train_questions);
    assert_eq!(sampled as usize, train_questions, "{metrics}");
    // the teacher's wrong samples joined the pool at round 0, each scored as a wrong answer
    let pool = std::fs::read_to_string(out.join("mario/pool.jsonl")).unwrap();
    let teacher: Vec<serde_json::Value> = pool
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["source"] == "teacher")
        .collect();
    let teacher_file = std::fs::read_to_string(world_dir.join("teacher_gpt3_train.jsonl")).unwrap();
    let teacher_misses = teacher_file
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["predicted_label"] != r["gold_label"])
        .count();
    assert!(teacher_misses > 0);
    assert_eq!(teacher.len(), teacher_misses, "{pool}");
    // control order: consistency, accuracy, plausibility, diversity
    assert!(
        teacher
            .iter()
            .all(|r| r["round"] == 0 && r["scores"][1] == 0.0),
        "{teacher:?}"
    );
    // every MaRio dev line carries the ground truth next to the rewards
    let dev_scores = std::fs::read_to_string(out.join("mario/dev/round-0.jsonl")).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(dev_scores.lines().next().unwrap()).unwrap();
    for k in [
        "plausibility",
        "truth_fact_accuracy",
        "truth_entailed",
        "truth_complete",
        "truth_no_repetition",
    ] {
        assert!(first["scores"].get(k).is_some(), "{k} missing: {first}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in [
        "| truth_entailed |",
        "| truth_complete |",
        "| truth_no_repetition |",
    ] {
        assert!(report.contains(row), "{row} missing:\n{report}");
    }
    assert!(
        report.contains("| consistency (ground truth: truth_entailed) |")
            && report.contains("| diversity (ground truth: truth_no_repetition) |"),
        "{report}"
    );
    // the test split: SFT and MaRio on every test question, paired in the report
    let test_rows = std::fs::read_to_string(out.join("test/mario.jsonl")).unwrap();
    let test_questions = std::fs::read_to_string(world_dir.join("test.jsonl")).unwrap();
    assert_eq!(test_rows.lines().count(), test_questions.lines().count());
    assert!(out.join("test/sft.jsonl").is_file());
    let test_section = &report[report.find("## Test split").expect("a test section")..];
    assert!(
        test_section.contains("| accuracy |") && test_section.contains("| truth_fact_accuracy |"),
        "{test_section}"
    );
    let sft_log = std::fs::read_to_string(out.join("sft/metrics.jsonl")).unwrap();
    assert!(sft_log.contains("dev_truth_complete"), "{sft_log}");

    // the same folder with another world is refused rather than mixed
    let mut other = cfg.clone();
    other.world.as_mut().unwrap().seed = 4;
    let err = run_pipeline(&other, &out, &o).unwrap_err();
    assert!(err.to_string().contains("other [world] settings"), "{err}");
    // a world and datasets at once name both
    other.data.datasets = vec!["strategyqa".into()];
    let err = run_pipeline(&other, &dir.path().join("run2"), &o).unwrap_err();
    assert!(
        err.to_string().contains("[world]") && err.to_string().contains("strategyqa"),
        "{err}"
    );
}
