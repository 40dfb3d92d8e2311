//! The working side: a process that takes calls from a queue's request stream and runs
//! them in a process pool of its own, so a crash or a hard kill of one call is handled as
//! a process pool handles it and never takes the worker down.
//!
//! Threads:
//! - one **slot** per process of the pool (`oneloop-remote-slot`): takes an entry
//!   (`XREADGROUP`, as the group's consumer named after this process), runs it, and writes
//!   the reply, the acknowledgement and the entry's deletion in one transaction;
//! - one **watch** thread (`oneloop-remote-watch`): reads the cancel stream and kills the
//!   calls it names that run here; keeps the entries running here from looking abandoned
//!   (`XCLAIM ... JUSTID` resets their idle time, every third of the visibility timeout);
//!   and takes over the entries of workers that stopped doing so: past the visibility
//!   timeout an entry's worker is taken for dead, the entry is claimed (`XCLAIM` with that
//!   minimum idle time, so two workers never both get it) and run again, unless it has
//!   been started `max_attempts` times, in which case its caller gets
//!   `JobError::AttemptsExhausted` with the workers that took it.
//!
//! The parts: `slot.rs` (taking, running, answering), `watch.rs` (cancellations, renewals,
//! takeovers).

mod slot;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oneloop_process::ProcessPool;
use parking_lot::Mutex;

use crate::link::Link;
use crate::protocol::{self, Request, create_group};

/// How long a slot (or the watch thread) blocks on a stream before it looks at its stop
/// flag again.
const BLOCK: Duration = Duration::from_millis(200);

/// The calls running on a worker, by (client, call).
type Running = HashMap<(String, u64), RunningCall>;

/// A call running on a worker.
struct RunningCall {
    entry: String,
    /// How to kill it, if its caller may cancel it so.
    cancel: Option<Arc<Cancel>>,
    /// When it was taken, and on whose clock (unix µs).
    taken: Instant,
    taken_us: u64,
    attempt: u32,
    reply_ttl_ms: u64,
    /// Its caller was told it runs (`Outcome::Running`).
    announced: bool,
}

/// Builds a [`Worker`]: `Worker::builder(url, queue)`.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build`"]
pub struct WorkerBuilder {
    url: String,
    queue: String,
    processes: Option<usize>,
    pool: Option<ProcessPool>,
    visibility: Duration,
}

impl WorkerBuilder {
    /// How many calls run at once, each in a process of its own (default: the CPUs this
    /// process may use).
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// Runs the calls in this process pool (its memory limit, recycling, timeouts...)
    /// instead of a default one; as many calls run at once as it has workers, which
    /// [`processes`](Self::processes) must then say.
    pub fn pool(mut self, pool: ProcessPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// How long an entry taken by a worker may go without a sign of life (default 30 s)
    /// before other workers take that worker for dead and run the entry again. A live
    /// worker renews its entries every third of this, however long they run.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = timeout;
        self
    }

    /// Connects, makes the queue's consumer group if it is not there yet, and starts the
    /// process pool. Nothing is taken from the queue before [`Worker::run`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad URL, an empty queue name, zero processes or a zero
    /// visibility timeout; the connection's or the process pool's error.
    pub fn build(self) -> io::Result<Worker> {
        let invalid = |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message);
        if self.queue.is_empty() {
            return Err(invalid("a queue needs a name"));
        }
        if self.processes == Some(0) || self.visibility.is_zero() {
            return Err(invalid(
                "processes and the visibility timeout must be above zero",
            ));
        }
        let processes = self.processes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let pool = match self.pool {
            Some(pool) => pool,
            None => ProcessPool::new(processes)?,
        };
        let mut link = Link::new(&self.url, Duration::from_secs(2), Duration::from_secs(5))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let requests = protocol::requests(&self.queue);
        create_group(&mut link, &requests)
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
        Ok(Worker {
            shared: Arc::new(Shared {
                url: self.url,
                cancels: protocol::cancels(&self.queue),
                queue: self.queue,
                requests,
                name: protocol::this_process(),
                pool,
                processes,
                visibility: self.visibility,
                stop: AtomicBool::new(false),
                slots_done: AtomicBool::new(false),
                idle: AtomicUsize::new(processes),
                running: Mutex::new(HashMap::new()),
                early_cancels: Mutex::new(VecDeque::new()),
                reclaimed: Mutex::new(VecDeque::new()),
            }),
        })
    }
}

/// A worker of a queue: runs the calls [`RedisExecutor`](crate::RedisExecutor)s queue
/// there, in a process pool of its own. Any number of workers, on any machines, serve one
/// queue; each call goes to one of them (at least once: see the crate's docs).
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
}

/// Stops a running [`Worker`] from another thread: it takes no more calls, finishes
/// those it runs, and [`Worker::run`] returns.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Stops the worker: see [`Stopper`].
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Runs a worker of `queue` on the Redis server at `url` with the default settings,
/// until the process is killed: the whole `main` of a worker binary.
///
/// # Errors
///
/// As [`WorkerBuilder::build`], and a thread that could not be started.
pub fn serve(url: &str, queue: &str) -> io::Result<()> {
    Worker::builder(url, queue).build()?.run()
}

impl Worker {
    /// A worker for the queue `queue` on the Redis server at `url`, to set up.
    pub fn builder(url: &str, queue: &str) -> WorkerBuilder {
        WorkerBuilder {
            url: url.to_owned(),
            queue: queue.to_owned(),
            processes: None,
            pool: None,
            visibility: Duration::from_secs(30),
        }
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// This worker's name in the queue's consumer group, and in reports: `host:pid`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Takes and runs calls until stopped ([`Stopper::stop`]); returns once the calls it
    /// was running have been answered.
    ///
    /// # Errors
    ///
    /// A thread that could not be started.
    pub fn run(self) -> io::Result<()> {
        let mut slots: Vec<JoinHandle<()>> = Vec::new();
        let mut watch = None;
        let started = (|| {
            for _ in 0..self.shared.processes {
                let shared = self.shared.clone();
                slots.push(
                    std::thread::Builder::new()
                        .name("oneloop-remote-slot".into())
                        .spawn(move || slot::run(&shared))?,
                );
            }
            let shared = self.shared.clone();
            watch = Some(
                std::thread::Builder::new()
                    .name("oneloop-remote-watch".into())
                    .spawn(move || watch::run(&shared))?,
            );
            Ok(())
        })();
        if started.is_err() {
            self.shared.stop.store(true, Ordering::Release);
        }
        // The slots finish their calls first: meanwhile the watch thread still renews them
        // and passes cancellations on.
        for slot in slots {
            let _ = slot.join();
        }
        self.shared.slots_done.store(true, Ordering::Release);
        if let Some(watch) = watch {
            let _ = watch.join();
        }
        self.shared.pool.shutdown();
        started
    }
}

struct Shared {
    url: String,
    queue: String,
    requests: String,
    cancels: String,
    /// `host:pid`: the consumer name.
    name: String,
    pool: ProcessPool,
    processes: usize,
    visibility: Duration,
    stop: AtomicBool,
    /// Every slot has left (the watch thread leaves next).
    slots_done: AtomicBool,
    /// Slots with no call.
    idle: AtomicUsize,
    /// The calls running here, by (client, call): their entry, and how to kill them.
    running: Mutex<Running>,
    /// Cancellations seen lately, for a call that registers after its cancel came.
    early_cancels: Mutex<VecDeque<(String, u64)>>,
    /// Entries the watch thread took over, for the next free slot.
    reclaimed: Mutex<VecDeque<Taken>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue)
            .field("name", &self.name)
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

/// An entry taken from the stream.
struct Taken {
    entry: String,
    request: Request,
    /// Which start of the call this is.
    attempt: u32,
}

/// A kill order for one running call, and the waker of the slot that waits for it.
#[derive(Default)]
struct Cancel {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Cancel {
    fn fire(&self) {
        self.set.store(true, Ordering::Release);
        let waker = self.waker.lock().take(); // woken after the lock
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A link of a worker's thread: its reads block for `BLOCK` at most.
fn link(shared: &Shared) -> Option<Link> {
    Link::new(
        &shared.url,
        Duration::from_secs(2),
        BLOCK + Duration::from_secs(5),
    )
    .ok()
}
