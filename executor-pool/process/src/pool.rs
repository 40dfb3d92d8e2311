//! [`ProcessPool`]: the handle users hold. It encodes a call's arguments, admits the call
//! to the queue (the bounded queue's overflow policy included), and orders shutdowns; the
//! work itself is the supervisor's (`supervisor.rs`), which owns the worker processes.

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use oneloop_pool::semaphore::TryAcquireError;
use oneloop_pool::{JobError, Overflow};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::call::Call;
use crate::config::Config;
use crate::function::ProcessFn;
use crate::future::ProcessCall;
use crate::payload::Encoded;
use crate::shared::{Mode, Pending, Shared};
use crate::supervisor;

/// A pool of worker processes that run [registered functions](crate::process_fn).
///
/// A call that crashes its worker (a segfault in a native library, an `abort`, a stack
/// overflow, the OOM killer) fails alone, with an error that says what happened; the
/// worker is replaced and the other calls run on. A call that runs past its timeout, or
/// is cancelled while running, has its worker killed.
///
/// Cloning gives another handle to the same pool; when the last handle is dropped, the
/// pool shuts down gracefully (every queued call runs first).
///
/// # Examples
///
/// ```
/// oneloop_process::process_fn! {
///     fn square(x: u64) -> u64 { x * x }
/// }
///
/// let pool = oneloop_process::ProcessPool::new(2)?;
/// let nine = oneloop_pool::block_on(pool.call(square, 3));
/// assert_eq!(nine, Ok(9));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ProcessPool {
    shared: Arc<Shared>,
    /// Shuts the pool down when the last handle goes.
    _owner: Arc<Owner>,
}

struct Owner {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // While unwinding, waiting for calls that may never return would hang the panic:
        // the queue is cancelled and the workers still running are killed at once.
        let mode = if thread::panicking() {
            Mode::NOW.and(Mode::until(Instant::now()))
        } else {
            Mode::GRACEFUL
        };
        stop(&self.shared, &self.supervisor, mode);
    }
}

impl ProcessPool {
    pub(crate) fn start(config: Config) -> io::Result<ProcessPool> {
        crate::entry::keep_entry();
        let (shared, supervisor) = supervisor::start(config)?;
        Ok(ProcessPool {
            shared: shared.clone(),
            _owner: Arc::new(Owner {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            }),
        })
    }

    /// Calls `function` with `args` in a worker process, with the pool's timeout.
    ///
    /// The call is queued at once; the returned future resolves to its result. Arguments
    /// that cannot be encoded fail here, before anything is queued
    /// ([`JobError::Arguments`]).
    #[track_caller]
    pub fn call<A, R>(&self, function: ProcessFn<A, R>, args: A) -> ProcessCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        let timeout = self.shared.config.timeout;
        self.submit(function, args, timeout, Location::caller())
    }

    /// Like [`call`](Self::call), with a timeout of its own: past it, the worker is
    /// killed and the call fails as [`JobError::TimedOut`].
    #[track_caller]
    pub fn call_with_timeout<A, R>(
        &self,
        function: ProcessFn<A, R>,
        args: A,
        timeout: Duration,
    ) -> ProcessCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        self.submit(function, args, Some(timeout), Location::caller())
    }

    fn submit<A, R>(
        &self,
        function: ProcessFn<A, R>,
        args: A,
        timeout: Option<Duration>,
        site: &'static Location<'static>,
    ) -> ProcessCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        let encoded = match crate::payload::encode(&args, &self.shared.regions) {
            Ok(encoded) => encoded,
            Err(e) => {
                let why = crate::function::encoding_error(&args, e);
                let message = format!(
                    "the arguments of {} cannot be encoded: {why}",
                    function.key()
                );
                return ProcessCall::settled(Err(JobError::Arguments(message)));
            }
        };
        // Here, in this process: what the caller asked for when the pool is full. A panic
        // comes back as it would from a worker.
        let caller_runs = move || {
            let ran = catch_unwind(AssertUnwindSafe(|| function.call_here(args)));
            match ran {
                Ok(value) => postcard::to_allocvec(&value)
                    .map(Encoded::Inline)
                    .map_err(|e| {
                        let why = crate::function::encoding_error(&value, e);
                        JobError::Result(format!("the result cannot be encoded: {why}"))
                    }),
                Err(payload) => Err(JobError::Panicked(oneloop_pool::panic_message(&*payload))),
            }
        };
        self.admit(function.key(), encoded, timeout, site, Some(caller_runs))
    }

    /// Calls the function registered under `key` with arguments already encoded (postcard
    /// bytes of its argument type), with this timeout: how a worker of `oneloop-remote`
    /// runs what it took from its queue. Resolve the result with
    /// [`ProcessCall::poll_encoded`]. `None` if no function is registered under `key` in
    /// this binary. When the queue is full, a `CallerRuns` pool waits for room instead.
    #[doc(hidden)]
    #[track_caller]
    pub fn call_encoded(
        &self,
        key: &str,
        args: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Option<ProcessCall<()>> {
        let key = crate::function::find(key)?.key;
        let args = crate::payload::encoded_from(args, &self.shared.regions);
        let none: Option<fn() -> Result<Encoded, JobError>> = None;
        Some(self.admit(key, args, timeout, Location::caller(), none))
    }

    /// Queues a call whose arguments are encoded, within the queue's bounds: what is done
    /// when it is full is the pool's overflow policy (`caller_runs` for `CallerRuns`, or
    /// waiting for room without it).
    fn admit<R>(
        &self,
        key: &'static str,
        args: Encoded,
        timeout: Option<Duration>,
        site: &'static Location<'static>,
        caller_runs: Option<impl FnOnce() -> Result<Encoded, JobError>>,
    ) -> ProcessCall<R> {
        let call = Arc::new(Call::new(self.shared.next_id(), key, site));
        let pending = Pending {
            call: call.clone(),
            args,
            timeout,
        };
        let Some(slots) = &self.shared.admission else {
            return self.enqueued(call, pending);
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => self.enqueued(call, pending.with_permit(permit)),
            Err(TryAcquireError::Closed) => ProcessCall::settled(Err(JobError::Shutdown)),
            Err(TryAcquireError::NoPermits) => match (self.shared.config.overflow, caller_runs) {
                (Overflow::Reject, _) => ProcessCall::settled(Err(JobError::Rejected)),
                (Overflow::CallerRuns, Some(caller_runs)) => ProcessCall::settled(caller_runs()),
                _ => {
                    let permit = slots.clone().acquire_owned();
                    ProcessCall::waiting_for_room(pending, permit, self.shared.clone())
                }
            },
        }
    }

    fn enqueued<R>(&self, call: Arc<Call>, pending: Pending) -> ProcessCall<R> {
        match self.shared.enqueue(pending) {
            Ok(()) => ProcessCall::queued(call, self.shared.clone()),
            Err(error) => {
                call.resolve(Err(error.clone())); // gives its room back
                ProcessCall::settled(Err(error))
            }
        }
    }

    /// Stops accepting calls, runs every queued call, and returns once every worker has
    /// exited.
    pub fn shutdown(&self) {
        stop(&self.shared, &self._owner.supervisor, Mode::GRACEFUL);
    }

    /// Stops accepting calls, cancels the queued ones, lets the running ones finish, and
    /// returns once every worker has exited.
    pub fn shutdown_now(&self) {
        stop(&self.shared, &self._owner.supervisor, Mode::NOW);
    }

    /// Like [`shutdown`](Self::shutdown), but after `timeout` the workers still running a
    /// call are killed (their calls fail as worker deaths that say so). Returns the calls
    /// it killed, by function and call site; empty when everything finished in time.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Vec<String> {
        let until = Instant::now().checked_add(timeout);
        let mode = until.map_or(Mode::GRACEFUL, Mode::until);
        stop(&self.shared, &self._owner.supervisor, mode)
    }

    /// Why the pool is broken (its workers cannot start, or crash in a loop), if it is:
    /// every call fails as [`JobError::Broken`] with this reason.
    pub fn broken(&self) -> Option<String> {
        self.shared.inbox.lock().broken.clone()
    }

    /// The number of worker processes the pool keeps.
    pub fn workers(&self) -> usize {
        self.shared.config.workers
    }
}

/// Orders the shutdown `mode` (a later order may only make it stricter), waits for the
/// supervisor to stop, and returns what it killed.
fn stop(
    shared: &Shared,
    supervisor: &Mutex<Option<thread::JoinHandle<()>>>,
    mode: Mode,
) -> Vec<String> {
    {
        let mut inbox = shared.inbox.lock();
        inbox.closed = true;
        inbox.shutdown = Some(inbox.shutdown.map_or(mode, |ordered| ordered.and(mode)));
    }
    if let Some(admission) = &shared.admission {
        admission.close(); // callers waiting for room resolve as shut down
    }
    shared.notify();
    let mut stopped = shared.stopped.lock();
    while stopped.is_none() {
        shared.stopped_signal.wait(&mut stopped);
    }
    let killed = stopped.clone().unwrap_or_default();
    drop(stopped);
    if let Some(handle) = supervisor.lock().take() {
        let _ = handle.join();
    }
    killed
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.shared.config.workers)
            .field("broken", &self.broken().is_some())
            .finish_non_exhaustive()
    }
}

/// Calls `function` with `args` in a worker process of `pool`: [`ProcessPool::call`] in
/// the shape of `oneloop::run_in_executor(&pool, closure)`, so that offloading to threads
/// and to processes reads the same.
///
/// # Examples
///
/// ```
/// use oneloop_process::{ProcessPool, run_in_process};
///
/// oneloop_process::process_fn! {
///     fn word_count(text: String) -> usize {
///         text.split_whitespace().count()
///     }
/// }
///
/// let pool = ProcessPool::new(1)?;
/// let threads = oneloop_pool::ThreadPool::new(1)?;
/// oneloop::Runtime::new().block_on(async {
///     let on_a_thread = oneloop::run_in_executor(&threads, || "a b c".split(' ').count());
///     let in_a_process = run_in_process(&pool, word_count, "a b c".to_owned());
///     assert_eq!(on_a_thread.await, Ok(3));
///     assert_eq!(in_a_process.await, Ok(3));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[track_caller]
pub fn run_in_process<A, R>(
    pool: &ProcessPool,
    function: ProcessFn<A, R>,
    args: A,
) -> ProcessCall<R>
where
    A: Serialize,
    R: Serialize + DeserializeOwned,
{
    pool.call(function, args)
}
