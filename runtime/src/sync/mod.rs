//! Synchronization for tasks: [`Semaphore`], [`oneshot`] and [`mpsc`] channels.
//!
//! None of them knows about the loop: they park tasks with plain `Waker`s behind a
//! `parking_lot` mutex, so their senders and permits work from any thread. A worker thread
//! that sends to a task wakes it through the runtime's remote path (`waker.rs`).
//!
//! The [`Semaphore`] is `oneloop-pool`'s (its bounded queues are built on it), re-exported
//! here: one fair, cancel-safe implementation for tasks and pools alike.

pub mod mpsc;
pub mod oneshot;

pub use oneloop_pool::semaphore::{
    Acquire, AcquireError, AcquireOwned, OwnedSemaphorePermit, Semaphore, SemaphorePermit,
    TryAcquireError,
};
