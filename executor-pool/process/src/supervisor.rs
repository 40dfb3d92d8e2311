//! The supervisor: one thread per pool that owns its worker processes. (Long because the
//! whole life of a worker process, from start to reaping, is one state machine here.)
//!
//! It never blocks on a worker: each worker's socket, stderr pipe and `pidfd` are
//! non-blocking sources of one `mio::Poll`, beside a `mio::Waker` for the handles
//! (`shared.rs`). One loop turn takes new calls and orders from the inbox, kills the
//! workers whose call ran past its timeout or was cancelled (SIGTERM through the pidfd, so
//! a recycled pid is never hit; SIGKILL after the grace), keeps the number of workers up,
//! hands each idle worker the next call, then sleeps until an event or the nearest
//! deadline. A worker that exits is reaped at once (its pidfd becomes readable), so no
//! zombie is left, and only the call it was running fails, with what happened to it.
//!
//! Workers are started from this thread, which lives as long as the pool: a worker's
//! `PR_SET_PDEATHSIG` follows the thread that started it (`worker.rs`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::AssertUnwindSafe;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use oneloop_pool::{JobError, WorkerDeath};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use slab::Slab;

use crate::call::Call;
use crate::config::{CancelRunning, Config};
use crate::payload::{self, Encoded, Views};
use crate::shared::{Mode, Pending, Shared};
use crate::stderr::Forward;
use crate::wire::{self, Frames, FromWorker, Outcome, Payload, ToWorker};
use crate::worker::{INITIALIZER_ENV, Settings, WORKER_ENV};

const WAKER: Token = Token(usize::MAX);
/// Sources per worker in the token space: socket, stderr, pidfd.
const SOURCES: usize = 3;
/// How much of a worker's stderr is kept for the report if it dies.
const STDERR_TAIL: usize = 4096;
/// The most of a worker's stderr read in one turn (see `Worker::read_stderr`).
const STDERR_PER_TURN: usize = 64 * 1024;
/// Workers that die before they are ready, in a row, before the pool is broken.
const START_FAILURES: u32 = 3;
/// Calls in a row that crash their worker, with no call answered in between, before the
/// pool is broken: a crash loop (a native library that segfaults on every input, say)
/// would otherwise start and kill workers for ever.
const CRASH_LOOP: u32 = 32;
/// The pause before trying again to start a worker after a start failed.
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// How long the last stage of a shutdown waits for workers to leave on their own after
/// their sockets are closed, before it kills them.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// How long the supervisor looks for a worker's answer before it sleeps (see `wait`).
const SPIN: Duration = Duration::from_micros(200);

const TIMED_OUT: &str = "it ran past its timeout";
const CANCELLED: &str = "its call was cancelled";
const SHUTDOWN: &str = "the pool's shutdown timeout ran out";
const NOT_STARTED: &str = "it did not start within the pool's start timeout";

/// Starts the supervisor thread and, from it, the first workers. Returns once they are
/// started (not yet ready), or with the error that stopped the first one.
pub(crate) fn start(config: Config) -> io::Result<(Arc<Shared>, thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared::new(config, waker));
    let (started, first) = mpsc::channel();
    let supervisor = Supervisor {
        poll,
        shared: shared.clone(),
        workers: Slab::new(),
        queue: VecDeque::new(),
        start_failures: 0,
        start_after: None,
        crashes: HashMap::new(),
        killed: Vec::new(),
        last_failure: String::new(),
        last_answer: Instant::now(),
        crashes_in_a_row: 0,
    };
    let handle = thread::Builder::new()
        .name("oneloop-process".to_owned())
        .spawn(move || {
            let mut supervisor = supervisor;
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| supervisor.run(started)));
            if let Err(panic) = ran {
                // Never leave a call unresolved, a worker unreaped, or `stop` waiting.
                let why = oneloop_pool::panic_message(&*panic);
                supervisor.after_panic(why);
            }
        })?;
    match first.recv() {
        Ok(Ok(())) => Ok((shared, handle)),
        Ok(Err(error)) => {
            let _ = handle.join();
            Err(error)
        }
        Err(_) => {
            let _ = handle.join();
            Err(io::Error::other(
                "the process pool's supervisor thread died",
            ))
        }
    }
}

struct Supervisor {
    poll: Poll,
    shared: Arc<Shared>,
    workers: Slab<Worker>,
    /// Calls taken from the inbox, waiting for an idle worker.
    queue: VecDeque<Pending>,
    /// Workers in a row that died before they were ready.
    start_failures: u32,
    /// No worker is started before this (a start just failed).
    start_after: Option<Instant>,
    /// Crashes in a row of each call (hash of its function and arguments).
    crashes: HashMap<u64, u32>,
    /// What a timed shutdown killed.
    killed: Vec<String>,
    /// The last start failure, for the broken pool's reason.
    last_failure: String,
    /// When a worker last answered a call (see `wait`).
    last_answer: Instant,
    /// Calls that crashed their worker since a worker last answered one (`CRASH_LOOP`).
    crashes_in_a_row: u32,
}

struct Worker {
    child: Child,
    pidfd: OwnedFd,
    socket: mio::net::UnixStream,
    stderr: Option<ChildStderr>,
    frames: Frames,
    /// Bytes to write to the socket (a call), once it takes them.
    out: Vec<u8>,
    /// The memory file of the call in `out`, sent with its first byte.
    out_file: Option<OwnedFd>,
    /// Memory files received, in order, for the `InFile` results still to be read.
    fds: VecDeque<OwnedFd>,
    /// Its regions, as mapped here (`payload.rs`).
    views: Views,
    /// It said `Ready`.
    ready: bool,
    running: Option<Running>,
    calls_served: u32,
    /// It has served its last call (`max_calls_per_worker`), or the pool is closing:
    /// its socket is closed, and it leaves.
    retiring: bool,
    kill: Option<Kill>,
    tail: VecDeque<u8>,
    /// Its stderr on its way to ours, if the pool passes it on.
    forward: Option<Forward>,
    /// Why it could not start, as it said before leaving.
    start_failure: Option<String>,
    /// When it was started (it must say `Ready` within the start timeout).
    started_at: Instant,
    /// Its stderr held more than one turn's read: read on, next turn.
    stderr_pending: bool,
}

struct Running {
    call: Arc<Call>,
    deadline: Option<Instant>,
    /// Its encoded arguments: a region of ours is not reused before the call ends (the
    /// worker reads it in place), and a crash is counted against them.
    args: Encoded,
}

impl Running {
    /// Its crash counter's key: its function and its arguments.
    fn crash_key(&self) -> u64 {
        crash_key(self.call.key, self.args.bytes())
    }
}

struct Kill {
    because: &'static str,
    /// When SIGKILL follows the SIGTERM; `None` once it was sent.
    sigkill_at: Option<Instant>,
}

impl Supervisor {
    fn run(&mut self, started: mpsc::Sender<io::Result<()>>) {
        for _ in 0..self.shared.config.workers {
            if let Err(error) = self.start_worker() {
                let _ = started.send(Err(error));
                self.stop(Vec::new());
                return;
            }
        }
        let _ = started.send(Ok(()));
        drop(started);
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let mode = self.take_inbox();
            self.watch_running(now, mode);
            if mode.is_none() || !self.queue.is_empty() {
                self.replenish(now);
            }
            self.dispatch(now);
            if mode.is_some() && self.queue.is_empty() && self.running_count() == 0 {
                break;
            }
            // `now` is the turn's: every deadline up to it was acted on above. A worker's
            // stderr left unread last turn is read on now, without sleeping.
            let mut timeout = self
                .next_deadline(now, mode)
                .map(|at| at.saturating_duration_since(Instant::now()));
            for (_, worker) in self.workers.iter_mut() {
                if worker.stderr_pending {
                    worker.read_stderr();
                    timeout = Some(Duration::ZERO);
                }
            }
            self.wait(&mut events, timeout);
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let key = event.token().0 / SOURCES;
                match event.token().0 % SOURCES {
                    0 => self.on_socket(key),
                    1 => self.on_stderr(key),
                    _ => self.on_exit(key),
                }
            }
        }
        let killed = std::mem::take(&mut self.killed);
        self.stop(killed);
    }

    /// Waits for events, at most `timeout`. While a call is in flight, its answer is
    /// usually microseconds away, and right after one ended the caller's next call often
    /// is: the supervisor looks without sleeping for a short while first (`SPIN`), which
    /// spares the call a wake-up of this thread (tens of µs on a virtual machine whose CPU
    /// went idle).
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) {
        let busy = self
            .workers
            .iter()
            .any(|(_, worker)| worker.running.is_some());
        if busy || self.last_answer.elapsed() < SPIN {
            let spin_until = Instant::now() + SPIN;
            loop {
                match self.poll.poll(events, Some(Duration::ZERO)) {
                    Ok(()) if !events.is_empty() => return,
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        panic!("oneloop-process: the supervisor's poller failed: {error}")
                    }
                }
                if Instant::now() >= spin_until {
                    break;
                }
                // Yield, not spin: on one CPU, the worker needs it to answer.
                thread::yield_now();
            }
        }
        if let Err(error) = self.poll.poll(events, timeout)
            && error.kind() != io::ErrorKind::Interrupted
        {
            panic!("oneloop-process: the supervisor's poller failed: {error}");
        }
    }

    // ---------------------------------------------------------------------------------
    // Taking calls and orders.
    // ---------------------------------------------------------------------------------

    /// Moves new calls into the queue; returns the shutdown order, if any. A `Now` order
    /// cancels every queued call; a broken pool fails them.
    fn take_inbox(&mut self) -> Option<Mode> {
        let (mode, broken) = {
            let mut inbox = self.shared.inbox.lock();
            self.queue.extend(inbox.calls.drain(..));
            (inbox.shutdown, inbox.broken.clone())
        };
        if self.shared.cancelled_queued.swap(false, Ordering::AcqRel) {
            // Cancelled calls leave the queue (their room went back when they were).
            self.queue.retain(|pending| !pending.call.is_done());
        }
        if broken.is_some() || mode.is_some_and(|mode| mode.cancel_queue) {
            let error = match broken {
                Some(reason) => JobError::Broken(reason),
                None => JobError::Cancelled,
            };
            for pending in self.queue.drain(..) {
                pending.call.resolve(Err(error.clone()));
            }
        }
        mode
    }

    fn running_count(&self) -> usize {
        self.workers
            .iter()
            .filter(|(_, worker)| worker.running.is_some())
            .count()
    }

    // ---------------------------------------------------------------------------------
    // Kills: timeouts, cancellations, a shutdown's deadline.
    // ---------------------------------------------------------------------------------

    fn watch_running(&mut self, now: Instant, mode: Option<Mode>) {
        let kill_abandoned = self.shared.config.cancel_running == CancelRunning::Kill;
        let shutdown_over = mode
            .and_then(|mode| mode.kill_at)
            .is_some_and(|at| at <= now);
        if shutdown_over {
            for pending in self.queue.drain(..) {
                pending.call.resolve(Err(JobError::Cancelled));
            }
        }
        let grace = self.shared.config.kill_grace;
        for (_, worker) in self.workers.iter_mut() {
            if let Some(kill) = &mut worker.kill {
                if kill.sigkill_at.is_some_and(|at| at <= now) {
                    kill.sigkill_at = None;
                    let _ = rustix::process::pidfd_send_signal(&worker.pidfd, Signal::KILL);
                }
                continue;
            }
            if !worker.ready
                && worker
                    .started_at
                    .checked_add(self.shared.config.start_timeout)
                    .is_some_and(|at| at <= now)
            {
                worker.kill(NOT_STARTED, now, Duration::ZERO);
                continue;
            }
            let Some(running) = &worker.running else {
                continue;
            };
            let because = if running.deadline.is_some_and(|at| at <= now) {
                TIMED_OUT
            } else if kill_abandoned && running.call.is_abandoned() {
                CANCELLED
            } else if shutdown_over {
                self.killed.push(running.call.describe());
                SHUTDOWN
            } else {
                continue;
            };
            worker.kill(because, now, grace);
        }
    }

    /// The nearest instant something must happen without an event: a call's timeout, a
    /// SIGKILL after its grace, a shutdown's deadline, a paused restart.
    ///
    /// Only instants still ahead count, and only for what has not happened yet: a passed
    /// one (a timeout whose worker is being killed, a shutdown's deadline, a restart
    /// pause of a broken pool) would turn the wait into a busy loop.
    fn next_deadline(&self, now: Instant, mode: Option<Mode>) -> Option<Instant> {
        let start_timeout = self.shared.config.start_timeout;
        let workers = self.workers.iter().flat_map(|(_, worker)| {
            let kill = worker.kill.as_ref().and_then(|kill| kill.sigkill_at);
            let timeout = worker
                .running
                .as_ref()
                .filter(|_| worker.kill.is_none())
                .and_then(|running| running.deadline);
            let start = (!worker.ready && worker.kill.is_none())
                .then(|| worker.started_at.checked_add(start_timeout))
                .flatten();
            kill.into_iter().chain(timeout).chain(start)
        });
        let shutdown = mode.and_then(|mode| mode.kill_at);
        let broken = self.shared.inbox.lock().broken.is_some();
        let restart = self
            .start_after
            .filter(|_| !broken && (mode.is_none() || !self.queue.is_empty()));
        workers
            .chain(shutdown)
            .chain(restart)
            .filter(|at| *at > now)
            .min()
    }

    // ---------------------------------------------------------------------------------
    // Starting workers, handing them calls.
    // ---------------------------------------------------------------------------------

    /// Starts workers until the pool has its number of them (those retiring or being
    /// killed do not count: their replacements start now, before they leave).
    fn replenish(&mut self, now: Instant) {
        if self.shared.inbox.lock().broken.is_some() {
            return;
        }
        if self.start_after.is_some_and(|at| at > now) {
            return;
        }
        self.start_after = None;
        let serving = self
            .workers
            .iter()
            .filter(|(_, worker)| !worker.retiring && worker.kill.is_none())
            .count();
        for _ in serving..self.shared.config.workers {
            if let Err(error) = self.start_worker() {
                self.last_failure = format!("a worker process could not be started: {error}");
                self.start_failed(now);
                return;
            }
        }
    }

    fn start_worker(&mut self) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let settings = Settings {
            parent: std::process::id(),
            memory_limit: self.shared.config.memory_limit,
        };
        let mut command = Command::new("/proc/self/exe");
        if let Some(initializer) = self.shared.config.initializer {
            command.env(INITIALIZER_ENV, initializer);
        }
        let mut child = command
            .arg0("oneloop-process-worker")
            .env(WORKER_ENV, settings.encode())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        // The child is not reaped before we say so, so its pid cannot be reused meanwhile
        // -- unless something else in this process reaps children (`SIGCHLD` ignored, a
        // `waitpid(-1)` elsewhere). The pidfd is then checked to be of a child of ours:
        // one of a stranger that took the pid would be refused (`ECHILD`), never signalled.
        let pidfd = Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::other("a child with pid 0"))
            .and_then(|pid| Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?))
            .and_then(|pidfd| {
                let ours = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
                match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), ours) {
                    Ok(_) => Ok(pidfd),
                    Err(rustix::io::Errno::CHILD) => Err(io::Error::other(
                        "the worker process was reaped by something else in this process \
                         (is SIGCHLD ignored?)",
                    )),
                    Err(error) => Err(error.into()),
                }
            });
        let pidfd = match pidfd {
            Ok(pidfd) => pidfd,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        let stderr = child.stderr.take();
        if let Some(stderr) = &stderr
            && let Err(error) = rustix::io::ioctl_fionbio(stderr, true)
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error.into());
        }
        let entry = self.workers.vacant_entry();
        let key = entry.key();
        let mut socket = mio::net::UnixStream::from_std(ours);
        let registry = self.poll.registry();
        let registered = registry
            .register(
                &mut socket,
                Token(key * SOURCES),
                Interest::READABLE | Interest::WRITABLE,
            )
            .and_then(|()| match &stderr {
                Some(stderr) => registry.register(
                    &mut SourceFd(&stderr.as_raw_fd()),
                    Token(key * SOURCES + 1),
                    Interest::READABLE,
                ),
                None => Ok(()),
            })
            .and_then(|()| {
                registry.register(
                    &mut SourceFd(&pidfd.as_raw_fd()),
                    Token(key * SOURCES + 2),
                    Interest::READABLE,
                )
            });
        if let Err(error) = registered {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        entry.insert(Worker {
            child,
            pidfd,
            socket,
            stderr,
            frames: Frames::default(),
            out: Vec::new(),
            out_file: None,
            fds: VecDeque::new(),
            views: Views::default(),
            ready: false,
            running: None,
            calls_served: 0,
            retiring: false,
            kill: None,
            tail: VecDeque::new(),
            forward: self.shared.config.forward_stderr.then(Forward::default),
            start_failure: None,
            started_at: Instant::now(),
            stderr_pending: false,
        });
        Ok(())
    }

    /// A worker could not be started, or died before it was ready: after
    /// `START_FAILURES` in a row with no worker serving, the pool is broken.
    fn start_failed(&mut self, now: Instant) {
        self.start_failures += 1;
        self.start_after = Some(now + RESTART_PAUSE);
        let serving = self.workers.iter().any(|(_, worker)| worker.ready);
        if self.start_failures >= START_FAILURES && !serving {
            let reason = format!(
                "{} worker processes in a row failed to start; the last: {}",
                self.start_failures, self.last_failure
            );
            self.break_pool(reason);
        }
    }

    /// The pool is broken: every queued and later call fails as `Broken`, and no worker
    /// is started any more (those still running finish their calls).
    fn break_pool(&mut self, reason: String) {
        let reason = self
            .shared
            .inbox
            .lock()
            .broken
            .get_or_insert(reason)
            .clone();
        for pending in self.queue.drain(..) {
            pending.call.resolve(Err(JobError::Broken(reason.clone())));
        }
    }

    /// Hands each idle, ready worker the next call.
    fn dispatch(&mut self, now: Instant) {
        let quarantine_after = self.shared.config.quarantine_after;
        for (_, worker) in self.workers.iter_mut() {
            if !worker.ready || worker.running.is_some() || worker.retiring || worker.kill.is_some()
            {
                continue;
            }
            // The next call this worker can take: not quarantined, not cancelled, and
            // encoded into its buffer (a call that cannot be encoded fails, and the worker
            // takes the one after it).
            let taken = loop {
                let Some(pending) = self.queue.pop_front() else {
                    break None;
                };
                // Hashing the arguments is paid only once some call has crashed.
                let crashes = if self.crashes.is_empty() {
                    0
                } else {
                    let crash_key = crash_key(pending.call.key, pending.args.bytes());
                    self.crashes.get(&crash_key).copied().unwrap_or(0)
                };
                if crashes >= quarantine_after {
                    pending.call.resolve(Err(JobError::Quarantined(crashes)));
                    continue;
                }
                // A call cancelled while queued is skipped (it already resolved).
                if !pending.call.start(worker.child.id()) {
                    continue;
                }
                let mut args = pending.args;
                let (payload, file) = Payload::of(&mut args, false);
                let message = ToWorker::Call {
                    id: pending.call.id,
                    key: pending.call.key.to_owned(),
                    args: payload,
                };
                // The region's file goes with the frame, whenever the socket takes it.
                let sent = file
                    .map(|file| file.try_clone_to_owned())
                    .transpose()
                    .and_then(|file| {
                        wire::encode(&message, &mut worker.out)?;
                        Ok(file)
                    });
                match sent {
                    Ok(file) => worker.out_file = file,
                    Err(error) => {
                        let error = JobError::Arguments(error.to_string());
                        pending.call.resolve(Err(error));
                        continue;
                    }
                }
                break Some(Running {
                    call: pending.call,
                    deadline: pending.timeout.and_then(|timeout| now.checked_add(timeout)),
                    args,
                });
            };
            let Some(running) = taken else {
                return;
            };
            worker.running = Some(running);
            worker.flush();
        }
    }

    // ---------------------------------------------------------------------------------
    // Events.
    // ---------------------------------------------------------------------------------

    fn on_socket(&mut self, key: usize) {
        let Some(worker) = self.workers.get_mut(key) else {
            return;
        };
        worker.flush();
        worker.read_socket();
        loop {
            let message = match worker.frames.next::<FromWorker>() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    // A corrupt stream: the worker cannot be trusted with another call.
                    worker.kill("its stream was corrupt", Instant::now(), Duration::ZERO);
                    break;
                }
            };
            match message {
                FromWorker::Ready => {
                    worker.ready = true;
                    self.start_failures = 0;
                }
                FromWorker::StartFailed(why) => worker.start_failure = Some(why),
                FromWorker::Done { id, outcome } => {
                    let Some(running) = worker.running.take_if(|r| r.call.id == id) else {
                        continue;
                    };
                    if !self.crashes.is_empty() {
                        self.crashes.remove(&running.crash_key());
                    }
                    self.last_answer = Instant::now();
                    self.crashes_in_a_row = 0;
                    let result = result_of(
                        outcome,
                        running.call.key,
                        &mut worker.fds,
                        &mut worker.views,
                    );
                    running.call.resolve(result);
                    worker.calls_served += 1;
                    if worker
                        .calls_served
                        .checked_sub(self.shared.config.max_calls_per_worker.unwrap_or(u32::MAX))
                        .is_some()
                    {
                        worker.retire();
                    }
                }
            }
        }
    }

    fn on_stderr(&mut self, key: usize) {
        if let Some(worker) = self.workers.get_mut(key) {
            worker.read_stderr();
        }
    }

    /// The worker's process ended: reap it, and fail its call with what happened.
    fn on_exit(&mut self, key: usize) {
        let Some(worker) = self.workers.get_mut(key) else {
            return;
        };
        // A reply or stderr lines sent just before the end are still to be read.
        worker.read_socket();
        worker.read_stderr();
        let status = match worker.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return, // not yet (a spurious event)
            Err(_) => ExitStatus::from_raw(0),
        };
        self.on_socket(key);
        let mut worker = self.workers.remove(key);
        if let Some(forward) = &mut worker.forward {
            forward.finish();
        }
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut worker.socket);
        let _ = registry.deregister(&mut SourceFd(&worker.pidfd.as_raw_fd()));
        if let Some(stderr) = &worker.stderr {
            let _ = registry.deregister(&mut SourceFd(&stderr.as_raw_fd()));
        }
        let now = Instant::now();
        let death = worker.death(status, self.shared.config.memory_limit.is_some());
        if let Some(why) = worker.start_failure.take() {
            self.last_failure = format!("worker process {}: {why}", worker.child.id());
            self.start_failed(now);
        } else if !worker.ready
            && worker
                .kill
                .as_ref()
                .is_none_or(|kill| kill.because == NOT_STARTED)
        {
            self.last_failure = format!(
                "{}",
                JobError::WorkerDied(death.clone().running("nothing (it had not started)".into()))
            );
            self.start_failed(now);
        }
        if let Some(running) = worker.running.take() {
            running
                .call
                .worker_died(&death.clone().running(running.call.describe()));
            let because = worker.kill.as_ref().map(|kill| kill.because);
            let error = match because {
                Some(TIMED_OUT) => JobError::TimedOut,
                Some(CANCELLED) => JobError::Cancelled,
                _ => {
                    if because.is_none() {
                        self.crashes_in_a_row += 1;
                        if self.crashes_in_a_row == CRASH_LOOP {
                            let reason = format!(
                                "a crash loop: {CRASH_LOOP} calls in a row crashed their worker \
                                 process, none answered in {:.1?}; the last: {}",
                                self.last_answer.elapsed(),
                                JobError::WorkerDied(
                                    death.clone().running(running.call.describe())
                                )
                            );
                            self.break_pool(reason);
                        }
                        *self.crashes.entry(running.crash_key()).or_default() += 1;
                        if self.crashes.len() > 4096 {
                            self.crashes.clear(); // bounded memory; a loss of history only
                        }
                    }
                    JobError::WorkerDied(death.running(running.call.describe()))
                }
            };
            running.call.resolve(Err(error));
        }
    }

    // ---------------------------------------------------------------------------------
    // Stopping.
    // ---------------------------------------------------------------------------------

    /// The supervisor's own code panicked (a bug, or a poller that failed): the pool is
    /// broken with the reason, every call still queued or running fails with it, and the
    /// workers are stopped and reaped as in a shutdown.
    fn after_panic(&mut self, why: String) {
        let reason = format!("its supervisor thread failed: {why}");
        {
            let mut inbox = self.shared.inbox.lock();
            inbox.closed = true;
            inbox.broken.get_or_insert(reason.clone());
        }
        let broken = || Err(JobError::Broken(reason.clone()));
        for pending in self.queue.drain(..) {
            pending.call.resolve(broken());
        }
        // Taken out first: resolving wakes callers, never under the inbox's lock.
        let arrived: Vec<_> = self.shared.inbox.lock().calls.drain(..).collect();
        for pending in arrived {
            pending.call.resolve(broken());
        }
        for (_, worker) in self.workers.iter_mut() {
            if let Some(running) = worker.running.take() {
                running.call.resolve(broken());
            }
        }
        let killed = std::mem::take(&mut self.killed);
        if std::panic::catch_unwind(AssertUnwindSafe(|| self.stop(killed))).is_err() {
            // Even stopping failed: at least let `shutdown` return.
            *self.shared.stopped.lock() = Some(Vec::new());
            self.shared.stopped_signal.notify_all();
        }
    }

    /// Closes every worker's socket (they leave at its end), reaps them all (killing those
    /// that do not leave in time), resolves whatever is left, and tells the handles.
    fn stop(&mut self, killed: Vec<String>) {
        for (_, worker) in self.workers.iter_mut() {
            worker.retire();
        }
        let leave_by = Instant::now() + LEAVE_GRACE;
        let mut events = Events::with_capacity(64);
        while !self.workers.is_empty() {
            let now = Instant::now();
            if now >= leave_by {
                for (_, worker) in self.workers.iter_mut() {
                    let _ = rustix::process::pidfd_send_signal(&worker.pidfd, Signal::KILL);
                }
            }
            let timeout = leave_by
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            let _ = self.poll.poll(&mut events, Some(timeout));
            let keys: Vec<usize> = self.workers.iter().map(|(key, _)| key).collect();
            for key in keys {
                self.on_exit(key);
            }
        }
        for pending in self.queue.drain(..) {
            pending.call.resolve(Err(JobError::Cancelled));
        }
        // Taken out first: resolving wakes callers, never under the inbox's lock.
        let arrived: Vec<_> = self.shared.inbox.lock().calls.drain(..).collect();
        for pending in arrived {
            pending.call.resolve(Err(JobError::Shutdown));
        }
        *self.shared.stopped.lock() = Some(killed);
        self.shared.stopped_signal.notify_all();
    }
}

impl Worker {
    /// Writes what the socket takes of `out` (its memory file with the first byte).
    fn flush(&mut self) {
        while !self.out.is_empty() {
            let file = self.out_file.as_ref().map(|file| file.as_fd());
            match payload::send(&self.socket, &self.out, file) {
                Ok(0) => return,
                Ok(written) => {
                    self.out.drain(..written);
                    self.out_file = None; // sent, and ours to close
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: the next writable event; else the exit
            }
        }
    }

    /// Reads what has arrived on the socket into `frames`.
    fn read_socket(&mut self) {
        let mut buffer = [0; 16 * 1024];
        loop {
            match payload::recv(&self.socket, &mut buffer, &mut self.fds) {
                Ok(0) => return, // the worker closed it: its exit follows
                Ok(read) => self.frames.extend(&buffer[..read]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Keeps the last `STDERR_TAIL` bytes the worker wrote to stderr. Reads at most
    /// `STDERR_PER_TURN` at a time: a worker that floods its stderr must not keep the
    /// supervisor from everything else. What is left is read on the next turns
    /// (`stderr_pending`), since the pipe's readiness is reported once, not again.
    fn read_stderr(&mut self) {
        self.stderr_pending = false;
        let Some(stderr) = &mut self.stderr else {
            return;
        };
        let mut buffer = [0; 4096];
        let mut read_now = 0;
        loop {
            if read_now >= STDERR_PER_TURN {
                self.stderr_pending = true;
                return;
            }
            match stderr.read(&mut buffer) {
                Ok(0) => return,
                Ok(read) => {
                    read_now += read;
                    if let Some(forward) = &mut self.forward {
                        forward.push(&buffer[..read]);
                    }
                    self.tail.extend(&buffer[..read]);
                    let excess = self.tail.len().saturating_sub(STDERR_TAIL);
                    self.tail.drain(..excess);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Starts killing the worker: SIGTERM now, SIGKILL after `grace`.
    fn kill(&mut self, because: &'static str, now: Instant, grace: Duration) {
        let signal = if grace.is_zero() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        let _ = rustix::process::pidfd_send_signal(self.pidfd.as_fd(), signal);
        self.kill = Some(Kill {
            because,
            sigkill_at: (!grace.is_zero()).then(|| now + grace),
        });
    }

    /// No more calls: closing our side of the socket makes the worker leave.
    fn retire(&mut self) {
        if !self.retiring {
            self.retiring = true;
            let _ = self.socket.shutdown(std::net::Shutdown::Write);
        }
    }

    /// What its exit status and stderr say about its end.
    fn death(&self, status: ExitStatus, memory_limited: bool) -> WorkerDeath {
        let bytes: Vec<u8> = self.tail.iter().copied().collect();
        let tail = String::from_utf8_lossy(&bytes).into_owned();
        let mut killed_because = self.kill.as_ref().map(|kill| kill.because);
        if killed_because.is_none() && memory_limited && tail.contains("memory allocation of") {
            killed_because = Some("memory limit");
        }
        WorkerDeath::new(
            self.child.id(),
            status.code(),
            status.signal().map(signal_name),
            killed_because,
            String::new(),
            last_lines(&tail, 10),
        )
    }
}

/// The result a worker's outcome stands for.
fn result_of(
    outcome: Outcome,
    key: &str,
    fds: &mut VecDeque<OwnedFd>,
    views: &mut Views,
) -> Result<Encoded, JobError> {
    match outcome {
        Outcome::Value(value) => value
            .open(fds, views)
            .map_err(|e| JobError::Result(format!("it cannot be read here: {e}"))),
        Outcome::Panicked { message, location } if location.is_empty() => {
            Err(JobError::Panicked(message))
        }
        Outcome::Panicked { message, location } => {
            Err(JobError::Panicked(format!("{message} (at {location})")))
        }
        Outcome::UnknownFunction => Err(JobError::Arguments(format!(
            "the worker has no function registered as {key} (is it the same binary?)"
        ))),
        Outcome::Arguments(message) => Err(JobError::Arguments(message)),
        Outcome::Result(message) => Err(JobError::Result(message)),
    }
}

/// Which call a crash is counted against: its function and its arguments.
fn crash_key(key: &str, args: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    args.hash(&mut hasher);
    hasher.finish()
}

fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "a signal",
    }
}
