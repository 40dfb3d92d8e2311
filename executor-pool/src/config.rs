//! What a pool was built with: the [`Overflow`] policy and the `Config` the pool keeps.
//! `Builder` (`builder.rs`) collects them; the pool's state (`shared.rs`) holds the
//! `Config`, read by admission (`pool.rs`: the overflow policy) and by the workers
//! (`worker.rs`: thread names, stack sizes).

/// What a bounded pool does with a job when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it: `try_spawn` hands the closure back, `spawn` resolves the handle with
    /// [`JobError::Rejected`](crate::JobError::Rejected), an executor submission gets
    /// `RejectReason::Full`.
    Reject,
    /// Wait for room (the default): `spawn` blocks the calling thread, async submitters
    /// (oneloop's `run_in_executor`) wait without blocking, in FIFO order.
    #[default]
    Wait,
    /// Run it on the submitting thread, right away (natural backpressure for producer
    /// threads; on an event loop's thread it blocks the loop).
    CallerRuns,
}

/// A pool's settings, fixed when it is built. Written once by `Builder::build`; read by
/// admission (`overflow`, on every submission that finds the queue full) and by
/// `WorkerThread` (names and stack sizes, each time a thread is started).
pub(crate) struct Config {
    /// Worker threads are named `thread_name-index`.
    pub(crate) thread_name: String,
    /// The stack size a worker thread asks for; `None` takes the platform's.
    pub(crate) stack_size: Option<usize>,
    /// What a submission that finds the bounded queue full does.
    pub(crate) overflow: Overflow,
}
