//! The bounded queue and the model worker: dynamic batching between HTTP requests and the
//! engine.
//!
//! Handlers submit [`Job`]s (one per question) through a [`Backend`]. The [`Scheduler`] is the
//! real backend: a bounded queue (full: 503) read by one dedicated thread that owns the model.
//! The thread gathers jobs into a batch (up to `max_batch_size` rows and `max_batch_tokens`
//! tokens, waiting at most `max_batch_wait` for company when idle), decodes it step by step,
//! lets new jobs join a running batch between steps, removes finished rows, and cancels rows
//! whose client went away or whose deadline passed.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::mpsc::UnboundedSender;

use super::admission::{next_batch, Occupancy, Wait};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::checkpoint::Checkpoint;
use crate::generate::{
    DecodingBatch, GenerationOutput, GenerationParams, GenerationRequest, RowEvent, RowId,
};

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
    fn tokens(&self) -> usize {
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

impl Scheduler {
    /// Starts the worker thread. It warms the model up (one batch at the largest shape),
    /// then marks the scheduler ready; the outcome of the warm-up is also sent on the returned
    /// channel.
    pub fn start(
        ckpt: Checkpoint,
        limits: BatchLimits,
        capacity: usize,
        warmup_input_tokens: usize,
        metrics: Arc<Metrics>,
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
                    retry_after_s: 1,
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
                        retry_after_s: 1,
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

/// A row in the running batch.
struct Active {
    job: Job,
    started: Instant,
}

struct Worker {
    ckpt: Checkpoint,
    limits: BatchLimits,
    rx: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(
        self,
        warmup_input_tokens: usize,
        warmed: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) {
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.warm_up(warmup_input_tokens)))
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&panic))));
        match outcome {
            Ok(d) => tracing::info!("warm-up batch done in {:.2} s; ready", d.as_secs_f64()),
            Err(e) => {
                tracing::error!("warm-up failed: {e}");
                let _ = warmed.send(Err(e));
                return;
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        let _ = warmed.send(Ok(()));
        let mut state = LoopState::default();
        loop {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.iteration(&mut state)));
            match result {
                Ok(true) => {}
                Ok(false) => break,
                Err(panic) => {
                    let msg = panic_message(&panic);
                    tracing::error!("model worker panicked: {msg}; failing its rows");
                    for (_, a) in state.active.drain() {
                        let _ = a.job.updates.send(JobUpdate::Failed(ApiError::Internal(
                            "the model worker failed on this batch".into(),
                        )));
                    }
                    state.batch = None;
                }
            }
        }
        tracing::info!("model worker stopped");
    }

    /// One batch at the largest shape, so that memory problems show before serving.
    fn warm_up(&self, input_tokens: usize) -> Result<Duration, String> {
        if cfg!(debug_assertions) && std::env::var_os(FAULT_WARMUP_ENV).is_some() {
            return Err(format!(
                "injected by {FAULT_WARMUP_ENV} (debug builds only)"
            ));
        }
        let t = Instant::now();
        let model = &self.ckpt.model;
        let pad_free = self.ckpt.tokenizer.eos_id().max(3) + 1;
        let id = pad_free.min(model.config().vocab_size as u32 - 1);
        let mut ids = vec![id; input_tokens.max(2) - 1];
        ids.push(self.ckpt.tokenizer.eos_id());
        let rows = (0..self.limits.max_batch_size as u64)
            .map(|i| {
                (
                    i,
                    GenerationRequest {
                        input_ids: ids.clone(),
                        prefix: vec![],
                        params: GenerationParams {
                            max_new_tokens: 2,
                            min_new_tokens: 2,
                            ..Default::default()
                        },
                    },
                )
            })
            .collect();
        let (mut batch, _) =
            DecodingBatch::prefill(model, &self.ckpt.tokenizer, rows).map_err(|e| e.to_string())?;
        while !batch.is_empty() {
            batch
                .step(model, &self.ckpt.tokenizer)
                .map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed())
    }

    /// Admits jobs, prefills them, runs one decoding step. Returns false when the queue is
    /// closed and nothing is left to do.
    fn iteration(&self, st: &mut LoopState) -> bool {
        let running = Occupancy {
            rows: st.batch.as_ref().map_or(0, DecodingBatch::len),
            tokens: st.active.values().map(|a| a.job.tokens()).sum(),
        };
        let mut until = None;
        let Some(mut admitted) =
            next_batch(&self.limits, running, &mut st.held, Job::tokens, |wait| {
                self.receive(wait, &mut until)
            })
        else {
            return false;
        };
        self.metrics
            .queue_depth
            .set(self.depth.load(Ordering::SeqCst) as i64);

        // jobs whose client left or whose time is up never start
        let now = Instant::now();
        admitted.retain(|job| {
            if job.updates.is_closed() {
                self.metrics
                    .rows_cancelled
                    .with_label_values(&["disconnect"])
                    .inc();
                false
            } else if now >= job.deadline {
                self.metrics
                    .rows_cancelled
                    .with_label_values(&["timeout"])
                    .inc();
                let _ = job.updates.send(JobUpdate::Failed(ApiError::Timeout {
                    seconds: (job.deadline - job.enqueued).as_secs(),
                }));
                false
            } else {
                true
            }
        });

        let mut events = Vec::new();
        if !admitted.is_empty() {
            let rows: Vec<(RowId, GenerationRequest)> = admitted
                .iter()
                .map(|j| {
                    st.next_id += 1;
                    (st.next_id, j.request.clone())
                })
                .collect();
            let ids: Vec<RowId> = rows.iter().map(|r| r.0).collect();
            let started = Instant::now();
            for job in &admitted {
                self.metrics
                    .queue_duration
                    .observe((started - job.enqueued).as_secs_f64());
            }
            match DecodingBatch::prefill(&self.ckpt.model, &self.ckpt.tokenizer, rows) {
                Ok((new_batch, ev)) => {
                    for (id, job) in ids.into_iter().zip(admitted) {
                        st.active.insert(id, Active { job, started });
                    }
                    events.extend(ev);
                    let merged = match st.batch.take() {
                        None => Ok(new_batch),
                        Some(mut b) => b.merge(new_batch).map(|_| b),
                    };
                    match merged {
                        Ok(b) => st.batch = Some(b),
                        Err(e) => {
                            self.fail_all(st, &format!("merging a batch failed: {e}"));
                            return true;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("prefill failed: {e}");
                    for job in admitted {
                        let _ = job
                            .updates
                            .send(JobUpdate::Failed(ApiError::Internal(format!(
                                "generation failed: {e}"
                            ))));
                    }
                }
            }
        } else if let Some(batch) = st.batch.as_mut() {
            let t = Instant::now();
            self.metrics.batch_size.observe(batch.len() as f64);
            match batch.step(&self.ckpt.model, &self.ckpt.tokenizer) {
                Ok(ev) => events.extend(ev),
                Err(e) => {
                    self.fail_all(st, &format!("decoding failed: {e}"));
                    return true;
                }
            }
            self.metrics
                .step_duration
                .observe(t.elapsed().as_secs_f64());
        }
        self.dispatch(st, events);
        self.drop_dead_rows(st);
        true
    }

    /// The next queued job, waiting as the admission policy says (the batch-wait deadline is
    /// set when it is first asked for, right after an idle worker's first job).
    fn receive(&self, wait: Wait, until: &mut Option<Instant>) -> Option<Job> {
        let job = match wait {
            Wait::Block => self.rx.recv().ok(),
            Wait::BatchWait => {
                let deadline =
                    *until.get_or_insert_with(|| Instant::now() + self.limits.max_batch_wait);
                self.rx.recv_deadline(deadline).ok()
            }
            Wait::No => self.rx.try_recv().ok(),
        };
        if job.is_some() {
            self.depth.fetch_sub(1, Ordering::SeqCst);
        }
        job
    }

    fn dispatch(&self, st: &mut LoopState, events: Vec<RowEvent>) {
        for ev in events {
            match ev {
                RowEvent::Token { row, token, .. } => {
                    self.metrics.generated_tokens.inc();
                    if let Some(a) = st.active.get(&row) {
                        let _ = a.job.updates.send(JobUpdate::Token { id: token });
                    }
                }
                RowEvent::Finished { row, output } => {
                    if let Some(a) = st.active.remove(&row) {
                        let inference = a.started.elapsed();
                        self.metrics
                            .inference_duration
                            .observe(inference.as_secs_f64());
                        let _ = a.job.updates.send(JobUpdate::Finished {
                            output,
                            queue: a.started - a.job.enqueued,
                            inference,
                        });
                    }
                }
            }
        }
        if st.batch.as_ref().is_some_and(DecodingBatch::is_empty) {
            st.batch = None;
        }
    }

    /// Cancels rows whose client disconnected or whose deadline passed.
    fn drop_dead_rows(&self, st: &mut LoopState) {
        let now = Instant::now();
        let dead: Vec<RowId> = st
            .active
            .iter()
            .filter(|(_, a)| a.job.updates.is_closed() || now >= a.job.deadline)
            .map(|(&id, _)| id)
            .collect();
        if dead.is_empty() {
            return;
        }
        for id in &dead {
            let a = st.active.remove(id).expect("listed above");
            if a.job.updates.is_closed() {
                self.metrics
                    .rows_cancelled
                    .with_label_values(&["disconnect"])
                    .inc();
            } else {
                self.metrics
                    .rows_cancelled
                    .with_label_values(&["timeout"])
                    .inc();
                let _ = a.job.updates.send(JobUpdate::Failed(ApiError::Timeout {
                    seconds: (a.job.deadline - a.job.enqueued).as_secs(),
                }));
            }
        }
        if let Some(b) = st.batch.as_mut() {
            if let Err(e) = b.cancel(&dead) {
                self.fail_all(st, &format!("cancelling rows failed: {e}"));
                return;
            }
            if b.is_empty() {
                st.batch = None;
            }
        }
    }

    fn fail_all(&self, st: &mut LoopState, msg: &str) {
        tracing::error!("{msg}");
        for (_, a) in st.active.drain() {
            let _ = a
                .job
                .updates
                .send(JobUpdate::Failed(ApiError::Internal(msg.to_string())));
        }
        st.batch = None;
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[derive(Default)]
struct LoopState {
    batch: Option<DecodingBatch>,
    active: HashMap<RowId, Active>,
    held: VecDeque<Job>,
    next_id: RowId,
}
