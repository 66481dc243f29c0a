//! The admission policy: which queued jobs join the batch in one iteration of the model
//! worker. It is a pure function of the batch's occupancy, the held-back jobs and a source of
//! queued jobs (a closure), so that it is unit-tested without a model, threads or clocks (like
//! text-generation-inference's `Queue::next_batch`).
//!
//! The policy:
//! - a job fits when the batch has a free row (`max_batch_size`) and its tokens (input, prefix
//!   and `max_new_tokens`) fit in the token budget (`max_batch_tokens`) next to the running
//!   rows; a job alone always fits (the start-up checks make one row fit the budget);
//! - a job that does not fit is held back, and while one is held nothing else joins: jobs are
//!   admitted first in, first out, and a large job is not overtaken forever by small ones;
//! - held-back jobs are offered first, every iteration;
//! - an idle worker blocks for the first job, then waits up to `max_batch_wait` for company;
//! - a running batch takes, between two steps, whatever has already arrived (continuous
//!   batching) without waiting.

use std::collections::VecDeque;

use super::scheduler::BatchLimits;

/// How long the worker may wait for the next queued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until one arrives (the worker is idle).
    Block,
    /// Until `max_batch_wait` after the first job of an idle worker arrived.
    BatchWait,
    /// Not at all: only a job that is already queued (a batch is running).
    No,
}

/// What a batch holds: rows, and tokens summed over them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Rows.
    pub rows: usize,
    /// Tokens (input + prefix + `max_new_tokens`, summed over the rows).
    pub tokens: usize,
}

impl Occupancy {
    /// Whether a job of `tokens` tokens fits next to what the batch holds.
    pub fn fits(&self, tokens: usize, limits: &BatchLimits) -> bool {
        self.rows < limits.max_batch_size
            && (self.rows == 0 || self.tokens + tokens <= limits.max_batch_tokens)
    }

    fn add(&mut self, tokens: usize) {
        self.rows += 1;
        self.tokens += tokens;
    }
}

/// The jobs that join a batch holding `running`, in order: held-back jobs first, then queued
/// ones taken from `next` (which returns `None` when no job came within the wait it was
/// asked for, or the queue is closed). A job that does not fit goes to the back of `held`.
/// `None` when the worker is idle (nothing running or held) and the queue is closed.
pub fn next_batch<J>(
    limits: &BatchLimits,
    running: Occupancy,
    held: &mut VecDeque<J>,
    tokens: impl Fn(&J) -> usize,
    mut next: impl FnMut(Wait) -> Option<J>,
) -> Option<Vec<J>> {
    let mut batch = running;
    let mut admitted = Vec::new();
    while let Some(job) = held.pop_front() {
        if batch.fits(tokens(&job), limits) {
            batch.add(tokens(&job));
            admitted.push(job);
        } else {
            held.push_front(job);
            break;
        }
    }
    if running.rows == 0 && admitted.is_empty() && held.is_empty() {
        // idle: the first job starts a batch whatever its size, then company for a moment
        let first = next(Wait::Block)?;
        batch.add(tokens(&first));
        admitted.push(first);
        take_queued(limits, &mut batch, &mut admitted, held, &tokens, || {
            next(Wait::BatchWait)
        });
    } else if held.is_empty() {
        // continuous batching: whatever arrived joins the running batch
        take_queued(limits, &mut batch, &mut admitted, held, &tokens, || {
            next(Wait::No)
        });
    }
    Some(admitted)
}

/// Takes queued jobs while rows are free, until one does not fit (held back) or none comes.
fn take_queued<J>(
    limits: &BatchLimits,
    batch: &mut Occupancy,
    admitted: &mut Vec<J>,
    held: &mut VecDeque<J>,
    tokens: &impl Fn(&J) -> usize,
    mut next: impl FnMut() -> Option<J>,
) {
    while batch.rows < limits.max_batch_size {
        let Some(job) = next() else { break };
        if batch.fits(tokens(&job), limits) {
            batch.add(tokens(&job));
            admitted.push(job);
        } else {
            held.push_back(job);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(max_batch_size: usize, max_batch_tokens: usize) -> BatchLimits {
        BatchLimits {
            max_batch_size,
            max_batch_tokens,
            max_batch_wait: Duration::from_millis(5),
        }
    }

    /// Jobs are their token counts; the queue is a list of them, and `waits` records how the
    /// policy asked for each.
    struct Queue {
        jobs: VecDeque<usize>,
        waits: Vec<Wait>,
        closed: bool,
    }

    impl Queue {
        fn of(jobs: &[usize]) -> Self {
            Self {
                jobs: jobs.iter().copied().collect(),
                waits: Vec::new(),
                closed: false,
            }
        }

        fn next(&mut self, w: Wait) -> Option<usize> {
            self.waits.push(w);
            if self.closed {
                return None;
            }
            self.jobs.pop_front()
        }
    }

    fn run(
        limits: &BatchLimits,
        running: (usize, usize),
        held: &mut VecDeque<usize>,
        queue: &mut Queue,
    ) -> Option<Vec<usize>> {
        let running = Occupancy {
            rows: running.0,
            tokens: running.1,
        };
        next_batch(limits, running, held, |&t| t, |w| queue.next(w))
    }

    #[test]
    fn an_idle_worker_blocks_for_the_first_job_then_waits_for_company() {
        let mut q = Queue::of(&[10, 20, 30]);
        let mut held = VecDeque::new();
        let got = run(&limits(8, 1000), (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [10, 20, 30]);
        assert!(held.is_empty());
        // the fourth ask found the queue empty: the batch starts with what came
        assert_eq!(
            q.waits,
            [
                Wait::Block,
                Wait::BatchWait,
                Wait::BatchWait,
                Wait::BatchWait
            ]
        );
    }

    #[test]
    fn an_idle_worker_stops_when_the_queue_is_closed() {
        let mut q = Queue::of(&[]);
        q.closed = true;
        assert_eq!(
            run(&limits(8, 1000), (0, 0), &mut VecDeque::new(), &mut q),
            None
        );
        assert_eq!(q.waits, [Wait::Block]);
    }

    #[test]
    fn a_job_alone_always_starts_even_over_the_token_budget() {
        let mut q = Queue::of(&[5000, 1]);
        let mut held = VecDeque::new();
        let got = run(&limits(8, 1000), (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [5000]);
        // the next job does not fit next to it: held back, not lost
        assert_eq!(held, [1]);
    }

    #[test]
    fn the_batch_size_caps_the_rows_taken() {
        let mut q = Queue::of(&[1, 1, 1, 1, 1]);
        let mut held = VecDeque::new();
        let got = run(&limits(3, 1000), (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [1, 1, 1]);
        assert!(held.is_empty(), "jobs past the batch size stay queued");
        assert_eq!(q.jobs.len(), 2);
        assert_eq!(
            q.waits.len(),
            3,
            "no job is asked for once the batch is full"
        );
    }

    #[test]
    fn the_token_budget_holds_back_the_first_job_that_does_not_fit_and_stops_there() {
        // 400 + 500 fit in 1000; 200 does not; 50 would, but must not overtake it
        let mut q = Queue::of(&[400, 500, 200, 50]);
        let mut held = VecDeque::new();
        let got = run(&limits(8, 1000), (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [400, 500]);
        assert_eq!(held, [200]);
        assert_eq!(q.jobs, [50]);
        // exactly at the budget fits
        let mut q = Queue::of(&[400, 600]);
        let got = run(&limits(8, 1000), (0, 0), &mut VecDeque::new(), &mut q).unwrap();
        assert_eq!(got, [400, 600]);
    }

    #[test]
    fn running_rows_count_against_both_limits() {
        // 2 of 3 rows and 900 of 1000 tokens in use
        let mut q = Queue::of(&[100, 1]);
        let mut held = VecDeque::new();
        let got = run(&limits(3, 1000), (2, 900), &mut held, &mut q).unwrap();
        assert_eq!(got, [100], "one row was free and 100 tokens fit");
        assert!(held.is_empty());
        let mut q = Queue::of(&[101]);
        let got = run(&limits(3, 1000), (2, 900), &mut held, &mut q).unwrap();
        assert!(got.is_empty());
        assert_eq!(held, [101]);
        // a full batch takes nothing and asks for nothing
        let mut q = Queue::of(&[1]);
        let got = run(&limits(3, 1000), (3, 3), &mut VecDeque::new(), &mut q).unwrap();
        assert!(got.is_empty());
        assert!(q.waits.is_empty());
    }

    #[test]
    fn a_running_batch_takes_what_arrived_without_waiting() {
        let mut q = Queue::of(&[1, 2]);
        let mut held = VecDeque::new();
        let got = run(&limits(8, 1000), (1, 10), &mut held, &mut q).unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(q.waits, [Wait::No, Wait::No, Wait::No]);
        // nothing queued: nothing joins, and the batch goes on
        let mut q = Queue::of(&[]);
        let got = run(&limits(8, 1000), (1, 10), &mut held, &mut q).unwrap();
        assert!(got.is_empty());
        assert_eq!(q.waits, [Wait::No]);
    }

    #[test]
    fn held_jobs_come_first_and_block_the_queue_until_they_fit() {
        let lim = limits(8, 1000);
        let mut held = VecDeque::from([600, 300]);
        // 500 tokens running: 600 does not fit yet; nothing is taken from the queue meanwhile
        let mut q = Queue::of(&[1]);
        let got = run(&lim, (1, 500), &mut held, &mut q).unwrap();
        assert!(got.is_empty());
        assert_eq!(held, [600, 300]);
        assert!(
            q.waits.is_empty(),
            "the queue is not read while a job is held"
        );
        // room for 600 only: it joins, 300 stays held, the queue is still not read
        let got = run(&lim, (1, 300), &mut held, &mut q).unwrap();
        assert_eq!(got, [600]);
        assert_eq!(held, [300]);
        assert!(q.waits.is_empty());
        // the batch finished: the held jobs start, then the queue joins without waiting
        let got = run(&lim, (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [300, 1]);
        assert!(held.is_empty());
        assert_eq!(q.waits, [Wait::No, Wait::No]);
    }

    #[test]
    fn a_held_job_is_not_lost_when_the_queue_closes() {
        let mut q = Queue::of(&[]);
        q.closed = true;
        let mut held = VecDeque::from([7]);
        let got = run(&limits(8, 1000), (0, 0), &mut held, &mut q).unwrap();
        assert_eq!(got, [7]);
    }

    #[test]
    fn occupancy_fits() {
        let lim = limits(2, 100);
        let empty = Occupancy::default();
        assert!(empty.fits(1000, &lim));
        let one = Occupancy {
            rows: 1,
            tokens: 60,
        };
        assert!(one.fits(40, &lim));
        assert!(!one.fits(41, &lim));
        let full = Occupancy { rows: 2, tokens: 2 };
        assert!(!full.fits(1, &lim));
    }
}
