//! The model worker: the thread that owns the model, batches queued rows (as
//! [`super::admission`] decides), decodes them step by step, and keeps a failure to the row
//! that caused it.
//!
//! Rows are checked one by one before they join a batch: a row the engine refuses fails alone.
//! Every model call (prefill, decoding step) runs under `catch_unwind`. Which row made a
//! batched forward pass fail (an error or a panic) cannot be told from inside it, so when a
//! call fails for several rows at once they are run again, each alone: a prefill at once, a
//! running batch from the start, one row at a time (a retried row does not send its client the
//! tokens it already sent; new rows wait in the queue meanwhile). A row that fails alone fails
//! with an internal error (the client gets a generic message with the request id), and the
//! worker carries on with the next.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::admission::{next_batch, Occupancy, Wait};
use super::error::ApiError;
use super::metrics::Metrics;
use super::scheduler::{BatchLimits, FaultHook, Job, JobUpdate, FAULT_WARMUP_ENV};
use crate::checkpoint::Checkpoint;
use crate::generate::{
    check_request, DecodingBatch, GenerateError, GenerationParams, GenerationRequest, RowEvent,
    RowId,
};

/// A row of the running batch, or one waiting to be run again alone.
struct Active {
    job: Job,
    /// When it first joined a batch.
    started: Instant,
    /// Tokens its client has been sent.
    sent: usize,
    /// Tokens a retried row generates again before it sends new ones.
    skip: usize,
    /// Model calls made for it in this attempt (0: the prefill, then one per step).
    calls: usize,
}

impl Active {
    fn new(job: Job) -> Self {
        Self {
            job,
            started: Instant::now(),
            sent: 0,
            skip: 0,
            calls: 0,
        }
    }

    /// The same row, to be generated again from the start.
    fn retry(self) -> Self {
        Self {
            skip: self.sent,
            calls: 0,
            ..self
        }
    }
}

pub(super) struct Worker {
    pub(super) ckpt: Checkpoint,
    pub(super) limits: BatchLimits,
    pub(super) rx: Receiver<Job>,
    pub(super) depth: Arc<AtomicUsize>,
    pub(super) ready: Arc<AtomicBool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) fault: Option<FaultHook>,
}

#[derive(Default)]
struct LoopState {
    batch: Option<DecodingBatch>,
    active: HashMap<RowId, Active>,
    held: VecDeque<Job>,
    /// Rows of a failed batch, to be run again one at a time.
    retry: VecDeque<Active>,
    /// Whether the running batch is a row being run again alone (nothing joins it).
    alone: bool,
    next_id: RowId,
}

impl LoopState {
    /// Whether rows of a failed batch are being run again alone.
    fn isolating(&self) -> bool {
        !self.retry.is_empty() || (self.alone && self.batch.is_some())
    }

    fn ids(&mut self, n: usize) -> Vec<RowId> {
        (0..n)
            .map(|_| {
                self.next_id += 1;
                self.next_id
            })
            .collect()
    }
}

impl Worker {
    pub(super) fn run(
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
            // model calls catch their own panics; this is the last resort for the bookkeeping
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.iteration(&mut state)));
            match result {
                Ok(true) => {}
                Ok(false) => break,
                Err(panic) => {
                    let msg = format!("the model worker panicked: {}", panic_message(&panic));
                    self.fail_all(&mut state, &msg);
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

    /// Admits rows (or takes the next row to run again alone), prefills them, or runs one
    /// decoding step. Returns false when the queue is closed and nothing is left to do.
    fn iteration(&self, st: &mut LoopState) -> bool {
        let fresh = if st.isolating() {
            self.next_alone(st)
        } else {
            let Some(jobs) = self.admit(st) else {
                return false;
            };
            st.alone = false;
            self.activate(jobs)
        };
        let events = if fresh.is_empty() {
            self.step(st)
        } else {
            self.start(st, fresh)
        };
        self.dispatch(st, events);
        self.drop_dead_rows(st);
        true
    }

    /// The queued jobs that join the batch (see [`next_batch`]); `None` when the queue is
    /// closed and the worker idle.
    fn admit(&self, st: &mut LoopState) -> Option<Vec<Job>> {
        let running = Occupancy {
            rows: st.batch.as_ref().map_or(0, DecodingBatch::len),
            tokens: st.active.values().map(|a| a.job.tokens()).sum(),
        };
        let mut until = None;
        let jobs = next_batch(&self.limits, running, &mut st.held, Job::tokens, |wait| {
            self.receive(wait, &mut until)
        });
        self.metrics
            .queue_depth
            .set(self.depth.load(Ordering::SeqCst) as i64);
        jobs
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

    /// Admitted jobs that are still wanted, as rows (their time in the queue is recorded).
    fn activate(&self, mut jobs: Vec<Job>) -> Vec<Active> {
        let now = Instant::now();
        jobs.retain(|job| !self.stale(job, now));
        let rows: Vec<Active> = jobs.into_iter().map(Active::new).collect();
        for a in &rows {
            self.metrics
                .queue_duration
                .observe((a.started - a.job.enqueued).as_secs_f64());
        }
        rows
    }

    /// The next row of a failed batch to run again, alone, once the row before it is done.
    fn next_alone(&self, st: &mut LoopState) -> Vec<Active> {
        if st.batch.is_some() {
            return Vec::new();
        }
        st.alone = true;
        while let Some(a) = st.retry.pop_front() {
            if !self.stale(&a.job, Instant::now()) {
                return vec![a];
            }
        }
        Vec::new()
    }

    /// Whether a job (about to start, or running) is no longer wanted: its client left
    /// (cancelled) or its time is up (answered with a timeout); either is counted.
    fn stale(&self, job: &Job, now: Instant) -> bool {
        if job.updates.is_closed() {
            self.metrics
                .rows_cancelled
                .with_label_values(&["disconnect"])
                .inc();
            true
        } else if now >= job.deadline {
            self.metrics
                .rows_cancelled
                .with_label_values(&["timeout"])
                .inc();
            let _ = job.updates.send(JobUpdate::Failed(ApiError::Timeout {
                seconds: (job.deadline - job.enqueued).as_secs(),
            }));
            true
        } else {
            false
        }
    }

    /// Prefills new rows and adds them to the running batch. Rows the engine refuses fail
    /// alone; when the prefill of several rows fails, each is prefilled alone.
    fn start(&self, st: &mut LoopState, rows: Vec<Active>) -> Vec<RowEvent> {
        let rows = self.refuse_invalid(rows);
        if rows.len() > 1 {
            match self.prefill(st, &rows) {
                Ok((batch, ids, events)) => {
                    self.install(st, rows, ids, batch);
                    return events;
                }
                Err(e) => tracing::warn!(
                    "prefilling {} rows together failed ({e}); prefilling each alone",
                    rows.len()
                ),
            }
        }
        rows.into_iter()
            .flat_map(|a| self.start_alone(st, a))
            .collect()
    }

    /// Prefills one row and adds it to the batch; on failure it fails (no events).
    fn start_alone(&self, st: &mut LoopState, row: Active) -> Vec<RowEvent> {
        match self.prefill(st, std::slice::from_ref(&row)) {
            Ok((batch, ids, events)) => {
                self.install(st, vec![row], ids, batch);
                events
            }
            Err(e) => {
                self.fail(row, &format!("prefill failed: {e}"));
                Vec::new()
            }
        }
    }

    /// Rows the engine accepts; the others fail, each with its own error.
    fn refuse_invalid(&self, rows: Vec<Active>) -> Vec<Active> {
        rows.into_iter()
            .filter_map(|a| match check_request(&self.ckpt.model, &a.job.request) {
                Ok(()) => Some(a),
                Err(e) => {
                    self.fail(a, &format!("the engine refused the row: {e}"));
                    None
                }
            })
            .collect()
    }

    /// A prefilled batch of `rows`, their ids and first events.
    fn prefill(
        &self,
        st: &mut LoopState,
        rows: &[Active],
    ) -> Result<(DecodingBatch, Vec<RowId>, Vec<RowEvent>), String> {
        let ids = st.ids(rows.len());
        let requests = ids
            .iter()
            .zip(rows)
            .map(|(&id, a)| (id, a.job.request.clone()))
            .collect();
        let strike = rows.iter().any(|a| self.strikes(&a.job.request, 0));
        let (batch, events) = self.guarded(strike, || {
            DecodingBatch::prefill(&self.ckpt.model, &self.ckpt.tokenizer, requests)
        })?;
        Ok((batch, ids, events))
    }

    /// Adds prefilled rows to the running batch.
    fn install(&self, st: &mut LoopState, rows: Vec<Active>, ids: Vec<RowId>, new: DecodingBatch) {
        st.active.extend(ids.into_iter().zip(rows));
        let merged = match st.batch.take() {
            None => Ok(new),
            Some(mut b) => b.merge(new).map(|_| b),
        };
        match merged {
            Ok(b) => st.batch = Some(b),
            Err(e) => self.batch_failed(st, &format!("merging a batch failed: {e}")),
        }
    }

    /// One decoding step of the running batch.
    fn step(&self, st: &mut LoopState) -> Vec<RowEvent> {
        let Some(batch) = st.batch.as_mut() else {
            return Vec::new();
        };
        let t = Instant::now();
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut strike = false;
        for id in batch.row_ids() {
            if let Some(a) = st.active.get_mut(&id) {
                a.calls += 1;
                strike |= self.strikes(&a.job.request, a.calls);
            }
        }
        let stepped = self.guarded(strike, || {
            batch.step(&self.ckpt.model, &self.ckpt.tokenizer)
        });
        match stepped {
            Ok(events) => {
                self.metrics
                    .step_duration
                    .observe(t.elapsed().as_secs_f64());
                events
            }
            Err(e) => {
                self.batch_failed(st, &format!("decoding failed: {e}"));
                Vec::new()
            }
        }
    }

    /// Whether the fault hook makes the model call for this row panic.
    fn strikes(&self, request: &GenerationRequest, calls: usize) -> bool {
        self.fault.as_ref().is_some_and(|f| f(request, calls))
    }

    /// Runs a model call, turning an error or a panic into a message.
    fn guarded<T>(
        &self,
        strike: bool,
        call: impl FnOnce() -> Result<T, GenerateError>,
    ) -> Result<T, String> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            if strike {
                panic!("a fault injected by the scheduler's fault hook");
            }
            call().map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&panic))))
    }

    /// The running batch failed: a row alone fails; several are run again, each alone.
    fn batch_failed(&self, st: &mut LoopState, err: &str) {
        st.batch = None;
        let mut rows: Vec<(RowId, Active)> = st.active.drain().collect();
        rows.sort_by_key(|&(id, _)| id);
        if rows.len() == 1 {
            let (_, a) = rows.pop().expect("one row");
            self.fail(a, err);
        } else if !rows.is_empty() {
            tracing::warn!("{err}; running each of its {} rows again alone", rows.len());
            st.retry
                .extend(rows.into_iter().map(|(_, a)| Active::retry(a)));
        }
    }

    /// Fails one row with an internal error (its detail is logged, not sent).
    fn fail(&self, a: Active, detail: &str) {
        tracing::error!("a row failed: {detail}");
        let _ = a
            .job
            .updates
            .send(JobUpdate::Failed(ApiError::Internal(detail.to_string())));
    }

    fn dispatch(&self, st: &mut LoopState, events: Vec<RowEvent>) {
        for ev in events {
            match ev {
                RowEvent::Token { row, token, .. } => {
                    self.metrics.generated_tokens.inc();
                    if let Some(a) = st.active.get_mut(&row) {
                        if a.skip > 0 {
                            a.skip -= 1; // a retried row's client has this token already
                        } else {
                            a.sent += 1;
                            let _ = a.job.updates.send(JobUpdate::Token { id: token });
                        }
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
            .filter(|(_, a)| self.stale(&a.job, now))
            .map(|(&id, _)| id)
            .collect();
        if dead.is_empty() {
            return;
        }
        for id in &dead {
            st.active.remove(id);
        }
        if let Some(b) = st.batch.as_mut() {
            if let Err(e) = b.cancel(&dead) {
                self.batch_failed(st, &format!("cancelling rows failed: {e}"));
                return;
            }
            if b.is_empty() {
                st.batch = None;
            }
        }
    }

    /// Fails every row, running or waiting to run again (after a panic outside model calls).
    fn fail_all(&self, st: &mut LoopState, msg: &str) {
        tracing::error!("{msg}; failing every row");
        let rows = st.active.drain().map(|(_, a)| a).chain(st.retry.drain(..));
        for a in rows.collect::<Vec<_>>() {
            self.fail(a, msg);
        }
        st.batch = None;
        st.alone = false;
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
