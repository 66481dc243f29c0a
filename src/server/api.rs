//! The HTTP API's request and response types (also the OpenAPI schemas).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which control tokens to use: `"best"` (default), `"worst"`, or a bin per reward
/// (`{"plausibility": 0, "diversity": 2}`; rewards not named get their best bin 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ControlSpec {
    /// `"best"` or `"worst"`.
    #[schema(example = "best")]
    Named(String),
    /// Reward name to bin (0 = best).
    Bins(BTreeMap<String, usize>),
}

/// One gold answer, or one per question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum GoldSpec {
    /// The gold answer of the single question.
    One(String),
    /// One gold answer per question, in order.
    Many(Vec<String>),
}

/// Decoding parameters. Omitted fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Most tokens to generate (1 ..= the server's `max_new_tokens`).
    #[schema(example = 96, minimum = 1)]
    pub max_new_tokens: Option<u32>,
    /// 0 = greedy (default); > 0 samples with this temperature. Temperatures below 1e-5 are
    /// too small to sample with and decode greedily, like 0.
    #[schema(example = 0.0, minimum = 0.0)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, in (0, 1].
    #[schema(example = 0.9, exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Sample from the k most likely tokens only (k >= 1).
    #[schema(example = 50, minimum = 1)]
    pub top_k: Option<u32>,
    /// Seed of the sampling; drawn at random (and returned) when absent.
    #[schema(example = 42)]
    pub seed: Option<u64>,
    /// Stop when the text contains one of these (the text is cut before it); each at most 256
    /// characters.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Never repeat an n-gram of this many tokens (0 = off). Default: the checkpoint's
    /// `generation_config.json`, else 0.
    #[schema(example = 3)]
    pub no_repeat_ngram_size: Option<u32>,
}

/// A rationalization request: one `question` or several `questions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"question": "Would a pear sink in water?", "control": "best",
    "parameters": {"max_new_tokens": 96}}))]
pub struct RationalizeRequest {
    /// A single question (with its answer choices inline, as in training). Plain text: one
    /// with no visible character (only whitespace, control or format characters such as
    /// zero-width spaces) is empty, and one with text the tokenizer reads as a special or
    /// control token (`</s>`, `<pad>`, `_TOKEN0_00000`, ...) is refused (422).
    pub question: Option<String>,
    /// Several questions (at most `max_client_batch_size`), each like `question`.
    pub questions: Option<Vec<String>>,
    /// Control tokens; default `"best"`.
    pub control: Option<ControlSpec>,
    /// Decoding parameters.
    pub parameters: Option<Parameters>,
    /// Return reward scores of each output. Scoring counts against the request's timeout (504
    /// when it does not finish in time) and runs at most `max_concurrent_scoring` questions at
    /// once (see `/info`); `timings.scoring_ms` is its time.
    #[serde(default)]
    pub score: bool,
    /// Gold answer(s), for the task-accuracy score.
    pub gold: Option<GoldSpec>,
}

/// A control token placed in the decoder prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ControlUsed {
    /// The reward.
    pub reward: String,
    /// Its bin (0 = best).
    pub bin: usize,
    /// The token.
    pub token: String,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    /// Waiting in the queue.
    pub queue_ms: f64,
    /// From joining a batch to the last token.
    pub inference_ms: f64,
    /// Computing `scores` (with `score: true`; waiting for a slot of the scoring pool
    /// included), 0 without.
    pub scoring_ms: f64,
    /// From arrival to response.
    pub total_ms: f64,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReasonApi {
    /// The model ended the text.
    Eos,
    /// `max_new_tokens` was reached.
    Length,
    /// A stop string was reached.
    Stop,
}

/// The output for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RationaleResult {
    /// The question.
    pub question: String,
    /// Text before the last "So the answer is".
    pub rationale: String,
    /// Text after it without the final period; null when there is none.
    pub answer: Option<String>,
    /// Why `answer` is null.
    pub answer_missing: Option<String>,
    /// The full generated text.
    pub text: String,
    /// The control tokens in the decoder prefix, in order.
    pub control: Vec<ControlUsed>,
    /// Why generation stopped.
    pub finish_reason: FinishReasonApi,
    /// Tokens generated (after the prefix, including a final `</s>`).
    pub generated_tokens: usize,
    /// The seed used.
    pub seed: u64,
    /// Reward scores (when `score` was set): name to score, null when not computable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<BTreeMap<String, Option<f64>>>,
    /// Timings.
    pub timings: Timings,
}

/// The response: one result per question, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RationalizeResponse {
    /// The request id (also in the `x-request-id` header).
    pub request_id: String,
    /// The model's name (its folder).
    pub model: String,
    /// One result per question.
    pub results: Vec<RationaleResult>,
}

/// A streamed token (SSE event `token`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamToken {
    /// Index of the question in the request.
    pub index: usize,
    /// Token id.
    pub id: u32,
    /// Text added by this token (may be empty while a character is incomplete).
    pub text: String,
}

/// An error (every 4xx and 5xx response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong, for people.
    #[schema(example = "`questions` holds 9 questions; at most 8 are allowed")]
    pub error: String,
    /// Stable machine-readable kind: `bad_json`, `payload_too_large`, `validation`,
    /// `overloaded`, `queue_full`, `not_ready`, `timeout`, `internal`.
    #[schema(example = "validation")]
    pub error_type: String,
}

/// One reward a model can be steered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RewardInfo {
    /// Name.
    pub name: String,
    /// `quantile` or `binary`.
    pub kind: String,
    /// Tokens per bin, best first.
    pub tokens: Vec<String>,
}

/// An example question (the checkpoint's `examples.json`, else a few generic ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Example {
    /// The question, as the model reads it (answer choices inline).
    #[schema(example = "Would a pear sink in water?")]
    pub question: String,
    /// Its gold answer, when known (send it as `gold` for the task-accuracy score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "no")]
    pub gold: Option<String>,
}

/// Server limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Questions per request.
    pub max_client_batch_size: usize,
    /// Tokens per question.
    pub max_input_tokens: usize,
    /// Largest `max_new_tokens`.
    pub max_new_tokens: usize,
    /// Rows decoded together.
    pub max_batch_size: usize,
    /// Token budget of a batch.
    pub max_batch_tokens: usize,
    /// Requests waiting for the model.
    pub max_queue: usize,
    /// Requests accepted at once.
    pub max_concurrent_requests: usize,
    /// Questions scored (`score: true`) at once; more wait for a slot within their deadline.
    pub max_concurrent_scoring: usize,
    /// Request body bytes.
    pub max_body_bytes: usize,
    /// Seconds before a request times out.
    pub request_timeout_s: u64,
    /// Seconds a client has to send a request body.
    pub body_read_timeout_s: u64,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// The model's name (its folder).
    pub model: String,
    /// Architecture summary (`t5 v1.0`, sizes).
    pub architecture: BTreeMap<String, serde_json::Value>,
    /// Rewards and their bins (empty without `mario.json`).
    pub rewards: Vec<RewardInfo>,
    /// Rewards `score: true` can compute.
    pub scores: Vec<String>,
    /// Example questions: the checkpoint's `examples.json`, else a few generic ones (the
    /// playground at `/` offers them).
    pub examples: Vec<Example>,
    /// Limits.
    pub limits: Limits,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Weight precision.
    pub dtype: String,
    /// mario's version.
    pub version: String,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `not_ready`.
    pub status: String,
}
