//! The observer of the runtime running on this thread, for executors outside this crate.
//!
//! A thread pool's jobs get their observer when they are built (`JobBuilder::observer`,
//! which oneloop's offloading calls). An executor that builds no `Job` (a process pool)
//! asks here instead, when a job is submitted: a runtime in debug mode or tracing installs
//! a hook on its thread while it runs (`oneloop`'s `context.rs`), which notes the job for
//! the trace and hands back the runtime's observer. Elsewhere there is none.

use std::cell::Cell;
use std::sync::Arc;

use crate::job::JobObserver;

/// What a runtime installs: given a job's id, as it is submitted on this thread, the
/// observer to attach to it (if the runtime watches jobs).
pub type Hook = fn(u64) -> Option<Arc<dyn JobObserver>>;

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Installs `hook` for this thread (or removes it with `None`); returns the previous one,
/// for the caller to put back.
pub fn set_hook(hook: Option<Hook>) -> Option<Hook> {
    HOOK.try_with(|slot| slot.replace(hook)).ok().flatten()
}

/// The observer for the job `id`, submitted now on this thread, if a runtime here
/// watches jobs.
pub fn observer_for(id: u64) -> Option<Arc<dyn JobObserver>> {
    HOOK.try_with(Cell::get)
        .ok()
        .flatten()
        .and_then(|hook| hook(id))
}
