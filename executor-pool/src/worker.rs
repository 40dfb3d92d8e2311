//! A worker's whole life: started through the pool's spawn handler ([`WorkerThread`]), it
//! finds a job, runs it, sleeps when there is none, and leaves when the pool is sealed or
//! broken; one that dies is replaced, and one that cannot be started leaves its deque to
//! the others and to a later retry. It sees the pool only through the state in
//! `shared.rs`, never through the pool's handles (`pool.rs`), which submit to it.
//!
//! Where a worker looks, in order (`find_job`): its own deque (jobs submitted from inside
//! its jobs), the global injector (jobs submitted from outside, taken in batches), then the
//! other workers' deques (stealing). crossbeam's `Steal::Retry` means "lost a race, look
//! again", never "empty".
//!
//! A worker with nothing to do watches the queues for a few microseconds before it goes to
//! sleep (`spin_for_work`). Going to sleep (`sleep`) cannot lose a wake-up: a worker
//! announces it is idle *before* its last look at the queues, and a submitter (`push` in
//! `pool.rs`) checks for idle workers *after* pushing, each side separated by a `SeqCst`
//! fence. Whatever the interleaving, either the worker sees the job or the submitter sees
//! the idle worker and signals the condvar (under the lock the worker holds from its
//! announcement to its wait).
//!
//! A worker that dies anyway (a job's panic payload whose destructor panics, say) hands its
//! deque to a replacement thread from its exit guard (`replace_worker`); if none can be
//! started and no worker is left, the pool is broken (`break_pool`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker};

use crate::JobError;
use crate::job::{Job, Outcome};
use crate::shared::{Shared, bump};
use crate::wake;

/// How long a pool missing workers waits between attempts to start replacements.
const RETRY_SPAWN_EVERY: Duration = Duration::from_millis(100);

thread_local! {
    /// Set on a worker thread for its lifetime: which pool, which slot, and its deque.
    /// Borrowed only briefly (to push or pop), never while a job runs.
    static CURRENT: RefCell<Option<Local>> = const { RefCell::new(None) };
}

struct Local {
    pool: u64,
    deque: Worker<Job>,
}

// -------------------------------------------------------------------------------------
// Starting.
// -------------------------------------------------------------------------------------

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
            never_started(&self.shared, self.index, deque);
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

/// Starts the thread of worker `index` through the pool's spawn handler, and keeps its
/// handle for shutdown to join.
///
/// The handler is user code. If it panics, that counts as a failed start (an error that
/// names the panic), wherever the start was attempted: building the pool, replacing a dead
/// worker during its unwinding, or retrying a missing one inside a submission. The
/// `WorkerThread` it dropped has given its deque back to the pool by then.
pub(crate) fn start(shared: &Arc<Shared>, index: usize, deque: Worker<Job>) -> io::Result<()> {
    let handle = match wake::catch(|| (shared.start_thread)(shared, index, deque)) {
        Ok(started) => started?,
        Err(panic) => {
            return Err(io::Error::other(format!(
                "the pool's spawn handler panicked: {}",
                wake::into_message(panic)
            )));
        }
    };
    shared.life.lock().threads.push(handle);
    Ok(())
}

/// The default spawn handler: a named `std` thread.
pub(crate) fn spawn_std_thread(worker: WorkerThread) -> io::Result<thread::JoinHandle<()>> {
    let mut builder = thread::Builder::new().name(worker.name());
    if let Some(size) = worker.stack_size() {
        builder = builder.stack_size(size);
    }
    builder.spawn(move || worker.run())
}

// -------------------------------------------------------------------------------------
// Working.
// -------------------------------------------------------------------------------------

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
            run_job(&shared, index, job);
        } else if may_exit(&shared) {
            // One more look: a submit that completed just before the gate emptied is
            // visible now.
            match find_job(&shared, index) {
                Some(job) => run_job(&shared, index, job),
                None => break,
            }
        } else if !spin_for_work(&shared) {
            sleep(&shared);
        }
    }
    drop(exit);
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
        bump(&shared.slots[index].taken);
    }
    local
}

/// Runs a job on worker `index`. The counters are updated before the job's handle
/// resolves (so a caller who joined sees its job counted), and kept right even if the
/// worker dies on the way.
fn run_job(shared: &Shared, index: usize, job: Job) {
    /// Marks the worker idle again exactly once: when the outcome is known, or when
    /// the worker unwinds before that.
    struct Running<'a> {
        shared: &'a Shared,
        index: usize,
        ended: Cell<bool>,
    }
    impl Running<'_> {
        fn end(&self) {
            if !self.ended.replace(true) {
                *self.shared.slots[self.index].running.lock() = None;
            }
        }
    }
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.end();
        }
    }
    let slot = &shared.slots[index];
    *slot.running.lock() = Some(job.share());
    let running = Running {
        shared,
        index,
        ended: Cell::new(false),
    };
    job.run_recorded(&|outcome| {
        running.end();
        bump(match outcome {
            Outcome::Completed => &slot.completed,
            Outcome::Panicked => &slot.panicked,
            Outcome::Skipped => &slot.cancelled,
            Outcome::Expired => &slot.expired,
        });
    });
}

/// Spin-then-yield rounds a worker with nothing to do waits for a job before it sleeps.
const SPIN_ROUNDS: u32 = 10;
/// Of those, the rounds that spin (1, 2, 4 … 64 pauses); the rest yield the CPU.
const SPIN_ONLY_ROUNDS: u32 = 7;

/// Waits briefly for a job to appear; true if one did.
///
/// Going to sleep costs the next submitter a futex wake (a system call, microseconds) and
/// this worker a trip through the scheduler. When jobs are small and come in a stream, the
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
        if has_work(shared) || may_exit(shared) {
            return true;
        }
    }
    false
}

/// The calling worker goes to sleep until a job may be available or the pool is closing.
fn sleep(shared: &Shared) {
    let mut lock = shared.sleep.lock();
    // This worker is about to sleep: announce it before the last look at the queues,
    // or a submit could slip between the look and the sleep and wake nobody.
    shared.idle.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if !has_work(shared) && !may_exit(shared) {
        shared.wake.wait(&mut lock);
    }
    shared.idle.fetch_sub(1, Ordering::SeqCst);
}

fn has_work(shared: &Shared) -> bool {
    !shared.injector.is_empty() || shared.stealers.iter().any(|s| !s.is_empty())
}

/// True once a worker with nothing to do may leave: no job can arrive any more (the
/// pool is sealed), or the pool is broken.
fn may_exit(shared: &Shared) -> bool {
    shared.gate.is_sealed() || shared.broken.load(Ordering::Acquire)
}

// -------------------------------------------------------------------------------------
// Leaving, dying, and never starting.
// -------------------------------------------------------------------------------------

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
                replace_worker(self.shared, self.index, deque);
            }
        } else {
            worker_exited(self.shared);
        }
    }
}

/// A worker left its loop normally.
fn worker_exited(shared: &Shared) {
    shared.life.lock().live -= 1;
    shared.exited.notify_all();
}

/// A worker thread is dying (unwinding): start another on its deque. If none can be
/// started and no worker is left, the pool is broken. Runs during unwinding, so it
/// must not panic.
fn replace_worker(shared: &Arc<Shared>, index: usize, deque: Worker<Job>) {
    // The spawn handler is user code: `start` turns a panic in it (here, during
    // unwinding, it would abort the process) into a failed start, and the deque goes
    // back to the pool through `WorkerThread`'s drop.
    let _ = start(shared, index, deque);
}

/// A worker counted in `live` will never run: its thread could not be started, or the
/// spawn handler dropped its `WorkerThread` without running it (even after reporting
/// success). Uncount it, keep its deque for a later attempt, and put its jobs where the
/// other workers will find them. With no worker left (and the pool not shutting down),
/// the pool is broken.
fn never_started(shared: &Shared, index: usize, deque: Worker<Job>) {
    let mut moved = false;
    while let Some(job) = deque.pop() {
        shared.injector.push(job);
        moved = true;
    }
    if moved {
        // Sleeping workers would not look until the next submission.
        shared.wake_all_workers();
    }
    let live = {
        let mut life = shared.life.lock();
        life.orphans.push((index, deque));
        life.live -= 1;
        life.live
    };
    shared.orphaned.store(true, Ordering::Release);
    shared.exited.notify_all();
    // (Once sealed, the pool is shutting down: no worker left is how that ends.)
    if live == 0 && !shared.gate.is_sealed() {
        break_pool(shared);
    }
}

/// Tries again to start threads for orphaned slots, at most every `RETRY_SPAWN_EVERY`.
/// Called by submissions (`pool.rs`) while some slot is orphaned.
pub(crate) fn retry_orphans(shared: &Arc<Shared>) {
    let orphans = {
        let mut life = shared.life.lock();
        if life
            .last_retry
            .is_some_and(|last| last.elapsed() < RETRY_SPAWN_EVERY)
        {
            return;
        }
        life.last_retry = Some(Instant::now());
        let orphans = std::mem::take(&mut life.orphans);
        life.live += orphans.len();
        orphans
    };
    shared.orphaned.store(false, Ordering::Release);
    for (index, deque) in orphans {
        // A failure is orphaned and uncounted again by the `WorkerThread`'s drop.
        let _ = start(shared, index, deque);
    }
}

/// No worker is left and none can be started: resolve everything as `Broken`.
fn break_pool(shared: &Shared) {
    shared.broken.store(true, Ordering::Release);
    shared.close_admission();
    shared.drain(JobError::Broken(crate::executor::BROKEN.to_owned()));
    shared.wake_all_workers();
}

// -------------------------------------------------------------------------------------
// What a submission asks of the thread it runs on.
// -------------------------------------------------------------------------------------

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
