//! oneloop: an asyncio-style runtime. One event loop on one thread runs your tasks; worker
//! pools run the blocking and CPU-heavy closures the loop must never run itself.
//!
//! ```
//! use std::time::Duration;
//!
//! oneloop::Runtime::new().block_on(async {
//!     let ticker = oneloop::spawn(async {
//!         for _ in 0..3 {
//!             oneloop::time::sleep(Duration::from_millis(5)).await;
//!         }
//!         "ticked"
//!     });
//!     assert_eq!(ticker.await, Ok("ticked"));
//! });
//! ```
//!
//! # The mental model
//!
//! Everything async happens on **one thread**, the loop thread, which runs one task at a
//! time. A task runs until it reaches an `.await` that is not ready, then hands the thread
//! back to the loop, which runs the next ready task. While a task computes without
//! awaiting, *nothing else runs*: no other task, no timer, no socket. That is why code that
//! blocks (a checksum, a parse, a blocking client call) belongs on a worker thread, and why
//! debug mode exists: it names the task that held the loop, and for how long.
//!
//! Because tasks never leave the loop thread, they need not be `Send`: an `Rc` or a
//! `RefCell` is fine inside them. What crosses threads (a waker, a [`Handle`], a channel
//! sender, an offloaded closure) is `Send` and goes through one narrow, locked path. That
//! is also what asyncio checks at run time when it pickles work for a process pool; Rust
//! checks it when the code compiles (see [`run_in_executor`]).
//!
//! Offloading ([`to_thread`], [`run_in_executor`]) is the cure for blocking: the closure
//! runs on a worker thread of a pool (`oneloop-pool`), the task awaits its result without
//! holding the loop, and the worker wakes the task through the remote path below when the
//! result is in. A round trip costs tens of microseconds, so very small work is cheaper
//! inline (lesson `10_offload_cost`).
//!
//! # How it works
//!
//! ```text
//!            loop thread (block_on)                       other threads
//! ┌──────────────────────────────────────────┐
//! │ run queue ──poll──▶ task (in a slab)      │
//! │    ▲                  │ registers waker   │
//! │    │ wake             ▼                   │
//! │ reactor (mio::Poll) ◀── mio::Waker ◀──────┼──── Waker::wake(), Handle::spawn
//! │ timers (deadline → waker)                 │     (remote queue + one eventfd
//! │ debug: time every poll, watchdog thread   │      write per drain)
//! └──────────────────────────────────────────┘
//! ```
//!
//! One tick of the loop (`runtime.rs`, read top-down):
//!
//! 1. **Park.** Work out how long the loop may sleep: not at all if tasks are queued, else
//!    until the nearest timer, else until something happens. Sleep in `epoll_wait` (mio).
//!    Readiness events wake the tasks waiting on those sockets; the eventfd's event means
//!    other threads woke tasks, so their remote queue is drained into the run queue.
//! 2. **Timers.** Every timer whose deadline has passed wakes its task. Never early.
//! 3. **Run.** Poll the tasks that were ready when this step began, each once, at most
//!    128 of them, so sockets and timers get a look between batches however busy the
//!    tasks are. The `block_on` future is polled first when it was woken; when it
//!    completes, `block_on` returns.
//!
//! A woken task is queued at most once, however often it is woken. Tasks live in a slab
//! whose keys carry a generation, so the waker of a finished task whose slot was reused
//! wakes nobody. Wakes from other threads are coalesced: the first one since the loop's
//! last drain writes the eventfd, the rest only queue.
//!
//! # Layout
//!
//! - `runtime.rs`: [`Runtime`], `block_on` and the tick; deadlock detection; [`Metrics`].
//! - `builder.rs`: [`Builder`] (debug mode, threshold, report sink).
//! - `context.rs`: the thread-local "current runtime" and the misuse messages.
//! - `waker.rs`: task wakers, local vs remote wake, the coalesced `mio::Waker`.
//! - `reactor.rs`: the mio registry, token → waiting tasks, readiness.
//! - `io.rs`: a source registered with the reactor; the wait-on-`WouldBlock` cycle.
//! - `net/`: [`net::TcpListener`], [`net::TcpStream`] (and its halves), [`net::UdpSocket`].
//! - `task/`: spawning, [`JoinHandle`], [`task::JoinSet`], [`task::TaskGroup`],
//!   [`task::join_all`], the task table.
//! - `time/`: [`time::sleep`], [`time::timeout`], [`time::interval`] and the timer queue.
//! - `sync/`: [`sync::Semaphore`], [`sync::oneshot`], [`sync::mpsc`].
//! - `offload.rs`: [`run_in_executor`], [`to_thread`]: closures on worker threads
//!   (the pools themselves are in the `oneloop-pool` crate, re-exported as [`pool`]).
//! - `handle.rs`: [`Handle`] for other threads, and [`RemoteJoinHandle`].
//! - `debug/`: reports ([`debug::Report`]); poll timing, the watchdog and backtraces; the
//!   job observer; the exit summary; the trace file; `instruments.rs` ties them to the loop.
//! - `park.rs`: waiting on a future from a plain thread.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod context;
pub mod debug;
mod handle;
mod io;
pub mod net;
mod offload;
mod park;
mod reactor;
mod runtime;
mod spin;
pub mod sync;
pub mod task;
pub mod time;
mod waker;

/// The worker pools (`oneloop-pool`): [`ThreadPool`], the [`Executor`] trait, jobs.
pub use oneloop_pool as pool;

/// The README's code examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

pub use builder::Builder;
pub use handle::{Handle, RemoteJoinHandle};
pub use offload::{Offload, run_in_executor, run_in_executor_with_token, to_thread};
pub use oneloop_pool::{CancelToken, Executor, JobError, ThreadPool};
pub use runtime::{Metrics, Runtime};
pub use task::{JoinError, JoinHandle, spawn};
