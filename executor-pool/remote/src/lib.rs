//! Remote executors for oneloop: the registered functions of a process pool
//! ([`process_fn!`](oneloop_process::process_fn)), run by workers on other machines, through
//! a Redis stream.
//!
//! A service that outgrows one machine hands calls to a fleet: [`RedisExecutor`] on the
//! submitting side, [`Worker`] (or [`serve`]) in the worker binaries, which link the same
//! functions. The call looks as it does on a process pool:
//!
//! ```no_run
//! oneloop_process::process_fn! {
//!     pub fn checksum(data: Vec<u8>) -> u32 {
//!         data.iter().map(|&b| u32::from(b)).sum()
//!     }
//! }
//!
//! // The service:
//! let remote = oneloop_remote::RedisExecutor::connect("redis://10.0.0.5/", "checksums")?;
//! let sum = oneloop_pool::block_on(remote.call(checksum, vec![1, 2, 3]));
//!
//! // Each worker machine runs a binary whose `main` is:
//! oneloop_remote::serve("redis://10.0.0.5/", "checksums")?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The mental model
//!
//! - **The queue is a Redis stream** (`oneloop:<queue>`), read by the workers as one
//!   consumer group: each entry goes to one worker, stays in that worker's pending list
//!   while it runs, and is acknowledged and deleted in the same transaction that writes its
//!   reply. Nothing but Redis sits between the two sides; no broker of ours.
//! - **Replies come back on the submitter's own stream**, read by a thread of the
//!   executor, which resolves the call's future and wakes its task (through the runtime's
//!   cross-thread wake, when it is a oneloop task). The reply stream expires when its
//!   reader is gone ([`Builder::reply_ttl`]).
//! - **Each worker runs calls in a process pool of its own**: a segfault, an abort, a
//!   runaway call killed at its deadline fail that call, as on a local process pool
//!   ([`JobError::WorkerDied`], [`JobError::TimedOut`]), and the worker carries on.
//! - **Delivery is at least once.** A worker that dies mid-call (its machine, its process)
//!   leaves the entry pending; once it has given no sign of life for the visibility
//!   timeout ([`WorkerBuilder::visibility_timeout`]; live workers renew their entries),
//!   another worker claims the entry and runs it again (`XPENDING ... IDLE` then `XCLAIM`
//!   with the same minimum idle time: `XAUTOCLAIM`'s effect, plus the name of the worker
//!   that held it, which the error below needs), up to
//!   [`Builder::max_attempts`] starts, after which the caller gets
//!   [`JobError::AttemptsExhausted`] naming the workers that took it. A Redis server
//!   restarted without its data is noticed by the submitter, which queues its calls in
//!   flight again. **Functions should therefore be idempotent**; [`RemoteCall::attempt`]
//!   tells the caller which start answered.
//! - **Threads, never a hidden runtime**: the executor has two threads, a worker one per
//!   process of its pool plus one; each owns a synchronous connection of the `redis` crate,
//!   with timeouts, made again with a backoff when it breaks.
//!
//! # Failures
//!
//! | what happened | the call resolves to |
//! |---|---|
//! | Redis cannot be reached when the call is queued | `JobError::Unreachable` (the reason), at once |
//! | the connection breaks while the call runs | nothing yet: the threads reconnect, and the reply is read when it comes (or the call's limit passes) |
//! | the call's limit passed before a worker took it | `JobError::DeadlineExpired` (removed from the queue) |
//! | the call's limit passed while it ran | `JobError::TimedOut` (killed on its worker) |
//! | the caller dropped or cancelled the call | `JobError::Cancelled` (removed from the queue, or killed on its worker, [`Builder::cancel_running`]) |
//! | the function panicked | `JobError::Panicked`, naming the worker |
//! | its process on the worker died | `JobError::WorkerDied` (pid, signal, stderr tail, the worker) |
//! | the workers that took it died, `max_attempts` times | `JobError::AttemptsExhausted` (attempts, workers) |
//! | the worker's binary has no such function (another version) | `JobError::Arguments`, naming the worker and the key |
//! | arguments or result over `max_payload`, or not encodable | `JobError::Arguments` / `JobError::Result` |
//! | `max_in_flight` calls in flight, overflow `Reject` | `JobError::Rejected` |
//! | the executor was shut down | `JobError::Shutdown` |
//!
//! # Layout
//!
//! - `executor.rs`: [`RedisExecutor`], [`Builder`]; `config.rs`: its settings; `client/`:
//!   its sending and reading threads; `call.rs`: [`RemoteCall`]; `answer.rs`: what a call
//!   resolves to, below both.
//! - `worker/`: [`Worker`], [`serve`]: the slots that take and run calls (`slot.rs`), and
//!   the watch thread (`watch.rs`: cancellations, renewals, takeovers).
//! - `protocol.rs`: the keys and the messages; `link.rs`: a connection that comes back.
//! - `testing.rs`: [`testing::RedisServer`], a throwaway server for tests and demos.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod answer;
mod call;
mod client;
mod config;
mod executor;
mod link;
mod protocol;
pub mod testing;
mod worker;

pub use call::RemoteCall;
pub use executor::{Builder, RedisExecutor};
pub use oneloop_pool::JobError;
pub use worker::{Stopper, Worker, WorkerBuilder, serve};
