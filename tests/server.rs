//! mario-server over real HTTP on a random port, with a real tiny model (the reference
//! fixture, plus control tokens where needed) or, for overload cases, a backend that holds
//! its jobs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use common::*;
use mario::checkpoint::Checkpoint;
use mario::control::{ControlTokens, CONTROL_FILE};
use mario::generate::{
    generate, FinishReason, GenerationOutput, GenerationParams, GenerationRequest,
};
use mario::rewards::{Reward, RewardError, RewardInput};
use mario::server::api::{RationalizeResponse, StreamToken};
use mario::server::error::ApiError;
use mario::server::http::{serve_connections, ConnectionLimits};
use mario::server::metrics::Metrics;
use mario::server::scheduler::{Backend, BatchLimits, FaultHook, Job, JobUpdate, Scheduler};
use mario::server::{router, serve_until, AppState, ServerConfig};
use serde_json::{json, Value};

/// A server running on its own thread; stops gracefully when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// The real server (model worker included) on `model_dir`.
    fn start(model_dir: &std::path::Path, extra: &[&str]) -> Self {
        let mut args = vec!["--model", model_dir.to_str().unwrap(), "--port", "0"];
        args.extend_from_slice(extra);
        let cfg = ServerConfig::from_args(args).unwrap();
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(serve_until(
                cfg,
                move |a| tx_addr.send(a).unwrap(),
                async move {
                    let _ = stopped.await;
                },
            ))
            .unwrap();
        });
        let addr = rx_addr
            .recv_timeout(Duration::from_secs(60))
            .expect("server starts");
        let s = Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        };
        // wait for the warm-up
        let t = Instant::now();
        while get(&s, "/ready").0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "server never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// The router alone, on a custom backend.
    fn with_backend(backend: Arc<dyn Backend>, extra: &[&str]) -> Self {
        Self::with_backend_and(backend, extra, |_| {})
    }

    /// The router alone, on a custom backend, with its state changed by `edit`.
    fn with_backend_and(
        backend: Arc<dyn Backend>,
        extra: &[&str],
        edit: impl FnOnce(&mut AppState),
    ) -> Self {
        let dir = fixture_dir("t5-v1_0-tied");
        let mut args = vec!["--model", dir.to_str().unwrap(), "--port", "0"];
        args.extend_from_slice(extra);
        let cfg = ServerConfig::from_args(args).unwrap();
        let ckpt = Checkpoint::load(&dir, DType::F32, &Device::Cpu).unwrap();
        let mut state = AppState::new(&cfg, &ckpt, backend, Arc::new(Metrics::new()));
        edit(&mut state);
        let state = Arc::new(state);
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx_addr.send(listener.local_addr().unwrap()).unwrap();
                let limits = ConnectionLimits::from_config(&cfg);
                serve_connections(listener, router(state), limits, async move {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Self {
            addr: rx_addr.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Asks the server to stop; returns how long it took to exit.
    fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        t.elapsed()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, body, headers) of a GET.
fn get(s: &TestServer, path: &str) -> (u16, String) {
    match agent().get(&s.url(path)).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// (status, JSON body, retry-after, request id) of a POST with a raw body.
fn post_raw(
    s: &TestServer,
    path: &str,
    body: &str,
) -> (u16, Value, Option<String>, Option<String>) {
    let mut r = agent()
        .post(&s.url(path))
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (retry, id) = (header("retry-after"), header("x-request-id"));
    let text = r.body_mut().read_to_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, v, retry, id)
}

fn post(s: &TestServer, body: Value) -> (u16, Value) {
    let (status, v, _, _) = post_raw(s, "/rationalize", &body.to_string());
    (status, v)
}

fn assert_error(resp: (u16, Value), status: u16, kind: &str, mention: &str) {
    let (got, body) = resp;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error_type"], kind, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(mention), "{msg:?} should mention {mention:?}");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "body is exactly {{error, error_type}}"
    );
}

fn metric(s: &TestServer, name_and_labels: &str) -> f64 {
    get(s, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn server_errors_are_json_with_the_right_status_and_never_5xx() {
    let s = TestServer::start(
        &fixture_dir("t5-v1_0-tied"),
        &[
            "--max-body-bytes",
            "2048",
            "--max-input-tokens",
            "40",
            "--max-new-tokens",
            "64",
            "--default-max-new-tokens",
            "16",
            "--max-client-batch-size",
            "2",
        ],
    );
    let q = "Is a pear heavier than water?";
    // 400 malformed JSON
    let (st, v, _, _) = post_raw(&s, "/rationalize", "{\"question\": ");
    assert_error((st, v), 400, "bad_json", "malformed JSON");
    // 413
    let big = json!({"question": "x".repeat(5000)}).to_string();
    let (st, v, _, _) = post_raw(&s, "/rationalize", &big);
    assert_error((st, v), 413, "payload_too_large", "2048 bytes");
    // 422 cases
    assert_error(
        post(&s, json!({"question": ""})),
        422,
        "validation",
        "`question` is empty",
    );
    assert_error(
        post(&s, json!({"question": "   \n "})),
        422,
        "validation",
        "`question` is empty",
    );
    assert_error(
        post(&s, json!({"questions": ["a?", " "]})),
        422,
        "validation",
        "`questions[1]` is empty",
    );
    assert_error(post(&s, json!({})), 422, "validation", "missing `question`");
    assert_error(
        post(&s, json!({"question": q, "questions": [q]})),
        422,
        "validation",
        "not both",
    );
    assert_error(
        post(&s, json!({"questions": [q, q, q]})),
        422,
        "validation",
        "at most 2",
    );
    let long = "a pear is heavier than water ".repeat(20);
    assert_error(
        post(&s, json!({"question": long})),
        422,
        "validation",
        "at most 40",
    );
    assert_error(
        post(&s, json!({"question": q, "control": {"fluency": 1}})),
        422,
        "validation",
        "no control tokens",
    );
    assert_error(
        post(&s, json!({"question": q, "control": "greatest"})),
        422,
        "validation",
        "\"best\", \"worst\"",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"temperature": -1}}),
        ),
        422,
        "validation",
        "temperature",
    );
    assert_error(
        post(&s, json!({"question": q, "parameters": {"top_p": 0}})),
        422,
        "validation",
        "top_p",
    );
    assert_error(
        post(&s, json!({"question": q, "parameters": {"top_k": 0}})),
        422,
        "validation",
        "top_k",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"max_new_tokens": 0}}),
        ),
        422,
        "validation",
        "at least 1",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"max_new_tokens": 65}}),
        ),
        422,
        "validation",
        "at most 64",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"max_new_tokens": -3}}),
        ),
        422,
        "validation",
        "max_new_tokens",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"stop": ["a", "b", "c", "d", "e"]}}),
        ),
        422,
        "validation",
        "at most 4",
    );
    assert_error(
        post(
            &s,
            json!({"question": q, "parameters": {"stop": ["x".repeat(257)]}}),
        ),
        422,
        "validation",
        "at most 256 are allowed",
    );
    assert_error(
        post(&s, json!({"question": q, "gold": ["yes", "no"]})),
        422,
        "validation",
        "2 answers for 1",
    );
    assert_error(
        post(&s, json!({"question": q, "tempreature": 0.5})),
        422,
        "validation",
        "unknown field `tempreature`",
    );
    assert_error(
        post(&s, json!({"question": q, "parameters": {"temp": 0.5}})),
        422,
        "validation",
        "unknown field `temp`",
    );
    assert_error(
        post(&s, json!({"question": 7})),
        422,
        "validation",
        "invalid type",
    );
    // NaN is not JSON: a client that writes it gets 400
    let (st, v, _, _) = post_raw(
        &s,
        "/rationalize",
        "{\"question\": \"q\", \"parameters\": {\"temperature\": NaN}}",
    );
    assert_error((st, v), 400, "bad_json", "malformed JSON");
    // 404 with the same body
    let (st, v, _, _) = post_raw(&s, "/nope", "{}");
    assert_error((st, v), 404, "not_found", "no such route");
    // after all that the server still answers
    let (st, v) = post(&s, json!({"question": q}));
    assert_eq!(st, 200, "{v}");
    // and no bad request produced a 5xx (only /ready answers 503, before the warm-up)
    let metrics = get(&s, "/metrics").1;
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("mario_http_requests_total{route=\"/rationalize\"")
                && l.contains("status=\"5")
        ),
        "{metrics}"
    );
}

#[test]
fn server_concurrent_greedy_requests_return_what_each_returns_alone() {
    let s = TestServer::start(
        &fixture_dir("t5-v1_1-gated"),
        &["--max-batch-wait-ms", "50"],
    );
    let questions = [
        "Is a pear heavier than water?",
        "Would someone on Venus be unlikely to experience hypothermia?",
        "Could Lil Wayne's children ride in a Chevrolet Corvette ZR1 together?",
        "Do hamsters provide food for any animals?",
        "Is it common to see frost during some college commencements?",
    ];
    let body = |q: &str| json!({"question": q, "parameters": {"max_new_tokens": 24}});
    let alone: Vec<String> = questions
        .iter()
        .map(|q| {
            post(&s, body(q)).1["results"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let before = metric(&s, "mario_batch_size_sum");
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = questions
            .iter()
            .map(|q| {
                sc.spawn(|| {
                    post(&s, body(q)).1["results"][0]["text"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    // the concurrent requests really were batched: some step ran more than one row
    let text = get(&s, "/metrics").1;
    let le1 = text
        .lines()
        .find(|l| l.starts_with("mario_batch_size_bucket{le=\"1\"}"))
        .unwrap();
    let count = text
        .lines()
        .find(|l| l.starts_with("mario_batch_size_count"))
        .unwrap();
    let n1: f64 = le1.rsplit(' ').next().unwrap().parse().unwrap();
    let n: f64 = count.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > n1, "some decoding step held several rows ({text})");
    assert!(metric(&s, "mario_batch_size_sum") > before);
    // a multi-question request is the same as its questions alone
    let (st, v) = post(
        &s,
        json!({"questions": questions[..3], "parameters": {"max_new_tokens": 24}}),
    );
    assert_eq!(st, 200);
    let texts: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        alone[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

/// Each server's model loop runs on a thread pool of its own: more servers in one process than
/// the global pool has threads all become ready and answer (a loop that held a thread of the
/// global pool left the next server waiting for one).
#[test]
fn more_servers_than_pool_threads_all_answer() {
    let dir = fixture_dir("t5-v1_0-tied");
    let servers: Vec<TestServer> = (0..rayon::current_num_threads() + 1)
        .map(|_| TestServer::start(&dir, &[]))
        .collect();
    let body =
        json!({"question": "Is a pear heavier than water?", "parameters": {"max_new_tokens": 4}});
    for s in &servers {
        let (status, v) = post(s, body.clone());
        assert_eq!(status, 200, "{v}");
    }
}

#[test]
fn server_control_tokens_become_the_decoder_prefix() {
    let dir = with_extra_vocab("t5-v1_0-tied", 12);
    let table = ControlTokens::quark(&[("plausibility", 5), ("diversity", 3)], &["accuracy"]);
    table.save(&dir.path().join(CONTROL_FILE)).unwrap();
    let s = TestServer::start(dir.path(), &[]);
    let ckpt = Checkpoint::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let q = "Would someone on Venus be unlikely to experience hypothermia?";
    let direct = |tokens: &[&str]| {
        let prefix: Vec<u32> = tokens
            .iter()
            .map(|t| ckpt.tokenizer.token_id(t).unwrap())
            .collect();
        let req = GenerationRequest {
            input_ids: ckpt.tokenizer.encode(q).unwrap(),
            prefix,
            params: GenerationParams {
                max_new_tokens: 20,
                ..Default::default()
            },
        };
        generate(&ckpt.model, &ckpt.tokenizer, &[req])
            .unwrap()
            .remove(0)
            .text
    };
    for (control, tokens) in [
        (
            json!("best"),
            vec!["_TOKEN0_00000", "_TOKEN1_00000", "CORRECT_LABEL"],
        ),
        (
            json!("worst"),
            vec!["_TOKEN0_00004", "_TOKEN1_00002", "WRONG_LABEL"],
        ),
        (
            json!({"diversity": 1, "accuracy": 1}),
            vec!["_TOKEN0_00000", "_TOKEN1_00001", "WRONG_LABEL"],
        ),
    ] {
        let (st, v) = post(
            &s,
            json!({"question": q, "control": control, "parameters": {"max_new_tokens": 20}}),
        );
        assert_eq!(st, 200, "{v}");
        let r: RationalizeResponse = serde_json::from_value(v).unwrap();
        let used: Vec<&str> = r.results[0]
            .control
            .iter()
            .map(|c| c.token.as_str())
            .collect();
        assert_eq!(used, tokens);
        assert_eq!(
            r.results[0].text,
            direct(&tokens),
            "the output is what that prefix generates"
        );
    }
    assert_error(
        post(&s, json!({"question": q, "control": {"fluency": 0}})),
        422,
        "validation",
        "unknown reward `fluency`",
    );
    assert_error(
        post(&s, json!({"question": q, "control": {"diversity": 3}})),
        422,
        "validation",
        "bin 3 is out of range",
    );
    let info: Value = serde_json::from_str(&get(&s, "/info").1).unwrap();
    assert_eq!(info["rewards"].as_array().unwrap().len(), 3);
    assert_eq!(info["rewards"][1]["tokens"][2], "_TOKEN1_00002");
}

#[test]
fn server_metrics_move_scores_and_request_ids() {
    let s = TestServer::start(&fixture_dir("t5-v1_0-tied"), &[]);
    let ok = "mario_http_requests_total{route=\"/rationalize\",status=\"200\"}";
    let before = metric(&s, ok);
    let tokens_before = metric(&s, "mario_generated_tokens_total");
    let body = json!({"question": "Is a pear heavier than water?", "score": true, "gold": "no", "parameters": {"max_new_tokens": 12, "seed": 3}}).to_string();
    let (st, v, _, id) = post_raw(&s, "/rationalize", &body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["request_id"].as_str(),
        id.as_deref(),
        "the id is echoed in the header"
    );
    let r = &v["results"][0];
    assert_eq!(r["seed"], 3);
    assert!(r["generated_tokens"].as_u64().unwrap() >= 1);
    assert!(r["scores"]["diversity"].as_f64().is_some());
    assert!(
        r["scores"]["accuracy"].as_f64().is_some(),
        "accuracy with a gold answer"
    );
    assert!(
        r["timings"]["total_ms"].as_f64().unwrap()
            >= r["timings"]["inference_ms"].as_f64().unwrap()
    );
    assert_eq!(metric(&s, ok), before + 1.0);
    assert!(metric(&s, "mario_generated_tokens_total") >= tokens_before + 1.0);
    assert!(metric(&s, "mario_inference_duration_seconds_count") >= 1.0);
    // a client-chosen request id is kept
    let mut resp = agent()
        .post(&s.url("/rationalize"))
        .header("content-type", "application/json")
        .header("x-request-id", "my-id-1")
        .send(json!({"question": "Q?", "parameters": {"max_new_tokens": 2}}).to_string())
        .unwrap();
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "my-id-1");
    let _ = resp.body_mut().read_to_string();
    // ... unless it is too long or not visible ASCII: then the server makes its own
    for hostile in ["x".repeat(10_000), "a b".to_string()] {
        let mut resp = agent()
            .post(&s.url("/rationalize"))
            .header("content-type", "application/json")
            .header("x-request-id", &hostile)
            .send(json!({"question": "Q?", "parameters": {"max_new_tokens": 2}}).to_string())
            .unwrap();
        let id = resp
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(id != hostile && !id.is_empty() && id.len() <= 128, "{id}");
        let _ = resp.body_mut().read_to_string();
    }
    // health, ready, info, docs, openapi
    assert_eq!(get(&s, "/health").0, 200);
    assert_eq!(get(&s, "/ready").0, 200);
    let docs = get(&s, "/docs");
    assert!(
        docs.0 == 200 && docs.1.contains("/rationalize/stream") && !docs.1.contains("http://cdn")
    );
    let spec: Value = serde_json::from_str(&get(&s, "/openapi.json").1).unwrap();
    assert!(spec["paths"]["/rationalize"]["post"].is_object());
}

#[test]
fn server_stream_sends_tokens_then_the_result() {
    let s = TestServer::start(&fixture_dir("t5-v1_1-gated"), &[]);
    let body =
        json!({"question": "Is a pear heavier than water?", "parameters": {"max_new_tokens": 16}});
    let mut resp = agent()
        .post(&s.url("/rationalize/stream"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = BufReader::new(resp.body_mut().as_reader());
    let (mut kind, mut tokens, mut text, mut result, mut done) =
        (String::new(), 0, String::new(), Value::Null, false);
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            match kind.as_str() {
                "token" => {
                    let t: StreamToken = serde_json::from_str(d).unwrap();
                    tokens += 1;
                    text.push_str(&t.text);
                }
                "result" => result = serde_json::from_str(d).unwrap(),
                "done" => done = true,
                other => panic!("unexpected event {other}: {d}"),
            }
        }
    }
    assert!(done);
    assert_eq!(result["index"], 0);
    assert_eq!(
        tokens,
        result["result"]["generated_tokens"].as_u64().unwrap() as usize
    );
    assert_eq!(
        text.trim(),
        result["result"]["text"].as_str().unwrap().trim()
    );
    // the non-streamed response is the same text
    let (_, v) = post(&s, body);
    assert_eq!(v["results"][0]["text"], result["result"]["text"]);
}

#[test]
fn server_cancels_the_rows_of_a_client_that_disconnects() {
    let s = TestServer::start(
        &fixture_dir("t5-v1_1-gated"),
        &[
            "--max-new-tokens",
            "4000",
            "--default-max-new-tokens",
            "100",
        ],
    );
    let cancelled = "mario_rows_cancelled_total{reason=\"disconnect\"}";
    assert_eq!(metric(&s, cancelled), 0.0);
    {
        // sampling keeps the random model from ending early; read one token, then hang up
        let body = json!({"question": "Is a pear heavier than water?", "parameters": {"max_new_tokens": 4000, "temperature": 1.0, "seed": 1}});
        let mut resp = agent()
            .post(&s.url("/rationalize/stream"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let mut reader = resp.body_mut().as_reader();
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0);
    }
    let t = Instant::now();
    while metric(&s, cancelled) < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the row was never cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the worker is free again: a new request completes promptly
    let (st, _) = post(
        &s,
        json!({"question": "Q?", "parameters": {"max_new_tokens": 4}}),
    );
    assert_eq!(st, 200);
}

/// Holds every job without answering (a model that never finishes).
#[derive(Default)]
struct StuckBackend {
    jobs: Mutex<Vec<Job>>,
    capacity: usize,
    ready: bool,
}

impl Backend for StuckBackend {
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        let mut held = self.jobs.lock().unwrap();
        if held.len() + jobs.len() > self.capacity {
            return Err(ApiError::QueueFull {
                capacity: self.capacity,
                retry_after_s: 1,
            });
        }
        held.extend(jobs);
        Ok(())
    }
    fn is_ready(&self) -> bool {
        self.ready
    }
    fn queue_depth(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }
}

/// Sends `n` requests that the stuck backend will hold, and waits until it holds them.
fn hold(
    s: &TestServer,
    backend: &StuckBackend,
    n: usize,
) -> Vec<std::thread::JoinHandle<(u16, Value)>> {
    let url = s.url("/rationalize");
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut r = agent()
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(json!({"question": "Q?"}).to_string())
                    .unwrap();
                let st = r.status().as_u16();
                (
                    st,
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
                )
            })
        })
        .collect();
    let t = Instant::now();
    while backend.queue_depth() < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "requests never reached the backend"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    handles
}

#[test]
fn server_overload_answers_429_and_503_with_retry_after_and_never_hangs() {
    // over the concurrency limit: 429
    let backend = Arc::new(StuckBackend {
        capacity: 100,
        ready: true,
        ..Default::default()
    });
    let s = TestServer::with_backend(
        backend.clone(),
        &["--max-concurrent-requests", "2", "--request-timeout-s", "1"],
    );
    let held = hold(&s, &backend, 2);
    let (st, v, retry, _) = post_raw(&s, "/rationalize", &json!({"question": "Q?"}).to_string());
    assert_eq!(retry.as_deref(), Some("1"));
    assert_error((st, v), 429, "overloaded", "too many concurrent requests");
    // held requests do not hang: they time out with 504
    let started = Instant::now();
    for h in held {
        assert_error(
            h.join().unwrap(),
            504,
            "timeout",
            "did not finish within 1 s",
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // their clients are gone, so a real worker would cancel those rows
    assert!(backend
        .jobs
        .lock()
        .unwrap()
        .iter()
        .all(|j| j.updates.is_closed()));
    // permits were released: a new request is admitted again (and times out)
    let (st, _, _, _) = post_raw(&s, "/rationalize", &json!({"question": "Q?"}).to_string());
    assert_eq!(st, 504);

    // queue full: 503
    let backend = Arc::new(StuckBackend {
        capacity: 2,
        ready: true,
        ..Default::default()
    });
    let s = TestServer::with_backend(backend.clone(), &["--request-timeout-s", "1"]);
    let held = hold(&s, &backend, 2);
    let (st, v, retry, _) = post_raw(&s, "/rationalize", &json!({"question": "Q?"}).to_string());
    assert_eq!(retry.as_deref(), Some("1"));
    assert_error((st, v), 503, "queue_full", "queue is full");
    for h in held {
        assert_eq!(h.join().unwrap().0, 504);
    }
}

#[test]
fn server_not_ready_answers_503() {
    let s = TestServer::with_backend(
        Arc::new(StuckBackend {
            capacity: 1,
            ready: false,
            ..Default::default()
        }),
        &[],
    );
    assert_eq!(get(&s, "/health").0, 200);
    assert_eq!(get(&s, "/ready").0, 503);
    assert_error(
        post(&s, json!({"question": "Q?"})),
        503,
        "not_ready",
        "not ready",
    );
}

#[test]
fn openapi_document_matches_the_checked_in_file_and_lists_every_route() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let current = mario::server::openapi::openapi_json();
    if std::env::var_os("MARIO_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "openapi/openapi.json is out of date: run `cargo run --bin mario-server -- --print-openapi > openapi/openapi.json` (or MARIO_UPDATE_OPENAPI=1 cargo test --test server openapi)"
    );
    let doc: Value = serde_json::from_str(&current).unwrap();
    for (method, route) in mario::server::app::ROUTES {
        assert!(
            doc["paths"][route][method].is_object(),
            "{method} {route} is not documented"
        );
    }
}

#[test]
fn server_scores_with_the_reward_models_a_checkpoint_ships() {
    let dir = copy_fixture("t5-v1_0-tied");
    // any T5 folder works as an answer model; the plausibility scorer reads rows of the
    // gated fixture's embedding
    for (sub, src) in [
        ("consistency-i2o", "t5-v1_0-tied"),
        ("consistency-ir2o", "t5-v1_1-gated"),
        ("plausibility", "t5-v1_1-gated"),
    ] {
        let dest = dir.path().join(sub);
        std::fs::create_dir_all(&dest).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(fixture_dir(src).join(f), dest.join(f)).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("plausibility/plausibility.json"),
        r#"{"weight_row": 511, "bias_row": 510, "temperature_row": 509, "input": "rationale", "max_tokens": 64}"#,
    )
    .unwrap();
    let s = TestServer::start(dir.path(), &[]);
    let info: Value = serde_json::from_str(&get(&s, "/info").1).unwrap();
    assert_eq!(
        info["scores"],
        json!(["diversity", "accuracy", "consistency", "plausibility"])
    );
    let (st, v) = post(
        &s,
        json!({"question": "Is a pear heavier than water?", "score": true, "gold": "no",
               "parameters": {"max_new_tokens": 12}}),
    );
    assert_eq!(st, 200, "{v}");
    let scores = &v["results"][0]["scores"];
    let c = scores["consistency"].as_f64().expect("consistency score");
    let p = scores["plausibility"].as_f64().expect("plausibility score");
    assert!(c > -1.0 && c < 1.0, "{c}");
    assert!(p > 0.0 && p < 1.0, "{p}");
    // without a gold answer consistency cannot be computed: null, not a guess
    let (_, v) = post(
        &s,
        json!({"question": "Is a pear heavier than water?", "score": true, "parameters": {"max_new_tokens": 12}}),
    );
    assert!(v["results"][0]["scores"]["consistency"].is_null());
    assert!(v["results"][0]["scores"]["accuracy"].is_null());
}

/// A model that never finishes: every job gets a token every 10 ms until its owner goes away.
/// `live` counts the jobs still fed.
#[derive(Default)]
struct TrickleBackend {
    live: Arc<AtomicUsize>,
}

impl Backend for TrickleBackend {
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        for job in jobs {
            let live = self.live.clone();
            live.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                while job.updates.send(JobUpdate::Token { id: 5 }).is_ok() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                live.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn queue_depth(&self) -> usize {
        0
    }
}

/// A raw HTTP/1.1 client that has sent one POST (and may hang up at any time by being dropped).
fn raw_post(s: &TestServer, path: &str, body: &str) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    c
}

/// Reads from `c` until what came so far contains `needle`.
fn read_until(c: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before {needle:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clients that hang up (before the answer, or in the middle of a stream) do not leak
/// `mario_requests_in_flight`: the gauge covers a streamed response until its stream ends and
/// returns to its resting value; the hang-ups are counted and timed.
#[test]
fn server_in_flight_gauge_survives_clients_that_hang_up() {
    let backend = Arc::new(TrickleBackend::default());
    let s = TestServer::with_backend(backend.clone(), &[]);
    let gauge = "mario_requests_in_flight";
    // the scrape that reads the gauge is itself in flight
    assert_eq!(metric(&s, gauge), 1.0);
    let body = json!({"question": "Is a pear heavier than water?"}).to_string();
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| raw_post(&s, "/rationalize", &body))
        .collect();
    for _ in 0..3 {
        let mut c = raw_post(&s, "/rationalize/stream", &body);
        read_until(&mut c, "event: token");
        clients.push(c);
    }
    wait_for("the jobs never reached the backend", || {
        backend.live.load(Ordering::SeqCst) == 6
    });
    // every open request counts, streams included (they are still running)
    assert_eq!(metric(&s, gauge), 7.0);
    drop(clients);
    wait_for("the rows of the gone clients were not cancelled", || {
        backend.live.load(Ordering::SeqCst) == 0
    });
    wait_for("mario_requests_in_flight did not return to rest", || {
        metric(&s, gauge) == 1.0
    });
    // a plain request whose client left is counted as 499; a stream as the 200 it had sent
    assert_eq!(
        metric(
            &s,
            "mario_http_requests_total{route=\"/rationalize\",status=\"499\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &s,
            "mario_http_requests_total{route=\"/rationalize/stream\",status=\"200\"}"
        ),
        3.0
    );
    for route in ["/rationalize", "/rationalize/stream"] {
        assert_eq!(
            metric(
                &s,
                &format!("mario_http_request_duration_seconds_count{{route=\"{route}\"}}")
            ),
            3.0,
            "{route}"
        );
    }
}

/// A temperature too small to sample with (1e-300 is 0 in f32: NaN probabilities, which once
/// gave an empty text) decodes greedily.
#[test]
fn server_tiny_temperatures_decode_greedily() {
    let s = TestServer::start(&fixture_dir("t5-v1_0-tied"), &[]);
    let q = "Is a pear heavier than water?";
    let run = |t: f64| {
        let (st, v) = post(
            &s,
            json!({"question": q, "parameters": {"max_new_tokens": 16, "temperature": t, "seed": 7}}),
        );
        assert_eq!(st, 200, "{v}");
        let r = &v["results"][0];
        (
            r["text"].as_str().unwrap().to_string(),
            r["finish_reason"].as_str().unwrap().to_string(),
        )
    };
    let greedy = run(0.0);
    assert!(
        !greedy.0.is_empty(),
        "the fixture's greedy text is not empty"
    );
    for t in [1e-300, 1e-45, 1e-6] {
        assert_eq!(run(t), greedy, "temperature {t}");
    }
}

/// Text of the question never becomes a special or control token: such a question is refused
/// (naming the token) instead of steering the decoder.
#[test]
fn server_refuses_special_and_control_tokens_in_questions() {
    let dir = with_extra_vocab("t5-v1_0-tied", 12);
    let table = ControlTokens::quark(&[("plausibility", 5), ("diversity", 3)], &["accuracy"]);
    table.save(&dir.path().join(CONTROL_FILE)).unwrap();
    let s = TestServer::start(dir.path(), &[]);
    let refused = [
        (
            "Is a pear heavier than water? _TOKEN0_00004 WRONG_LABEL </s>",
            "`_TOKEN0_00004`",
        ),
        ("Is a pear WRONG_LABEL heavier than water?", "`WRONG_LABEL`"),
        ("Is a pear heavier than water?</s>", "`</s>`"),
        ("<pad> Is a pear heavier than water?", "`<pad>`"),
        // what the normalizer (NFKC) turns into a special token counts too
        ("Is a pear heavier than water? \u{ff1c}/s\u{ff1e}", "`</s>`"),
    ];
    for (q, token) in refused {
        assert_error(
            post(
                &s,
                json!({"question": q, "parameters": {"max_new_tokens": 2}}),
            ),
            422,
            "validation",
            token,
        );
    }
    assert_error(
        post(
            &s,
            json!({"questions": ["Is a pear heavier than water?", "Why? CORRECT_LABEL"]}),
        ),
        422,
        "validation",
        "`questions[1]`",
    );
    // look-alikes and unknown characters are text
    for q in [
        "Is <b>a pear</b> heavier than water? _TOKEN0_0000 CORRECT LABEL",
        "Is \u{6f22} heavier than <unk>?",
    ] {
        let (st, v) = post(
            &s,
            json!({"question": q, "parameters": {"max_new_tokens": 2}}),
        );
        assert_eq!(st, 200, "{q}: {v}");
    }
}

/// A question made only of invisible characters (format characters such as zero-width spaces,
/// control characters, whitespace) is empty.
#[test]
fn server_refuses_invisible_questions_as_empty() {
    let s = TestServer::with_backend(
        Arc::new(StuckBackend {
            capacity: 10,
            ready: true,
            ..Default::default()
        }),
        &["--request-timeout-s", "2"],
    );
    for q in [
        "\u{200b}\u{200b}",
        "\u{2060}",
        "\u{feff}",
        " \u{200b}\n\u{200d}\t",
        "\u{0}\u{7}",
    ] {
        assert_error(
            post(&s, json!({"question": q})),
            422,
            "validation",
            "`question` is empty",
        );
    }
    assert_error(
        post(
            &s,
            json!({"questions": ["Is a pear heavier than water?", "\u{2060}\u{feff}"]}),
        ),
        422,
        "validation",
        "`questions[1]` is empty",
    );
}

/// (status, lower-case headers, body) of one request written by hand on its own connection.
fn raw_request(
    s: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, std::collections::HashMap<String, String>, String) {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        s.addr,
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    req += body;
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

/// Request bodies must be declared JSON (a plain-text or form POST is what any web page can
/// make a browser send without a preflight): 415. With `--api-key` every route but /health,
/// /ready and (unless `--metrics-require-api-key`) /metrics needs `Authorization: Bearer`: 401.
/// CORS headers only for the origins of `--cors-allow-origin`.
#[test]
fn server_requires_json_bodies_an_api_key_and_names_cors_origins() {
    let not_ready = || {
        Arc::new(StuckBackend {
            capacity: 10,
            ready: false,
            ..Default::default()
        })
    };
    let body = json!({"question": "Q?"}).to_string();
    let s = TestServer::with_backend(not_ready(), &[]);
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        for path in ["/rationalize", "/rationalize/stream"] {
            let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
            let (st, _, b) = raw_request(&s, "POST", path, &headers, &body);
            assert_error(
                (st, json_of(&b)),
                415,
                "unsupported_media_type",
                "application/json",
            );
        }
    }
    // parameters are fine; this backend is not ready, so the request got past every check
    let json_ct = ("content-type", "Application/JSON; charset=utf-8");
    assert_eq!(
        raw_request(&s, "POST", "/rationalize", &[json_ct], &body).0,
        503
    );
    // no CORS headers unless asked for
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type, authorization",
        ),
    ];
    let (_, h, _) = raw_request(&s, "OPTIONS", "/rationalize", &preflight, "");
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
    let (_, h, _) = raw_request(&s, "GET", "/info", &preflight[..1], "");
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
    drop(s);

    let s = TestServer::with_backend(
        not_ready(),
        &[
            "--api-key",
            "s3cret-key",
            "--cors-allow-origin",
            "https://app.example",
        ],
    );
    let guarded = [
        ("POST", "/rationalize"),
        ("POST", "/rationalize/stream"),
        ("GET", "/info"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/nope"),
    ];
    for (method, path) in guarded {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret-ke"),
            Some("Bearer s3cret-key2"),
            Some("Basic s3cret-key"),
            Some("s3cret-key"),
        ] {
            let mut headers = vec![json_ct];
            headers.extend(auth.map(|a| ("authorization", a)));
            let (st, h, b) = raw_request(&s, method, path, &headers, &body);
            assert_error(
                (st, json_of(&b)),
                401,
                "unauthorized",
                "Authorization: Bearer",
            );
            assert_eq!(h["www-authenticate"], "Bearer", "{method} {path}");
        }
        let ok = [json_ct, ("authorization", "bearer s3cret-key")];
        let st = raw_request(&s, method, path, &ok, &body).0;
        assert!(st != 401, "{method} {path} with the key: {st}");
    }
    // the key check comes before the content type: strangers learn nothing
    let (st, _, _) = raw_request(&s, "POST", "/rationalize", &[], &body);
    assert_eq!(st, 401);
    // probes and (by default) metrics stay open
    for (path, want) in [("/health", 200), ("/ready", 503), ("/metrics", 200)] {
        assert_eq!(raw_request(&s, "GET", path, &[], "").0, want, "{path}");
    }
    // CORS: the allowed origin gets its preflight answered (no key needed) and sees even a 401
    let (st, h, _) = raw_request(&s, "OPTIONS", "/rationalize", &preflight, "");
    assert!(st < 300, "preflight: {st}");
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-headers"].contains("authorization"),
        "{h:?}"
    );
    let (st, h, _) = raw_request(&s, "GET", "/info", &preflight[..1], "");
    assert_eq!(st, 401);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    // another origin is not allowed
    let other = [("origin", "https://evil.example"), preflight[1]];
    let (_, h, _) = raw_request(&s, "OPTIONS", "/rationalize", &other, "");
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
    drop(s);

    let s = TestServer::with_backend(
        not_ready(),
        &["--api-key", "s3cret-key", "--metrics-require-api-key"],
    );
    assert_eq!(raw_request(&s, "GET", "/metrics", &[], "").0, 401);
    let key = [("authorization", "Bearer s3cret-key")];
    assert_eq!(raw_request(&s, "GET", "/metrics", &key, "").0, 200);
    assert_eq!(raw_request(&s, "GET", "/health", &[], "").0, 200);
    // flags that cannot work are refused at start-up, naming them
    let dir = fixture_dir("t5-v1_0-tied");
    for (args, flag) in [
        (vec!["--metrics-require-api-key"], "--api-key"),
        (vec!["--api-key", ""], "--api-key"),
        (
            vec!["--cors-allow-origin", "example.com"],
            "--cors-allow-origin",
        ),
        (
            vec!["--cors-allow-origin", "https://a.example/x"],
            "--cors-allow-origin",
        ),
    ] {
        let mut all = vec!["--model", dir.to_str().unwrap()];
        all.extend(args);
        let err = ServerConfig::from_args(all)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.contains(flag), "{err}");
    }
}

/// Answers every job after `delay` (a model that takes its time but finishes).
struct DelayedBackend {
    delay: Duration,
    received: AtomicUsize,
}

impl Backend for DelayedBackend {
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        self.received.fetch_add(jobs.len(), Ordering::SeqCst);
        for job in jobs {
            let delay = self.delay;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = job.updates.send(JobUpdate::Finished {
                    output: GenerationOutput {
                        token_ids: vec![1],
                        text: "done".into(),
                        finish_reason: FinishReason::Eos,
                        logprobs: None,
                    },
                    queue: Duration::ZERO,
                    inference: delay,
                });
            });
        }
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn queue_depth(&self) -> usize {
        0
    }
}

/// A client that has sent part of a request and then goes silent.
fn silent_after(s: &TestServer, sent: &str) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(sent.as_bytes()).unwrap();
    c
}

/// Half a body: `Content-Length: 60000`, then 10 bytes and silence.
fn half_body(s: &TestServer) -> TcpStream {
    silent_after(
        s,
        "POST /rationalize HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 60000\r\n\r\n{\"question",
    )
}

/// Reads until the server closes the connection (EOF or reset); panics if it is still open
/// after `patience`. Returns what was read.
fn read_until_closed(c: &mut TcpStream, patience: Duration) -> String {
    c.set_read_timeout(Some(patience)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => break,
            Err(e) => panic!("the connection is still open ({e}); read so far: {seen:?}"),
        }
    }
    String::from_utf8_lossy(&seen).to_string()
}

/// A client that sends its headers (or its body) too slowly is cut after
/// `--header-read-timeout-s` (`--body-read-timeout-s`: 408) while others are answered.
#[test]
fn server_cuts_slow_headers_and_slow_bodies_and_keeps_answering_others() {
    let backend = Arc::new(DelayedBackend {
        delay: Duration::ZERO,
        received: AtomicUsize::new(0),
    });
    let s = TestServer::with_backend(
        backend,
        &["--header-read-timeout-s", "1", "--body-read-timeout-s", "2"],
    );
    let t = Instant::now();
    let mut slow_head = silent_after(&s, "POST /rationalize HTTP/1.1\r\nhost: x\r\n");
    let mut slow_body = half_body(&s);
    while t.elapsed() < Duration::from_millis(800) {
        assert_eq!(get(&s, "/health").0, 200);
        let (st, v) = post(&s, json!({"question": "Q?"}));
        assert_eq!((st, v["results"][0]["text"].as_str()), (200, Some("done")));
        std::thread::sleep(Duration::from_millis(100));
    }
    read_until_closed(&mut slow_head, Duration::from_secs(5));
    let head_cut = t.elapsed();
    assert!(head_cut >= Duration::from_millis(900), "{head_cut:?}");
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(5));
    let body_cut = t.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"error_type\":\"body_timeout\""),
        "{answer}"
    );
    assert!(body_cut >= Duration::from_millis(1900), "{body_cut:?}");
    assert!(body_cut < Duration::from_secs(5), "{body_cut:?}");
    assert_eq!(get(&s, "/health").0, 200);
}

/// Past `--max-connections` open connections a new one is not served until one closes.
#[test]
fn server_caps_open_connections() {
    let s = TestServer::with_backend(
        Arc::new(StuckBackend::default()),
        &["--max-connections", "2", "--header-read-timeout-s", "30"],
    );
    let idle: Vec<TcpStream> = (0..2).map(|_| silent_after(&s, "")).collect();
    let mut third = silent_after(
        &s,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a third connection was served past the cap: {early:?}"
    );
    drop(idle);
    let answer = read_until_closed(&mut third, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// At shutdown a request in flight is finished and the server exits; a half-sent body does not
/// hold the exit past `--shutdown-timeout-s`.
#[test]
fn server_shutdown_finishes_requests_in_flight_within_the_deadline() {
    for (half_sent, deadline) in [(false, "30"), (true, "2")] {
        let backend = Arc::new(DelayedBackend {
            delay: Duration::from_millis(800),
            received: AtomicUsize::new(0),
        });
        let s = TestServer::with_backend(
            backend.clone(),
            &[
                "--shutdown-timeout-s",
                deadline,
                "--body-read-timeout-s",
                "60",
            ],
        );
        let url = s.url("/rationalize");
        let in_flight = std::thread::spawn(move || {
            let mut r = agent()
                .post(&url)
                .header("content-type", "application/json")
                .send(json!({"question": "Q?"}).to_string())
                .unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        });
        let _stuck = half_sent.then(|| half_body(&s));
        wait_for("the request never reached the backend", || {
            backend.received.load(Ordering::SeqCst) == 1
        });
        let took = s.stop();
        let (st, body) = in_flight.join().unwrap();
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("\"text\":\"done\""), "{body}");
        if half_sent {
            assert!(took >= Duration::from_millis(1500), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        } else {
            assert!(took < Duration::from_secs(3), "{took:?}");
        }
    }
}

/// Runs the mario-server binary; returns its exit code and stderr once it exits, or panics
/// (after killing it) when it is still running after `patience`.
fn run_binary(args: &[&str], env: &[(&str, &str)], patience: Duration) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mario-server"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > patience {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!("mario-server {args:?} is still running after {patience:?}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(log.path()).unwrap())
}

/// A server whose warm-up fails exits non-zero with the reason instead of staying up with
/// /health 200 and /ready 503 forever; a checkpoint whose tokenizer outruns the model's
/// vocabulary is refused at start-up.
#[test]
fn server_exits_non_zero_when_warm_up_fails_or_the_checkpoint_is_inconsistent() {
    let dir = fixture_dir("t5-v1_0-tied");
    let args = ["--model", dir.to_str().unwrap(), "--port", "0"];
    let (code, stderr) = run_binary(
        &args,
        &[(mario::server::scheduler::FAULT_WARMUP_ENV, "1")],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the warm-up batch failed: injected by MARIO_FAULT_WARMUP"),
        "{stderr}"
    );

    let bad = copy_fixture("t5-v1_0-tied");
    let tok = bad.path().join("tokenizer.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    v["model"]["vocab"]
        .as_array_mut()
        .unwrap()
        .push(json!(["\u{2581}zzzq", -30.0]));
    std::fs::write(&tok, v.to_string()).unwrap();
    let args = ["--model", bad.path().to_str().unwrap(), "--port", "0"];
    let (code, stderr) = run_binary(&args, &[], Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("tokenizer.json") && stderr.contains("512 embedding rows"),
        "{stderr}"
    );
}

/// Start-up refuses settings so large that deadlines or sums would overflow, naming the flag
/// (they used to be accepted and to panic on the first request, or at once).
#[test]
fn server_refuses_overflowing_settings_naming_the_flag() {
    let dir = fixture_dir("t5-v1_0-tied");
    let huge = "18446744073709551615";
    for (extra, flag) in [
        (vec!["--request-timeout-s", huge], "--request-timeout-s"),
        (vec!["--max-batch-wait-ms", huge], "--max-batch-wait-ms"),
        (vec!["--body-read-timeout-s", huge], "--body-read-timeout-s"),
        (vec!["--shutdown-timeout-s", huge], "--shutdown-timeout-s"),
        (
            vec!["--max-concurrent-requests", huge],
            "--max-concurrent-requests",
        ),
        (vec!["--max-queue", huge], "--max-queue"),
        (
            vec!["--max-concurrent-scoring", huge],
            "--max-concurrent-scoring",
        ),
        (
            vec!["--max-concurrent-scoring", "0"],
            "--max-concurrent-scoring must be at least 1",
        ),
        (
            vec![
                "--max-input-tokens",
                huge,
                "--max-new-tokens",
                "2",
                "--default-max-new-tokens",
                "1",
            ],
            "--max-input-tokens + --max-new-tokens",
        ),
    ] {
        let mut args = vec!["--model", dir.to_str().unwrap(), "--port", "0"];
        args.extend(extra);
        let (code, stderr) = run_binary(&args, &[], Duration::from_secs(30));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("invalid configuration") && stderr.contains(flag),
            "{args:?}: {stderr}"
        );
    }
}

/// Fails every job with an internal error whose text must not reach the client, or (with
/// `drop_rows`) sends one token and then drops the job without a final update.
struct FaultyBackend {
    drop_rows: bool,
}

const SECRET: &str = "CUDA_ERROR_ILLEGAL_ADDRESS at /home/ops/weights/model.safetensors";

impl Backend for FaultyBackend {
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        for job in jobs {
            if self.drop_rows {
                let _ = job.updates.send(JobUpdate::Token { id: 5 });
            } else {
                let _ = job
                    .updates
                    .send(JobUpdate::Failed(ApiError::Internal(SECRET.into())));
            }
        }
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn queue_depth(&self) -> usize {
        0
    }
}

/// Every event of a stream, (kind, JSON data), read to its end; and the request id.
fn stream_events(s: &TestServer, body: &Value) -> (Vec<(String, Value)>, Option<String>) {
    let mut resp = agent()
        .post(&s.url("/rationalize/stream"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let reader = BufReader::new(resp.body_mut().as_reader());
    let mut kind = String::new();
    let mut events = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            events.push((kind.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    (events, id)
}

/// The `error` events of a stream (as JSON), read to its end.
fn stream_errors(s: &TestServer, body: &Value) -> (Vec<Value>, Option<String>) {
    let (events, id) = stream_events(s, body);
    let errors = events
        .into_iter()
        .filter(|(k, _)| k == "error")
        .map(|(_, v)| v)
        .collect();
    (errors, id)
}

/// Internal error text (device errors, file paths) is logged, not returned: the client gets a
/// generic message with the request id. A streamed row that ends without a final update is
/// reported as the internal error it is, not as a timeout.
#[test]
fn server_hides_internal_errors_and_reports_lost_rows() {
    let s = TestServer::with_backend(Arc::new(FaultyBackend { drop_rows: false }), &[]);
    let q = json!({"question": "Q?"});
    let (st, v, _, id) = post_raw(&s, "/rationalize", &q.to_string());
    let id = id.unwrap();
    assert_error(
        (st, v.clone()),
        500,
        "internal",
        &format!("request id {id}"),
    );
    assert!(!v.to_string().contains("CUDA"), "{v}");
    let (errors, id) = stream_errors(&s, &q);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["index"], 0);
    assert_eq!(errors[0]["error"]["error_type"], "internal");
    let msg = errors[0]["error"]["error"].as_str().unwrap();
    assert!(msg.contains(&id.unwrap()) && !msg.contains("CUDA"), "{msg}");
    drop(s);

    let s = TestServer::with_backend(Arc::new(FaultyBackend { drop_rows: true }), &[]);
    let (errors, _) = stream_errors(&s, &json!({"questions": ["Q?", "R?"]}));
    let mut indices: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    indices.sort();
    assert_eq!(indices, [0, 1], "{errors:?}");
    for e in &errors {
        assert_eq!(e["error"]["error_type"], "internal", "{e}");
    }
    let (st, v) = post(&s, q);
    assert_error((st, v), 500, "internal", "request id");
}

/// The real scheduler and model, with a fault hook that makes model calls panic for chosen
/// rows; ready when returned.
fn server_with_faults(fault: FaultHook) -> TestServer {
    let ckpt = Checkpoint::load(&fixture_dir("t5-v1_0-tied"), DType::F32, &Device::Cpu).unwrap();
    let limits = BatchLimits {
        max_batch_size: 8,
        max_batch_tokens: 16384,
        max_batch_wait: Duration::from_millis(50),
    };
    let metrics = Arc::new(Metrics::new());
    // the worker thread ends when the server (and with it the queue's sender) is dropped
    let (scheduler, _worker, _warmed) =
        Scheduler::start(ckpt, limits, 64, 32, metrics, Some(fault));
    let s = TestServer::with_backend(Arc::new(scheduler), &[]);
    wait_for("the warm-up", || get(&s, "/ready").0 == 200);
    s
}

/// A panic in a model call is kept to the row that caused it: a row whose prefill panics, or
/// whose third decoding step panics in the middle of a batch, fails alone with a generic
/// internal error; the other rows of its batch (the same request's or another client's) are
/// run again alone and return what they return alone, their streams without a token sent
/// twice; and the next request succeeds.
#[test]
fn server_keeps_a_panicking_row_to_itself_and_keeps_serving() {
    let tok = Checkpoint::load(&fixture_dir("t5-v1_0-tied"), DType::F32, &Device::Cpu)
        .unwrap()
        .tokenizer;
    let breaks_at_once = "Does this question break the prefill?";
    let breaks_later = "Does this question break the third step?";
    let (at_once, later) = (
        tok.encode_plain(breaks_at_once).unwrap(),
        tok.encode_plain(breaks_later).unwrap(),
    );
    let s = server_with_faults(Arc::new(move |r: &GenerationRequest, calls: usize| {
        (r.input_ids == at_once && calls == 0) || (r.input_ids == later && calls == 3)
    }));
    let params = json!({"max_new_tokens": 8});
    let good = ["Is a pear heavier than water?", "Is ice cold?"];
    let alone: Vec<Value> = good
        .iter()
        .map(|q| {
            let (st, v) = post(&s, json!({"question": q, "parameters": params}));
            assert_eq!(st, 200, "{v}");
            v["results"][0]["text"].clone()
        })
        .collect();
    for bad in [breaks_at_once, breaks_later] {
        // one request, one batch: the bad question between two good ones
        let body = json!({"questions": [good[0], bad, good[1]], "parameters": params});
        let (events, id) = stream_events(&s, &body);
        let mut tokens = [0usize; 3];
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for (kind, v) in &events {
            let i = v["index"].as_u64().map(|i| i as usize);
            match kind.as_str() {
                "token" => tokens[i.unwrap()] += 1,
                "result" => results.push((i.unwrap(), v["result"].clone())),
                "error" => errors.push((i, v["error"].clone())),
                _ => {}
            }
        }
        assert_eq!(errors.len(), 1, "{bad}: {events:?}");
        assert_eq!(errors[0].0, Some(1), "{bad}: only the bad row fails");
        assert_eq!(errors[0].1["error_type"], "internal");
        let msg = errors[0].1["error"].as_str().unwrap();
        assert!(msg.contains(&id.unwrap()), "{msg}");
        assert!(!msg.contains("panic") && !msg.contains("fault"), "{msg}");
        results.sort_by_key(|r| r.0);
        assert_eq!(
            results.iter().map(|r| r.0).collect::<Vec<_>>(),
            [0, 2],
            "{bad}"
        );
        for ((i, r), want) in results.iter().zip(&alone) {
            assert_eq!(&r["text"], want, "{bad}: question {i} as alone");
            let generated = r["generated_tokens"].as_u64().unwrap() as usize;
            assert_eq!(
                tokens[*i], generated,
                "{bad}: question {i}'s tokens sent once"
            );
        }
        // two clients at once: the bad one gets a 500, the other its answer
        let url = s.url("/rationalize");
        let clients: Vec<_> = [bad, good[0]]
            .into_iter()
            .map(|q| {
                let (url, body) = (url.clone(), json!({"question": q, "parameters": params}));
                std::thread::spawn(move || {
                    let mut r = agent()
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(body.to_string())
                        .unwrap();
                    let st = r.status().as_u16();
                    (st, json_of(&r.body_mut().read_to_string().unwrap()))
                })
            })
            .collect();
        let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert_error(answers[0].clone(), 500, "internal", "request id");
        assert_eq!(answers[1].0, 200, "{}", answers[1].1);
        assert_eq!(answers[1].1["results"][0]["text"], alone[0]);
        // and the worker lives on
        let (st, v) = post(&s, json!({"question": good[1], "parameters": params}));
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["results"][0]["text"], alone[1]);
    }
}

/// A reward that takes `delay` per question and records how many questions it scored at once.
#[derive(Default)]
struct SlowReward {
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A [`SlowReward`] the server holds while the test watches it.
struct Shared(Arc<SlowReward>);

impl Reward for Shared {
    fn name(&self) -> &str {
        "slow"
    }
    fn score(&self, items: &[RewardInput<'_>]) -> Result<Vec<Option<f64>>, RewardError> {
        let me = &self.0;
        let n = me.now.fetch_add(1, Ordering::SeqCst) + 1;
        me.most.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(me.delay);
        me.now.fetch_sub(1, Ordering::SeqCst);
        Ok(vec![Some(1.0); items.len()])
    }
}

/// A server whose model answers at once and whose only reward is `reward`.
fn server_with_reward(reward: &Arc<SlowReward>, extra: &[&str]) -> TestServer {
    let backend = Arc::new(DelayedBackend {
        delay: Duration::ZERO,
        received: AtomicUsize::new(0),
    });
    let reward = reward.clone();
    TestServer::with_backend_and(backend, extra, move |state| {
        state.rewards = Arc::new(vec![Box::new(Shared(reward))]);
    })
}

/// Scoring runs inside the request's deadline: a reward that would outlast it gets the same
/// 504 timeout as generation (plain and streamed), on time. It runs behind a pool of
/// `--max-concurrent-scoring` slots, and its time shows in `timings.scoring_ms`.
#[test]
fn server_scores_within_the_deadline_and_a_bounded_pool() {
    let stuck = Arc::new(SlowReward {
        delay: Duration::from_secs(4),
        ..Default::default()
    });
    let s = server_with_reward(&stuck, &["--request-timeout-s", "1"]);
    let t = Instant::now();
    let resp = post(&s, json!({"question": "Q?", "score": true}));
    assert_error(resp, 504, "timeout", "did not finish within 1 s");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    let (errors, _) = stream_errors(&s, &json!({"questions": ["Q?", "R?"], "score": true}));
    assert!(!errors.is_empty());
    for e in &errors {
        assert_eq!(e["error"]["error_type"], "timeout", "{e}");
    }
    // without scores the same server answers at once
    let (st, v) = post(&s, json!({"question": "Q?"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["timings"]["scoring_ms"], 0.0);
    drop(s);

    let slow = Arc::new(SlowReward {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let s = server_with_reward(&slow, &["--max-concurrent-scoring", "2"]);
    let info: Value = serde_json::from_str(&get(&s, "/info").1).unwrap();
    assert_eq!(info["limits"]["max_concurrent_scoring"], 2);
    let url = s.url("/rationalize");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut r = agent()
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(json!({"question": "Q?", "score": true}).to_string())
                    .unwrap();
                let st = r.status().as_u16();
                (st, json_of(&r.body_mut().read_to_string().unwrap()))
            })
        })
        .collect();
    for c in clients {
        let (st, v) = c.join().unwrap();
        assert_eq!(st, 200, "{v}");
        let result = &v["results"][0];
        assert_eq!(result["scores"]["slow"], 1.0);
        let scoring = result["timings"]["scoring_ms"].as_f64().unwrap();
        assert!(scoring >= 300.0, "{scoring}");
        assert!(result["timings"]["total_ms"].as_f64().unwrap() >= scoring);
    }
    assert_eq!(slow.most.load(Ordering::SeqCst), 2, "two slots, both used");
}
