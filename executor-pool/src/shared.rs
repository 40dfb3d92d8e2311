//! The pool's state: what its handles (`pool.rs`, `shutdown.rs`) and its worker threads
//! (`worker.rs`) both see. It sits below both, so that the worker side never imports the
//! pool's handles: the queues, each worker's slot and counters, the sleep lock, the
//! workers' lives, the submission gate (`gate.rs`) and the admission semaphore. The steps
//! each side takes are in its own file; what is here are the few that both take (drain
//! the queues, close admission, wake every worker).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use crate::JobError;
use crate::config::Config;
use crate::gate::Gate;
use crate::job::{Job, JobRef, Outcome};
use crate::observers::Observers;
use crate::semaphore::Semaphore;
use crate::wake;

/// Hands out pool ids, so a worker thread knows which pool it belongs to.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A function that starts the thread of worker slot `index` on `deque`: the spawn handler,
/// handed a `WorkerThread` (`builder.rs` makes it).
pub(crate) type StartThread =
    Box<dyn Fn(&Arc<Shared>, usize, Worker<Job>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// The pool's state, shared by its handles and its worker threads.
pub(crate) struct Shared {
    /// Which pool this is: a worker thread's thread-local names it (`worker.rs`), so a
    /// submission can tell it comes from one of this pool's own jobs.
    pub(crate) id: u64,
    /// The builder's settings; read-only.
    pub(crate) config: Config,
    /// Starts a worker thread: at build, for a dead worker's replacement, for a retry.
    pub(crate) start_thread: StartThread,
    /// Observers attached to the jobs `spawn` builds (`observers.rs`).
    pub(crate) observers: Observers,
    /// Jobs submitted from outside the pool: pushed by submitters, taken in batches by
    /// workers, emptied by `drain`.
    pub(crate) injector: Injector<Job>,
    /// One per worker, in worker order: how others steal from its deque.
    pub(crate) stealers: Box<[Stealer<Job>]>,
    /// Jobs pushed so far. Jobs queued = pushed - taken by workers - drained. Each side
    /// counts on its own cache line: a counter that submitters increment and workers
    /// decrement would bounce between their cores on every job.
    pub(crate) pushed: CachePadded<AtomicU64>,
    /// Per worker: the job it runs and its counters (`Slot`).
    pub(crate) slots: Box<[CachePadded<Slot>]>,
    /// Free slots of a bounded queue: a submission takes a permit, the job gives it back
    /// when a worker takes it off the queue; closed by shutdown and by a broken pool.
    pub(crate) admission: Option<Arc<Semaphore>>,
    /// Every submission passes through it; shutdown closes and seals it (`gate.rs`).
    pub(crate) gate: Gate,
    /// Workers asleep or about to sleep; written under `sleep` by workers, read by
    /// submitters after they push, to know whether to wake one.
    pub(crate) idle: CachePadded<AtomicUsize>,
    /// Held by a worker from announcing itself idle to waiting on `wake`, and by whoever
    /// signals `wake`, so a signal cannot fall between the two.
    pub(crate) sleep: Mutex<()>,
    /// Where sleeping workers wait: signalled by a push (one worker), a shutdown, a broken
    /// pool and orphaned jobs (all of them).
    pub(crate) wake: Condvar,
    /// Set once no worker is left and none can be started (`worker::break_pool`); read by
    /// submissions (refused) and by workers (they leave).
    pub(crate) broken: AtomicBool,
    /// Some worker slot has no thread (its start failed); submissions retry now and then.
    pub(crate) orphaned: AtomicBool,
    /// The worker threads' lives (`Life`): written as workers start, exit and fail to
    /// start; read by shutdown as it waits for them.
    pub(crate) life: Mutex<Life>,
    /// Signalled when a worker thread leaves its loop.
    pub(crate) exited: Condvar,
    /// Outcomes not counted by a worker (jobs run by the caller, jobs drained at
    /// shutdown), and rejections.
    pub(crate) counters: Counters,
    /// Jobs taken off the queues by shutdown (`drain`).
    pub(crate) drained: AtomicU64,
}

/// One worker's own state. Only that worker writes its counters (with a plain load and
/// store, no locked instruction), and the slot has a cache line to itself.
#[derive(Default)]
pub(crate) struct Slot {
    /// The job it is running, so shutdown can set its token and name it.
    pub(crate) running: Mutex<Option<JobRef>>,
    /// Jobs it took off a queue.
    pub(crate) taken: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) expired: AtomicU64,
}

/// Adds one to a counter only the calling thread writes.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Worker threads' lives, under `Shared::life`.
#[derive(Default)]
pub(crate) struct Life {
    /// Threads in their loop (counted before a start attempt, uncounted if it fails).
    pub(crate) live: usize,
    /// Their handles, joined by a shutdown that waits.
    pub(crate) threads: Vec<JoinHandle<()>>,
    /// Deques whose thread could not be started, by worker slot.
    pub(crate) orphans: Vec<(usize, Worker<Job>)>,
    /// When a submission last tried to start threads for the orphans.
    pub(crate) last_retry: Option<Instant>,
    /// A shutdown gave up on running jobs: their threads are not joined.
    pub(crate) detached: bool,
}

/// The pool's own outcome counters, for what no worker counts in its `Slot`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) completed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) expired: AtomicU64,
    /// Submissions refused because the queue was full.
    pub(crate) rejected: AtomicU64,
}

impl Counters {
    /// Counts a job run off the workers (by the caller).
    pub(crate) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Panicked => &self.panicked,
            Outcome::Skipped => &self.cancelled,
            Outcome::Expired => &self.expired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// A pool's state, and the deques of its workers (one each, in worker order) for the
    /// threads about to start.
    pub(crate) fn new(
        config: Config,
        start_thread: StartThread,
        workers: usize,
        capacity: Option<usize>,
    ) -> (Arc<Shared>, Vec<Worker<Job>>) {
        let deques: Vec<Worker<Job>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            config,
            start_thread,
            observers: Observers::default(),
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            pushed: CachePadded::new(AtomicU64::new(0)),
            slots: (0..workers).map(|_| CachePadded::default()).collect(),
            admission: capacity
                .map(|capacity| Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)))),
            gate: Gate::default(),
            idle: CachePadded::new(AtomicUsize::new(0)),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            broken: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
            life: Mutex::new(Life::default()),
            exited: Condvar::new(),
            counters: Counters::default(),
            drained: AtomicU64::new(0),
        });
        (shared, deques)
    }

    /// Wakes every sleeping worker, to look at the queues again or to leave.
    pub(crate) fn wake_all_workers(&self) {
        let _sleep = self.sleep.lock();
        self.wake.notify_all();
    }

    /// Closes a bounded queue's admission (idempotent): submitters waiting for room learn
    /// it is over. Their wakers are user code: every one is woken even if one panics, and
    /// the panic is contained, since this runs on a shutdown, a dying worker or inside a
    /// submission, each of which must complete.
    pub(crate) fn close_admission(&self) {
        if let Some(slots) = &self.admission {
            wake::contain(wake::catch(|| slots.close()));
        }
    }

    /// Takes every queued job off every queue and resolves it with `error`; returns how
    /// many there were.
    pub(crate) fn drain(&self, error: JobError) -> usize {
        let mut drained = 0;
        let mut resolve = |job: Job| {
            self.drained.fetch_add(1, Ordering::Relaxed);
            job.resolve_counted(error.clone());
            drained += 1;
        };
        loop {
            match self.injector.steal() {
                Steal::Success(job) => resolve(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        for stealer in self.stealers.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => resolve(job),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        if error == JobError::Cancelled {
            self.counters
                .cancelled
                .fetch_add(drained as u64, Ordering::Relaxed);
        }
        drained
    }
}
