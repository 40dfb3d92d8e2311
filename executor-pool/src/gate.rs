//! The submission gate: every submission passes through it, and shutdown closes it, so
//! that after shutdown has closed it no job can slip in behind the workers' backs.
//! Submissions enter it in `pool.rs`; shutdown closes it in `shutdown.rs`; workers read its
//! seal in `worker.rs` to know they may leave. `tests/loom/submission_gate.rs` checks the
//! protocol.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use crossbeam_utils::CachePadded;

/// The gate's "closed" bit; the rest of the word counts submissions in progress, in twos.
pub(crate) const CLOSED: usize = 1;
pub(crate) const SUBMISSION: usize = 2;

/// A pool's submission gate (`Shared::gate`).
#[derive(Default)]
pub(crate) struct Gate {
    /// `CLOSED` bit + submissions in progress. Each submission adds a `SUBMISSION` when it
    /// enters (`enter`) and takes it back when it leaves (`Inside`'s drop); shutdown sets
    /// `CLOSED` and waits for the count to drain (`close`).
    state: CachePadded<AtomicUsize>,
    /// Set by `close` once the gate is closed *and* empty: from then on no job can
    /// arrive, so a worker with nothing to do may leave. (The gate's count alone cannot
    /// say so: a refused submitter counts itself in for an instant before backing out.)
    sealed: AtomicBool,
}

/// One submission inside the gate (see `Gate::enter`); leaves it when dropped.
pub(crate) struct Inside<'a> {
    gate: &'a Gate,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.gate.state.fetch_sub(SUBMISSION, Ordering::AcqRel);
    }
}

impl Gate {
    /// Enters the submission gate; `None` once the pool is closed. The submission is inside
    /// until the returned guard drops, however it ends: a panic inside the gate (a spawn
    /// handler retrying a worker is user code) must not leave it counted in, or shutdown
    /// would wait for it forever.
    pub(crate) fn enter(&self) -> Option<Inside<'_>> {
        let inside = Inside { gate: self };
        let before = self.state.fetch_add(SUBMISSION, Ordering::AcqRel);
        if before & CLOSED != 0 {
            return None; // `inside` drops here and backs out
        }
        Some(inside)
    }

    /// Closes the gate, waits for the submissions already inside it (each is a few pushes
    /// long) so that no job can arrive after this point, then seals it.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        while self.state.load(Ordering::Acquire) != CLOSED {
            thread::yield_now();
        }
        // Every job pushed by the submissions drained above is visible to a worker that
        // sees the seal (their exit happened-before this).
        self.sealed.store(true, Ordering::Release);
    }

    /// True once a shutdown has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// True once no job can arrive any more (see `sealed`).
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// The gate's word, for tests: `CLOSED` bit + submissions in progress.
    #[cfg(test)]
    pub(crate) fn word(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }
}
