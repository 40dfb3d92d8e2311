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
//! result is in. A round trip costs microseconds (a few in a stream of small jobs, tens
//! when threads must wake from sleep), so very small work is cheaper inline (lesson
//! `10_offload_cost`).
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
//! │ debug: time polls, watchdog thread        │      write per drain)
//! └──────────────────────────────────────────┘
//! ```
//!
//! One tick of the loop (`runtime.rs`, read top-down):
//!
//! 1. **React.** Work out how long the loop may sleep: not at all if tasks are queued, else
//!    until the nearest timer, else until something happens. Sleep in `epoll_wait` (mio),
//!    after spinning a few µs when recent spins caught remote wakes that fast, yielding
//!    the CPU to a runnable worker meanwhile; never with one usable CPU (`spin.rs`).
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
//! Each room imports only rooms below it; the one exception is the pair `context.rs` ↔
//! `runtime.rs` (the context hands out the loop's `Core`, and the loop enters the context).
//! `tests/architecture.rs` keeps it that way, and keeps every file under ~500 lines or
//! saying at its top why not.
//!
//! - `runtime.rs`: [`Runtime`], `Core` (one field per subsystem below) and the tick, read
//!   top-down: `block_on` → `react` → `fire_timers` → `run_ready`.
//! - `builder.rs`: [`Builder`] (debug mode, thresholds, report sink; the `ONELOOP_*`
//!   variables and the defaults).
//! - `context.rs`: the thread-local "current runtime" and the misuse messages; entering a
//!   runtime installs its run queue for its tasks' wakers.
//! - `task/`: `run_queue.rs` (what the loop polls next; a task's waker pushes onto it
//!   directly), `lifecycle.rs` (`Tasks`: spawn, poll, finish, cancel, the `JoinHandle`'s
//!   side), `table.rs` (the slab of task slots), `cell.rs` (one allocation per task);
//!   `id.rs`, `waiting.rs`, `error.rs` (the low rooms every part may name tasks with:
//!   [`task::Id`], what a task waits on, [`JoinError`]); and the public side: [`spawn`],
//!   [`JoinHandle`], [`task::JoinSet`], [`task::TaskGroup`], [`task::join_all`],
//!   [`task::Builder`].
//! - `waker.rs`: task wakers: a wake on the loop thread goes onto the run queue, any other
//!   through `Remote` (a locked queue and one coalesced `mio::Waker` write per drain).
//! - `reactor.rs`: the mio registry, token → waiting tasks, readiness.
//! - `io.rs`: a source registered with the reactor; the wait-on-`WouldBlock` cycle.
//! - `net/`: [`net::TcpListener`], [`net::TcpStream`] (and its halves), [`net::UdpSocket`].
//! - `time/`: `timers.rs` (`Timers`: the queue, the tick's clock, arming, refreshing,
//!   cancelling and firing), [`time::sleep`], [`time::timeout`], [`time::interval`].
//! - `sync/`: [`sync::Semaphore`], [`sync::oneshot`], [`sync::mpsc`].
//! - `offload/`: [`run_in_executor`], [`to_thread`] (`mod.rs`: every entry point takes one
//!   path) and the runtime's lazily started default pool (`default_pool.rs`); the pools
//!   themselves are in the `oneloop-pool` crate, re-exported as [`pool`].
//! - `handle.rs`: [`Handle`] for other threads, and [`RemoteJoinHandle`] (a oneshot
//!   channel underneath).
//! - `metrics.rs`: [`Metrics`], read from the subsystems' counters.
//! - `debug/` (its own map is in `debug/mod.rs`): reports (`report.rs`,
//!   [`debug::Report`]) and where they go (`reporter.rs`); the finished settings
//!   (`config.rs`); poll timing in windows and the watchdog (`watch/`: `windows.rs` on the
//!   loop, `watchdog.rs` on its thread, `shared.rs` between them); the loop thread's
//!   backtrace (`stack/`: `/proc` first, a signal handler that only copies, a
//!   frame-pointer walk over the copy) trimmed to the user's frames (`frames.rs`); the job
//!   observer (`jobs.rs`); the exit summary; the exit report of runtimes never dropped
//!   (`leaks.rs`); the trace file and its SIGINT/SIGTERM flush (`signals.rs`);
//!   `instruments.rs` ties them to the loop; `deadlock.rs`: the proofs of a deadlock
//!   (`DeadlockCheck`), the quiet-loop report.
//! - `block.rs`: waiting on a future from a plain thread (`block_thread_on`).
//! - `spin.rs`: the learned spin before the loop sleeps.
//! - `timerfd.rs`: waking on a timer's exact deadline, not on the next millisecond.
//!
//! # What the runtime takes from `oneloop-pool`, and why
//!
//! The runtime depends on the pool crate, never the other way round, and takes three
//! things from it:
//!
//! - **The job protocol** (`Job`, `JobHandle`, `JobBuilder`, `JobObserver`, the
//!   `Executor` trait): `run_in_executor` accepts any `Executor`, so offloading is one
//!   code path whatever runs the job, and debug mode watches jobs through the observer
//!   hooks instead of knowing how a pool works inside.
//! - **The default pool**: `to_thread` runs on a `ThreadPool` the runtime starts on first
//!   use (`offload/default_pool.rs`), rather than on a second pool of its own making.
//! - **The semaphore**: [`sync::Semaphore`] is the pool's fair semaphore, which also
//!   admits jobs to bounded pools, so a task waiting for a permit and a task waiting for
//!   room in a pool wait in the same FIFO, with the same cancel-safety.
//!
//! Beside those, the shared wake discipline (`oneloop_pool::wake`: user wakers called
//! after every lock and borrow, panics contained or re-raised), the `waiting` hook through
//! which the pool's futures tell the deadlock check what they wait on, and `block_on` for
//! plain threads. Keeping them in the lower crate lets the pool be used without the
//! runtime, and the runtime's own primitives follow the same rules as the pool's.
//!
//! # What oneloop promises
//!
//! Each promise names the tests that prove it (in the workspace's `tests/` package unless
//! a path says otherwise). Cross-thread hand-offs are model-checked with loom
//! (`tests/loom.rs`, a model per protocol in `tests/loom/`, each with negative controls
//! that must fail); the rest is tested adversarially, under a hang guard, without timing
//! thresholds.
//!
//! - **Every spawned task resolves exactly once, and its future is dropped exactly once,
//!   on the loop thread**: whether it finishes, panics while polled or panics in its
//!   `Drop`; whether its handle is dropped at once, after a poll, after it finished, or
//!   awaited; whether it is aborted before it runs, after it finished, or never.
//!   `reliability::every_task_ending_meets_every_handle_fate_and_abort`;
//!   `tasks::dropping_the_runtime_cancels_pending_tasks_and_drops_their_futures`.
//! - **A panic comes back as a value**: a task's as [`JoinError::Panicked`], a job's as
//!   `JobError::Panicked`; one nobody retrieves is reported (`OL003`), never lost and
//!   never an abort. `tasks::a_panic_in_a_task_reaches_its_handle_and_the_loop_carries_on`,
//!   `tasks::a_panic_nobody_retrieves_is_reported_with_the_task_s_name_and_site`,
//!   `pool_stress::panics_cancellations_and_drops_at_random_lose_nothing` (1,000,000 jobs,
//!   10 % panicking, 30 % of handles dropped or cancelled: every job that was not cancelled
//!   ran once, cancelled ones never ran, the counters add up, no worker is lost).
//! - **No wake-up is lost, and wakes are coalesced**: a task woken any number of times is
//!   polled after the last wake; cross-thread wakes cost one eventfd write per drain.
//!   `loom::remote_wake::remote_wakes_are_never_stranded`;
//!   `wakers::eight_threads_waking_a_thousand_tasks_a_hundred_thousand_times_each_lose_no_wake`
//!   (800,000 wakes: a few hundred eventfd writes);
//!   `wakers::a_thousand_remote_wakes_while_the_loop_is_busy_cost_one_eventfd_write`.
//! - **No job is stranded**: a submit always reaches a parking worker, jobs submitted from
//!   inside jobs run once, and shutdown runs or cancels every accepted job.
//!   `loom::worker_sleep::a_submit_always_reaches_a_parking_worker`,
//!   `loom::submission_gate::shutdown_runs_every_accepted_job`,
//!   `pool::jobs_spawned_from_inside_jobs_all_run_once`,
//!   `reliability::jobs_submitted_from_jobs_are_never_stranded_on_a_worker_deque_at_shutdown`,
//!   `pool_stress::shutdown_racing_four_submitting_threads_loses_nothing`,
//!   `pool_stress::submitting_from_inside_a_job_while_the_pool_shuts_down_loses_nothing`.
//! - **Cancellation is honest**: a job cancelled before it starts never runs; a running
//!   job is told through its token.
//!   `loom::job_slot::a_job_resolves_once_and_a_cancelled_job_never_runs`,
//!   `pool::cancelling_a_queued_job_means_it_never_runs`,
//!   `pool::a_running_job_cannot_be_cancelled_but_its_token_is_set`.
//! - **The Semaphore is fair and loses no permit**: grants in request order, a cancelled
//!   waiter hands on permits granted to it, a panicking waker strands nobody, and close
//!   wakes every waiter.
//!   `loom::semaphore::released_permits_go_to_the_head_first_and_a_panicking_waker_strands_nobody`,
//!   `loom::semaphore::close_wakes_every_waiter_even_when_a_waker_panics`,
//!   `loom::semaphore::a_permit_granted_to_a_cancelled_waiter_is_handed_on`,
//!   `properties::the_semaphore_grants_what_the_model_grants_in_the_same_order` (proptest
//!   against a reference model).
//! - **A task's future and output are dropped on the loop thread**, when it finishes, is
//!   cancelled or its output is read, whichever thread holds its waker (the waker and the
//!   task are one allocation; the last waker frees only memory).
//!   `wakers::what_a_task_holds_is_dropped_on_the_loop_thread_while_other_threads_keep_its_waker`.
//! - **Timers never fire early, fire in deadline order, and the loop does not spin while
//!   it waits for them.** `reliability::a_hundred_thousand_timers_fire_in_order_never_early_and_the_loop_does_not_spin`,
//!   `timers::the_loop_sleeps_until_a_timer_instead_of_spinning`, and the timer queue's
//!   tests in `runtime/src/time/timers.rs` (a proptest against a model, and W6's shape at
//!   full size).
//! - **No task starves the loop's other work**: a task that wakes itself forever still
//!   lets sockets and timers through; a task whose operations never have to wait (a
//!   pipelining client's connection, a channel never empty) yields after its budget of
//!   operations per poll ([`task::BUDGET`], [`task::unconstrained`]).
//!   `reliability::a_busy_self_waking_task_starves_neither_a_socket_nor_a_timer`,
//!   `fairness::a_pipelining_client_does_not_starve_another_connection`,
//!   `fairness::a_receiver_that_always_finds_a_value_lets_the_other_tasks_run`.
//! - **Nothing calls into a dead loop**: a waker, handle or timer used after its runtime is
//!   gone does nothing or fails with a clear error. `wakers::a_waker_used_after_its_runtime_is_dropped_does_nothing`,
//!   `handle::remote_handles_resolve_as_cancelled_when_the_runtime_is_dropped`.
//! - **Shutdown terminates and names what it leaves**: a pool's `shutdown_timeout` names
//!   the jobs still running; a runtime drops its pending tasks. `pool::shutdown_timeout_names_the_job_that_does_not_return`,
//!   `pool::shutdown_now_cancels_the_queue_and_lets_the_running_job_finish`.
//! - **A user waker may panic, or call back in, and nobody else pays**: wakers are
//!   collected under a lock and woken after it is released, all of them even if one
//!   panics; every count (permits, queued values, timers fired) is decided under the lock,
//!   so it stays conserved; no waker code (`wake`, `clone`, `drop`) runs under a oneloop
//!   lock or `RefCell` borrow (`oneloop_pool::wake`). A panic is re-raised to whoever
//!   triggered the wake once everyone is woken (out of `block_on` for the loop's own
//!   batches, after the step is complete), or contained where re-raising would lose a value
//!   or stop a worker or a shutdown.
//!   `panicking_wakers::add_permits_grants_every_waiter_it_fits_even_if_the_first_waker_panics`,
//!   `panicking_wakers::close_wakes_every_waiter_even_if_one_waker_panics`,
//!   `panicking_wakers::a_dropped_permit_hands_on_to_every_waiter_it_fits_across_a_panicking_waker`,
//!   `panicking_wakers::a_panicking_waker_of_a_submitter_waiting_for_room_cannot_take_a_worker_down`,
//!   `panicking_wakers::shutdown_now_wakes_every_blocked_submitter_even_if_one_waker_panics`,
//!   `panicking_wakers::every_due_timer_is_woken_even_if_one_waker_panics`, and the
//!   re-entrant wakers of `panicking_wakers::*_does_not_deadlock` and
//!   `panicking_wakers::wakers_that_look_into_the_runtime_are_never_cloned_or_dropped_under_its_borrows`.
//! - **Every primitive terminates**: readiness is cleared by the operation that consumed
//!   it and no I/O poll loops without bound; a closed receiver's `recv` ends; a job that
//!   submits to its own full pool never blocks on it; a panic inside the submission gate
//!   leaves it; a task's panic payload that panics when dropped still resolves its handle;
//!   the watchdog stops at once. The `regressions::` tests fixed in 79558e6 and fd5fb46
//!   (each hung, spun or escaped before).
//! - **A runtime may be dropped anywhere, and no input overflows**: a runtime, pool or
//!   handle kept in a `thread_local!` is dropped when its thread (or `main`) exits; every
//!   `Duration`, `Instant` or count saturates or is a clear error; a runtime that is never
//!   dropped is reported at exit in debug mode (`OL009`). `teardown::*`, `extremes::*`
//!   (property tests with extreme values), and the bugs found there in `regressions::*`.
//! - **A deadlock is named, never silent**: a `JoinHandle` cycle the `block_on` future
//!   depends on, or a loop where nothing can ever wake anything, panics with every pending
//!   task and what it waits on; a cycle beside a live `block_on` future is reported
//!   (`OL011`), and in debug mode a loop quiet on channels and semaphores too (`OL010`);
//!   the check follows one or two links while the `block_on` future can still be woken.
//!   `deadlock::*`,
//!   `regressions::a_join_handle_cycle_is_a_deadlock_even_while_an_unrelated_timer_is_armed`,
//!   `regressions::a_join_handle_cycle_is_a_deadlock_even_while_a_handle_exists`,
//!   `debug_mode::a_loop_that_can_never_progress_panics_naming_the_pending_tasks`.
//! - **Resources return to baseline**: threads, descriptors and memory.
//!   `pool_stress::pools_created_and_dropped_leave_no_thread_behind`,
//!   `net_resources::a_thousand_connect_accept_drop_cycles_leak_no_descriptor`,
//!   `net_resources::accept_without_descriptors_fails_backs_off_and_recovers`; and
//!   `.ci/leaks` runs the create/drop and million-job tests under valgrind (no definite
//!   leak).
//! - **A thread that cannot be created is an error, not a hang**: `build()` returns the OS
//!   error, a failed replacement is retried at a bounded rate and the pool recovers.
//!   `pool::a_pool_whose_threads_cannot_start_reports_the_os_error`,
//!   `pool::a_failed_replacement_is_retried_and_the_pool_recovers`.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod block;
mod builder;
mod context;
pub mod debug;
mod handle;
mod io;
mod metrics;
pub mod net;
mod offload;
mod reactor;
mod runtime;
mod spin;
pub mod sync;
pub mod task;
pub mod time;
mod timerfd;
mod waker;

/// The worker pools (`oneloop-pool`): [`ThreadPool`], the [`Executor`] trait, jobs.
pub use oneloop_pool as pool;

/// The README's code examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

pub use builder::Builder;
pub use handle::{Handle, RemoteJoinHandle};
pub use metrics::Metrics;
pub use offload::{Offload, run_in_executor, run_in_executor_with_token, to_thread};
pub use oneloop_pool::{CancelToken, Executor, JobError, ThreadPool};
pub use runtime::Runtime;
pub use task::{JoinError, JoinHandle, spawn};
