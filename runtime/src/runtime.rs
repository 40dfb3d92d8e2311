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
use oneloop_pool::wake::{self, Panic, WakeList};

use crate::builder::Config;
use crate::context;
use crate::debug::deadlock::{self, Chain, MAX_CHAIN, Quiet, StallWatch};
use crate::debug::instruments::{Activity, Instruments, Probe};
use crate::debug::leaks::Running;
use crate::debug::{Code, Report, Reporter, TaskInfo};
use crate::offload::default_pool::DefaultPool;
use crate::reactor::Reactor;
use crate::spin::Spin;
use crate::task::cell::{Header, TaskCell};
use crate::task::id::{MAIN_KEY, TaskRef};
use crate::task::run_queue::RunQueue;
use crate::task::table::{BoxedTask, TaskTable};
use crate::task::waiting::Waiting;
use crate::task::{Id, JoinHandle};
use crate::time::timers::Timers;
use crate::waker::{Remote, RemoteOp, TaskWaker};
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
    /// Tasks to poll (`task/run_queue.rs`): pushed by wakes on this thread directly, by the
    /// remote drain and by `spawn`; popped by `run_ready`.
    run_queue: Rc<RunQueue>,
    /// The task being polled right now (`Some(0)` for the `block_on` future).
    current: Cell<Option<u64>>,
    reactor: Reactor,
    /// Timers and the clock they are compared against (`time/timers.rs`).
    timers: Timers,
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
    default_pool: DefaultPool,
    /// The first panic of a waker the loop called itself, re-raised out of `block_on`
    /// once the step it happened in is complete (`raise_deferred_panic`).
    deferred_panic: Cell<Option<Panic>>,
    /// What the task being polled waits on, as the last oneloop future that returned
    /// `Pending` in this poll said (`note_wait`); stored with the task when its poll ends.
    waiting: Cell<Waiting>,
    /// The same for the `block_on` future, after its last poll.
    main_waiting: Cell<Waiting>,
    /// Deadlock checks so far: each marks the tasks it steps on with its number.
    checks: Cell<u64>,
    /// A task whose `JoinHandle` waits lead back to itself, as seen when it last went
    /// pending (`spot_join_cycle`); the next idle check confirms or forgets it.
    cycle_candidate: Cell<Option<TaskRef>>,
    /// The cycle last reported as `OL011` (once per cycle).
    cycle_reported: Cell<Option<TaskRef>>,
    /// Reports (`OL010`) a loop that stays quiet with every task waiting on channels and
    /// semaphores nothing else can reach.
    stall: StallWatch,
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
            run_queue: Rc::default(),
            current: Cell::new(None),
            reactor,
            timers: Timers::new(),
            remote,
            instruments,
            reporter,
            shutting_down: Cell::new(false),
            default_pool: DefaultPool::new(
                config.default_pool_workers,
                config.default_pool_shutdown,
            ),
            deferred_panic: Cell::new(None),
            waiting: Cell::new(Waiting::Unknown),
            main_waiting: Cell::new(Waiting::Unknown),
            checks: Cell::new(0),
            cycle_candidate: Cell::new(None),
            cycle_reported: Cell::new(None),
            stall: StallWatch::new(config.stall_report_after),
            wake_buffer: Cell::default(),
            remote_buffer: Cell::default(),
            spin: Spin::default(),
            counters: Counters::default(),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn run_queue(&self) -> &Rc<RunQueue> {
        &self.run_queue
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
        self.run_queue.wake_main();
        loop {
            self.park(&main_waker);
            self.fire_timers();
            self.raise_deferred_panic();
            if self.run_queue.take_main_woken()
                && let Poll::Ready(output) = self.poll_main(future.as_mut(), &main_waker, main_site)
            {
                return output;
            }
            self.run_ready();
            self.raise_deferred_panic();
        }
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

    /// Wakes a batch of wakers collected under a borrow (readiness, due timers), all of
    /// them even if one panics, and gives the buffer back for the next tick.
    fn wake_batch(&self, mut wakers: Vec<Waker>) {
        for waker in wakers.drain(..) {
            self.defer_panic(wake::wake(waker));
        }
        self.wake_buffer.set(wakers);
    }

    /// Step 1: sleep in the reactor until something is ready, then take in what woke us:
    /// I/O readiness (wakes the tasks waiting on it) and remote wakes.
    fn park(&self, main_waker: &Arc<TaskWaker>) {
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
            wake_at = self
                .check_deadlock(main_waker, next_timer.is_some())
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
        bump(&self.counters.ticks, 1);
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
        self.waiting.set(Waiting::Unknown);
        let probe = self.instruments.as_ref().map(|ins| {
            ins.mark();
            ins.begin_poll(0, site)
        });
        let result = catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)));
        self.current.set(None);
        self.main_waiting.set(self.waiting.get());
        if let (Some(ins), Some(probe)) = (&self.instruments, probe) {
            ins.end_poll(probe, 0, site, || Some("main"));
            ins.end_batch();
        }
        result.unwrap_or_else(|payload| resume_unwind(payload))
    }

    /// Step 3b: poll the tasks that were ready when this step began. Tasks woken during
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
            self.run_task(task);
        }
        if ready > 0
            && let Some(ins) = &self.instruments
        {
            ins.end_batch();
            // For the exit report of a runtime never dropped (`debug/leaks.rs`).
            self.tasks.borrow().publish_len();
        }
    }

    /// Polls one task, with no borrow of the task table held while its code runs.
    fn run_task(&self, task: TaskRef) {
        let Some((mut cell, site)) = self.tasks.borrow_mut().take_for_poll(task) else {
            return; // stale wake, or the task finished (aborted) while queued
        };
        bump(&self.counters.polls, 1);
        self.current.set(Some(task.id));
        self.waiting.set(Waiting::Unknown);
        let finished = match &self.instruments {
            None => {
                let _end = PollEnd {
                    core: self,
                    probe: None,
                    task: task.id,
                    site,
                };
                cell.as_mut().poll()
            }
            Some(ins) => {
                let mut poll = PollEnd {
                    core: self,
                    probe: Some(ins.begin_poll(task.id, site)),
                    task: task.id,
                    site,
                };
                let finished = cell.as_mut().poll();
                poll.end(|| cell.header().name.as_deref());
                finished
            }
        };
        if finished {
            let woken = self.finish(task, cell);
            self.defer_panic(woken); // a loop step: raised once the batch is done
            return;
        }
        // Bind first: a temporary borrow in the `if let` would live through its body.
        let waiting = self.waiting.get();
        let aborted = self.tasks.borrow_mut().put_back(task, cell, waiting);
        if matches!(waiting, Waiting::Join(_)) && aborted.is_none() {
            self.spot_join_cycle(task, waiting);
        }
        if let Some(cell) = aborted {
            let woken = self.cancel(task, cell); // it aborted itself during the poll
            self.defer_panic(woken);
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
            self.run_queue.push(task);
        }
        JoinHandle::new(Rc::downgrade(self), task)
    }

    /// Drops the task's future (catching a panic in its destructor) and finishes it.
    fn cancel(&self, task: TaskRef, cell: BoxedTask) -> Result<(), Panic> {
        let cell = self.between_polls(task, cell, Activity::DropFuture, |mut cell| {
            cell.as_mut().cancel();
            cell
        });
        let woken = self.finish(task, cell);
        self.restart_poll_timing();
        woken
    }

    /// User code (a destructor) ran between two polls: the next poll's timing starts
    /// after it, not before (`debug/instruments.rs`).
    fn restart_poll_timing(&self) {
        if let Some(ins) = &self.instruments {
            ins.mark();
        }
    }

    /// The task is done: wake whoever awaits its handle; if nobody can ever read its
    /// result, drop it now (and report a panic nobody will see otherwise). Returns the
    /// panic of the handle's waker, if it panicked, for the caller to raise where it
    /// belongs: after the loop's step, or to whoever called `abort`.
    fn finish(&self, task: TaskRef, cell: BoxedTask) -> Result<(), Panic> {
        let finished = self.tasks.borrow_mut().finish(task, cell);
        let woken = finished.join_waker.map_or(Ok(()), wake::wake);
        if let Some(cell) = finished.orphan {
            self.drop_unobserved(task, cell);
            self.restart_poll_timing();
        }
        woken
    }

    /// Drops a finished task whose result nobody will read. A panic in it is reported
    /// (`OL003`), like asyncio's "Task exception was never retrieved".
    fn drop_unobserved(&self, task: TaskRef, cell: BoxedTask) {
        let info = task_info(task.id, cell.header());
        let mut panic = cell.panic_message().map(str::to_owned);
        // The output's destructor is user code: contain a panic there too.
        let dropped = self.between_polls(task, cell, Activity::DropOutput, |cell| {
            wake::catch(|| drop(cell))
        });
        if let Err(payload) = dropped {
            let message = wake::into_message(payload);
            panic.get_or_insert(format!("(while dropping its output) {message}"));
        }
        if let Some(message) = panic {
            self.report_panic_not_retrieved(info, message);
        }
    }

    /// Runs `f` on `cell`: a destructor of the task's the loop runs between polls (its
    /// output's, its future's). In debug mode, when that may run user code, it is timed as
    /// a poll of that task, so a slow destructor is reported for what it is and never
    /// blamed on the next poll (`debug/watch.rs`).
    fn between_polls<R>(
        &self,
        task: TaskRef,
        cell: BoxedTask,
        activity: Activity,
        f: impl FnOnce(BoxedTask) -> R,
    ) -> R {
        match &self.instruments {
            // Inside a poll (a task aborted another, or dropped a finished task's handle)
            // the destructor is part of that poll, and timed with it.
            Some(ins) if self.current.get().is_none() && cell.drop_runs_user_code() => {
                let header = cell.header();
                let site = ins.intern(header.location, header.name.as_deref());
                ins.between_polls(task.id, site, activity, || f(cell))
            }
            _ => f(cell),
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
        // A foreign waker's clone and destructor are user code: never under the borrow.
        let mut fresh = None;
        loop {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(task) else {
                return Poll::Ready(());
            };
            if slot.finished {
                break;
            }
            match wake::store_waker(&mut slot.join_waker, waker, &mut fresh) {
                Ok(old) => {
                    drop(tasks);
                    wake::discard((old, fresh));
                    self.note_wait(Waiting::Join(task));
                    return Poll::Pending;
                }
                Err(_) => {
                    drop(tasks);
                    fresh = Some(waker.clone());
                }
            }
        }
        let (cell, old) = self.tasks.borrow_mut().remove(task);
        wake::discard((old, fresh));
        if let Some(mut cell) = cell {
            cell.as_mut().take_output(out);
        }
        Poll::Ready(())
    }

    /// `JoinSet`: wake `waker` when the task finishes (at once if it has).
    pub(crate) fn set_join_waker(&self, task: TaskRef, waker: &Waker) {
        let fresh = waker.clone(); // user code: before the borrow
        let mut tasks = self.tasks.borrow_mut();
        match tasks.get_mut(task) {
            Some(slot) if !slot.finished => {
                let old = slot.join_waker.replace(fresh);
                drop(tasks);
                wake::discard(old);
            }
            _ => {
                drop(tasks);
                fresh.wake();
            }
        }
    }

    /// The `JoinHandle` was dropped: the task runs on detached.
    pub(crate) fn release_handle(&self, task: TaskRef) {
        let (cell, waker) = self.tasks.borrow_mut().release_handle(task);
        wake::discard(waker);
        if let Some(cell) = cell {
            self.drop_unobserved(task, cell);
        }
    }

    /// Cancels `task` now (or when its running poll returns). A panic of its handle's
    /// waker goes to the caller (contained while the runtime shuts down).
    pub(crate) fn abort(&self, task: TaskRef) {
        let cell = self.tasks.borrow_mut().begin_abort(task);
        if let Some(cell) = cell {
            let woken = self.cancel(task, cell);
            if self.shutting_down.get() {
                wake::contain(woken);
            } else {
                wake::resume(woken);
            }
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

    /// A oneloop future polled by the current task returned `Pending`, waiting on
    /// `waiting` (the deadlock check names it, `debug/deadlock.rs`).
    pub(crate) fn note_wait(&self, waiting: Waiting) {
        self.waiting.set(waiting);
    }

    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    // ---------------------------------------------------------------------------------
    // Offloading (the loop's side of `offload.rs`).
    // ---------------------------------------------------------------------------------

    /// The default pool, started on first use (`offload/default_pool.rs`).
    pub(crate) fn default_pool(&self) -> Option<ThreadPool> {
        self.default_pool.get(&self.reporter)
    }

    pub(crate) fn job_observer(&self) -> Option<Arc<dyn oneloop_pool::JobObserver>> {
        self.instruments.as_ref().map(Instruments::job_observer)
    }

    /// What debug mode and tracing register with the pools `run_in_executor` uses, so the
    /// jobs spawned on them directly are watched too (`offload.rs`).
    pub(crate) fn pool_observer(&self) -> Option<&Arc<dyn oneloop_pool::JobObserver>> {
        self.instruments.as_ref().map(Instruments::pool_observer)
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

    /// Called when the loop is about to sleep: panics, naming what each pending task waits
    /// on, if the `block_on` future can provably never complete (`debug/deadlock.rs` says
    /// what counts as a proof and why). The common path follows one or two links of the
    /// chain of waits from the `block_on` future and allocates nothing.
    ///
    /// Returns how long the loop may sleep at most when it is quiet in the way a deadlock
    /// through channels or semaphores would be (see `StallWatch`): it comes back then to
    /// report it.
    fn check_deadlock(&self, main_waker: &Arc<TaskWaker>, timer_armed: bool) -> Option<Duration> {
        // A cycle of JoinHandles spotted when one of its tasks last went pending: confirm
        // it (its tasks may have been woken by something else since).
        let cycle = self.cycle_candidate.take().and_then(|task| {
            let waker = self
                .tasks
                .borrow()
                .get(task)?
                .cell
                .as_ref()?
                .header()
                .waker
                .clone();
            let waiting = self.tasks.borrow().get(task)?.waiting;
            (self.follow_waits(waker, waiting, Some(task)) == Chain::Cycle).then_some(task)
        });
        let main_chain = self.follow_waits(main_waker.clone(), self.main_waiting.get(), None);
        let chain = match cycle {
            // The block_on future may still complete (a timer, a socket or a thread holds
            // its waker): the cycle's tasks are stuck for good, but the program is not. Say
            // so once, and keep watching in case the block_on future comes to depend on it.
            Some(task) if main_chain == Chain::Live => {
                self.cycle_candidate.set(Some(task));
                if self.cycle_reported.replace(Some(task)) != Some(task) {
                    let mut report = Report::empty(Code::JoinCycle);
                    report.message = Some(self.waits_listed());
                    self.reporter.emit(&report);
                }
                Chain::Live
            }
            Some(_) => Chain::Cycle,
            None => main_chain,
        };
        let quiet = match chain {
            Chain::Live => None,
            Chain::Cycle => Some(Quiet::Stuck),
            // Nobody holds the end's waker, or only a channel or semaphore does. Either way
            // the rest of the loop decides: `block_on(pending())` runs a program of tasks
            // for ever, and a channel's sender may be on any thread.
            Chain::Lost | Chain::Primitive
                if !timer_armed && self.remote.handles.load(Ordering::Acquire) == 0 =>
            {
                self.scan_quiet(main_waker)
            }
            Chain::Lost | Chain::Primitive => None,
        };
        let Some(quiet) = quiet else {
            self.stall.forget();
            return None;
        };
        // Pair with the Release of the last outside owner's drop: anything it queued
        // before letting go is visible below.
        atomic::fence(Ordering::Acquire);
        if self.remote.has_pending() {
            return None;
        }
        match quiet {
            Quiet::Stuck => panic!("{}", self.deadlock_message(chain)),
            // Debug mode only: a program fed by a thread that is quiet for a while (a
            // daemon waiting for its next message) looks the same, and must not be told
            // off for it in production.
            Quiet::OnPrimitives
                if !self
                    .instruments
                    .as_ref()
                    .is_some_and(Instruments::debugging) =>
            {
                None
            }
            Quiet::OnPrimitives => {
                let (sleep_at_most, report) = self.stall.quiet(self.counters.polls.get());
                if let Some(after) = report {
                    let mut report = Report::empty(Code::Stalled);
                    report.duration = Some(after);
                    report.message = Some(self.waits_listed());
                    self.reporter.emit(&report);
                }
                sleep_at_most
            }
        }
    }

    /// A task's poll returned `Pending` waiting on a `JoinHandle`: if the tasks it waits on
    /// lead back to it, or into a loop of their own, remember a task of that cycle for the
    /// next idle check to confirm. A few table lookups, only for tasks that wait on a
    /// `JoinHandle`.
    fn spot_join_cycle(&self, task: TaskRef, waiting: Waiting) {
        let tasks = self.tasks.borrow();
        // Each task waits on one handle at most, so a walk longer than there are tasks is
        // going round a cycle: where it stands then is on it.
        let steps = tasks.len().min(MAX_CHAIN);
        let mut next = waiting;
        let mut at = task;
        for _ in 0..=steps {
            let Waiting::Join(target) = next else {
                return;
            };
            if target == task {
                self.cycle_candidate.set(Some(task));
                return;
            }
            let Some(slot) = tasks.get(target).filter(|slot| !slot.finished) else {
                return;
            };
            next = slot.waiting;
            at = target;
        }
        if steps < MAX_CHAIN {
            self.cycle_candidate.set(Some(at));
        }
    }

    /// Follows a chain of waits (from the `block_on` future, or from the task `start`) for
    /// as long as each waiter can only be woken by the `JoinHandle` it waits on: its waker
    /// is held by nobody but that task's join slot. No user code runs here.
    fn follow_waits(
        &self,
        mut waker: Arc<TaskWaker>,
        mut waiting: Waiting,
        start: Option<TaskRef>,
    ) -> Chain {
        let mut tasks = self.tasks.borrow_mut();
        let epoch = self.checks.get() + 1;
        self.checks.set(epoch);
        if let Some(slot) = start.and_then(|task| tasks.get_mut(task)) {
            slot.visited = epoch;
        }
        for _ in 0..MAX_CHAIN {
            let joined = tasks.joined_by(waiting, Arc::as_ptr(&waker).cast());
            // Our own references: `waker` here, the task's header (or block_on's stack),
            // and the join slot of the task it waits on.
            let ours = 2 + usize::from(joined.is_some());
            let count = Arc::strong_count(&waker);
            if count == ours + 1 && waiting.is_primitive() {
                return Chain::Primitive; // most likely held by that channel or semaphore
            }
            if count > ours {
                return Chain::Live; // held elsewhere: a timer, a socket, a thread
            }
            let Some(next) = joined else {
                return Chain::Lost;
            };
            let Some(slot) = tasks.get_mut(next) else {
                return Chain::Live;
            };
            if slot.visited == epoch {
                return Chain::Cycle;
            }
            slot.visited = epoch;
            let Some(cell) = &slot.cell else {
                return Chain::Live; // being polled or aborted right now: not idle
            };
            waker = cell.header().waker.clone();
            waiting = slot.waiting;
        }
        Chain::Live
    }

    /// Looks at every pending task (O(n); only when the chain of waits from the `block_on`
    /// future ended at a waker held by nobody, or only by a channel or semaphore, with no
    /// timer armed and no `Handle`). `None` if some task's waker is held outside the
    /// runtime (a socket, a job, another thread): it may still run. Otherwise every waker is
    /// held by nobody but the runtime's join slots (`Stuck`: nothing can ever run again),
    /// or also by oneloop channels and semaphores (`OnPrimitives`).
    fn scan_quiet(&self, main_waker: &Arc<TaskWaker>) -> Option<Quiet> {
        let tasks = self.tasks.borrow();
        let mut on_primitive = false;
        // How a waker's owners add up: the task's header (or block_on's stack), the join
        // slot of the task it waits on, and the channel or semaphore it waits on.
        let mut accounted = |waker: &Arc<TaskWaker>, waiting: Waiting| {
            let joined = tasks.joined_by(waiting, Arc::as_ptr(waker).cast());
            let count = Arc::strong_count(waker);
            let base = 1 + usize::from(joined.is_some());
            if waiting.is_primitive() && count == base + 1 {
                on_primitive = true;
                return true;
            }
            count <= base
        };
        if !accounted(main_waker, self.main_waiting.get()) {
            return None;
        }
        for (_, slot) in tasks.iter().filter(|(_, slot)| !slot.finished) {
            let Some(cell) = &slot.cell else {
                return None;
            };
            if !accounted(&cell.header().waker, slot.waiting) {
                return None;
            }
        }
        Some(if on_primitive {
            Quiet::OnPrimitives
        } else {
            Quiet::Stuck
        })
    }

    /// The `block_on` future and every pending task, each with what it waits on.
    fn waits_listed(&self) -> String {
        let mut message = format!(
            "\n    #0 \"main\" (the block_on future) waits on {}",
            self.main_waiting.get()
        );
        let tasks = self.tasks.borrow();
        let pending: Vec<_> = tasks
            .iter()
            .filter(|(_, slot)| !slot.finished)
            .filter_map(|(task, slot)| Some((task, slot.cell.as_ref()?, slot.waiting)))
            .collect();
        for (task, cell, waiting) in pending.iter().take(20) {
            let info = task_info(task.id, cell.header());
            message.push_str(&format!("\n    {info} waits on {waiting}"));
        }
        if pending.len() > 20 {
            message.push_str(&format!("\n    ... and {} more", pending.len() - 20));
        }
        message
    }

    /// The deadlock panic: the proof, then every pending task and what it waits on.
    #[cold]
    fn deadlock_message(&self, chain: Chain) -> String {
        format!("{}{}", deadlock::headline(chain), self.waits_listed())
    }

    // ---------------------------------------------------------------------------------
    // Shutdown and metrics.
    // ---------------------------------------------------------------------------------

    /// Cancels every task and resolves every handle (the runtime is dropping).
    fn shutdown(self: &Rc<Self>) {
        let _enter = context::enter_for_drop(self);
        self.shutting_down.set(true);
        // Queued remote work (Handle::spawn) is dropped: its handles resolve as cancelled,
        // which wakes their waiters (user code, contained: the shutdown must complete).
        for op in self.remote.close() {
            wake::discard(Some(op));
        }
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
        let (cells, wakers) = self.tasks.borrow_mut().drain();
        self.tasks.borrow().publish_len();
        for cell in cells {
            wake::contain(wake::catch(|| drop(cell)));
        }
        drop(WakeList::from_iter(wakers)); // each dropped, contained
        self.timers.clear();
        // A waker panic deferred while tasks were cancelled has nobody to go to now.
        if let Some(panic) = self.deferred_panic.take() {
            wake::drop_panic(panic);
        }
        self.run_queue.clear();
        // The tasks are gone, and with them every handle to a job that had not started
        // (those jobs are cancelled). Wait a while for the running ones; while panicking,
        // not at all.
        self.default_pool.shutdown(&self.reporter);
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
            timers: self.timers.len(),
            timers_fired: self.timers.fired(),
            io_sources: self.reactor.len(),
            slow_polls: self.instruments.as_ref().map_or(0, Instruments::slow_polls),
        }
    }
}

/// The end of a task's poll: nothing is current any more, and debug mode closes the poll
/// it opened. Normally `end` does it, with the task's name for the report; if anything
/// unwinds out of the poll instead, the drop does it all the same, so the loop's and debug
/// mode's bookkeeping never stay inside a poll that is over.
struct PollEnd<'a> {
    core: &'a Core,
    /// `None` without instruments, and once ended.
    probe: Option<Probe>,
    task: u64,
    site: u32,
}

impl<'a> PollEnd<'a> {
    fn end<'n>(&mut self, name: impl FnOnce() -> Option<&'n str>) {
        self.core.current.set(None);
        if let (Some(ins), Some(probe)) = (&self.core.instruments, self.probe.take()) {
            ins.end_poll(probe, self.task, self.site, name);
        }
    }
}

impl Drop for PollEnd<'_> {
    fn drop(&mut self) {
        self.end(|| None);
    }
}

fn task_info(id: u64, header: &Header) -> TaskInfo {
    TaskInfo {
        id: Id(id),
        name: header.name.as_deref().map(str::to_owned),
        location: header.location,
    }
}
