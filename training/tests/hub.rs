//! `mario-train` takes a Hugging Face Hub model id wherever it reads a model folder: `eval
//! --model owner/name` through a local mock hub (the server crate's tests/support/mock_hub.rs)
//! gives the same outputs as the folder, then works offline from the cache; the pipeline's
//! `[init] model` names a missing id with the Hub's answer.

mod common;
#[path = "../../tests/support/mock_hub.rs"]
mod mock_hub;

use std::path::Path;
use std::process::Command;

use mock_hub::{MockHub, MockRepo};

/// `mario-train eval` of two questions with the given Hub environment; the outputs, or the
/// failure's stderr.
fn eval(model: &str, data: &Path, out: &Path, env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mario-train"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HF_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd
        .args(["--no-progress", "eval", "--limit", "2", "--model", model])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if o.status.success() {
        Ok(std::fs::read_to_string(out.join("examples.jsonl")).unwrap())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).to_string())
    }
}

#[test]
fn eval_takes_a_hub_id_downloads_it_once_and_works_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, dev) = common::micro_setup(tmp.path());
    let hub = MockHub::start(
        [("some-org/micro-t5".to_string(), MockRepo::from_dir(&model))]
            .into_iter()
            .collect(),
    );
    let home = tmp.path().join("hf-home");
    let home = home.to_str().unwrap();
    let o = |n: &str| tmp.path().join(n);

    let local = eval(model.to_str().unwrap(), &dev, &o("local"), &[]).unwrap();
    let online = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home)];
    let from_hub = eval("some-org/micro-t5", &dev, &o("hub"), &online).unwrap();
    assert_eq!(from_hub, local);
    assert!(hub.count("/resolve/") >= 3, "{:?}", hub.requests());

    // again: the commit is looked up, nothing is downloaded
    let downloads = hub.count("/resolve/");
    eval("some-org/micro-t5", &dev, &o("hub2"), &online).unwrap();
    assert_eq!(hub.count("/resolve/"), downloads);

    // offline: no request at all
    let requests = hub.requests().len();
    let offline = [
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HOME", home),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let cached = eval("some-org/micro-t5", &dev, &o("offline"), &offline).unwrap();
    assert_eq!(cached, local);
    assert_eq!(hub.requests().len(), requests);

    // an id the hub does not have: the flag, the id and the 404
    let err = eval("some-org/no-such-t5", &dev, &o("missing"), &online).unwrap_err();
    assert!(
        err.contains("--model") && err.contains("some-org/no-such-t5") && err.contains("404"),
        "{err}"
    );
}
