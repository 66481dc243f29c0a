//! The HTTP handlers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tower_http::request_id::RequestId;

use super::api::{
    FinishReasonApi, Health, Info, RationaleResult, RationalizeRequest, RationalizeResponse,
    StreamToken, Timings,
};
use super::app::AppState;
use super::error::{ApiError, RETRY_AFTER_S};
use super::scheduler::{Job, JobUpdate};
use super::security::require_json;
use super::validation::{ValidRequest, ValidRow};
use crate::generate::{FinishReason, GenerationOutput};
use crate::rationale::parse_output;
use crate::rewards::RewardInput;

/// Grace past `--request-timeout-s` that a handler waits for its rows: the worker ends a row at
/// the request's deadline and reports it, and this leaves that report time to arrive before the
/// handler gives up on the channel.
const RESPONSE_GRACE: Duration = Duration::from_secs(1);

/// Parses the body: 413 past the size limit, 400 for broken JSON, 422 for JSON of the wrong
/// shape (unknown fields, wrong types).
fn parse_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<RationalizeRequest, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadJson(r.body_text())
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let req: RationalizeRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::Validation(format!("`{path}`: {inner}"))
            }
            serde_json::error::Category::Data => {
                ApiError::Validation(format!("request body: {inner}"))
            }
            _ => ApiError::BadJson(inner.to_string()),
        }
    })?;
    de.end().map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(req)
}

fn request_id(id: &Option<Extension<RequestId>>) -> String {
    id.as_ref()
        .and_then(|Extension(r)| r.header_value().to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// An admitted request: its concurrency permit (held until the response is done), its rows,
/// one update channel per row, and its arrival time.
type Admitted = (
    tokio::sync::OwnedSemaphorePermit,
    ValidRequest,
    Vec<UnboundedReceiver<JobUpdate>>,
    Instant,
);

/// Admission, validation and queueing shared by both generation routes. The concurrency
/// permit is taken before the body is read, so `--max-concurrent-requests` bounds the bodies
/// being buffered too.
async fn admit(state: &AppState, req: Request) -> Result<Admitted, ApiError> {
    let arrived = Instant::now();
    require_json(req.headers())?;
    let permit =
        state
            .concurrency
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                limit: state.limits.max_concurrent_requests,
                retry_after_s: RETRY_AFTER_S,
            })?;
    if !state.backend.is_ready() {
        return Err(ApiError::NotReady("the model is not ready yet".into()));
    }
    let body = read_body(req, state.limits.body_read_timeout_s).await?;
    let req = parse_body(body, state.limits.max_body_bytes)?;
    let valid = state.validator.validate(&req)?;
    let receivers = enqueue(state, &valid, arrived)?;
    Ok((permit, valid, receivers, arrived))
}

/// The body (within the `DefaultBodyLimit`), or 408 when it does not arrive in time: a client
/// that announces a body and then goes silent does not hold the connection.
async fn read_body(
    req: Request,
    timeout_s: u64,
) -> Result<Result<Bytes, BytesRejection>, ApiError> {
    tokio::time::timeout(
        Duration::from_secs(timeout_s),
        Bytes::from_request(req, &()),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout { seconds: timeout_s })
}

/// Queues one job per row; returns their update channels.
fn enqueue(
    state: &AppState,
    valid: &ValidRequest,
    arrived: Instant,
) -> Result<Vec<UnboundedReceiver<JobUpdate>>, ApiError> {
    let deadline = deadline(state, arrived);
    let mut receivers = Vec::with_capacity(valid.rows.len());
    let mut jobs = Vec::with_capacity(valid.rows.len());
    for row in &valid.rows {
        let (tx, rx) = unbounded_channel();
        receivers.push(rx);
        jobs.push(Job {
            request: row.request.clone(),
            updates: tx,
            enqueued: arrived,
            deadline,
        });
    }
    state.backend.submit(jobs)?;
    Ok(receivers)
}

fn finish_reason(r: FinishReason) -> FinishReasonApi {
    match r {
        FinishReason::Eos => FinishReasonApi::Eos,
        FinishReason::Length => FinishReasonApi::Length,
        FinishReason::Stop => FinishReasonApi::Stop,
    }
}

/// Scores by reward name.
type Scores = BTreeMap<String, Option<f64>>;

/// A finished row: its output, time in the queue, time decoding.
type Finished = (GenerationOutput, Duration, Duration);

/// When a request that arrived at `arrived` times out.
fn deadline(state: &AppState, arrived: Instant) -> Instant {
    arrived + Duration::from_secs(state.limits.request_timeout_s)
}

/// Scores one output with the reward models, on a blocking thread that holds a slot of the
/// scoring pool (`--max-concurrent-scoring`), within the request's `deadline`: when the slot
/// or the scores do not come in time the request gets generation's 504 timeout (a computation
/// already running finishes in the background, keeping its slot, so the pool bounds the work
/// itself). Returns the scores and the time they took, waiting for the slot included.
async fn score(
    state: &AppState,
    row: &ValidRow,
    output: &str,
    deadline: Instant,
) -> Result<(Scores, Duration), ApiError> {
    let started = Instant::now();
    let timeout = || ApiError::Timeout {
        seconds: state.limits.request_timeout_s,
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let slot = tokio::time::timeout_at(deadline, state.scoring.clone().acquire_owned())
        .await
        .map_err(|_| timeout())?
        .map_err(|_| ApiError::Internal("the scoring pool is closed".into()))?;
    let rewards = state.rewards.clone();
    let (question, output, gold) = (row.question.clone(), output.to_string(), row.gold.clone());
    let scoring = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let input = RewardInput {
            question: &question,
            output: &output,
            gold: gold.as_deref(),
        };
        rewards
            .iter()
            .map(|r| {
                let s = r
                    .score(&[input])
                    .ok()
                    .and_then(|v| v.into_iter().next().flatten());
                (r.name().to_string(), s)
            })
            .collect::<Scores>()
    });
    let scores = tokio::time::timeout_at(deadline, scoring)
        .await
        .map_err(|_| timeout())?
        .map_err(|e| ApiError::Internal(format!("scoring failed: {e}")))?;
    Ok((scores, started.elapsed()))
}

/// Builds a result from a finished row, with its scores when asked for (within the request's
/// deadline).
async fn result(
    state: &AppState,
    row: &ValidRow,
    (output, queue, inference): Finished,
    arrived: Instant,
    with_scores: bool,
) -> Result<RationaleResult, ApiError> {
    let (scores, scoring) = if with_scores {
        let (s, took) = score(state, row, &output.text, deadline(state, arrived)).await?;
        (Some(s), took)
    } else {
        (None, Duration::ZERO)
    };
    let parsed = parse_output(&output.text);
    Ok(RationaleResult {
        question: row.question.clone(),
        rationale: parsed.rationale,
        answer_missing: parsed.answer.as_ref().err().map(|m| m.reason().to_string()),
        answer: parsed.answer.ok(),
        text: output.text,
        control: row.control.clone(),
        finish_reason: finish_reason(output.finish_reason),
        generated_tokens: output.token_ids.len(),
        seed: row.request.params.seed,
        scores,
        timings: Timings {
            queue_ms: queue.as_secs_f64() * 1e3,
            inference_ms: inference.as_secs_f64() * 1e3,
            scoring_ms: scoring.as_secs_f64() * 1e3,
            total_ms: arrived.elapsed().as_secs_f64() * 1e3,
        },
    })
}

/// Waits for one row to finish.
async fn wait_row(rx: &mut UnboundedReceiver<JobUpdate>) -> Result<Finished, ApiError> {
    loop {
        match rx.recv().await {
            Some(JobUpdate::Token { .. }) => continue,
            Some(JobUpdate::Finished {
                output,
                queue,
                inference,
            }) => return Ok((output, queue, inference)),
            Some(JobUpdate::Failed(e)) => return Err(e),
            None => {
                return Err(ApiError::Internal(
                    "the model worker dropped the request".into(),
                ))
            }
        }
    }
}

/// Generate a rationale and an answer for one question or several.
///
/// Concurrent requests are batched together on the server. Decoding is greedy unless
/// `parameters.temperature` is at least 1e-5. `control` selects the quality bin of each reward
/// the model was trained with (`"best"` by default).
#[utoipa::path(
    post,
    path = "/rationalize",
    tag = "generation",
    request_body = RationalizeRequest,
    responses(
        (status = 200, description = "One result per question", body = RationalizeResponse),
        (status = 400, description = "Malformed JSON", body = super::api::ErrorResponse),
        (status = 401, description = "Missing or wrong API key (when the server has one)", body = super::api::ErrorResponse),
        (status = 408, description = "The body did not arrive within --body-read-timeout-s (the connection is closed)", body = super::api::ErrorResponse),
        (status = 413, description = "Body too large", body = super::api::ErrorResponse),
        (status = 415, description = "The body is not `content-type: application/json`", body = super::api::ErrorResponse),
        (status = 422, description = "Invalid request", body = super::api::ErrorResponse),
        (status = 429, description = "Too many concurrent requests (see Retry-After)", body = super::api::ErrorResponse),
        (status = 500, description = "Internal error: a generic message naming the request id (the details are in the server log)", body = super::api::ErrorResponse),
        (status = 503, description = "Queue full or model not ready (see Retry-After)", body = super::api::ErrorResponse),
        (status = 504, description = "The request (generation, then scoring with `score: true`) did not finish within --request-timeout-s", body = super::api::ErrorResponse),
    )
)]
pub async fn rationalize(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<RequestId>>,
    req: Request,
) -> Result<Json<RationalizeResponse>, ApiError> {
    let (_permit, valid, mut receivers, arrived) = admit(&state, req).await?;
    let timeout = Duration::from_secs(state.limits.request_timeout_s) + RESPONSE_GRACE;
    let mut results = Vec::with_capacity(valid.rows.len());
    for (row, rx) in valid.rows.iter().zip(receivers.iter_mut()) {
        let left = timeout.saturating_sub(arrived.elapsed());
        let finished = tokio::time::timeout(left, wait_row(rx))
            .await
            .map_err(|_| ApiError::Timeout {
                seconds: state.limits.request_timeout_s,
            })??;
        results.push(result(&state, row, finished, arrived, valid.score).await?);
    }
    Ok(Json(RationalizeResponse {
        request_id: request_id(&id),
        model: state.model_name.clone(),
        results,
    }))
}

/// The same as `/rationalize`, streamed as server-sent events.
///
/// Events: `token` (`StreamToken`: question index, token id, text added), `result`
/// (`{"index", "result"}` when a question is done), `error` (`ErrorResponse`, with `index`),
/// and a final `done`. Errors found before generation starts are returned as ordinary JSON
/// error responses.
#[utoipa::path(
    post,
    path = "/rationalize/stream",
    tag = "generation",
    request_body = RationalizeRequest,
    responses(
        (status = 200, description = "Server-sent events: token, result, error, done", content_type = "text/event-stream", body = StreamToken),
        (status = 400, description = "Malformed JSON", body = super::api::ErrorResponse),
        (status = 401, description = "Missing or wrong API key (when the server has one)", body = super::api::ErrorResponse),
        (status = 408, description = "The body did not arrive within --body-read-timeout-s (the connection is closed)", body = super::api::ErrorResponse),
        (status = 413, description = "Body too large", body = super::api::ErrorResponse),
        (status = 415, description = "The body is not `content-type: application/json`", body = super::api::ErrorResponse),
        (status = 422, description = "Invalid request", body = super::api::ErrorResponse),
        (status = 429, description = "Too many concurrent requests", body = super::api::ErrorResponse),
        (status = 500, description = "Internal error: a generic message naming the request id (the details are in the server log)", body = super::api::ErrorResponse),
        (status = 503, description = "Queue full or model not ready", body = super::api::ErrorResponse),
    )
)]
pub async fn rationalize_stream(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<RequestId>>,
    req: Request,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (permit, valid, receivers, arrived) = admit(&state, req).await?;
    let (tx, rx) = unbounded_channel::<(usize, JobUpdate)>();
    for (i, r) in receivers.into_iter().enumerate() {
        tokio::spawn(forward_row(i, r, tx.clone()));
    }
    drop(tx);
    let n = valid.rows.len();
    let stream = event_stream(StreamState {
        state: state.clone(),
        valid,
        rx,
        ids: vec![Vec::new(); n],
        texts: vec![String::new(); n],
        remaining: n,
        arrived,
        request_id: request_id(&id),
        _permit: permit,
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Forwards row `i`'s updates to the stream; a row whose channel closes without a final update
/// (the worker dropped it) gets an internal error instead of silence.
async fn forward_row(
    i: usize,
    mut row: UnboundedReceiver<JobUpdate>,
    to: tokio::sync::mpsc::UnboundedSender<(usize, JobUpdate)>,
) {
    while let Some(u) = row.recv().await {
        let last = matches!(u, JobUpdate::Finished { .. } | JobUpdate::Failed(_));
        if to.send((i, u)).is_err() || last {
            return; // after a final update, or the client went away: dropping `row` cancels it
        }
    }
    let lost = format!("the model worker dropped question {i} without a result");
    let _ = to.send((i, JobUpdate::Failed(ApiError::Internal(lost))));
}

/// Everything the event stream of one request owns.
struct StreamState {
    state: Arc<AppState>,
    valid: ValidRequest,
    rx: UnboundedReceiver<(usize, JobUpdate)>,
    ids: Vec<Vec<u32>>,
    texts: Vec<String>,
    remaining: usize,
    arrived: Instant,
    request_id: String,
    /// Held until the stream ends: the request counts as in flight until then.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl StreamState {
    /// The next event, or `None` when every row is done.
    async fn next_event(&mut self) -> Option<Event> {
        if self.remaining == 0 {
            return None;
        }
        let limit = Duration::from_secs(self.state.limits.request_timeout_s) + RESPONSE_GRACE;
        let left = limit.saturating_sub(self.arrived.elapsed());
        let (i, update) = match tokio::time::timeout(left, self.rx.recv()).await {
            Ok(Some(x)) => x,
            ended => {
                self.remaining = 0;
                let e = match ended {
                    Err(_) => ApiError::Timeout {
                        seconds: self.state.limits.request_timeout_s,
                    },
                    _ => ApiError::Internal("every row ended, some without a result".into()),
                };
                let body = e.client_body(&self.request_id);
                return Some(sse_json(
                    "error",
                    &serde_json::json!({"index": null, "error": body}),
                ));
            }
        };
        Some(match update {
            JobUpdate::Token { id } => {
                self.ids[i].push(id);
                let full = self
                    .state
                    .tokenizer
                    .decode(&self.ids[i])
                    .unwrap_or_default();
                let delta = full
                    .strip_prefix(self.texts[i].as_str())
                    .unwrap_or(&full)
                    .to_string();
                self.texts[i] = full;
                sse_json(
                    "token",
                    &StreamToken {
                        index: i,
                        id,
                        text: delta,
                    },
                )
            }
            JobUpdate::Finished {
                output,
                queue,
                inference,
            } => {
                self.remaining -= 1;
                let finished = (output, queue, inference);
                let row = &self.valid.rows[i];
                match result(&self.state, row, finished, self.arrived, self.valid.score).await {
                    Ok(r) => sse_json("result", &serde_json::json!({"index": i, "result": r})),
                    Err(e) => {
                        let body = e.client_body(&self.request_id);
                        sse_json("error", &serde_json::json!({"index": i, "error": body}))
                    }
                }
            }
            JobUpdate::Failed(e) => {
                self.remaining -= 1;
                let body = e.client_body(&self.request_id);
                sse_json("error", &serde_json::json!({"index": i, "error": body}))
            }
        })
    }
}

fn event_stream(st: StreamState) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(st, |mut st| async move {
        st.next_event().await.map(|e| (Ok(e), st))
    })
    .chain(futures_util::stream::once(async {
        Ok(Event::default().event("done").data("{}"))
    }))
}

fn sse_json<T: serde::Serialize>(kind: &str, v: &T) -> Event {
    Event::default()
        .event(kind)
        .json_data(v)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

/// Model, rewards and their bins, example questions, limits and version.
#[utoipa::path(get, path = "/info", tag = "service", responses((status = 200, body = Info), (status = 401, description = "Missing or wrong API key (when the server has one)", body = super::api::ErrorResponse)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Info> {
    Json(state.info.clone())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 once the weights are loaded and a warm-up batch ran, 503 before.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "service",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.backend.is_ready() {
        Json(Health {
            status: "ok".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(Health {
                status: "not_ready".into(),
            }),
        )
            .into_response()
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain", body = String), (status = 401, description = "Missing or wrong API key (only with --metrics-require-api-key)", body = super::api::ErrorResponse)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .metrics
        .queue_depth
        .set(state.backend.queue_depth() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, content_type = "application/json", body = Object), (status = 401, description = "Missing or wrong API key (when the server has one)", body = super::api::ErrorResponse)))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::openapi_json(),
    )
        .into_response()
}

/// Human-readable API documentation (no external assets).
#[utoipa::path(get, path = "/docs", tag = "service", responses((status = 200, content_type = "text/html", body = String), (status = 401, description = "Missing or wrong API key (when the server has one)", body = super::api::ErrorResponse)))]
pub async fn docs() -> Html<String> {
    Html(super::openapi::docs_html())
}

/// 404 with the standard error body.
pub async fn not_found() -> ApiError {
    ApiError::NotFoundRoute
}
