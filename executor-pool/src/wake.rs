//! Calling user wakers safely.
//!
//! A `Waker` is user code: its `wake`, `clone` and `drop` may do anything, including panic
//! or call back into the structure that stored it. Every structure in this crate and in
//! `oneloop` follows one rule (tokio's `WakeList` taught it):
//!
//! 1. under the lock (or `RefCell` borrow), only *move* wakers: take them out of the
//!    state into a [`WakeList`], and decide every count (permits granted, values queued)
//!    before letting go of the lock;
//! 2. release the lock, then wake them all; a panic in one wake does not stop the others;
//! 3. a waker that must be stored is cloned *before* the lock is taken, and a waker that is
//!    replaced is dropped *after* it is released ([`store_waker`]).
//!
//! So a panicking waker can never leave a count half-updated, strand the waiters behind
//! it, or poison a lock, and a waker that re-enters the structure finds it unlocked.
//!
//! What happens to the panic itself depends on where the wake ran:
//! [`WakeList::wake_all`] hands back the first panic for the caller to decide: re-raise it
//! after everyone was woken ([`resume`], used where user code called in, e.g. dropping a
//! permit), or swallow it ([`contain`], used on a pool's worker thread, which must
//! survive).

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::{Poll, Waker};

use crate::panic::panic_message;

/// The payload of a caught panic.
pub type Panic = Box<dyn Any + Send + 'static>;

/// Wakers collected under a lock, to be woken after it is released.
///
/// Dropping a list wakes nothing: its wakers are dropped, each under `catch_unwind`.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use std::task::Waker;
/// use oneloop_pool::wake::WakeList;
///
/// let waiters: Mutex<Vec<Waker>> = Mutex::new(vec![Waker::noop().clone()]);
/// let mut list = WakeList::new();
/// list.extend(waiters.lock().unwrap().drain(..)); // under the lock: only move them
/// assert_eq!(list.len(), 1);
/// assert!(list.wake_all().is_ok()); // after it: wake, each panic contained
/// ```
#[derive(Default)]
pub struct WakeList {
    wakers: Vec<Waker>,
}

impl WakeList {
    /// An empty list (allocates nothing until a waker is pushed).
    pub const fn new() -> Self {
        WakeList { wakers: Vec::new() }
    }

    /// Adds a waker to wake later.
    pub fn push(&mut self, waker: Waker) {
        self.wakers.push(waker);
    }

    /// Wakers collected so far.
    pub fn len(&self) -> usize {
        self.wakers.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Wakes every waker in the order they were pushed, even if some panic, and leaves the
    /// list empty (its allocation is kept for reuse). Returns the first panic; any later
    /// ones are dropped (contained).
    pub fn wake_all(&mut self) -> Result<(), Panic> {
        let mut first = None;
        for waker in self.wakers.drain(..) {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                keep_first(&mut first, panic);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Extend<Waker> for WakeList {
    fn extend<I: IntoIterator<Item = Waker>>(&mut self, iter: I) {
        self.wakers.extend(iter);
    }
}

impl FromIterator<Waker> for WakeList {
    fn from_iter<I: IntoIterator<Item = Waker>>(iter: I) -> Self {
        WakeList {
            wakers: iter.into_iter().collect(),
        }
    }
}

impl Drop for WakeList {
    fn drop(&mut self) {
        for waker in self.wakers.drain(..) {
            contain(catch_unwind(AssertUnwindSafe(|| drop(waker))));
        }
    }
}

impl fmt::Debug for WakeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WakeList")
            .field("wakers", &self.wakers.len())
            .finish()
    }
}

/// Keeps the first panic of a batch; a later one is dropped (contained).
pub fn keep_first(first: &mut Option<Panic>, panic: Panic) {
    if first.is_none() {
        *first = Some(panic);
    } else {
        drop_panic(panic);
    }
}

/// Wakes one waker, returning its panic instead of unwinding.
pub fn wake(waker: Waker) -> Result<(), Panic> {
    catch_unwind(AssertUnwindSafe(|| waker.wake()))
}

/// Runs `f` (a drop, a wake: user code) and returns its panic instead of unwinding.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    catch_unwind(AssertUnwindSafe(f))
}

/// Swallows the panic of a contained call, if any: for threads that must survive user code
/// (a pool's workers), where there is nobody to hand the panic to.
pub fn contain<R>(result: Result<R, Panic>) -> Option<R> {
    match result {
        Ok(value) => Some(value),
        Err(panic) => {
            drop_panic(panic);
            None
        }
    }
}

/// Drops `value` (wakers: a surplus clone, one just replaced), containing a panic in its
/// destructor. For the end of a poll or a `Drop`, where the state is already final and a
/// panic could only lose what the caller was about to return, or abort a thread that is
/// already unwinding.
///
/// Free when there is nothing to drop (an empty `Option`, a pair of them): that check is
/// inlined, and only a real drop goes through `catch_unwind`.
#[inline]
pub fn discard<T: Discard>(value: T) {
    if !value.is_nothing() {
        discard_now(value);
    }
}

#[inline(never)]
fn discard_now<T>(value: T) {
    contain(catch(|| drop(value)));
}

/// A value [`discard`] can tell is empty without dropping it.
pub trait Discard {
    /// True when dropping it runs no code (`None`); false by default.
    fn is_nothing(&self) -> bool {
        false
    }
}

impl<T> Discard for Option<T> {
    #[inline]
    fn is_nothing(&self) -> bool {
        self.is_none()
    }
}

impl<A: Discard, B: Discard> Discard for (A, B) {
    #[inline]
    fn is_nothing(&self) -> bool {
        self.0.is_nothing() && self.1.is_nothing()
    }
}

impl Discard for Waker {}

/// Re-raises the panic of a contained call after the work it interrupted is complete;
/// contains it instead when the thread is already unwinding (a second panic would abort
/// the process).
pub fn resume<R>(result: Result<R, Panic>) -> Option<R> {
    match result {
        Ok(value) => Some(value),
        Err(panic) if std::thread::panicking() => {
            drop_panic(panic);
            None
        }
        Err(panic) => resume_unwind(panic),
    }
}

/// Drops a panic payload; its destructor is user code too. If that panics as well, the
/// second payload is leaked rather than risk a third.
pub fn drop_panic(panic: Panic) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(panic))) {
        std::mem::forget(again);
    }
}

/// The message of a caught panic (see [`panic_message`]); the payload
/// is then dropped with [`drop_panic`], since its destructor may panic too.
pub fn into_message(panic: Panic) -> String {
    let message = panic_message(&*panic);
    drop_panic(panic);
    message
}

/// Stores a waker in `slot` under a lock without running waker code there.
///
/// Call it with the lock held. If `slot` already holds a waker that wakes the same task as
/// `waker`, nothing changes and `Ok(None)` comes back. Otherwise the waker must be cloned,
/// which is user code and must not run under the lock: if the caller has already cloned
/// it into `fresh`, it is moved into the slot and the waker it replaces comes back in
/// `Ok(Some(old))`, for the caller to drop after releasing the lock; if `fresh` is empty,
/// `Err(NeedsClone)` says: release the lock, clone the waker into `fresh`, and try again
/// (the state may have changed meanwhile).
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use std::task::Waker;
/// use oneloop_pool::wake::store_waker;
///
/// let slot: Mutex<Option<Waker>> = Mutex::new(None);
/// let waker = Waker::noop();
/// let mut fresh = None;
/// let replaced = loop {
///     let mut guard = slot.lock().unwrap();
///     match store_waker(&mut guard, waker, &mut fresh) {
///         Ok(old) => break old, // drop `old` (and any unused `fresh`) after the lock
///         Err(_) => {
///             drop(guard);
///             fresh = Some(waker.clone()); // user code, with no lock held
///         }
///     }
/// };
/// assert!(replaced.is_none() && slot.lock().unwrap().is_some());
/// ```
pub fn store_waker(
    slot: &mut Option<Waker>,
    waker: &Waker,
    fresh: &mut Option<Waker>,
) -> Result<Option<Waker>, NeedsClone> {
    match slot {
        Some(current) => replace_waker(current, waker, fresh),
        None => {
            *slot = Some(fresh.take().ok_or(NeedsClone)?);
            Ok(None)
        }
    }
}

/// [`store_waker`] for a place that always holds a waker (a timer's, a queued waiter's):
/// the one `will_wake` check of the crate and the runtime. Nothing changes when `current`
/// wakes the same task as `waker`; otherwise `fresh` (cloned by the caller with no lock
/// held) replaces it and the old one comes back to be dropped after the lock, or
/// `Err(NeedsClone)` asks for that clone.
pub fn replace_waker(
    current: &mut Waker,
    waker: &Waker,
    fresh: &mut Option<Waker>,
) -> Result<Option<Waker>, NeedsClone> {
    if current.will_wake(waker) {
        return Ok(None);
    }
    let new = fresh.take().ok_or(NeedsClone)?;
    Ok(Some(std::mem::replace(current, new)))
}

/// Polls a value guarded by a lock whose waiter slot takes `waker`, with no waker code under
/// the lock: the pattern of every oneloop channel and handle, written once.
///
/// `lock` takes the lock; `look`, under it, returns the value when it is ready, or else the
/// slot where the waiter's waker belongs. The waker is cloned (when the slot does not hold
/// one for the same task already) with the lock released, and the look is made again; a
/// replaced or surplus waker is dropped after the lock, contained ([`discard`]).
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use std::task::{Poll, Waker};
/// use oneloop_pool::wake::poll_waker_slot;
///
/// struct Slot { value: Option<u32>, waiter: Option<Waker> }
/// let slot = Mutex::new(Slot { value: None, waiter: None });
/// let polled = poll_waker_slot(Waker::noop(), || slot.lock().unwrap(), |state| {
///     state.value.take().ok_or(&mut state.waiter)
/// });
/// assert!(polled.is_pending() && slot.lock().unwrap().waiter.is_some());
/// slot.lock().unwrap().value = Some(7);
/// let polled = poll_waker_slot(Waker::noop(), || slot.lock().unwrap(), |state| {
///     state.value.take().ok_or(&mut state.waiter)
/// });
/// assert_eq!(polled, Poll::Ready(7));
/// ```
pub fn poll_waker_slot<G, R>(
    waker: &Waker,
    mut lock: impl FnMut() -> G,
    mut look: impl for<'a> FnMut(&'a mut G) -> Result<R, &'a mut Option<Waker>>,
) -> Poll<R> {
    let mut fresh = None;
    loop {
        let mut guard = lock();
        let stored = match look(&mut guard) {
            Ok(ready) => {
                drop(guard);
                discard(fresh);
                return Poll::Ready(ready);
            }
            Err(slot) => store_waker(slot, waker, &mut fresh),
        };
        drop(guard);
        match stored {
            Ok(old) => {
                discard((old, fresh));
                return Poll::Pending;
            }
            Err(NeedsClone) => fresh = Some(waker.clone()),
        }
    }
}

/// [`store_waker`] needs a clone of the waker made outside the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedsClone;
