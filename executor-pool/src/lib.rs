//! oneloop-pool: worker pools for the blocking and CPU-heavy closures an event loop must
//! never run itself. It knows nothing of any runtime: a job's result is a plain `Future`
//! (and a blocking `join`), completed by waking a plain `std::task::Waker`.
//!
//! ```
//! use oneloop_pool::ThreadPool;
//!
//! let pool = ThreadPool::new(2)?;
//! let checksum = pool.spawn(|| (1..=1000u64).sum::<u64>());
//! assert_eq!(checksum.join(), Ok(500_500));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The mental model
//!
//! A **job** is a closure plus a slot for its result. Submitting it gives you a
//! [`JobHandle`]: await it (from any runtime) or `join` it (from a plain thread). The job
//! waits in a queue until a **worker thread** takes it, runs it, stores the result and
//! wakes whoever waits.
//!
//! ```text
//!  submit ──▶ injector ──▶ worker deques ◀─steal─▶ worker deques ──▶ run f()
//!  (any thread)  (global)    (jobs spawned from inside jobs)          │
//!      ▲                                                               ▼
//!  JobHandle ◀──────────── result slot + Waker::wake ◀──────── store the result
//! ```
//!
//! Every job resolves exactly once, whatever happens:
//!
//! - a **panic** comes back as [`JobError::Panicked`]; the worker and the pool carry on;
//! - **cancelling** (or dropping) the handle of a job that has not started means it never
//!   runs; a running job cannot be killed, so it finishes, its [`CancelToken`] is set and
//!   its result discarded;
//! - a **full** bounded queue refuses, waits or runs the job on the caller, as its
//!   [`Overflow`] policy says, and `try_spawn` hands the closure back;
//! - a job with a **deadline** that no worker reached in time fails fast and never runs;
//! - **shutdown** stops accepting, then finishes or cancels what is queued; nothing is lost
//!   silently; a pool whose workers die and cannot be replaced is **broken**, and every
//!   waiting handle says so.
//!
//! Rust has no GIL: workers run CPU-bound closures truly in parallel, so a pool sized to
//! the cores divides CPU work by its worker count.
//!
//! # Layout
//!
//! Imports go one way, top to bottom: the pool's handles never meet its workers except
//! through the state below both.
//!
//! - `pool.rs`: [`ThreadPool`], submission and admission, [`Stats`].
//! - `builder.rs`: [`Builder`], which starts a pool ([`ThreadPool::new`] too).
//! - `shutdown.rs`: the shutdown modes, waiting for the workers, [`ShutdownReport`].
//! - `worker.rs`: a worker's whole life: [`WorkerThread`], the loop, stealing, going to
//!   sleep, exiting, replacing dead workers, retrying the ones that could not start.
//! - `shared.rs`: the state a pool's handles and its workers both see, below both.
//! - `gate.rs`: the submission gate that shutdown closes and seals.
//! - `config.rs`: the [`Overflow`] policy and the settings a pool keeps.
//! - `executor.rs`: the [`Executor`] trait any pool can implement, and [`Rejected`], the
//!   job it hands back when it does not take one.
//! - `observers.rs`: the [`JobObserver`]s a pool attaches to the jobs it builds itself.
//! - `job/`: a job. `mod.rs`: [`Job`], [`CancelToken`], the types that share its slot;
//!   `cell.rs`: the slot and its state machine; `handle.rs`: [`JobHandle`]; `builder.rs`:
//!   [`JobBuilder`]; `info.rs`: [`JobInfo`] and the [`JobObserver`] hooks.
//! - `semaphore.rs`: the fair [`Semaphore`] behind bounded queues.
//! - `wake.rs`: calling user wakers safely (collect under the lock, wake after it, each
//!   panic contained): the rule every waiting structure here and in `oneloop` follows.
//! - `waiting.rs`: a hook through which a runtime learns what its tasks wait on;
//!   `observing.rs`: one through which other executors find the runtime's job observer.
//! - `block_on.rs`: waiting for a future on a plain thread.
//! - `error.rs`: [`JobError`], [`TrySpawnError`].
//! - `panic.rs`: [`panic_message`], the text of a caught panic.
//! - `rayon.rs` (feature `rayon`): a rayon pool as an [`Executor`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod block_on;
mod builder;
mod config;
mod error;
mod executor;
mod gate;
mod job;
mod observers;
pub mod observing;
mod panic;
mod pool;
#[cfg(feature = "rayon")]
mod rayon;
pub mod semaphore;
mod shared;
mod shutdown;
pub mod waiting;
pub mod wake;
mod worker;

pub use block_on::block_on;
pub use builder::Builder;
pub use config::Overflow;
pub use error::{JobError, TrySpawnError, WorkerDeath};
pub use executor::{Executor, RejectReason, Rejected};
pub use job::{CancelToken, Job, JobBuilder, JobHandle, JobInfo, JobObserver};
pub use panic::panic_message;
pub use pool::{Stats, ThreadPool};
#[cfg(feature = "rayon")]
pub use rayon::RayonExecutor;
pub use semaphore::Semaphore;
pub use shutdown::ShutdownReport;
pub use worker::WorkerThread;
