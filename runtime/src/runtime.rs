//! The runtime: `Runtime`, `block_on`, and one tick of the loop.
//!
//! Read this file top-down to follow one tick: [`Core::block_on`] loops over
//! 1. `park`: sleep in the reactor for as long as nothing is ready (zero if tasks are
//!    queued, else until the nearest timer, else until I/O or a remote wake), then drain
//!    the remote queue if another thread woke us;
//! 2. `fire_timers`: wake every timer that is due;
//! 3. poll the `block_on` future if it was woken, and `run_ready`: poll the tasks that
//!    were ready at the start of this step (a bounded batch, so I/O and timers are never
//!    starved by tasks that keep waking each other).
//!
//! Everything here lives on the loop thread; what other threads may touch is in
//! `waker.rs` (`Remote`). Tasks are in `task/table.rs`, the reactor in `reactor.rs`, timers
//! in `time/timers.rs`, debug mode in `debug/`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{self, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_task::waker_ref;
use oneloop_pool::ThreadPool;

use crate::builder::Config;
use crate::context;
use crate::debug::instruments::Instruments;
use crate::debug::leaks::Running;
use crate::debug::{Code, Report, Reporter, TaskInfo};
use crate::reactor::Reactor;
use crate::spin::Spin;
use crate::task::cell::{Header, TaskCell};
use crate::task::table::{Cell as TaskCellBox, TaskTable};
use crate::task::{Id, JoinHandle};
use crate::time::timers::{TimerKey, TimerQueue};
use crate::waker::{MAIN_KEY, Remote, RemoteOp, TaskRef, TaskWaker};
use crate::{Builder, Handle};

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
/// `mem::forget` does the same. Give tasks a [`Handle`] (to spawn onto the loop) or a
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

    pub(crate) fn from_config(config: Config) -> std::io::Result<Runtime> {
        Ok(Runtime {
            core: Rc::new(Core::new(config)?),
        })
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

    /// A [`Handle`] for other threads to send work to this loop.
    pub fn handle(&self) -> Handle {
        Handle::new(self.core.remote.clone())
    }

    /// Counters describing what the loop has done so far.
    pub fn metrics(&self) -> Metrics {
        self.core.metrics()
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
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

/// Counters from [`Runtime::metrics`]; cheap to read, for tests, tuning and teaching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Turns of the loop (looks at the reactor).
    pub ticks: u64,
    /// Task polls (the `block_on` future's included).
    pub polls: u64,
    /// Tasks spawned.
    pub spawned: u64,
    /// Task slots in use: running tasks plus finished ones whose `JoinHandle` has not read
    /// them.
    pub live_tasks: usize,
    /// Wakes that came from other threads.
    pub remote_wakes: u64,
    /// Times another thread interrupted the loop's sleep (an eventfd write on Linux). Far
    /// fewer than `remote_wakes` under load: wakes are coalesced.
    pub eventfd_writes: u64,
    /// Timers armed right now.
    pub timers: usize,
    /// Timers fired so far.
    pub timers_fired: u64,
    /// I/O sources registered right now.
    pub io_sources: usize,
    /// Polls that ran past the slow-task threshold (debug mode only).
    pub slow_polls: u64,
}

/// The loop's state. Owned by `Runtime` (an `Rc`, so the thread-local context and
/// `JoinHandle`s can point at it); used only on the loop thread.
pub(crate) struct Core {
    id: u64,
    /// Every task, by generation-checked key (`task/table.rs`).
    tasks: RefCell<TaskTable>,
    /// Tasks to poll, each at most once (their waker's `scheduled` flag sees to that).
    /// Pushed by local wakes (`schedule`), by the remote drain and by `spawn`; popped by
    /// `run_ready`.
    run_queue: RefCell<VecDeque<TaskRef>>,
    /// The `block_on` future was woken and must be polled this tick.
    main_woken: Cell<bool>,
    /// The task being polled right now (`Some(0)` for the `block_on` future).
    current: Cell<Option<u64>>,
    reactor: Reactor,
    timers: RefCell<TimerQueue>,
    /// The time timers were last fired at; refreshed once per tick. A timer compared
    /// against it can only be late, never early, because the clock only moves forward.
    now: Cell<Instant>,
    /// What other threads touch: the remote queue and the eventfd.
    pub(crate) remote: Arc<Remote>,
    /// Debug mode and tracing (`debug/instruments.rs`); `None` when both are off, which
    /// leaves the poll path one branch longer than bare.
    instruments: Option<Instruments>,
    /// Where reports go (counted, traced, then the user's sink).
    reporter: Arc<Reporter>,
    /// Set while the runtime is dropping: a task spawned now is cancelled at once.
    shutting_down: Cell<bool>,
    /// The pool behind `to_thread`, created on first use; shut down with the runtime.
    default_pool: RefCell<Option<ThreadPool>>,
    default_pool_workers: usize,
    default_pool_shutdown: Duration,
    /// Scratch buffers reused every tick, so a tick allocates nothing.
    wake_buffer: Cell<Vec<Waker>>,
    remote_buffer: Cell<Vec<RemoteOp>>,
    /// How long to spin before sleeping, learned from recent wakes (`spin.rs`).
    spin: Spin,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    ticks: Cell<u64>,
    polls: Cell<u64>,
    spawned: Cell<u64>,
    timers_fired: Cell<u64>,
}

fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get() + by);
}

impl Core {
    fn new(config: Config) -> std::io::Result<Core> {
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let reactor = Reactor::new()?;
        let remote = Arc::new(Remote::new(id, reactor.new_waker()?));
        let trace = match &config.trace {
            Some(path) => Some(Instruments::open_trace(path)?),
            None => None,
        };
        let reporter = Arc::new(Reporter::new(config.sink, trace.clone()));
        let instruments = Instruments::start(id, config.debug, trace, reporter.clone())?;
        Ok(Core {
            id,
            tasks: RefCell::new(TaskTable::new(
                instruments.as_ref().and_then(Instruments::task_count),
            )),
            run_queue: RefCell::default(),
            main_woken: Cell::new(false),
            current: Cell::new(None),
            reactor,
            timers: RefCell::default(),
            now: Cell::new(Instant::now()),
            remote,
            instruments,
            reporter,
            shutting_down: Cell::new(false),
            default_pool: RefCell::new(None),
            default_pool_workers: config.default_pool_workers,
            default_pool_shutdown: config.default_pool_shutdown,
            wake_buffer: Cell::default(),
            remote_buffer: Cell::default(),
            spin: Spin::default(),
            counters: Counters::default(),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// In debug mode, marks the runtime as inside `block_on` until the guard drops (read by
    /// the exit report of runtimes never dropped, `debug/leaks.rs`).
    pub(crate) fn running(&self) -> Option<Running> {
        self.instruments.as_ref().and_then(Instruments::running)
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
        self.main_woken.set(true);
        loop {
            self.park(&main_waker);
            self.fire_timers();
            if self.main_woken.replace(false)
                && let Poll::Ready(output) = self.poll_main(future.as_mut(), &main_waker, main_site)
            {
                return output;
            }
            self.run_ready();
        }
    }

    /// Step 1: sleep in the reactor until something is ready, then take in what woke us:
    /// I/O readiness (wakes the tasks waiting on it) and remote wakes.
    fn park(&self, main_waker: &Arc<TaskWaker>) {
        let busy = self.main_woken.get() || !self.run_queue.borrow().is_empty();
        let next_timer = if busy {
            None
        } else {
            self.timers.borrow().next_deadline()
        };
        let timeout = if busy {
            Some(Duration::ZERO)
        } else if let Some(deadline) = next_timer {
            // mio rounds this up to whole milliseconds, so the sleep never ends early; on
            // Linux a timerfd ends it on the deadline itself (`timerfd.rs`).
            Some(deadline.saturating_duration_since(Instant::now()))
        } else {
            self.check_deadlock(main_waker);
            None
        };
        let (timeout, blocking_since) = match timeout {
            Some(t) if t.is_zero() => (timeout, None),
            _ if self.spin.wait_for(&self.remote, timeout) => (Some(Duration::ZERO), None),
            _ => {
                // The spin used part of the wait: sleep only what is left until the timer
                // (and not a whole rounded-up millisecond past a deadline it reached).
                let now = Instant::now();
                let left = next_timer.map(|deadline| deadline.saturating_duration_since(now));
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
        bump(&self.counters.ticks, 1);
        if remote {
            self.drain_remote();
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
        self.wake_buffer.set(wakers);
    }

    /// Runs what other threads queued: wakes go onto the run queue, `Run` closures
    /// (`Handle::spawn`) run here, inside the runtime.
    fn drain_remote(&self) {
        let mut ops = self.remote_buffer.take();
        self.remote.drain(&mut ops);
        for op in ops.drain(..) {
            match op {
                RemoteOp::Wake(task) => self.schedule(task),
                RemoteOp::Run(run) => run(),
            }
        }
        self.remote_buffer.set(ops);
    }

    /// Step 2: wake every timer whose deadline has passed, earliest first.
    fn fire_timers(&self) {
        let now = Instant::now();
        self.now.set(now);
        if self.timers.borrow().is_empty() {
            return;
        }
        let mut wakers = self.wake_buffer.take();
        let fired = self.timers.borrow_mut().fire_due(now, &mut wakers);
        bump(&self.counters.timers_fired, fired as u64);
        for waker in wakers.drain(..) {
            waker.wake();
        }
        self.wake_buffer.set(wakers);
    }

    /// Step 3a: poll the `block_on` future. A panic in it is carried out of `block_on`
    /// (after debug mode has seen the poll end).
    fn poll_main<F: Future>(
        &self,
        future: Pin<&mut F>,
        waker: &Arc<TaskWaker>,
        site: u32,
    ) -> Poll<F::Output> {
        waker.begin_poll();
        let waker_ref = waker_ref(waker);
        let mut cx = Context::from_waker(&waker_ref);
        bump(&self.counters.polls, 1);
        self.current.set(Some(0));
        let probe = self.instruments.as_ref().map(|ins| {
            ins.mark();
            ins.begin_poll(0, site)
        });
        let result = catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)));
        self.current.set(None);
        if let (Some(ins), Some(probe)) = (&self.instruments, probe) {
            ins.end_poll(probe, 0, site, || Some("main"));
            ins.end_batch();
        }
        result.unwrap_or_else(|payload| resume_unwind(payload))
    }

    /// Step 3b: poll the tasks that were ready when this step began. Tasks woken during
    /// the batch wait for the next tick, after the reactor and timers have had a look.
    fn run_ready(&self) {
        let ready = self.run_queue.borrow().len().min(MAX_BATCH);
        if ready > 0
            && let Some(ins) = &self.instruments
        {
            ins.mark(); // the polls below are timed from here
        }
        for _ in 0..ready {
            let Some(task) = self.run_queue.borrow_mut().pop_front() else {
                break;
            };
            self.run_task(task);
        }
        if ready > 0
            && let Some(ins) = &self.instruments
        {
            ins.end_batch();
        }
    }

    /// Polls one task, with no borrow of the task table held while its code runs.
    fn run_task(&self, task: TaskRef) {
        let Some((mut cell, site)) = self.tasks.borrow_mut().take_for_poll(task) else {
            return; // stale wake, or the task finished (aborted) while queued
        };
        bump(&self.counters.polls, 1);
        self.current.set(Some(task.id));
        let finished = match &self.instruments {
            None => cell.as_mut().poll(),
            Some(ins) => {
                let probe = ins.begin_poll(task.id, site);
                let finished = cell.as_mut().poll();
                ins.end_poll(probe, task.id, site, || cell.header().name.as_deref());
                finished
            }
        };
        self.current.set(None);
        if finished {
            self.finish(task, cell);
            return;
        }
        // Bind first: a temporary borrow in the `if let` would live through its body.
        let aborted = self.tasks.borrow_mut().put_back(task, cell);
        if let Some(cell) = aborted {
            self.cancel(task, cell); // it aborted itself during the poll
        }
    }

    /// Queues a task woken on the loop thread (or drained from the remote queue).
    pub(crate) fn schedule(&self, task: TaskRef) {
        if task.key == MAIN_KEY {
            self.main_woken.set(true);
        } else {
            self.run_queue.borrow_mut().push_back(task);
        }
    }

    // ---------------------------------------------------------------------------------
    // Task life cycle: spawn, finish, cancel, and the JoinHandle's side.
    // ---------------------------------------------------------------------------------

    pub(crate) fn spawn<F>(
        self: &Rc<Self>,
        future: F,
        name: Option<Box<str>>,
        location: &'static Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let site = self
            .instruments
            .as_ref()
            .map_or(0, |ins| ins.intern(location, name.as_deref()));
        let remote = &self.remote;
        let task = self.tasks.borrow_mut().insert(site, |task| {
            let header = Header {
                waker: TaskWaker::new(task, remote.clone()),
                name,
                location,
            };
            Box::pin(TaskCell::new(header, future))
        });
        bump(&self.counters.spawned, 1);
        if self.shutting_down.get() {
            self.abort(task); // too late to run: resolve its handle as cancelled
        } else {
            self.run_queue.borrow_mut().push_back(task);
        }
        JoinHandle::new(Rc::downgrade(self), task)
    }

    /// Drops the task's future (catching a panic in its destructor) and finishes it.
    fn cancel(&self, task: TaskRef, mut cell: TaskCellBox) {
        cell.as_mut().cancel();
        self.finish(task, cell);
        self.restart_poll_timing();
    }

    /// User code (a destructor) ran between two polls: the next poll's timing starts
    /// after it, not before (`debug/instruments.rs`).
    fn restart_poll_timing(&self) {
        if let Some(ins) = &self.instruments {
            ins.mark();
        }
    }

    /// The task is done: wake whoever awaits its handle; if nobody can ever read its
    /// result, drop it now (and report a panic nobody will see otherwise).
    fn finish(&self, task: TaskRef, cell: TaskCellBox) {
        let finished = self.tasks.borrow_mut().finish(task, cell);
        if let Some(waker) = finished.join_waker {
            waker.wake();
        }
        if let Some(cell) = finished.orphan {
            self.drop_unobserved(task, cell);
            self.restart_poll_timing();
        }
    }

    /// Drops a finished task whose result nobody will read. A panic in it is reported
    /// (`OL003`), like asyncio's "Task exception was never retrieved".
    fn drop_unobserved(&self, task: TaskRef, cell: TaskCellBox) {
        let info = task_info(task.id, cell.header());
        let mut panic = cell.panic_message().map(str::to_owned);
        // The output's destructor is user code: contain a panic there too.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(cell))) {
            let message = oneloop_pool::panic_message(&*payload);
            panic.get_or_insert(format!("(while dropping its output) {message}"));
        }
        if let Some(message) = panic {
            self.report_panic_not_retrieved(info, message);
        }
    }

    pub(crate) fn report_panic_not_retrieved(&self, task: TaskInfo, message: String) {
        let mut report = Report::new(Code::PanicNotRetrieved, task);
        report.message = Some(message);
        self.reporter.emit(&report);
    }

    /// `JoinHandle::poll`: moves the output into `out` (an `Option<Result<T, JoinError>>`)
    /// once the task has finished. A missing slot (the runtime shut down) leaves `out`
    /// empty, which the handle reads as `Cancelled`.
    pub(crate) fn poll_join(&self, task: TaskRef, waker: &Waker, out: &mut dyn Any) -> Poll<()> {
        let mut tasks = self.tasks.borrow_mut();
        let Some(slot) = tasks.get_mut(task) else {
            return Poll::Ready(());
        };
        if !slot.finished {
            let old = match &slot.join_waker {
                Some(current) if current.will_wake(waker) => None,
                _ => slot.join_waker.replace(waker.clone()),
            };
            drop(tasks);
            drop(old); // a foreign waker's destructor is user code: not under the borrow
            return Poll::Pending;
        }
        let cell = tasks.remove(task);
        drop(tasks);
        if let Some(mut cell) = cell {
            cell.as_mut().take_output(out);
        }
        Poll::Ready(())
    }

    /// `JoinSet`: wake `waker` when the task finishes (at once if it has).
    pub(crate) fn set_join_waker(&self, task: TaskRef, waker: &Waker) {
        let mut tasks = self.tasks.borrow_mut();
        match tasks.get_mut(task) {
            Some(slot) if !slot.finished => {
                let old = slot.join_waker.replace(waker.clone());
                drop(tasks);
                drop(old);
            }
            _ => {
                drop(tasks);
                waker.wake_by_ref();
            }
        }
    }

    /// The `JoinHandle` was dropped: the task runs on detached.
    pub(crate) fn release_handle(&self, task: TaskRef) {
        let cell = self.tasks.borrow_mut().release_handle(task);
        if let Some(cell) = cell {
            self.drop_unobserved(task, cell);
        }
    }

    pub(crate) fn abort(&self, task: TaskRef) {
        let cell = self.tasks.borrow_mut().begin_abort(task);
        if let Some(cell) = cell {
            self.cancel(task, cell);
        }
    }

    pub(crate) fn is_finished(&self, task: TaskRef) -> bool {
        self.tasks
            .borrow()
            .get(task)
            .is_none_or(|slot| slot.finished)
    }

    pub(crate) fn current_task_id(&self) -> Option<Id> {
        self.current.get().map(Id)
    }

    // ---------------------------------------------------------------------------------
    // Timers (the `Sleep` future's side).
    // ---------------------------------------------------------------------------------

    /// `Sleep::poll`: ready once `deadline` has passed; otherwise the timer is armed (or
    /// its waker refreshed) and `key` remembers it.
    pub(crate) fn poll_timer(
        &self,
        deadline: Instant,
        key: &mut Option<TimerKey>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if deadline <= self.now.get() {
            if let Some(key) = key.take() {
                self.cancel_timer(key);
            }
            return Poll::Ready(());
        }
        let mut timers = self.timers.borrow_mut();
        match *key {
            Some(armed) if timers.update_waker(armed, cx.waker()) => {}
            _ => *key = Some(timers.insert(deadline, cx.waker().clone())),
        }
        Poll::Pending
    }

    pub(crate) fn cancel_timer(&self, key: TimerKey) {
        let waker = self.timers.borrow_mut().remove(key);
        drop(waker); // after the borrow
    }

    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    // ---------------------------------------------------------------------------------
    // Offloading (the loop's side of `offload.rs`).
    // ---------------------------------------------------------------------------------

    /// The default pool, started on first use. `None` if the OS refused its threads
    /// (reported to the sink; the next call tries again).
    pub(crate) fn default_pool(&self) -> Option<ThreadPool> {
        if let Some(pool) = &*self.default_pool.borrow() {
            return Some(pool.clone());
        }
        let built = ThreadPool::builder()
            .workers(self.default_pool_workers)
            .thread_name("to_thread")
            .build();
        match built {
            Ok(pool) => {
                *self.default_pool.borrow_mut() = Some(pool.clone());
                Some(pool)
            }
            Err(error) => {
                let report = Report::about_pool(
                    Code::PoolShutdownIncomplete,
                    format!("the default pool could not start its threads: {error}"),
                    Duration::ZERO,
                );
                self.reporter.emit(&report);
                None
            }
        }
    }

    /// What debug mode and tracing attach to offloaded jobs.
    /// When the loop's current turn began (its timers were checked then).
    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    pub(crate) fn job_observer(&self) -> Option<Arc<dyn oneloop_pool::JobObserver>> {
        self.instruments.as_ref().map(Instruments::job_observer)
    }

    /// The current task submitted the job `job` names (the trace draws the arrow from
    /// here). `job` is only called with debug mode or tracing on.
    pub(crate) fn job_submitted(&self, job: impl FnOnce() -> u64) {
        if let Some(ins) = &self.instruments {
            ins.submitted(self.current.get(), job());
        }
    }

    // ---------------------------------------------------------------------------------
    // Deadlock detection.
    // ---------------------------------------------------------------------------------

    /// Called when the loop is about to sleep with no timer armed. If, besides, no waker of
    /// any pending task (or of the `block_on` future) is held outside the runtime, and no
    /// `Handle` exists, then nothing can ever wake anything: panic with the pending tasks
    /// rather than sleep forever.
    ///
    /// A task's waker is "held outside" when its `Arc` has more owners than the task's own
    /// header plus the runtime's own references to it (a `JoinHandle` waiter stored in the
    /// table). An I/O registration, a channel, a pool job or another thread holding it all
    /// count as outside, so this never fires while progress is possible.
    fn check_deadlock(&self, main_waker: &Arc<TaskWaker>) {
        if self.remote.handles.load(Ordering::Acquire) > 0 {
            return;
        }
        let tasks = self.tasks.borrow();
        let mut internal: HashMap<*const (), usize> = HashMap::new();
        for (_, slot) in tasks.iter() {
            if let Some(waker) = &slot.join_waker {
                *internal.entry(waker.data()).or_default() += 1;
            }
        }
        let held_outside = |waker: &Arc<TaskWaker>| {
            let ours = internal
                .get(&(Arc::as_ptr(waker) as *const ()))
                .copied()
                .unwrap_or(0);
            Arc::strong_count(waker) > 1 + ours
        };
        if held_outside(main_waker) {
            return;
        }
        let mut pending = Vec::new();
        for (task, slot) in tasks.iter().filter(|(_, slot)| !slot.finished) {
            match &slot.cell {
                Some(cell) if !held_outside(&cell.header().waker) => {
                    pending.push(task_info(task.id, cell.header()));
                }
                _ => return,
            }
        }
        // Pair with the Release of the last outside owner's drop: anything it queued
        // before letting go is visible below.
        atomic::fence(Ordering::Acquire);
        if self.remote.has_pending() {
            return;
        }
        drop(tasks);
        let mut message = String::from(
            "oneloop: deadlock: the block_on future can never complete. No task is ready, no \
             timer is armed, and no waker of a pending task is held anywhere outside the \
             runtime, so nothing can wake them again (a future returned Pending without \
             keeping its waker, or the tasks wait on each other). Pending:",
        );
        message.push_str("\n    #0 \"main\" (the block_on future)");
        for task in pending.iter().take(20) {
            message.push_str(&format!("\n    {task}"));
        }
        if pending.len() > 20 {
            message.push_str(&format!("\n    ... and {} more", pending.len() - 20));
        }
        panic!("{message}");
    }

    // ---------------------------------------------------------------------------------
    // Shutdown and metrics.
    // ---------------------------------------------------------------------------------

    /// Cancels every task and resolves every handle (the runtime is dropping).
    fn shutdown(self: &Rc<Self>) {
        let _enter = context::enter_for_drop(self);
        self.shutting_down.set(true);
        // Queued remote work (Handle::spawn) is dropped: its handles resolve as cancelled.
        drop(self.remote.close());
        // Dropping a future may spawn (cancelled at once) or abort others: repeat until
        // every task has finished.
        loop {
            let unfinished = self.tasks.borrow().cancellable();
            if unfinished.is_empty() {
                break;
            }
            for task in unfinished {
                self.abort(task);
            }
        }
        // Results nobody read yet are dropped here, on the loop thread, one by one.
        let cells = self.tasks.borrow_mut().drain();
        for cell in cells {
            let _ = catch_unwind(AssertUnwindSafe(|| drop(cell)));
        }
        let timers = self.timers.borrow_mut().take_all();
        drop(timers);
        self.run_queue.borrow_mut().clear();
        // The tasks are gone, and with them every handle to a job that had not started
        // (those jobs are cancelled). Wait a while for the running ones; while panicking,
        // not at all.
        let pool = self.default_pool.borrow_mut().take();
        if let Some(pool) = pool {
            let timeout = if std::thread::panicking() {
                Duration::ZERO
            } else {
                self.default_pool_shutdown
            };
            let report = pool.shutdown_timeout(timeout);
            if !report.is_clean() {
                let report =
                    Report::about_pool(Code::PoolShutdownIncomplete, report.to_string(), timeout);
                self.reporter.emit(&report);
            }
        }
        if let Some(ins) = &self.instruments {
            ins.finish();
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            ticks: self.counters.ticks.get(),
            polls: self.counters.polls.get(),
            spawned: self.counters.spawned.get(),
            live_tasks: self.tasks.borrow().len(),
            remote_wakes: self.remote.remote_wakes(),
            eventfd_writes: self.remote.eventfd_writes(),
            timers: self.timers.borrow().len(),
            timers_fired: self.counters.timers_fired.get(),
            io_sources: self.reactor.len(),
            slow_polls: self.instruments.as_ref().map_or(0, Instruments::slow_polls),
        }
    }
}

fn task_info(id: u64, header: &Header) -> TaskInfo {
    TaskInfo {
        id: Id(id),
        name: header.name.as_deref().map(str::to_owned),
        location: header.location,
    }
}
