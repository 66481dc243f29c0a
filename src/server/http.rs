//! The connection layer under the router: accepts at most `--max-connections` connections at a
//! time (past that, new ones wait in the listen backlog), serves each with hyper's HTTP/1.1 and
//! a header-read timeout (`--header-read-timeout-s`, which also closes idle keep-alive
//! connections), and at shutdown stops accepting, lets open requests finish and closes whatever
//! is still open after `--shutdown-timeout-s`. The body-read timeout is the handlers' (see
//! [`super::routes`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::config::ServerConfig;

/// Pause after a failed `accept` (e.g. out of file descriptors) before the next try, so the
/// accept loop waits instead of spinning.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Limits of the connection layer.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a client has for a request's headers (and an idle connection for its next one).
    pub header_read_timeout: Duration,
    /// Time open connections get to finish at shutdown.
    pub shutdown_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits a configuration sets.
    pub fn from_config(cfg: &ServerConfig) -> Self {
        Self {
            max_connections: cfg.max_connections,
            header_read_timeout: Duration::from_secs(cfg.header_read_timeout_s),
            shutdown_timeout: Duration::from_secs(cfg.shutdown_timeout_s),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // e.g. out of file descriptors: wait instead of spinning
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
        };
        let conn = serve_one(
            stream,
            app.clone(),
            limits.header_read_timeout,
            stop_rx.clone(),
        );
        conns.spawn(hold_slot(conn, slot));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drain(conns, limits.shutdown_timeout).await;
}

async fn hold_slot(conn: impl Future<Output = ()>, _slot: OwnedSemaphorePermit) {
    conn.await
}

/// One connection: served until it ends, or asked to finish its request and close at shutdown.
async fn serve_one(
    stream: TcpStream,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stop.wait_for(|&s| s) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

/// Waits for the open connections for at most `deadline`, then closes the rest.
async fn drain(mut conns: JoinSet<()>, deadline: Duration) {
    let all_done = tokio::time::timeout(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !all_done {
        tracing::warn!(
            open = conns.len(),
            "connections still open after --shutdown-timeout-s ({} s); closing them",
            deadline.as_secs()
        );
        conns.shutdown().await;
    }
}
