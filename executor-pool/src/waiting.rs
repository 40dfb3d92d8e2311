//! What a task waits on, told to the runtime that polls it.
//!
//! A runtime that wants to explain a stuck program (oneloop's deadlock check names what
//! each pending task waits on) installs a hook on its loop thread with [`set_hook`]; this
//! crate's futures call it when they return `Pending`. Without a hook, that is one
//! thread-local read.

use std::cell::Cell;

/// A wait in this crate, as a [`set_hook`] hook hears of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitingOn {
    /// `needed` permits of a [`Semaphore`](crate::Semaphore) (also a bounded channel's or
    /// a bounded pool's room).
    Semaphore {
        /// Permits requested.
        needed: usize,
    },
    /// The result of the job numbered `id` (see [`JobInfo::id`](crate::JobInfo::id)).
    Job {
        /// The job's id.
        id: u64,
    },
}

/// A function told of each wait on this thread.
pub type Hook = fn(WaitingOn);

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Installs `hook` for the current thread (`None` removes it) and returns the previous
/// one, for the caller to put back.
pub fn set_hook(hook: Option<Hook>) -> Option<Hook> {
    HOOK.try_with(|slot| slot.replace(hook)).ok().flatten()
}

/// Tells the current thread's hook, if any, of a wait (for executors outside this crate,
/// such as `oneloop-process`, whose futures wait on jobs too).
pub fn note(on: WaitingOn) {
    if let Ok(Some(hook)) = HOOK.try_with(Cell::get) {
        hook(on);
    }
}
