//! The runtime: `Runtime`, the loop's state (`Core`, a struct of subsystems), and one tick.
//! (Long because `Runtime`'s documentation sits beside the loop it documents; the tick
//! itself, `block_on` down to `defer_panic`, is about 200 lines.)
//!
//! Read this file top-down to follow one tick: [`Core::block_on`] loops over
//! 1. `react`: sleep in the reactor for as long as nothing is ready (zero if tasks are
//!    queued, else until the nearest timer, else until I/O or a remote wake), then drain
//!    the remote queue if another thread woke us;
//! 2. `fire_timers`: wake every timer that is due;
//! 3. poll the `block_on` future if it was woken, and `run_ready`: poll the tasks that
//!    were ready at the start of this step (a bounded batch, so I/O and timers are never
//!    starved by tasks that keep waking each other).
//!
//! Each subsystem is a type in its own room, and none of them knows `Core`: the run queue
//! (`task/run_queue.rs`, which a task's waker pushes onto directly), the tasks' life cycle
//! (`task/lifecycle.rs`), the reactor (`reactor.rs`), the timers (`time/timers.rs`), the
//! default pool (`offload/default_pool.rs`), deadlock detection (`debug/deadlock.rs`) and
//! debug mode (`debug/instruments.rs`). What other threads may touch is `Remote`
//! (`waker.rs`). Everything else here lives on the loop thread.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{Location, resume_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use oneloop_pool::ThreadPool;
use oneloop_pool::wake::{self, Panic};

use crate::Builder;
use crate::builder::Config;
use crate::context;
use crate::debug::Reporter;
use crate::debug::deadlock::{BeforeSleep, DeadlockCheck};
use crate::debug::instruments::Instruments;
use crate::debug::leaks::Running;
use crate::metrics::Metrics;
use crate::offload::default_pool::DefaultPool;
use crate::reactor::Reactor;
use crate::spin::Spin;
use crate::task::JoinHandle;
use crate::task::id::{MAIN_KEY, TaskRef};
use crate::task::lifecycle::{Polled, Tasks};
use crate::task::run_queue::RunQueue;
use crate::task::waiting::Waiting;
use crate::time::timers::Timers;
use crate::waker::{Remote, RemoteOp, TaskWaker};

/// The most tasks polled between two looks at the reactor. Each look is an `epoll_wait`
/// system call (a few hundred ns), so a batch of 128 polls amortizes it well, while a
/// socket or timer that becomes ready waits behind at most 128 polls.
const MAX_BATCH: usize = 128;

/// Hands out runtime ids, so a timer or socket can tell which runtime it belongs to.
static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// An event loop on the current thread: tasks, timers, I/O, and the bridge for other
/// threads.
///
/// `block_on` runs the loop until the given future completes; tasks spawned meanwhile run
/// alongside it. A `Runtime` is `!Send`: its tasks need not be `Send`, and it never leaves
/// the thread that created it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = oneloop::Runtime::new();
/// let total = rt.block_on(async {
///     let a = oneloop::spawn(async { 1 });
///     oneloop::time::sleep(Duration::from_millis(1)).await;
///     a.await.unwrap() + 1
/// });
/// assert_eq!(total, 2);
/// ```
///
/// A runtime stays on the thread that made it:
///
/// ```compile_fail
/// let rt = oneloop::Runtime::new();
/// std::thread::spawn(move || rt.block_on(async {})); // error: Runtime is not Send
/// ```
///
/// # Implementation notes
///
/// Dropping the runtime cancels every task still running (their futures are dropped on
/// this thread), resolves every outstanding `JoinHandle` and `RemoteJoinHandle` to
/// `Cancelled`, stops the debug watchdog, and shuts the default pool down (waiting for its
/// running jobs up to
/// [`default_pool_shutdown_timeout`](Builder::default_pool_shutdown_timeout)). It may be
/// dropped anywhere on its thread, a `thread_local!` included: there it drops when the
/// thread exits (for `main`, inside `exit`), and the tasks it drops then may find no
/// current runtime (a destructor that calls `oneloop::spawn` panics, which the task's
/// cancellation contains). Only `block_on` cannot run from a thread-local's destructor.
///
/// **Leaks.** A task that holds an `Rc` of its own runtime makes a cycle: the runtime owns
/// the task and the task owns the runtime, so neither is ever dropped, and the runtime's
/// tasks, its watchdog thread and its default pool's threads live until the process exits.
/// `mem::forget` does the same. Give tasks a [`Handle`](crate::Handle) (to spawn onto the loop) or a
/// `Weak` of the runtime instead. In debug mode a runtime still neither dropped nor running
/// when the process exits is reported then (`OL009`, Unix).
pub struct Runtime {
    core: Rc<Core>,
}

impl Runtime {
    /// A runtime with default settings (debug mode from `ONELOOP_DEBUG`).
    ///
    /// # Panics
    ///
    /// If the OS refuses the poller or eventfd (file descriptors exhausted), or an
    /// `ONELOOP_*` variable is malformed. Use [`Runtime::builder`] to handle those as
    /// errors.
    pub fn new() -> Runtime {
        Builder::new()
            .build()
            .unwrap_or_else(|e| panic!("oneloop: cannot create a runtime: {e}"))
    }

    /// A [`Builder`] to configure a runtime.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs the loop until `future` completes, and returns its output. Tasks spawned
    /// before or during the call run alongside it; those still pending when it returns
    /// stay pending until the next `block_on`.
    ///
    /// # Panics
    ///
    /// If called inside a running runtime (a nested `block_on` would stop the outer loop),
    /// if `future` panics (the panic propagates), or if the loop detects that nothing can
    /// ever make progress again (a deadlock; the message names the pending tasks).
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.core.block_on(future, Location::caller())
    }

    /// Spawns a task on this runtime (it runs once the loop runs).
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.core.spawn(future, None, Location::caller())
    }

    /// Counters describing what the loop has done so far.
    pub fn metrics(&self) -> Metrics {
        self.core.metrics()
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
    }
}

impl Builder {
    /// Builds the runtime on the current thread.
    ///
    /// # Errors
    ///
    /// If the OS refuses the poller, the eventfd or the watchdog thread, or the trace file
    /// cannot be created, or if
    /// `ONELOOP_DEBUG` / `ONELOOP_SLOW_MS` hold something unreadable, a threshold is zero,
    /// or the default pool's size is out of range (`ErrorKind::InvalidInput`, with a
    /// message that says what is accepted).
    pub fn build(self) -> io::Result<Runtime> {
        let config = self.resolve(|name| std::env::var(name).ok())?;
        Ok(Runtime {
            core: Rc::new(Core::new(config)?),
        })
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.core.shutdown();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.core.id)
            .field("instrumented", &self.core.instruments.is_some())
            .finish_non_exhaustive()
    }
}

/// The loop's state: one field per subsystem. Owned by `Runtime` (an `Rc`, so the
/// thread-local context can point at it); used only on the loop thread.
pub(crate) struct Core {
    id: u64,
    /// Tasks to poll: pushed by wakes on this thread directly, by the remote drain and by
    /// `spawn`; popped by `run_ready`.
    run_queue: Rc<RunQueue>,
    /// Every task and its life cycle; `JoinHandle`s hold it weakly.
    tasks: Rc<Tasks>,
    reactor: Reactor,
    timers: Timers,
    /// What other threads touch: the remote queue and the eventfd.
    pub(crate) remote: Arc<Remote>,
    /// Debug mode and tracing; `None` when both are off, which leaves the poll path one
    /// branch longer than bare. Shared with `tasks`, which times each poll.
    instruments: Option<Rc<Instruments>>,
    /// Where reports go (counted, traced, then the user's sink).
    reporter: Arc<Reporter>,
    /// The pool behind `to_thread`, created on first use; shut down with the runtime.
    default_pool: DefaultPool,
    deadlock: DeadlockCheck,
    /// The first panic of a waker the loop called itself, re-raised out of `block_on`
    /// once the step it happened in is complete (`raise_deferred_panic`).
    deferred_panic: Cell<Option<Panic>>,
    /// Scratch buffers reused every tick, so a tick allocates nothing.
    wake_buffer: Cell<Vec<Waker>>,
    remote_buffer: Cell<Vec<RemoteOp>>,
    /// How long to spin before sleeping, learned from recent wakes (`spin.rs`).
    spin: Spin,
    /// Turns of the loop so far (`Metrics::ticks`).
    ticks: Cell<u64>,
}

impl Core {
    fn new(config: Config) -> io::Result<Core> {
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let reactor = Reactor::new()?;
        let remote = Arc::new(Remote::new(id, reactor.new_waker()?));
        let trace = match &config.trace {
            Some(path) => Some(Instruments::open_trace(path)?),
            None => None,
        };
        let reporter = Arc::new(Reporter::new(config.sink, trace.clone()));
        let instruments =
            Instruments::start(id, config.debug, trace, reporter.clone())?.map(Rc::new);
        let run_queue = Rc::new(RunQueue::default());
        let tasks = Rc::new(Tasks::new(
            run_queue.clone(),
            remote.clone(),
            instruments.clone(),
            reporter.clone(),
        ));
        Ok(Core {
            id,
            run_queue,
            tasks,
            reactor,
            timers: Timers::new(),
            remote,
            instruments,
            reporter,
            default_pool: DefaultPool::new(
                config.default_pool_workers,
                config.default_pool_shutdown,
            ),
            deadlock: DeadlockCheck::new(config.stall_report_after),
            deferred_panic: Cell::new(None),
            wake_buffer: Cell::default(),
            remote_buffer: Cell::default(),
            spin: Spin::default(),
            ticks: Cell::new(0),
        })
    }

    // ---------------------------------------------------------------------------------
    // The loop, top-down.
    // ---------------------------------------------------------------------------------

    fn block_on<F: Future>(
        self: &Rc<Self>,
        future: F,
        location: &'static Location<'static>,
    ) -> F::Output {
        let _enter = context::enter(self);
        let main_waker = TaskWaker::new(
            TaskRef {
                key: MAIN_KEY,
                id: 0,
            },
            self.remote.clone(),
        );
        let main_site = self
            .instruments
            .as_ref()
            .map_or(0, |ins| ins.intern(location, Some("main")));
        let mut future = pin!(future);
        self.run_queue.wake_main();
        loop {
            self.react(&main_waker);
            self.fire_timers();
            self.raise_deferred_panic();
            if self.run_queue.take_main_woken()
                && let Poll::Ready(output) =
                    self.tasks
                        .poll_main(future.as_mut(), &main_waker, main_site)
            {
                return output;
            }
            self.run_ready();
            self.raise_deferred_panic();
        }
    }

    /// Step 1: sleep in the reactor until something is ready, then take in what woke us:
    /// I/O readiness (wakes the tasks waiting on it) and remote wakes.
    fn react(&self, main_waker: &Arc<TaskWaker>) {
        let busy = self.run_queue.is_busy();
        let next_timer = if busy {
            None
        } else {
            self.timers.next_deadline()
        };
        let mut wake_at = None;
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            // About to sleep: make sure something can still wake the block_on future. A loop
            // quiet the way a deadlock through channels would be comes back to report it
            // (at least hourly, which keeps the arithmetic of any setting sane).
            let now = BeforeSleep {
                main_waker,
                timer_armed: next_timer.is_some(),
                remote: &self.remote,
                debugging: self.instruments.as_ref().is_some_and(|ins| ins.debugging()),
                reporter: &self.reporter,
            };
            wake_at = self
                .deadlock
                .before_sleep(&self.tasks, now)
                .map(|after| Instant::now() + after.min(Duration::from_secs(3600)));
            // mio rounds this up to whole milliseconds, so the sleep never ends early; on
            // Linux a timerfd ends it on the deadline itself (`timerfd.rs`).
            next_timer
                .or(wake_at)
                .map(|deadline| deadline.saturating_duration_since(Instant::now()))
        };
        let (timeout, blocking_since) = match timeout {
            Some(t) if t.is_zero() => (timeout, None),
            _ if self.spin.wait_for(&self.remote, timeout) => (Some(Duration::ZERO), None),
            _ => {
                // The spin used part of the wait: sleep only what is left until the timer
                // (and not a whole rounded-up millisecond past a deadline it reached).
                let now = Instant::now();
                let left = next_timer
                    .or(wake_at)
                    .map(|deadline| deadline.saturating_duration_since(now));
                (left, Some(now))
            }
        };
        let mut wakers = self.wake_buffer.take();
        let remote = self
            .reactor
            .poll(timeout, &mut wakers)
            .unwrap_or_else(|e| panic!("oneloop: the OS poller failed: {e}"));
        if let Some(since) = blocking_since {
            self.spin.learn(remote, since.elapsed());
        }
        self.ticks.set(self.ticks.get() + 1);
        if remote {
            self.drain_remote();
        }
        self.wake_batch(wakers);
    }

    /// Runs what other threads queued: wakes go onto the run queue, `Run` closures
    /// (`Handle::spawn`) run here, inside the runtime.
    fn drain_remote(&self) {
        let mut ops = self.remote_buffer.take();
        self.remote.drain(&mut ops);
        for op in ops.drain(..) {
            match op {
                RemoteOp::Wake(task) => self.run_queue.push(task),
                // Every queued op runs even if one panics (see `raise_deferred_panic`).
                RemoteOp::Run(run) => self.defer_panic(wake::catch(run)),
            }
        }
        self.remote_buffer.set(ops);
    }

    /// Step 2: wake every timer whose deadline has passed, earliest first.
    fn fire_timers(&self) {
        let mut wakers = self.wake_buffer.take();
        self.timers.fire_due(&mut wakers);
        // The fired timers have left the queue: each waker must be called, whatever the
        // others do, or its task would never hear of its timer again.
        self.wake_batch(wakers);
    }

    /// Step 3: poll the tasks that were ready when this step began. Tasks woken during
    /// the batch wait for the next tick, after the reactor and timers have had a look.
    fn run_ready(&self) {
        let ready = self.run_queue.len().min(MAX_BATCH);
        if ready > 0
            && let Some(ins) = &self.instruments
        {
            ins.mark(); // the polls below are timed from here
        }
        for _ in 0..ready {
            let Some(task) = self.run_queue.pop() else {
                break;
            };
            match self.tasks.run(task) {
                Polled::Pending(waiting @ Waiting::Join(_)) => {
                    self.deadlock.spot_join_cycle(&self.tasks, task, waiting);
                }
                Polled::Finished(woken) => self.defer_panic(woken), // raised after the batch
                Polled::Pending(_) | Polled::Gone => {}
            }
        }
        if ready > 0
            && let Some(ins) = &self.instruments
        {
            ins.end_batch();
            // For the exit report of a runtime never dropped (`debug/leaks.rs`).
            self.tasks.table().borrow().publish_len();
        }
    }

    /// Wakes a batch of wakers collected under a borrow (readiness, due timers), all of
    /// them even if one panics, and gives the buffer back for the next tick.
    fn wake_batch(&self, mut wakers: Vec<Waker>) {
        for waker in wakers.drain(..) {
            self.defer_panic(wake::wake(waker));
        }
        self.wake_buffer.set(wakers);
    }

    /// A waker the loop called itself (a timer's, an I/O waiter's, a `JoinHandle`'s) is
    /// user code and may panic. The loop calls every waker of a batch anyway, keeps the
    /// first panic, finishes the step it was in, and re-raises the panic here, between
    /// steps, out of `block_on`: nothing is left half-done, and nothing is lost (a later
    /// `block_on` carries on where this one stopped).
    fn raise_deferred_panic(&self) {
        if let Some(panic) = self.deferred_panic.take() {
            resume_unwind(panic);
        }
    }

    /// Keeps the first panic of a waker the loop called (see `raise_deferred_panic`).
    #[inline]
    fn defer_panic(&self, result: Result<(), Panic>) {
        if let Err(panic) = result {
            let mut first = self.deferred_panic.take();
            wake::keep_first(&mut first, panic);
            self.deferred_panic.set(first);
        }
    }

    // ---------------------------------------------------------------------------------
    // What the rest of the crate asks of the loop (through `context.rs`).
    // ---------------------------------------------------------------------------------

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn run_queue(&self) -> &Rc<RunQueue> {
        &self.run_queue
    }

    pub(crate) fn tasks(&self) -> &Rc<Tasks> {
        &self.tasks
    }

    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Spawns `future` as a task of this runtime.
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        name: Option<Box<str>>,
        location: &'static Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let task = self.tasks.spawn(future, name, location);
        JoinHandle::new(Rc::downgrade(&self.tasks), task)
    }

    /// A oneloop future polled by the current task returned `Pending`, waiting on
    /// `waiting` (the deadlock check names it, `debug/deadlock.rs`).
    pub(crate) fn note_wait(&self, waiting: Waiting) {
        self.tasks.note_wait(waiting);
    }

    /// In debug mode, marks the runtime as inside `block_on` until the guard drops (read by
    /// the exit report of runtimes never dropped, `debug/leaks.rs`).
    pub(crate) fn running(&self) -> Option<Running> {
        self.instruments.as_ref().and_then(|ins| ins.running())
    }

    /// The default pool, started on first use (`offload/default_pool.rs`).
    pub(crate) fn default_pool(&self) -> Result<ThreadPool, String> {
        self.default_pool.get(&self.reporter)
    }

    /// What debug mode and tracing attach to offloaded jobs.
    pub(crate) fn job_observer(&self) -> Option<Arc<dyn oneloop_pool::JobObserver>> {
        self.instruments.as_ref().map(|ins| ins.job_observer())
    }

    /// What debug mode and tracing register with the pools `run_in_executor` uses, so the
    /// jobs spawned on them directly are watched too (`offload/`).
    pub(crate) fn pool_observer(&self) -> Option<&Arc<dyn oneloop_pool::JobObserver>> {
        self.instruments.as_deref().map(Instruments::pool_observer)
    }

    /// The current task submitted the job `job` names (the trace draws the arrow from
    /// here). `job` is only called with debug mode or tracing on.
    pub(crate) fn job_submitted(&self, job: impl FnOnce() -> u64) {
        if let Some(ins) = &self.instruments {
            ins.submitted(self.tasks.current_task(), job());
        }
    }

    // ---------------------------------------------------------------------------------
    // Shutdown and metrics.
    // ---------------------------------------------------------------------------------

    /// Cancels every task and resolves every handle (the runtime is dropping).
    fn shutdown(self: &Rc<Self>) {
        let _enter = context::enter_for_drop(self);
        self.tasks.begin_shutdown();
        // Queued remote work (Handle::spawn) is dropped: its handles resolve as cancelled,
        // which wakes their waiters (user code, contained: the shutdown must complete).
        for op in self.remote.close() {
            wake::discard(Some(op));
        }
        self.tasks.cancel_all();
        self.timers.clear();
        // A waker panic deferred while tasks were cancelled has nobody to go to now.
        if let Some(panic) = self.deferred_panic.take() {
            wake::drop_panic(panic);
        }
        self.run_queue.clear();
        // The tasks are gone, and with them every handle to a job that had not started.
        self.default_pool.shutdown(&self.reporter);
        if let Some(ins) = &self.instruments {
            ins.finish();
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            ticks: self.ticks.get(),
            polls: self.tasks.polls(),
            spawned: self.tasks.spawned(),
            live_tasks: self.tasks.len(),
            remote_wakes: self.remote.remote_wakes(),
            eventfd_writes: self.remote.eventfd_writes(),
            timers: self.timers.len(),
            timers_fired: self.timers.fired(),
            io_sources: self.reactor.len(),
            slow_polls: self.instruments.as_ref().map_or(0, |ins| ins.slow_polls()),
        }
    }
}
