//! The bounded queue and the model worker: dynamic batching between HTTP requests and the
//! engine.
//!
//! Handlers submit [`Job`]s (one per question) through a [`Backend`]. The [`Scheduler`] is the
//! real backend: a bounded queue (full: 503) read by one dedicated thread that owns the model.
//! The thread ([`super::worker`]) gathers jobs into a batch (up to `max_batch_size` rows and
//! `max_batch_tokens` tokens, waiting at most `max_batch_wait` for company when idle), decodes
//! it step by step, lets new jobs join a running batch between steps, removes finished rows,
//! cancels rows whose client went away or whose deadline passed, and keeps a failure to the
//! row that caused it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::mpsc::UnboundedSender;

use super::error::{ApiError, RETRY_AFTER_S};
use super::metrics::Metrics;
use super::worker::Worker;
use crate::checkpoint::Checkpoint;
use crate::generate::{GenerationOutput, GenerationRequest};

/// What the worker tells a job's owner.
#[derive(Debug)]
pub enum JobUpdate {
    /// A token was generated.
    Token {
        /// Its id.
        id: u32,
    },
    /// The row finished.
    Finished {
        /// The result.
        output: GenerationOutput,
        /// Time spent queued.
        queue: Duration,
        /// Time from joining a batch to the last token.
        inference: Duration,
    },
    /// The row failed (timeout, internal error).
    Failed(ApiError),
}

/// One row to generate, with the channel its updates go to.
#[derive(Debug)]
pub struct Job {
    /// The generation.
    pub request: GenerationRequest,
    /// Where updates go; when the receiver is dropped the row is cancelled.
    pub updates: UnboundedSender<JobUpdate>,
    /// When the job was queued.
    pub enqueued: Instant,
    /// When the job is abandoned with a timeout.
    pub deadline: Instant,
}

impl Job {
    /// Its tokens in a batch: input, prefix and `max_new_tokens`.
    pub fn tokens(&self) -> usize {
        self.request.input_ids.len()
            + self.request.prefix.len()
            + self.request.params.max_new_tokens
    }
}

/// The seam between HTTP and the engine (a test can provide its own).
pub trait Backend: Send + Sync + 'static {
    /// Queues jobs, all or none.
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError>;
    /// Whether the model is loaded and warmed up.
    fn is_ready(&self) -> bool;
    /// Jobs waiting in the queue.
    fn queue_depth(&self) -> usize;
}

/// Batching limits of the worker.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most rows decoded together.
    pub max_batch_size: usize,
    /// Most tokens (input + max_new_tokens, summed over rows) in a batch.
    pub max_batch_tokens: usize,
    /// How long an idle worker waits for more jobs after the first one.
    pub max_batch_wait: Duration,
}

/// The real backend: bounded queue + model worker thread.
pub struct Scheduler {
    tx: Sender<Job>,
    depth: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    capacity: usize,
}

/// How the warm-up ended: `Err` with the reason when it failed (the worker has stopped then).
pub type WarmUpOutcome = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// Set (in debug builds only) to make the warm-up fail: the tests' way to reach that path.
pub const FAULT_WARMUP_ENV: &str = "MARIO_FAULT_WARMUP";

/// Tests' way to make a model call panic: called before each prefill and decoding step with
/// each row's request and the number of model calls the row's current attempt has made (0:
/// its prefill, then 1, 2, ... for its steps); `true` makes that call panic. The server
/// passes none.
pub type FaultHook = Arc<dyn Fn(&GenerationRequest, usize) -> bool + Send + Sync>;

impl Scheduler {
    /// Starts the worker thread. It warms the model up (one batch at the largest shape),
    /// then marks the scheduler ready; the outcome of the warm-up is also sent on the returned
    /// channel. `fault` injects panics into model calls (tests only; see [`FaultHook`]).
    pub fn start(
        ckpt: Checkpoint,
        limits: BatchLimits,
        capacity: usize,
        warmup_input_tokens: usize,
        metrics: Arc<Metrics>,
        fault: Option<FaultHook>,
    ) -> (Self, std::thread::JoinHandle<()>, WarmUpOutcome) {
        let (warmed_tx, warmed) = tokio::sync::oneshot::channel();
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            ckpt,
            limits,
            rx,
            depth: depth.clone(),
            ready: ready.clone(),
            metrics,
            fault,
        };
        let handle = std::thread::Builder::new()
            .name("mario-model".into())
            .spawn(move || {
                crate::device::run_in_own_pool("mario-model", move || {
                    worker.run(warmup_input_tokens, warmed_tx)
                })
            })
            .expect("spawn the model thread");
        (
            Self {
                tx,
                depth,
                ready,
                capacity,
            },
            handle,
            warmed,
        )
    }
}

impl Backend for Scheduler {
    fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        if !self.is_ready() {
            return Err(ApiError::NotReady("the model is not ready yet".into()));
        }
        let n = jobs.len();
        // reserve room for all jobs of the request, or refuse them all
        let mut cur = self.depth.load(Ordering::SeqCst);
        loop {
            if cur + n > self.capacity {
                return Err(ApiError::QueueFull {
                    capacity: self.capacity,
                    retry_after_s: RETRY_AFTER_S,
                });
            }
            match self
                .depth
                .compare_exchange(cur, cur + n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        for job in jobs {
            match self.tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    // cannot happen with the reservation above; refuse the rest
                    return Err(ApiError::QueueFull {
                        capacity: self.capacity,
                        retry_after_s: RETRY_AFTER_S,
                    });
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(ApiError::NotReady("the model worker has stopped".into()))
                }
            }
        }
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}
