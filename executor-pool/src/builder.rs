//! [`Builder`]: how a pool comes to be. It collects the settings (`config.rs`), makes the
//! pool's state (`shared.rs`) and its handle (`pool.rs`), and starts one thread per worker
//! (`worker.rs`) through the spawn handler. [`ThreadPool::new`] and
//! [`ThreadPool::builder`], the two ways in, are here too.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::config::{Config, Overflow};
use crate::pool::ThreadPool;
use crate::shared::{Shared, StartThread};
use crate::worker::{self, WorkerThread};

/// A function that starts a worker thread: see [`Builder::spawn_handler`].
type SpawnHandler = Arc<dyn Fn(WorkerThread) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// Configures a [`ThreadPool`].
///
/// # Examples
///
/// ```
/// use oneloop_pool::{Overflow, ThreadPool};
///
/// let pool = ThreadPool::builder()
///     .workers(4)
///     .queue_capacity(1000) // at most 1000 jobs waiting
///     .overflow(Overflow::Reject)
///     .thread_name("checksum")
///     .build()?;
/// assert_eq!(pool.workers(), 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Builder {
    // Each field is set by the method of its name and read once, by `build`; `None` takes
    // the default that method describes.
    workers: Option<usize>,
    capacity: Option<usize>,
    overflow: Overflow,
    thread_name: String,
    stack_size: Option<usize>,
    spawn_handler: Option<SpawnHandler>,
}

impl Builder {
    /// A builder: as many workers as the machine has cores, an unbounded queue, threads
    /// named `oneloop-pool-N`.
    pub fn new() -> Self {
        Builder {
            workers: None,
            capacity: None,
            overflow: Overflow::default(),
            thread_name: "oneloop-pool".to_owned(),
            stack_size: None,
            spawn_handler: None,
        }
    }

    /// The number of worker threads (default: `std::thread::available_parallelism`), from
    /// 1 to [`ThreadPool::MAX_WORKERS`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Bounds the number of jobs waiting for a worker (running ones not counted). Default:
    /// unbounded.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// What to do with a job when the bounded queue is full (default: [`Overflow::Wait`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Names worker threads `prefix-0`, `prefix-1`, ... (Linux shows the first 15 bytes).
    pub fn thread_name(mut self, prefix: &str) -> Self {
        self.thread_name = prefix.to_owned();
        self
    }

    /// The stack size of worker threads, in bytes (default: the platform's).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts worker threads with `handler` instead of `std::thread::Builder` (to set
    /// affinity or priorities, or to test what happens when threads cannot be created).
    /// The handler must start a thread that calls [`WorkerThread::run`] and return its
    /// handle, or return the error; a worker it drops without running gives its queue back.
    pub fn spawn_handler(
        mut self,
        handler: impl Fn(WorkerThread) -> io::Result<JoinHandle<()>> + Send + Sync + 'static,
    ) -> Self {
        self.spawn_handler = Some(Arc::new(handler));
        self
    }

    /// Starts the pool's threads.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for zero workers, more than [`ThreadPool::MAX_WORKERS`], or a zero
    /// capacity; the OS's error if a thread cannot be started (the threads already started
    /// are stopped first).
    pub fn build(self) -> io::Result<ThreadPool> {
        let workers = match self.workers {
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, usize::from),
        };
        if workers == 0 {
            return Err(invalid("a pool needs at least one worker"));
        }
        if workers > ThreadPool::MAX_WORKERS {
            return Err(invalid(&format!(
                "a pool can have at most {} workers (ThreadPool::MAX_WORKERS), got {workers}",
                ThreadPool::MAX_WORKERS
            )));
        }
        if self.capacity == Some(0) {
            return Err(invalid("a bounded queue needs a capacity of at least 1"));
        }
        let handler = self
            .spawn_handler
            .unwrap_or_else(|| Arc::new(worker::spawn_std_thread));
        let config = Config {
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            overflow: self.overflow,
        };
        // The pool's state knows how to start a thread for a worker slot, not what a
        // `WorkerThread` is: this hands the spawn handler one.
        let start_thread: StartThread = Box::new(move |shared, index, deque| {
            handler(WorkerThread::new(shared.clone(), index, deque))
        });
        let (shared, deques) = Shared::new(config, start_thread, workers, self.capacity);
        let pool = ThreadPool::from_shared(shared.clone());
        for (index, deque) in deques.into_iter().enumerate() {
            shared.life.lock().live += 1;
            if let Err(error) = worker::start(&shared, index, deque) {
                // (Its `WorkerThread`, dropped unrun, has uncounted it.)
                drop(pool); // stops and joins the workers already started
                return Err(error);
            }
        }
        Ok(pool)
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("custom_spawn_handler", &self.spawn_handler.is_some())
            .finish()
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl ThreadPool {
    /// A pool of `workers` threads with an unbounded queue.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(workers: usize) -> io::Result<ThreadPool> {
        Builder::new().workers(workers).build()
    }

    /// A [`Builder`] to configure a pool.
    pub fn builder() -> Builder {
        Builder::new()
    }
}
