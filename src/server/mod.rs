//! `mario-server`: HTTP serving of a MaRio checkpoint.
//!
//! - [`config`]: flags and `MARIO_*` variables, cross-checked at start-up;
//! - [`api`]: request and response types (the OpenAPI schemas);
//! - [`validation`]: requests to generation rows, or 422;
//! - [`admission`]: which queued rows join the running batch (a pure, unit-tested policy);
//! - [`scheduler`]: the bounded queue, the [`scheduler::Backend`] seam and the model worker
//!   that batches rows dynamically (`worker`: its loop, which keeps a failure to its row);
//! - [`routes`], [`app`]: handlers, router, middleware;
//! - [`http`]: connections: their cap, header-read timeout and the drain at shutdown;
//! - [`security`]: API key, `application/json` bodies, CORS;
//! - [`error`]: the one error enum and its HTTP mapping;
//! - [`metrics`]: Prometheus metrics;
//! - [`openapi`]: the OpenAPI document and the offline docs page;
//! - [`playground`]: the browser page at `/` (one embedded HTML file) and its example questions.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use clap::Parser;
//! use mario::server::{serve, ServerConfig};
//!
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] server: ServerConfig }
//! let cfg = Cli::parse_from(["mario-server", "--model", "models/default", "--port", "0"]).server;
//! serve(cfg, |addr| println!("listening on {addr}")).await?;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod api;
pub mod app;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod playground;
pub mod routes;
pub mod scheduler;
pub mod security;
pub mod validation;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

pub use app::{router, AppState};
pub use config::ServerConfig;

use crate::checkpoint::Checkpoint;
use http::ConnectionLimits;
use metrics::Metrics;
use scheduler::{BatchLimits, Scheduler};

/// Loads the model, starts the worker and serves until Ctrl-C / SIGTERM; in-flight requests
/// are finished before it returns. `on_listen` gets the bound address.
pub async fn serve(cfg: ServerConfig, on_listen: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    serve_until(cfg, on_listen, shutdown_signal()).await
}

/// [`serve`], stopping gracefully when `shutdown` completes.
pub async fn serve_until(
    cfg: ServerConfig,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cfg.validate()
        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
    let device = cfg.device.open().map_err(|e| anyhow!("--device: {e}"))?;
    let dtype = cfg.dtype.dtype();
    let model = match cfg.resolved.clone() {
        Some(m) => m,
        None => {
            let c = cfg.clone();
            tokio::task::spawn_blocking(move || c.resolve_model())
                .await?
                .map_err(|e| anyhow!(e))?
        }
    };
    let model_dir = model.dir.clone();
    let ckpt = tokio::task::spawn_blocking(move || Checkpoint::load(&model_dir, dtype, &device))
        .await?
        .with_context(|| format!("loading the model from {}", model.dir.display()))?;
    tracing::info!(model = %model.describe(), "model loaded");
    let metrics = Arc::new(Metrics::new());
    let (scheduler, worker, warmed) = Scheduler::start(
        ckpt.clone(),
        BatchLimits {
            max_batch_size: cfg.max_batch_size,
            max_batch_tokens: cfg.max_batch_tokens,
            max_batch_wait: Duration::from_millis(cfg.max_batch_wait_ms),
        },
        cfg.max_queue,
        cfg.max_input_tokens,
        metrics.clone(),
        None,
    );
    let cfg = ServerConfig {
        resolved: Some(model),
        ..cfg
    };
    let state = Arc::new(AppState::new(&cfg, &ckpt, Arc::new(scheduler), metrics));
    let app = router(state);
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
        .await
        .with_context(|| format!("binding {}:{}", cfg.host, cfg.port))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    on_listen(addr);
    let serving =
        http::serve_connections(listener, app, ConnectionLimits::from_config(&cfg), shutdown);
    let failed = tokio::select! {
        _ = serving => None,
        reason = warm_up_failure(warmed) => Some(reason),
    };
    tracing::info!("HTTP server stopped; waiting for the model worker");
    // the router (and with it the queue's sender) is dropped: the worker drains and exits
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    match failed {
        // a server that cannot run its model must not stay up answering /health
        Some(reason) => Err(anyhow!("the warm-up batch failed: {reason}")),
        None => Ok(()),
    }
}

/// Completes with the reason if the warm-up fails; never if it succeeds.
async fn warm_up_failure(warmed: scheduler::WarmUpOutcome) -> String {
    match warmed.await {
        Ok(Ok(())) => std::future::pending().await,
        Ok(Err(reason)) => reason,
        Err(_) => "the model worker stopped during the warm-up".into(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
