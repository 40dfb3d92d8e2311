//! What a pool's handles and its supervisor thread share: the inbox of calls and orders,
//! and the `mio::Waker` that interrupts the supervisor's sleep. Below both `pool.rs` (which
//! submits) and `supervisor.rs` (which takes), so neither imports the other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oneloop_pool::JobError;
use oneloop_pool::semaphore::{OwnedSemaphorePermit, Semaphore};
use parking_lot::{Condvar, Mutex};

use crate::call::Call;
use crate::config::Config;
use crate::payload::{Encoded, Regions};

/// State shared by every handle of one pool and its supervisor.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The regions large arguments are encoded into (`payload.rs`).
    pub(crate) regions: Arc<Regions>,
    /// Calls and orders for the supervisor: pushed by handles, taken by the supervisor.
    pub(crate) inbox: Mutex<Inbox>,
    /// Interrupts the supervisor's `poll` (an eventfd write).
    pub(crate) waker: mio::Waker,
    /// Room in the bounded queue: a queued call holds a permit until a worker takes it.
    pub(crate) admission: Option<Arc<Semaphore>>,
    next_id: AtomicU64,
    /// A queued call was cancelled: the supervisor drops it from the queue (and gives its
    /// room in a bounded queue back) on its next turn, not when a worker is next free.
    pub(crate) cancelled_queued: AtomicBool,
    /// Set by the supervisor when it has stopped (every call resolved, every worker
    /// reaped), with the report of what a timed shutdown killed; waited on by `shutdown`.
    pub(crate) stopped: Mutex<Option<Vec<String>>>,
    pub(crate) stopped_signal: Condvar,
}

/// What handles hand the supervisor.
#[derive(Default)]
pub(crate) struct Inbox {
    /// Calls waiting for a worker, in order.
    pub(crate) calls: VecDeque<Pending>,
    /// No call is accepted any more.
    pub(crate) closed: bool,
    /// How to shut down, once asked.
    pub(crate) shutdown: Option<Mode>,
    /// Why the pool is broken, once it is: every call fails with `JobError::Broken`.
    pub(crate) broken: Option<String>,
}

/// How a pool shuts down: the thread pool's three meanings, and what two orders add up to
/// (`shutdown_now` then `shutdown_timeout`: the queue is cancelled *and* the running calls
/// are killed at the deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mode {
    /// Cancel the queued calls (`shutdown_now`); otherwise they run first.
    pub(crate) cancel_queue: bool,
    /// Kill the workers still running a call at this instant (`shutdown_timeout`); the
    /// queue is cancelled then too.
    pub(crate) kill_at: Option<Instant>,
}

impl Mode {
    /// Run every queued call, then stop.
    pub(crate) const GRACEFUL: Mode = Mode {
        cancel_queue: false,
        kill_at: None,
    };
    /// Cancel the queued calls; let the running ones finish.
    pub(crate) const NOW: Mode = Mode {
        cancel_queue: true,
        kill_at: None,
    };

    /// Like `GRACEFUL`, but kill the workers still running at `at`.
    pub(crate) fn until(at: Instant) -> Mode {
        Mode {
            cancel_queue: false,
            kill_at: Some(at),
        }
    }

    /// Both orders: the stricter of each.
    pub(crate) fn and(self, other: Mode) -> Mode {
        let kill_at = match (self.kill_at, other.kill_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Mode {
            cancel_queue: self.cancel_queue || other.cancel_queue,
            kill_at,
        }
    }
}

/// A call waiting for a worker.
pub(crate) struct Pending {
    pub(crate) call: Arc<Call>,
    /// The encoded arguments.
    pub(crate) args: Encoded,
    /// How long it may run.
    pub(crate) timeout: Option<Duration>,
}

impl Pending {
    /// The call holds `permit`, its room in a bounded queue, until it leaves the queue.
    pub(crate) fn with_permit(self, permit: OwnedSemaphorePermit) -> Self {
        self.call.hold_room(permit);
        self
    }
}

impl Shared {
    pub(crate) fn new(config: Config, waker: mio::Waker) -> Self {
        let admission = config
            .queue_capacity
            .map(|capacity| Arc::new(Semaphore::new(capacity)));
        Shared {
            config,
            regions: Arc::default(),
            inbox: Mutex::new(Inbox::default()),
            waker,
            admission,
            next_id: AtomicU64::new(1),
            cancelled_queued: AtomicBool::new(false),
            stopped: Mutex::new(None),
            stopped_signal: Condvar::new(),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a call for the supervisor; refused once the pool is closed or broken.
    pub(crate) fn enqueue(&self, pending: Pending) -> Result<(), JobError> {
        {
            let mut inbox = self.inbox.lock();
            if let Some(reason) = &inbox.broken {
                return Err(JobError::Broken(reason.clone()));
            }
            if inbox.closed {
                return Err(JobError::Shutdown);
            }
            inbox.calls.push_back(pending);
        }
        self.notify();
        Ok(())
    }

    /// Interrupts the supervisor's sleep so it looks at the inbox and its calls.
    pub(crate) fn notify(&self) {
        // The only documented failure is an eventfd overflow, which mio handles.
        let _ = self.waker.wake();
    }
}
