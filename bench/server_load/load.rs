//! Load generator for `mario-server` (`bench/server_load/run.sh` drives it).
//!
//! First every question is sent once by a single client to record the reference answer.
//! Then, for each concurrency level, that many clients send requests in a closed loop for the
//! given duration; each response is checked against the reference (greedy decoding must give
//! the same text whatever the batch), and throughput, latency percentiles, error counts and
//! mismatches are reported as one JSON line per level.
//!
//! ```bash
//! cargo run --release --example server_load -- --url http://127.0.0.1:8080 \
//!     --questions ../shared/data/mario/strategyqa/dev.jsonl --levels 1,16,64 --seconds 60
//! ```

#[path = "../questions.rs"]
mod questions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Questions (a split file: one JSON object of records, or JSON Lines with `question`).
    #[arg(long)]
    questions: std::path::PathBuf,
    /// How many distinct questions to use.
    #[arg(long, default_value_t = 64)]
    distinct: usize,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    levels: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// max_new_tokens of every request.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
}

fn read_questions(path: &std::path::Path) -> Vec<String> {
    questions::read_records(path)
        .iter()
        .filter_map(|r| r["question"].as_str().map(str::to_string))
        .collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// (status, text of the first result, generated tokens).
fn ask(agent: &ureq::Agent, url: &str, q: &str, max_new: usize) -> (u16, Option<String>, usize) {
    let body = json!({"question": q, "parameters": {"max_new_tokens": max_new}});
    match agent
        .post(&format!("{url}/rationalize"))
        .header("content-type", "application/json")
        .send(body.to_string())
    {
        Ok(mut r) => {
            let st = r.status().as_u16();
            let v: Value = r
                .body_mut()
                .read_to_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            let res = &v["results"][0];
            let text = (res["question"].as_str() == Some(q))
                .then(|| res["text"].as_str().map(str::to_string))
                .flatten();
            (
                st,
                text,
                res["generated_tokens"].as_u64().unwrap_or(0) as usize,
            )
        }
        Err(_) => (0, None, 0),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let a = Args::parse();
    let questions: Vec<String> = read_questions(&a.questions)
        .into_iter()
        .take(a.distinct)
        .collect();
    assert!(
        !questions.is_empty(),
        "no questions in {}",
        a.questions.display()
    );
    let ag = agent();
    let mut reference = HashMap::new();
    for q in &questions {
        let (st, text, _) = ask(&ag, &a.url, q, a.max_new_tokens);
        assert_eq!(st, 200, "reference request failed");
        reference.insert(q.clone(), text.expect("reference text"));
    }
    eprintln!(
        "reference answers recorded for {} questions",
        questions.len()
    );
    let mut base_rps = None;
    for &level in &a.levels {
        let next = AtomicUsize::new(0);
        let latencies = Mutex::new(Vec::new());
        let statuses = Mutex::new(HashMap::<u16, usize>::new());
        let mismatches = AtomicUsize::new(0);
        let tokens = AtomicUsize::new(0);
        let started = Instant::now();
        let until = started + Duration::from_secs(a.seconds);
        std::thread::scope(|s| {
            for _ in 0..level {
                s.spawn(|| {
                    let ag = agent();
                    while Instant::now() < until {
                        let q = &questions[next.fetch_add(1, Ordering::Relaxed) % questions.len()];
                        let t = Instant::now();
                        let (st, text, n) = ask(&ag, &a.url, q, a.max_new_tokens);
                        let dt = t.elapsed().as_secs_f64();
                        *statuses.lock().unwrap().entry(st).or_default() += 1;
                        if st == 200 {
                            latencies.lock().unwrap().push(dt);
                            tokens.fetch_add(n, Ordering::Relaxed);
                            if text.as_ref() != reference.get(q) {
                                mismatches.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut lat = latencies.into_inner().unwrap();
        lat.sort_by(f64::total_cmp);
        let ok = lat.len();
        let rps = ok as f64 / elapsed;
        let base = *base_rps.get_or_insert(rps);
        let statuses = statuses.into_inner().unwrap();
        let errors: usize = statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum();
        let server_errors: usize = statuses
            .iter()
            .filter(|(s, _)| **s >= 500 || **s == 0)
            .map(|(_, n)| n)
            .sum();
        println!(
            "{}",
            json!({
                "clients": level, "seconds": elapsed, "ok": ok, "errors": errors,
                "server_errors_or_lost": server_errors, "statuses": statuses,
                "mismatched": mismatches.load(Ordering::Relaxed),
                "requests_per_s": rps, "tokens_per_s": tokens.load(Ordering::Relaxed) as f64 / elapsed,
                "p50_s": percentile(&lat, 0.5), "p99_s": percentile(&lat, 0.99),
                "speedup_vs_first_level": rps / base,
            })
        );
    }
}
