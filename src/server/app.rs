//! The router: routes, shared state, middleware (request id, metrics, tracing, body limit).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body::{Frame, SizeHint};
use tokio::sync::Semaphore;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use super::api::{Info, Limits, RewardInfo};
use super::config::ServerConfig;
use super::error::ApiError;
use super::metrics::Metrics;
use super::playground;
use super::routes;
use super::scheduler::Backend;
use super::security::{self, Access};
use super::validation::{ValidationLimits, Validator};
use crate::checkpoint::Checkpoint;
use crate::control::RewardKind;
use crate::hub::{ModelSource, ResolvedModel};
use crate::rewards::consistency::{I2O_DIR, IR2O_DIR};
use crate::rewards::{ConsistencyScorer, Diversity, PlausibilityScorer, Reward, TaskAccuracy};

/// Folder (inside a checkpoint) of the plausibility scorer served with `score: true`.
pub const PLAUSIBILITY_DIR: &str = "plausibility";

/// The rewards `score: true` computes: diversity and task accuracy always; consistency when
/// the checkpoint folder has `consistency-i2o/` and `consistency-ir2o/`; plausibility when it
/// has `plausibility/`. A reward model that fails to load is logged and left out.
fn load_rewards(ckpt: &Checkpoint) -> Vec<Box<dyn Reward>> {
    let mut rewards: Vec<Box<dyn Reward>> = vec![Box::new(Diversity), Box::new(TaskAccuracy)];
    let (dtype, device) = (ckpt.model.dtype(), ckpt.model.device());
    if ckpt.dir.join(I2O_DIR).is_dir() && ckpt.dir.join(IR2O_DIR).is_dir() {
        match ConsistencyScorer::load(&ckpt.dir, dtype, device) {
            Ok(s) => rewards.push(Box::new(s)),
            Err(e) => tracing::warn!("consistency reward not available: {e}"),
        }
    }
    let pl = ckpt.dir.join(PLAUSIBILITY_DIR);
    if pl.is_dir() {
        match PlausibilityScorer::load(&pl, dtype, device) {
            Ok(s) => rewards.push(Box::new(s)),
            Err(e) => tracing::warn!("plausibility reward not available: {e}"),
        }
    }
    rewards
}
use crate::tokenize::TextTokenizer;

/// Every route: (method, path). The OpenAPI drift test checks that each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/playground"),
    ("post", "/rationalize"),
    ("post", "/rationalize/stream"),
    ("get", "/info"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
];

/// The request-id header, set when absent and echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// State shared by the handlers.
pub struct AppState {
    /// The engine.
    pub backend: Arc<dyn Backend>,
    /// Request checks.
    pub validator: Validator,
    /// For streamed text.
    pub tokenizer: Arc<TextTokenizer>,
    /// Rewards `score: true` computes.
    pub rewards: Arc<Vec<Box<dyn Reward>>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// `GET /info`.
    pub info: Info,
    /// In-flight requests.
    pub concurrency: Arc<Semaphore>,
    /// Questions being scored (`score: true`): the scoring pool.
    pub scoring: Arc<Semaphore>,
    /// The model's name.
    pub model_name: String,
    /// Who may call.
    pub access: Access,
    /// Origins allowed by CORS (none: no CORS headers).
    pub cors_allow_origin: Vec<String>,
}

impl AppState {
    /// State for a loaded checkpoint and a backend.
    pub fn new(
        cfg: &ServerConfig,
        ckpt: &Checkpoint,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tokenizer = Arc::new(ckpt.tokenizer.clone());
        let limits = Limits {
            max_client_batch_size: cfg.max_client_batch_size,
            max_input_tokens: cfg.max_input_tokens,
            max_new_tokens: cfg.max_new_tokens,
            max_batch_size: cfg.max_batch_size,
            max_batch_tokens: cfg.max_batch_tokens,
            max_queue: cfg.max_queue,
            max_concurrent_requests: cfg.max_concurrent_requests,
            max_concurrent_scoring: cfg.max_concurrent_scoring,
            max_body_bytes: cfg.max_body_bytes,
            request_timeout_s: cfg.request_timeout_s,
            body_read_timeout_s: cfg.body_read_timeout_s,
        };
        let validator = Validator::new(
            tokenizer.clone(),
            ckpt.control.clone(),
            ValidationLimits {
                max_client_batch_size: cfg.max_client_batch_size,
                max_input_tokens: cfg.max_input_tokens,
                max_new_tokens: cfg.max_new_tokens,
                default_max_new_tokens: cfg.default_max_new_tokens,
                max_stop_sequences: cfg.max_stop_sequences,
                default_no_repeat_ngram_size: ckpt.generation.no_repeat_ngram_size.unwrap_or(0),
            },
        );
        let rewards = load_rewards(ckpt);
        let mc = ckpt.model.config();
        // a Hub id is served under its id, a folder under its name
        let model_name = match &cfg.resolved {
            Some(m) => m.name(),
            None => ResolvedModel {
                dir: ckpt.dir.clone(),
                source: ModelSource::Folder,
            }
            .name(),
        };
        let architecture: BTreeMap<String, serde_json::Value> = [
            (
                "variant",
                serde_json::json!(if mc.activation().map(|a| a.1).unwrap_or(false) {
                    "t5 v1.1 (gated)"
                } else {
                    "t5 v1.0"
                }),
            ),
            ("d_model", serde_json::json!(mc.d_model)),
            ("d_ff", serde_json::json!(mc.d_ff)),
            ("encoder_layers", serde_json::json!(mc.num_layers)),
            ("decoder_layers", serde_json::json!(mc.decoder_layers())),
            ("heads", serde_json::json!(mc.num_heads)),
            ("vocab_size", serde_json::json!(mc.vocab_size)),
            ("tied_head", serde_json::json!(mc.tie_word_embeddings)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let info = Info {
            model: model_name.clone(),
            architecture,
            rewards: ckpt
                .control
                .as_ref()
                .map(|t| {
                    t.rewards
                        .iter()
                        .map(|r| RewardInfo {
                            name: r.name.clone(),
                            kind: match r.kind {
                                RewardKind::Quantile => "quantile".into(),
                                RewardKind::Binary => "binary".into(),
                            },
                            tokens: r.tokens.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            scores: rewards.iter().map(|r| r.name().to_string()).collect(),
            examples: playground::examples(&ckpt.examples),
            limits: limits.clone(),
            device: if ckpt.model.device().is_cuda() {
                "cuda"
            } else {
                "cpu"
            }
            .into(),
            dtype: format!("{:?}", ckpt.model.dtype()).to_lowercase(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        Self {
            backend,
            validator,
            tokenizer,
            rewards: Arc::new(rewards),
            metrics,
            concurrency: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
            scoring: Arc::new(Semaphore::new(cfg.max_concurrent_scoring)),
            limits,
            info,
            model_name,
            access: Access {
                api_key: cfg.api_key.clone(),
                metrics_require_api_key: cfg.metrics_require_api_key,
            },
            cors_allow_origin: cfg.cors_allow_origin.clone(),
        }
    }
}

/// Request ids: a per-process random prefix and a counter.
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:08x}-{n:06}", self.prefix);
        Some(RequestId::new(id.parse().ok()?))
    }
}

/// The longest client-chosen `x-request-id` that is kept (echoed and logged); a longer one, or
/// one with characters other than visible ASCII, is replaced by a fresh id.
pub const MAX_CLIENT_REQUEST_ID: usize = 128;

/// Drops a client's `x-request-id` that is too long or not visible ASCII, so that the id layer
/// makes a fresh one instead of echoing and logging whatever the client sent.
async fn sanitize_request_id(
    mut req: axum::http::Request<axum::body::Body>,
    next: middleware::Next,
) -> axum::response::Response {
    let acceptable = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_CLIENT_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
    };
    if req
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_some_and(|v| !acceptable(v))
    {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(req).await
}

/// Logs an internal error with its request id and answers it with a generic message naming
/// that id (the detail never reaches the client).
async fn report_internal_errors(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let mut resp = next.run(req).await;
    match resp.extensions_mut().remove::<ApiError>() {
        Some(e) => (e.status(), axum::Json(e.client_body(&id))).into_response(),
        None => resp,
    }
}

/// The status recorded for a request whose client went away before it was answered (nginx's
/// "client closed request").
const CLIENT_CLOSED_STATUS: &str = "499";

/// One request in flight: counted in `mario_requests_in_flight` from arrival until dropped, then
/// counted by route and status and timed. Dropping it is what ends the request, so a handler
/// future dropped because its client hung up ends it too (status 499), and a response body that
/// holds it ([`Tracked`]) keeps the request in flight until its stream is done or dropped.
struct InFlight {
    metrics: Arc<Metrics>,
    route: String,
    started: Instant,
    status: Option<StatusCode>,
}

impl InFlight {
    fn start(metrics: Arc<Metrics>, route: String) -> Self {
        metrics.in_flight.inc();
        Self {
            metrics,
            route,
            started: Instant::now(),
            status: None,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.in_flight.dec();
        let status = self
            .status
            .as_ref()
            .map_or(CLIENT_CLOSED_STATUS, |s| s.as_str());
        m.requests
            .with_label_values(&[self.route.as_str(), status])
            .inc();
        m.request_duration
            .with_label_values(&[self.route.as_str()])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// A response body that ends its request's [`InFlight`] when it is finished or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts requests in flight, then by route and status, and their duration (arrival to the end
/// of the response body).
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut in_flight = InFlight::start(state.metrics.clone(), route);
    let resp = next.run(req).await;
    in_flight.status = Some(resp.status());
    resp.map(|body| {
        Body::new(Tracked {
            body,
            _in_flight: in_flight,
        })
    })
}

/// The application router.
pub fn router(state: Arc<AppState>) -> Router {
    let header = HeaderName::from_static(REQUEST_ID_HEADER);
    let ids = RequestIds {
        prefix: rand::random(),
        next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
    };
    let body_limit = state.limits.max_body_bytes;
    let cors = security::cors_layer(&state.cors_allow_origin);
    let app = Router::new()
        .route("/rationalize", post(routes::rationalize))
        .route("/rationalize/stream", post(routes::rationalize_stream))
        .route("/info", get(routes::info))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi_json))
        .route("/docs", get(routes::docs))
        .route("/", get(playground::index))
        .route("/playground", get(playground::page))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(report_internal_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::require_api_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track));
    // CORS outside the key check: a browser's preflight carries no credentials
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, ids))
        .layer(middleware::from_fn(sanitize_request_id))
        .with_state(state)
}
