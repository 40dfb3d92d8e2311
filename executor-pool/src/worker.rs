//! The worker threads: find a job, run it, park when there is none.
//!
//! Where a worker looks, in order (`find_job`): its own deque (jobs submitted from inside
//! its jobs), the global injector (jobs submitted from outside, taken in batches), then the
//! other workers' deques (stealing). crossbeam's `Steal::Retry` means "lost a race, look
//! again", never "empty".
//!
//! A worker with nothing to do watches the queues for a few microseconds before it parks
//! (`spin_for_work`). Parking (`Shared::park`) cannot lose a wake-up: a worker announces it is idle *before*
//! its last look at the queues, and a submitter checks for idle workers *after* pushing,
//! each side separated by a `SeqCst` fence. Whatever the interleaving, either the worker
//! sees the job or the submitter sees the idle worker and signals the condvar (under the
//! lock the worker holds from its announcement to its wait).
//!
//! A worker that dies anyway (a job's panic payload whose destructor panics, say) hands its
//! deque to a replacement thread from its exit guard; if none can be started and no worker
//! is left, the pool is broken (`pool.rs`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread;

use crossbeam_deque::{Steal, Worker};

use crate::job::Job;
use crate::pool::Shared;
use crate::wake;

thread_local! {
    /// Set on a worker thread for its lifetime: which pool, which slot, and its deque.
    /// Borrowed only briefly (to push or pop), never while a job runs.
    static CURRENT: RefCell<Option<Local>> = const { RefCell::new(None) };
}

struct Local {
    pool: u64,
    deque: Worker<Job>,
}

/// A worker thread about to start, as handed to a pool's spawn handler (see
/// [`Builder::spawn_handler`](crate::Builder::spawn_handler)): start a thread and call
/// [`run`](WorkerThread::run) on it.
///
/// If it is dropped without running (the thread could not be started), its deque goes back
/// to the pool, so no job is lost.
pub struct WorkerThread {
    shared: Arc<Shared>,
    index: usize,
    deque: Option<Worker<Job>>,
}

impl WorkerThread {
    pub(crate) fn new(shared: Arc<Shared>, index: usize, deque: Worker<Job>) -> Self {
        WorkerThread {
            shared,
            index,
            deque: Some(deque),
        }
    }

    /// The thread name the pool asks for (`prefix-index`).
    pub fn name(&self) -> String {
        format!("{}-{}", self.shared.config.thread_name, self.index)
    }

    /// The stack size the pool asks for, if one was set.
    pub fn stack_size(&self) -> Option<usize> {
        self.shared.config.stack_size
    }

    /// The worker's slot in the pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs the worker loop on the current thread until the pool shuts down.
    pub fn run(mut self) {
        let deque = self
            .deque
            .take()
            .expect("oneloop-pool bug: worker run twice");
        run(self.shared.clone(), self.index, deque);
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        if let Some(deque) = self.deque.take() {
            self.shared.never_started(self.index, deque);
        }
    }
}

impl fmt::Debug for WorkerThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerThread")
            .field("name", &self.name())
            .finish()
    }
}

/// Starts a worker thread through the pool's spawn handler.
///
/// The handler is user code. If it panics, that counts as a failed start (an error that
/// names the panic), wherever the start was attempted: building the pool, replacing a dead
/// worker during its unwinding, or retrying a missing one inside a submission. The
/// `WorkerThread` it dropped has given its deque back to the pool by then.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    index: usize,
    deque: Worker<Job>,
) -> io::Result<thread::JoinHandle<()>> {
    match wake::catch(|| (shared.start_thread)(shared, index, deque)) {
        Ok(started) => started,
        Err(panic) => Err(io::Error::other(format!(
            "the pool's spawn handler panicked: {}",
            wake::into_message(panic)
        ))),
    }
}

/// The default spawn handler: a named `std` thread.
pub(crate) fn spawn_std_thread(worker: WorkerThread) -> io::Result<thread::JoinHandle<()>> {
    let mut builder = thread::Builder::new().name(worker.name());
    if let Some(size) = worker.stack_size() {
        builder = builder.stack_size(size);
    }
    builder.spawn(move || worker.run())
}

/// The worker loop.
fn run(shared: Arc<Shared>, index: usize, deque: Worker<Job>) {
    CURRENT.with(|current| {
        *current.borrow_mut() = Some(Local {
            pool: shared.id,
            deque,
        })
    });
    let exit = ExitGuard {
        shared: &shared,
        index,
    };
    loop {
        if let Some(job) = find_job(&shared, index) {
            shared.run_job(index, job);
        } else if shared.may_exit() {
            // One more look: a submit that completed just before the gate emptied is
            // visible now.
            match find_job(&shared, index) {
                Some(job) => shared.run_job(index, job),
                None => break,
            }
        } else if !spin_for_work(&shared) {
            shared.park();
        }
    }
    drop(exit);
}

/// Spin-then-yield rounds a worker with nothing to do waits for a job before it parks.
const SPIN_ROUNDS: u32 = 10;
/// Of those, the rounds that spin (1, 2, 4 … 64 pauses); the rest yield the CPU.
const SPIN_ONLY_ROUNDS: u32 = 7;

/// Waits briefly for a job to appear; true if one did.
///
/// Parking costs the next submitter a futex wake (a system call, microseconds) and this
/// worker a trip through the scheduler. When jobs are small and come in a stream, the
/// next one is usually less than a microsecond away, so a worker first watches the queues
/// for a few microseconds: about 127 pause instructions, then a few `yield_now`s that hand
/// the CPU to anyone who needs it (the event loop, on a machine with few cores). Benchmark
/// W2 (`runtime/benches`) measures what this buys.
fn spin_for_work(shared: &Shared) -> bool {
    for round in 0..SPIN_ROUNDS {
        if round < SPIN_ONLY_ROUNDS {
            for _ in 0..1u32 << round {
                std::hint::spin_loop();
            }
        } else {
            thread::yield_now();
        }
        if shared.has_work() || shared.may_exit() {
            return true;
        }
    }
    false
}

/// Runs when a worker thread leaves its loop: normally (the pool shut down), or unwinding
/// (it died). A dead worker's deque goes to a replacement.
struct ExitGuard<'a> {
    shared: &'a Arc<Shared>,
    index: usize,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let deque = CURRENT
            .try_with(|current| current.borrow_mut().take().map(|local| local.deque))
            .ok()
            .flatten();
        if thread::panicking() {
            if let Some(deque) = deque {
                self.shared.replace_worker(self.index, deque);
            }
        } else {
            self.shared.worker_exited();
        }
    }
}

/// The next job for worker `index`, or `None` when every queue is empty.
fn find_job(shared: &Shared, index: usize) -> Option<Job> {
    let local = CURRENT.with(|current| {
        let current = current.borrow();
        let local = current
            .as_ref()
            .expect("oneloop-pool bug: not a worker thread");
        local.deque.pop().or_else(|| {
            loop {
                // Take a batch from the injector into our deque (fewer trips to the shared
                // queue), then steal. A `Retry` anywhere means another look is needed.
                let mut retry = false;
                match shared.injector.steal_batch_and_pop(&local.deque) {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
                let others = shared.stealers.len();
                for offset in 1..others {
                    match shared.stealers[(index + offset) % others].steal() {
                        Steal::Success(job) => return Some(job),
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
                if !retry {
                    return None;
                }
            }
        })
    });
    if local.is_some() {
        shared.took_job(index);
    }
    local
}

/// Pushes `job` onto the current worker's own deque if this thread is a worker of pool
/// `pool`; hands it back otherwise.
pub(crate) fn push_local(pool: u64, job: Job) -> Option<Job> {
    // The job stays out here so that it comes back even when thread-locals are gone (a
    // submit from a destructor during thread teardown).
    let mut job = Some(job);
    let _ = CURRENT.try_with(|current| {
        if let Some(local) = &*current.borrow()
            && local.pool == pool
            && let Some(job) = job.take()
        {
            local.deque.push(job);
        }
    });
    job
}

/// True on a worker thread of pool `pool`.
pub(crate) fn is_worker_of(pool: u64) -> bool {
    CURRENT
        .try_with(|current| current.borrow().as_ref().is_some_and(|l| l.pool == pool))
        .unwrap_or(false)
}
