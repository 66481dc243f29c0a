//! `mario-server` with no `--model` serves the default model from any working directory: an
//! installed copy next to the executable (`<prefix>/share/mario/models/default` for
//! `<prefix>/bin/mario-server`) first, else the repository's `models/default` it was built
//! from; with neither, the error lists the places tried.

mod common;
#[path = "support/process.rs"]
mod process;

use std::path::{Path, PathBuf};

use mario::server::config::{default_model, default_model_candidates};
use serde_json::{json, Value};

fn info(s: &process::Server) -> Value {
    let (st, body) = s.get("/info");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn answers(s: &process::Server) {
    let (st, body) = s.post(
        "/rationalize",
        &json!({"question": "Would a pear sink in water?", "parameters": {"max_new_tokens": 8}}),
    );
    assert_eq!(st, 200, "{body}");
}

#[test]
fn without_model_the_binary_serves_the_repositorys_default_model_from_another_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mario-server"));
    let mut s = process::serving(&exe, &[], &[], cwd.path());
    let i = info(&s);
    assert_eq!(i["model"], "default", "{i}");
    // the shipped MaRio model, with its control tokens
    assert_eq!(i["rewards"].as_array().unwrap().len(), 4, "{i}");
    answers(&s);
    let repo_default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let log = s.stderr();
    assert!(log.contains(&repo_default.display().to_string()), "{log}");
}

#[test]
fn an_installed_copy_next_to_the_executable_comes_first() {
    // <prefix>/bin/mario-server and <prefix>/share/mario/models/default (the tiny fixture, to
    // tell it from the repository's model)
    let prefix = tempfile::tempdir().unwrap();
    let bin = prefix.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("mario-server");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_mario-server"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_mario-server"), &exe).unwrap();
    }
    let installed = prefix.path().join("share/mario/models/default");
    std::fs::create_dir_all(&installed).unwrap();
    let fixture = common::fixture_dir("t5-v1_0-tied");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture.join(f), installed.join(f)).unwrap();
    }
    let cwd = tempfile::tempdir().unwrap();
    let mut s = process::serving(&exe, &[], &[], cwd.path());
    let i = info(&s);
    assert_eq!(
        i["architecture"]["d_model"], 64,
        "the fixture, not models/default: {i}"
    );
    assert_eq!(i["rewards"], json!([]), "{i}");
    answers(&s);
    let log = s.stderr();
    assert!(log.contains("share/mario/models/default"), "{log}");
    drop(s);

    // --model (or MARIO_MODEL) still wins
    let repo_default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let s = process::serving(
        &exe,
        &[],
        &[("MARIO_MODEL", repo_default.to_str().unwrap())],
        cwd.path(),
    );
    assert_eq!(info(&s)["rewards"].as_array().unwrap().len(), 4);
}

#[test]
fn the_places_tried_are_listed_when_none_holds_a_model() {
    let candidates = default_model_candidates();
    assert_eq!(candidates.len(), 2);
    let exe = std::env::current_exe().unwrap();
    let prefix = exe.parent().unwrap().parent().unwrap();
    assert_eq!(candidates[0], prefix.join("share/mario/models/default"));
    assert_eq!(
        candidates[1],
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
    );
    assert_eq!(
        default_model(&candidates).unwrap().dir,
        candidates[1],
        "the repository's copy when nothing is installed"
    );

    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("installed");
    std::fs::create_dir_all(&empty).unwrap();
    let absent = tmp.path().join("repo/models/default");
    let err = default_model(&[empty.clone(), absent.clone()]).unwrap_err();
    assert!(
        err.contains("--model") && err.contains("MARIO_MODEL"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} (no config.json)", empty.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} (absent)", absent.display())),
        "{err}"
    );
}
