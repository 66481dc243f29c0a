//! The playground without a browser, over the real `mario-server` binary: `/` and
//! `/playground` serve the embedded page as HTML even when an API key guards the API, and
//! `/info` carries what the page reads (rewards and their bins, limits, example questions: the
//! checkpoint's `examples.json`, else generic ones). The browser test is
//! `tests/playground_browser.rs`.

mod common;
#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use mario::server::playground::{GENERIC_EXAMPLES, PAGE};
use serde_json::{json, Value};

/// (status, content type, CSP, body) of a GET, with a bearer key or none.
fn get(s: &process::Server, path: &str, key: Option<&str>) -> (u16, String, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut req = agent.get(&format!("{}{path}", s.url));
    if let Some(k) = key {
        req = req.header("authorization", &format!("Bearer {k}"));
    }
    let mut r = req.call().unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (ct, csp) = (header("content-type"), header("content-security-policy"));
    (
        r.status().as_u16(),
        ct,
        csp,
        r.body_mut().read_to_string().unwrap(),
    )
}

#[test]
fn the_page_is_public_html_and_info_carries_what_it_needs_behind_the_key() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let cwd = tempfile::tempdir().unwrap();
    let key = "k-playground";
    let s = process::serving(
        Path::new(env!("CARGO_BIN_EXE_mario-server")),
        &["--model", model.to_str().unwrap()],
        &[("MARIO_API_KEY", key)],
        cwd.path(),
    );
    for path in ["/", "/playground"] {
        let (status, ct, csp, body) = get(&s, path, None);
        assert_eq!(status, 200, "{path}");
        assert_eq!(ct, "text/html; charset=utf-8", "{path}");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(body, PAGE, "{path}");
    }
    // the API itself still needs the key
    let (status, ..) = get(&s, "/info", None);
    assert_eq!(status, 401);
    let (status, _, _, body) = get(&s, "/info", Some(key));
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();

    // the examples are the model folder's examples.json, in order
    let shipped: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("examples.json")).unwrap())
            .unwrap();
    assert_eq!(info["examples"], shipped);
    // a selector per reward with its bins, and the limit of the max-new-tokens field
    let rewards = info["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 4, "{info}");
    for r in rewards {
        assert!(r["name"].is_string() && r["tokens"].as_array().unwrap().len() >= 2);
    }
    assert!(info["limits"]["max_new_tokens"].as_u64().unwrap() >= 1);

    // every example is a question the server takes
    let questions: Vec<&Value> = shipped
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["question"])
        .collect();
    let mut r = ureq::post(&format!("{}/rationalize", s.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .send(json!({"questions": questions, "parameters": {"max_new_tokens": 4}}).to_string())
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{body}");
}

#[test]
fn without_examples_json_info_offers_generic_examples() {
    let dir = common::fixture_dir("t5-v1_0-tied");
    assert!(!dir.join("examples.json").exists());
    let cwd = tempfile::tempdir().unwrap();
    let s = process::serving(
        Path::new(env!("CARGO_BIN_EXE_mario-server")),
        &["--model", dir.to_str().unwrap()],
        &[],
        cwd.path(),
    );
    let (status, _, _, body) = get(&s, "/info", None);
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    let generic: Vec<Value> = GENERIC_EXAMPLES
        .iter()
        .map(|(q, gold)| json!({"question": q, "gold": gold}))
        .collect();
    assert_eq!(info["examples"], json!(generic));
    // no mario.json: the page gets no rewards and says so
    assert_eq!(info["rewards"], json!([]));
}

#[test]
fn a_broken_examples_json_is_refused_at_start_naming_the_file() {
    let dir = common::copy_fixture("t5-v1_0-tied");
    std::fs::write(dir.path().join("examples.json"), r#"[{"question": ""}]"#).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    match process::start_server(
        Path::new(env!("CARGO_BIN_EXE_mario-server")),
        &["--model", dir.path().to_str().unwrap()],
        &[],
        cwd.path(),
        Duration::from_secs(120),
    ) {
        process::Started::Exited(code, log) => {
            assert_eq!(code, Some(1), "{log}");
            assert!(
                log.contains("examples.json") && log.contains("the question is empty"),
                "{log}"
            );
        }
        process::Started::Serving(_) => panic!("served a model with a broken examples.json"),
    }
}
