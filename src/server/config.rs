//! Server configuration: command-line flags, each with a `MARIO_*` environment variable,
//! checked against each other at start-up.

use std::path::{Path, PathBuf};

use clap::Args;

use super::security::{check_origin, ApiKey};
use crate::device::{DeviceChoice, WeightType};
use crate::hub::{resolve_model_with, HubSettings, ModelSource, ResolvedModel};
use crate::model::CONFIG_FILE;

/// Largest timeout in seconds (a day): deadlines are `now + timeout`, which must not overflow.
pub const MAX_SECONDS: u64 = 86_400;
/// Largest `--max-batch-wait-ms` (a minute).
pub const MAX_BATCH_WAIT_MS: u64 = 60_000;
/// Largest `--max-queue`: the queue's slots are allocated at start-up.
pub const MAX_QUEUE: u64 = 1_000_000;

/// Everything `mario-server` can be configured with.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// The model: a checkpoint folder (config.json, model.safetensors or its shards,
    /// tokenizer.json, mario.json), or a Hugging Face Hub model id (owner/name) when no such
    /// folder exists, downloaded once into the Hugging Face cache (HF_HUB_CACHE, else
    /// $HF_HOME/hub, else ~/.cache/huggingface/hub; HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE=1
    /// are honoured).
    ///
    /// Without --model / MARIO_MODEL the default model is served, the first found of:
    /// <directory of the executable>/../share/mario/models/default (an installed copy), then
    /// the repository's models/default that the binary was built from.
    #[arg(long, env = "MARIO_MODEL", verbatim_doc_comment)]
    pub model: Option<PathBuf>,
    /// Revision of a Hub model id: a branch, tag or commit.
    #[arg(long, env = "MARIO_REVISION", default_value = crate::hub::DEFAULT_REVISION)]
    pub revision: String,
    /// The model as a local folder, once resolved (`ServerConfig::resolve_model`); `serve`
    /// resolves it when unset.
    #[arg(skip)]
    pub resolved: Option<ResolvedModel>,
    /// Address to listen on.
    #[arg(long, env = "MARIO_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "MARIO_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, env = "MARIO_DEVICE", default_value = "cpu")]
    pub device: DeviceChoice,
    /// Weight precision: f32 or bf16.
    #[arg(long, env = "MARIO_DTYPE", default_value = "f32")]
    pub dtype: WeightType,
    /// Most rows (questions) decoded together.
    #[arg(long, env = "MARIO_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Token budget of a batch: sum over rows of (input tokens + max_new_tokens).
    #[arg(long, env = "MARIO_MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// How long the first request of an idle server waits for others to batch with (ms).
    #[arg(long, env = "MARIO_MAX_BATCH_WAIT_MS", default_value_t = 5)]
    pub max_batch_wait_ms: u64,
    /// Rows waiting for the model; beyond it requests get 503.
    #[arg(long, env = "MARIO_MAX_QUEUE", default_value_t = 256)]
    pub max_queue: usize,
    /// Requests accepted at once; beyond it requests get 429.
    #[arg(long, env = "MARIO_MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    pub max_concurrent_requests: usize,
    /// Questions scored with the reward models (`score: true`) at once; more wait for a slot,
    /// within their request's timeout.
    #[arg(long, env = "MARIO_MAX_CONCURRENT_SCORING", default_value_t = 2)]
    pub max_concurrent_scoring: usize,
    /// Questions in one request.
    #[arg(long, env = "MARIO_MAX_CLIENT_BATCH_SIZE", default_value_t = 8)]
    pub max_client_batch_size: usize,
    /// Tokens of one question (its encoding, `</s>` included).
    #[arg(long, env = "MARIO_MAX_INPUT_TOKENS", default_value_t = 256)]
    pub max_input_tokens: usize,
    /// Largest `max_new_tokens` a request may ask for.
    #[arg(long, env = "MARIO_MAX_NEW_TOKENS", default_value_t = 256)]
    pub max_new_tokens: usize,
    /// `max_new_tokens` when a request does not say.
    #[arg(long, env = "MARIO_DEFAULT_MAX_NEW_TOKENS", default_value_t = 128)]
    pub default_max_new_tokens: usize,
    /// Stop strings per request.
    #[arg(long, env = "MARIO_MAX_STOP_SEQUENCES", default_value_t = 4)]
    pub max_stop_sequences: usize,
    /// Request body limit in bytes.
    #[arg(long, env = "MARIO_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Seconds before a request is abandoned with 504.
    #[arg(long, env = "MARIO_REQUEST_TIMEOUT_S", default_value_t = 120)]
    pub request_timeout_s: u64,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "MARIO_HEADER_READ_TIMEOUT_S", default_value_t = 10)]
    pub header_read_timeout_s: u64,
    /// Seconds a client has to send a request's body; then 408 and the connection is closed.
    #[arg(long, env = "MARIO_BODY_READ_TIMEOUT_S", default_value_t = 30)]
    pub body_read_timeout_s: u64,
    /// Connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, env = "MARIO_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds open connections get to finish at shutdown (Ctrl-C / SIGTERM) before they are
    /// closed.
    #[arg(long, env = "MARIO_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
    /// Threads for tensor work (default: all cores).
    #[arg(long, env = "MARIO_THREADS")]
    pub threads: Option<usize>,
    /// Log as JSON lines.
    #[arg(long, env = "MARIO_JSON_LOGS")]
    pub json_logs: bool,
    /// Require `Authorization: Bearer <key>` on every route but /health, /ready and /metrics.
    #[arg(long, env = "MARIO_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// With --api-key: /metrics needs the key too.
    #[arg(long, env = "MARIO_METRICS_REQUIRE_API_KEY")]
    pub metrics_require_api_key: bool,
    /// An origin browsers may call from (repeatable, or comma-separated in the variable; `*` =
    /// any). Default: none, no CORS headers.
    #[arg(long, env = "MARIO_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
}

#[derive(clap::Parser)]
struct Wrapper {
    #[command(flatten)]
    cfg: ServerConfig,
}

impl ServerConfig {
    /// Parses flags as the binary would (e.g. `["--model", "dir", "--port", "0"]`).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let argv = std::iter::once(std::ffi::OsString::from("mario-server"))
            .chain(args.into_iter().map(Into::into));
        Ok(Wrapper::try_parse_from(argv)?.cfg)
    }

    /// The model to serve as a local folder: `--model` (a folder, or a Hub id downloaded into
    /// the cache), else the first default of [`default_model_candidates`] that holds a
    /// `config.json`. The error says what was tried.
    pub fn resolve_model(&self) -> Result<ResolvedModel, String> {
        match &self.model {
            Some(arg) => {
                let m = resolve_model_with(arg, &self.revision, &HubSettings::from_env())
                    .map_err(|e| e.to_string())?;
                if !m.dir.join(CONFIG_FILE).is_file() {
                    return Err(format!(
                        "{} is not a model folder (no {CONFIG_FILE}); pass --model DIR or \
                         owner/name (or MARIO_MODEL), or leave it out to serve the default model",
                        m.dir.display()
                    ));
                }
                Ok(m)
            }
            None => default_model(&default_model_candidates()),
        }
    }

    /// Cross-checks the limits; the message names the flags.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--max-batch-size", self.max_batch_size),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-queue", self.max_queue),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-concurrent-scoring", self.max_concurrent_scoring),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--max-input-tokens", self.max_input_tokens),
            ("--max-new-tokens", self.max_new_tokens),
            ("--default-max-new-tokens", self.default_max_new_tokens),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-connections", self.max_connections),
            (
                "--header-read-timeout-s",
                self.header_read_timeout_s as usize,
            ),
            ("--body-read-timeout-s", self.body_read_timeout_s as usize),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if self.request_timeout_s == 0 {
            return Err("--request-timeout-s must be at least 1".into());
        }
        self.validate_ceilings()?;
        if self.default_max_new_tokens > self.max_new_tokens {
            return Err(format!(
                "--default-max-new-tokens ({}) exceeds --max-new-tokens ({})",
                self.default_max_new_tokens, self.max_new_tokens
            ));
        }
        let one_row = self
            .max_input_tokens
            .checked_add(self.max_new_tokens)
            .ok_or("--max-input-tokens + --max-new-tokens overflows")?;
        if self.max_batch_tokens < one_row {
            return Err(format!(
                "--max-batch-tokens ({}) cannot hold one row of --max-input-tokens + \
                 --max-new-tokens ({one_row})",
                self.max_batch_tokens
            ));
        }
        if self.max_client_batch_size > self.max_queue {
            return Err(format!(
                "--max-client-batch-size ({}) exceeds --max-queue ({}): such a request could \
                 never be queued",
                self.max_client_batch_size, self.max_queue
            ));
        }
        if self.dtype == WeightType::F16 {
            return Err(format!("--dtype {}: use f32 or bf16", self.dtype));
        }
        self.validate_access()
    }

    /// Values so large that deadlines, sums or up-front allocations would overflow.
    fn validate_ceilings(&self) -> Result<(), String> {
        let permits = tokio::sync::Semaphore::MAX_PERMITS as u64;
        let ceilings = [
            ("--request-timeout-s", self.request_timeout_s, MAX_SECONDS),
            (
                "--header-read-timeout-s",
                self.header_read_timeout_s,
                MAX_SECONDS,
            ),
            (
                "--body-read-timeout-s",
                self.body_read_timeout_s,
                MAX_SECONDS,
            ),
            ("--shutdown-timeout-s", self.shutdown_timeout_s, MAX_SECONDS),
            (
                "--max-batch-wait-ms",
                self.max_batch_wait_ms,
                MAX_BATCH_WAIT_MS,
            ),
            ("--max-queue", self.max_queue as u64, MAX_QUEUE),
            (
                "--max-concurrent-requests",
                self.max_concurrent_requests as u64,
                permits,
            ),
            (
                "--max-concurrent-scoring",
                self.max_concurrent_scoring as u64,
                permits,
            ),
            ("--max-connections", self.max_connections as u64, permits),
        ];
        for (flag, v, max) in ceilings {
            if v > max {
                return Err(format!("{flag} ({v}) is larger than {max}"));
            }
        }
        Ok(())
    }

    /// The API key and CORS flags.
    fn validate_access(&self) -> Result<(), String> {
        match &self.api_key {
            Some(key) => key.check()?,
            None if self.metrics_require_api_key => {
                return Err("--metrics-require-api-key needs --api-key (MARIO_API_KEY)".into())
            }
            None => {}
        }
        self.cors_allow_origin
            .iter()
            .try_for_each(|o| check_origin(o))
    }
}

/// Where the default model is looked for, in order: `<prefix>/share/mario/models/default`
/// for an executable in `<prefix>/bin/` (an installed copy next to the binary), then
/// `models/default` of the repository the binary was built from (its path at compile time).
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        dirs.push(prefix.join("share/mario/models/default"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default"));
    dirs
}

/// The first of `candidates` that holds a `config.json`, or an error listing them all.
pub fn default_model(candidates: &[PathBuf]) -> Result<ResolvedModel, String> {
    match candidates.iter().find(|d| d.join(CONFIG_FILE).is_file()) {
        Some(dir) => Ok(ResolvedModel {
            dir: dir.clone(),
            source: ModelSource::Folder,
        }),
        None => Err(format!(
            "no --model (or MARIO_MODEL) given, and no default model found; tried, in order: \
             {}. Pass --model DIR or a Hugging Face Hub id (owner/name), or install the \
             default model (models/default of the repository) at the first place",
            candidates
                .iter()
                .map(|d| format!(
                    "{} ({})",
                    d.display(),
                    if d.is_dir() {
                        "no config.json"
                    } else {
                        "absent"
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_is_a_weight_type_and_f16_is_refused() {
        let parse = |v: &str| ServerConfig::from_args(["--model", "m", "--dtype", v]);
        assert_eq!(parse("bf16").unwrap().dtype, WeightType::Bf16);
        assert_eq!(parse("f32").unwrap().dtype, WeightType::F32);
        assert!(parse("f32").unwrap().validate().is_ok());
        let err = parse("f16").unwrap().validate().unwrap_err();
        assert_eq!(err, "--dtype f16: use f32 or bf16");
        let err = parse("f64").unwrap_err().to_string();
        assert!(err.contains("use f32, bf16 or f16"), "{err}");
    }
}
