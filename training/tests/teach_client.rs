//! `teach` against a local OpenAI-compatible server started by the test: prompts, answer
//! parsing, filtering, retries on 5xx, and resuming without asking twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use mario_training::data::{load_teacher, Example};
use mario_training::teach::{default_demonstrations, teach, write_training_split, TeachOptions};
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    /// Requests per question.
    per_question: HashMap<String, usize>,
    /// Authorization headers seen.
    auth: Vec<String>,
    /// Number of few-shot messages in the first request.
    messages: usize,
}

type Shared = Arc<Mutex<Seen>>;

async fn chat(
    State(seen): State<Shared>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let messages = body["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let question = last
        .trim_start_matches("Q: ")
        .trim_end_matches("\nA:")
        .to_string();
    let n = {
        let mut s = seen.lock().unwrap();
        s.messages = messages.len();
        if let Some(a) = headers.get("authorization") {
            s.auth.push(a.to_str().unwrap().to_string());
        }
        let n = s.per_question.entry(question.clone()).or_default();
        *n += 1;
        *n
    };
    // the first request about "flaky" fails with a 503: the client must retry
    if question.contains("flaky") && n == 1 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "busy"})),
        );
    }
    // alternate right and wrong answers; "mute" questions get no parseable answer
    let reply = if question.contains("mute") {
        "I cannot say.".to_string()
    } else if n % 2 == 1 {
        format!("Reason {n} about it. So the answer is yes.")
    } else {
        format!("Reason {n} against it. So the answer is no.")
    };
    (
        StatusCode::OK,
        Json(json!({"choices": [{"message": {"role": "assistant", "content": reply}}]})),
    )
}

fn start_server(seen: Shared) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(seen);
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), rt)
}

fn example(q: &str, a: &str) -> Example {
    Example {
        id: q.into(),
        question: q.into(),
        rationale: None,
        answer: a.into(),
    }
}

#[test]
fn teach_keeps_correct_rationales_retries_and_resumes() {
    let seen: Shared = Arc::default();
    let (url, _rt) = start_server(seen.clone());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("teacher.jsonl");
    let opts = TeachOptions {
        url,
        model: "test-teacher".into(),
        api_key: "secret".into(),
        samples: 4,
        temperature: 0.7,
        max_tokens: 64,
        concurrency: 2,
        retries: 2,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        keep_wrong: false,
        progress: false,
    };
    let demos = default_demonstrations(true);
    let first = vec![
        example("Is ice cold?", "yes"),
        example("Is the flaky sky green?", "no"),
    ];
    let s = teach(&first, &demos, &opts, &out).unwrap();
    assert_eq!(s.questions, 2);
    assert_eq!(s.samples, 8);
    // replies alternate yes/no: 2 of 4 samples are right for each question
    assert_eq!(s.correct, 4);
    let recs = load_teacher(&out).unwrap();
    assert_eq!(recs.len(), 4);
    assert!(recs.iter().all(|r| r.predicted_label == r.gold_label));
    assert!(recs
        .iter()
        .any(|r| r.predicted_rationale.starts_with("Reason")));
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.per_question["Is ice cold?"], 4);
        assert_eq!(
            s.per_question["Is the flaky sky green?"], 5,
            "one retry after the 503"
        );
        assert!(s.auth.iter().all(|a| a == "Bearer secret"));
        assert_eq!(s.messages, 2 + 2 * demos.len(), "system + demos + question");
    }

    // a second run with one new question asks only about the new one
    let more = vec![
        example("Is ice cold?", "yes"),
        example("Is the flaky sky green?", "no"),
        example("Is the mute fish loud?", "no"),
    ];
    let s = teach(&more, &demos, &opts, &out).unwrap();
    assert_eq!((s.questions, s.skipped, s.correct), (1, 2, 0));
    assert_eq!(seen.lock().unwrap().per_question["Is ice cold?"], 4);
    assert_eq!(
        load_teacher(&out).unwrap().len(),
        4,
        "unparseable replies are not kept"
    );

    let split = dir.path().join("train.jsonl");
    assert_eq!(write_training_split(&out, &more, &split).unwrap(), 4);
    let rows = mario_training::data::load_examples(&split).unwrap();
    assert_eq!(
        rows[0]
            .target()
            .unwrap()
            .split(" So the answer is ")
            .count(),
        2
    );
}

#[test]
fn teach_stops_with_a_clear_error_on_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async { (StatusCode::UNAUTHORIZED, "bad key") }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let opts = TeachOptions {
        url: format!("http://{addr}/v1"),
        model: "m".into(),
        api_key: String::new(),
        samples: 1,
        temperature: 0.0,
        max_tokens: 8,
        concurrency: 1,
        retries: 3,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
        keep_wrong: false,
        progress: false,
    };
    let err = teach(
        &[example("Q?", "yes")],
        &[],
        &opts,
        &dir.path().join("t.jsonl"),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("HTTP 401") && msg.contains("bad key"), "{msg}");
}
