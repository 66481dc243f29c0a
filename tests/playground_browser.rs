//! The playground in a real browser: headless Chromium (through chromedriver) loads `/` from
//! the real `mario-server` binary serving the default model behind an API key, takes the key,
//! picks an example question, sets decoding and a second control setting, runs compare with
//! Enter, waits for both streamed outputs and checks each against `POST /rationalize` with the
//! same body (same seed). Screenshots: `target/playground.png` (desktop) and
//! `target/playground-phone.png` (a phone's width, where nothing may scroll sideways).
//!
//! Without Chromium and chromedriver the test prints one `skipped:` line and passes, unless
//! `MARIO_REQUIRE_BROWSER=1` (as `.ci/run` sets), which makes that a failure.

#[path = "support/process.rs"]
mod process;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use webdriver::{Browser, ENTER, TAB};

const KEY: &str = "playground-test-key";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A request to the server with the key; the JSON answer.
fn api(s: &process::Server, method: &str, path: &str, body: Option<&Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("{}{path}", s.url);
    let auth = format!("Bearer {KEY}");
    let mut r = match body {
        None => agent.get(&url).header("authorization", &auth).call(),
        Some(b) => agent
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(b.to_string()),
    }
    .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{method} {path}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// What an output panel shows.
const READ_PANEL: &str = r#"
const p = document.getElementById(arguments[0]);
const q = (s) => p.querySelector(s).textContent;
return {state: p.dataset.state, tokens: Number(p.dataset.tokens), text: q(".stream"),
        answer: q(".answer"), finish: q(".finish"), scores: q(".scores"), timings: q(".timings"),
        message: q(".message"), request: JSON.parse(q(".request") || "null")};
"#;

#[test]
fn playground_compares_two_control_settings_streamed_in_a_real_browser() {
    let (driver, chromium) = match webdriver::find_browser() {
        Ok(found) => found,
        Err(why) if std::env::var("MARIO_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("MARIO_REQUIRE_BROWSER=1 but {why}")
        }
        Err(why) => {
            // straight to stderr: the test harness would swallow a println! of a passing test
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the playground browser test needs Chromium: {why}"
            );
            return;
        }
    };
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let cwd = tempfile::tempdir().unwrap();
    let server = process::serving(
        Path::new(env!("CARGO_BIN_EXE_mario-server")),
        &["--model", model.to_str().unwrap()],
        &[("MARIO_API_KEY", KEY)],
        cwd.path(),
    );
    let info = api(&server, "GET", "/info", None);
    let examples = info["examples"].as_array().unwrap().clone();
    assert!(examples.len() >= 3, "{info}");
    let rewards: Vec<(String, usize)> = info["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let bins = r["tokens"].as_array().unwrap().len();
            (r["name"].as_str().unwrap().to_string(), bins)
        })
        .collect();
    assert_eq!(rewards.len(), 4, "{info}");

    let b = Browser::start(&driver, &chromium, 1280, 1500);
    let long = Duration::from_secs(180);
    // the page is public; its /info call is refused until it has the key, and it asks for it
    b.goto(&format!("{}/", server.url));
    b.wait_for(
        "the key prompt",
        "return document.getElementById('status').textContent.includes('API key') \
         && document.activeElement.id === 'api-key'",
        long,
    );
    b.type_into("#api-key", &format!("{KEY}{TAB}"));
    let options = b.wait_for(
        "the examples",
        "const s = document.getElementById('example'); return !s.disabled && s.options.length",
        long,
    );
    assert_eq!(options, json!(examples.len() + 1));
    // every field has a label (the reward selectors too: one per reward and side)
    let unlabelled = b.script(
        "return [...document.querySelectorAll('input, select, textarea')] \
         .filter((e) => e.labels.length === 0).map((e) => e.id)",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "fields without a label");
    let selectors = b.script(
        "return document.querySelectorAll('select[data-reward]').length",
        json!([]),
    );
    assert_eq!(selectors, json!(2 * rewards.len()));

    // an example with a gold answer, sampled decoding with a seed, setting B changed by hand
    let pick = 2;
    let example = &examples[pick];
    b.click(&format!("#example option[value=\"{pick}\"]"));
    let form = b.script(
        "return [document.getElementById('question').value, document.getElementById('gold').value]",
        json!([]),
    );
    assert_eq!(form[0], example["question"]);
    assert_eq!(form[1], example["gold"]);
    b.type_into("#max-new-tokens", "48");
    b.clear("#temperature");
    b.type_into("#temperature", "0.7");
    b.type_into("#seed", "1234");
    let (changed, bin) = (&rewards[0].0, 2);
    b.click(&format!("#bin-b-{changed} option[value=\"{bin}\"]"));
    // Enter in the question box runs compare
    b.type_into("#question", ENTER);
    b.wait_for(
        "both outputs",
        "const s = ['out-a', 'out-b'].map((id) => document.getElementById(id).dataset.state); \
         return s.every((x) => x === 'done' || x === 'error') && s",
        long,
    );

    let mut control_b = serde_json::Map::new();
    for (name, bins) in &rewards {
        let chosen = if name == changed { bin } else { bins - 1 };
        control_b.insert(name.clone(), json!(chosen));
    }
    for (panel, control) in [
        ("out-a", json!("best")),
        ("out-b", Value::Object(control_b)),
    ] {
        let shown = b.script(READ_PANEL, json!([panel]));
        assert_eq!(shown["state"], "done", "{panel}: {shown}");
        let expected = json!({
            "question": example["question"],
            "control": control,
            "parameters": {"max_new_tokens": 48, "temperature": 0.7, "seed": 1234},
            "score": true,
            "gold": example["gold"],
        });
        assert_eq!(shown["request"], expected, "{panel} sent another body");
        // the same request, not streamed
        let api = api(&server, "POST", "/rationalize", Some(&expected));
        let r = &api["results"][0];
        assert!(!r["text"].as_str().unwrap().trim().is_empty(), "{r}");
        assert_eq!(
            shown["text"].as_str().unwrap().trim(),
            r["text"].as_str().unwrap().trim(),
            "{panel}: streamed text differs from /rationalize"
        );
        assert_eq!(
            shown["tokens"], r["generated_tokens"],
            "{panel}: token events"
        );
        let answer = match r["answer"].as_str() {
            Some(a) => a.to_string(),
            None => format!("none ({})", r["answer_missing"].as_str().unwrap()),
        };
        assert_eq!(shown["answer"], json!(answer), "{panel}");
        let finish = format!(
            "{}, {} tokens, seed 1234",
            r["finish_reason"].as_str().unwrap(),
            r["generated_tokens"]
        );
        assert_eq!(shown["finish"], json!(finish), "{panel}");
        for (name, score) in r["scores"].as_object().unwrap() {
            let value = score
                .as_f64()
                .map_or("n/a".to_string(), |v| format!("{v:.3}"));
            let text = shown["scores"].as_str().unwrap();
            assert!(text.contains(&format!("{name} {value}")), "{panel}: {text}");
        }
        assert!(
            shown["timings"].as_str().unwrap().contains("total"),
            "{shown}"
        );
    }
    let status = b.script(
        "return document.getElementById('status').textContent",
        json!([]),
    );
    assert!(
        status.as_str().unwrap().starts_with("Both outputs done"),
        "{status}"
    );
    // the key is kept for the next visit
    b.goto(&format!("{}/playground", server.url));
    b.wait_for(
        "the examples after a reload",
        "return !document.getElementById('example').disabled",
        long,
    );
    let desktop = target_dir().join("playground.png");
    b.goto(&format!("{}/", server.url));
    b.wait_for(
        "the examples",
        "return !document.getElementById('example').disabled",
        long,
    );
    b.click("#example option[value=\"0\"]");
    b.type_into("#seed", "7");
    b.click("#compare");
    b.wait_for(
        "both outputs",
        "return ['out-a', 'out-b'].every((id) => document.getElementById(id).dataset.state === 'done')",
        long,
    );
    b.screenshot(&desktop);

    // a phone's width: one column, nothing wider than the screen
    b.resize(390, 2400);
    let widths = b.wait_for(
        "the narrow layout",
        "const w = window.innerWidth; return w <= 420 && [w, document.documentElement.scrollWidth]",
        long,
    );
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the page scrolls sideways at a phone's width: {widths}"
    );
    b.screenshot(&target_dir().join("playground-phone.png"));
    println!(
        "screenshots: {} and playground-phone.png beside it",
        desktop.display()
    );
}
