//! A fair (first-in, first-out) async semaphore. Long because the queue, its two futures
//! and its two permits share one lock's state and are read together.
//!
//! Waiters queue in ticket order in a `BTreeMap`; a release grants permits to the head of
//! the queue only, so a big request at the head is never overtaken by small ones behind it,
//! and `try_acquire` never jumps the queue. A waiter that was granted permits but is
//! dropped before it saw them hands them straight on (the "cancelled at the moment of the
//! hand-off" race). It knows nothing of any runtime: it stores plain `Waker`s, so permits
//! can be taken and released from any thread.
//!
//! Wakers are user code (`wake.rs`): a release grants every waiter that fits, in one pass
//! under the lock, and wakes them all after it; `close` wakes every waiter; a waker is
//! cloned before the lock is taken and a replaced one dropped after it is released. A
//! panicking waker therefore strands nobody and loses no permit; its panic is re-raised
//! to the caller (the one who released or closed) once everyone is woken.
//!
//! The pool uses it as the admission control of a bounded queue (`pool.rs`); `oneloop`
//! re-exports it as `oneloop::sync::Semaphore` for tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::waiting::{self, WaitingOn};
use crate::wake::{self, WakeList};

/// An async semaphore: at most N permits out at once, granted in request order.
///
/// Use it to bound concurrency: hold a permit while doing the limited thing (a connection,
/// an offloaded job, a buffer), and it is given back when the permit is dropped.
///
/// # Examples
///
/// ```
/// use oneloop_pool::Semaphore;
///
/// let limit = Semaphore::new(2);
/// let a = limit.try_acquire().unwrap();
/// let _b = limit.try_acquire().unwrap();
/// assert!(limit.try_acquire().is_err()); // at most 2 at a time
/// drop(a); // a permit goes back when it is dropped
/// let permit = oneloop_pool::block_on(limit.acquire()).unwrap();
/// assert_eq!(permit.num_permits(), 1);
/// ```
pub struct Semaphore {
    state: Mutex<State>,
}

struct State {
    /// Permits not handed out.
    permits: usize,
    /// Waiting requests by ticket (FIFO order).
    waiters: BTreeMap<u64, Waiter>,
    /// Tickets granted their permits but not yet polled to see them.
    granted: BTreeSet<u64>,
    next_ticket: u64,
    closed: bool,
}

struct Waiter {
    needed: usize,
    waker: Waker,
}

impl State {
    /// Grants permits to the head of the queue, then the next, for as long as each request
    /// fits, collecting the wakers to call once the lock is released. Every grant is
    /// decided here, under the lock: a waker that panics later cannot leave permits free
    /// while the waiters they fit stay queued.
    fn grant(&mut self, wake: &mut WakeList) {
        while let Some(entry) = self.waiters.first_entry() {
            if entry.get().needed > self.permits {
                return;
            }
            let (ticket, waiter) = entry.remove_entry();
            self.permits -= waiter.needed;
            self.granted.insert(ticket);
            wake.push(waiter.waker);
        }
    }
}

/// The error of [`Semaphore::acquire`] on a closed semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireError(());

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore closed")
    }
}

impl std::error::Error for AcquireError {}

/// The error of [`Semaphore::try_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryAcquireError {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits are free, or others are already waiting for them.
    NoPermits,
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::Closed => f.write_str("semaphore closed"),
            TryAcquireError::NoPermits => f.write_str("no permits available"),
        }
    }
}

impl std::error::Error for TryAcquireError {}

impl Semaphore {
    /// The most permits a semaphore can hold (leaves headroom so sums cannot overflow).
    pub const MAX_PERMITS: usize = usize::MAX >> 3;

    /// A semaphore with `permits` permits. Usable in a `static`.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`MAX_PERMITS`](Self::MAX_PERMITS).
    pub const fn new(permits: usize) -> Self {
        assert!(
            permits <= Self::MAX_PERMITS,
            "Semaphore::new: more permits than Semaphore::MAX_PERMITS"
        );
        Semaphore {
            state: Mutex::new(State {
                permits,
                waiters: BTreeMap::new(),
                granted: BTreeSet::new(),
                next_ticket: 0,
                closed: false,
            }),
        }
    }

    /// Permits free right now.
    pub fn available_permits(&self) -> usize {
        self.state.lock().permits
    }

    /// Waits for one permit. Requests are served in the order they were first polled.
    /// Fails only if the semaphore is closed.
    pub fn acquire(&self) -> Acquire<'_> {
        self.acquire_many(1)
    }

    /// Waits for `n` permits at once (granted together, in queue order).
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`MAX_PERMITS`](Self::MAX_PERMITS): no semaphore can ever hold that
    /// many, so the wait could never end.
    #[track_caller]
    pub fn acquire_many(&self, n: usize) -> Acquire<'_> {
        Acquire {
            semaphore: self,
            request: Request::new(n),
        }
    }

    /// Like [`acquire`](Self::acquire) for a shared semaphore; the permit keeps the `Arc`,
    /// so it can move into a spawned task.
    pub fn acquire_owned(self: Arc<Self>) -> AcquireOwned {
        self.acquire_many_owned(1)
    }

    /// Like [`acquire_many`](Self::acquire_many) for a shared semaphore.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`MAX_PERMITS`](Self::MAX_PERMITS).
    #[track_caller]
    pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> AcquireOwned {
        AcquireOwned {
            semaphore: self,
            request: Request::new(n),
        }
    }

    /// Takes one permit now, or fails without waiting.
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits now, or fails without waiting. Fails if anyone is queued, even
    /// when enough permits are free: the queue is served first.
    pub fn try_acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_take(n)?;
        Ok(SemaphorePermit {
            semaphore: self,
            permits: n,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire) for a shared semaphore.
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_take(1)?;
        Ok(OwnedSemaphorePermit {
            semaphore: self,
            permits: 1,
        })
    }

    /// Like [`try_acquire_many`](Self::try_acquire_many) for a shared semaphore.
    pub fn try_acquire_many_owned(
        self: Arc<Self>,
        n: usize,
    ) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_take(n)?;
        Ok(OwnedSemaphorePermit {
            semaphore: self,
            permits: n,
        })
    }

    fn try_take(&self, n: usize) -> Result<(), TryAcquireError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(TryAcquireError::Closed);
        }
        if !state.waiters.is_empty() || state.permits < n {
            return Err(TryAcquireError::NoPermits);
        }
        state.permits -= n;
        Ok(())
    }

    /// Adds `n` permits, waking waiters they satisfy.
    ///
    /// The waiters' wakers run after the semaphore's lock is released, all of them even if
    /// one panics; the first panic is then re-raised here (or contained, if this thread is
    /// already unwinding). The permits are granted either way.
    ///
    /// # Panics
    ///
    /// If the total would exceed [`MAX_PERMITS`](Self::MAX_PERMITS), or, after every
    /// waiter was woken, if a waiter's waker panicked.
    pub fn add_permits(&self, n: usize) {
        let mut wake = WakeList::new();
        {
            let mut state = self.state.lock();
            state.permits = state
                .permits
                .checked_add(n)
                .filter(|&total| total <= Self::MAX_PERMITS)
                .expect("Semaphore::add_permits would exceed Semaphore::MAX_PERMITS");
            state.grant(&mut wake);
        }
        wake::resume(wake.wake_all());
    }

    /// Closes the semaphore: waiting and future `acquire`s fail with [`AcquireError`].
    /// Permits already held stay valid and are returned as usual.
    ///
    /// Every waiter is woken, after the lock is released, even if some wakers panic; the
    /// first panic is then re-raised (or contained while unwinding).
    pub fn close(&self) {
        let mut wake = WakeList::new();
        let waiters = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        wake.extend(waiters.into_values().map(|waiter| waiter.waker));
        wake::resume(wake.wake_all());
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    fn poll_request(
        &self,
        request: &mut Request,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AcquireError>> {
        assert!(
            !request.done,
            "oneloop: semaphore acquire polled after it completed"
        );
        // Waker code (clone, drop) never runs under the lock: a clone is made before taking
        // it when one is needed, and a replaced waker is dropped after releasing it.
        let mut fresh: Option<Waker> = None;
        loop {
            let mut state = self.state.lock();
            let mut removed = None;
            let result = match request.ticket {
                Some(ticket) if state.granted.remove(&ticket) => Ok(()),
                Some(ticket) if state.closed => {
                    removed = state.waiters.remove(&ticket);
                    Err(AcquireError(()))
                }
                Some(ticket) => {
                    let waiter = state
                        .waiters
                        .get_mut(&ticket)
                        .expect("oneloop-pool bug: a semaphore ticket neither queued nor granted");
                    let Ok(old) = wake::replace_waker(&mut waiter.waker, cx.waker(), &mut fresh)
                    else {
                        drop(state);
                        fresh = Some(cx.waker().clone());
                        continue;
                    };
                    drop(state);
                    wake::discard((old, fresh));
                    waiting::note(WaitingOn::Semaphore {
                        needed: request.needed,
                    });
                    return Poll::Pending;
                }
                None if state.closed => Err(AcquireError(())),
                None if state.waiters.is_empty() && state.permits >= request.needed => {
                    state.permits -= request.needed;
                    Ok(())
                }
                None => {
                    let Some(waker) = fresh.take() else {
                        drop(state);
                        fresh = Some(cx.waker().clone());
                        continue;
                    };
                    let ticket = state.next_ticket;
                    state.next_ticket += 1;
                    state.waiters.insert(
                        ticket,
                        Waiter {
                            needed: request.needed,
                            waker,
                        },
                    );
                    request.ticket = Some(ticket);
                    drop(state);
                    waiting::note(WaitingOn::Semaphore {
                        needed: request.needed,
                    });
                    return Poll::Pending;
                }
            };
            drop(state);
            // The outcome is final (granted permits belong to the caller from here): only
            // then run waker code, contained, so no panic can lose them.
            request.done = true;
            wake::discard((removed, fresh));
            return Poll::Ready(result);
        }
    }

    /// A request is dropped before completing: leave the queue, or, if permits were granted
    /// to it meanwhile, hand them on.
    fn cancel_request(&self, request: &Request) {
        let Some(ticket) = request.ticket.filter(|_| !request.done) else {
            return;
        };
        let mut wake = WakeList::new();
        let waiter = {
            let mut state = self.state.lock();
            if state.granted.remove(&ticket) {
                // Granted while it was being dropped: hand the permits on.
                state.permits += request.needed;
                state.grant(&mut wake);
                None
            } else {
                let waiter = state.waiters.remove(&ticket);
                // Leaving the head may let the next waiter through.
                state.grant(&mut wake);
                waiter
            }
        };
        // Wake the waiters granted just now before dropping the leaving one's waker: a panic
        // in that destructor must not stop them from hearing of their permits.
        let woken = wake.wake_all();
        wake::discard(waiter);
        wake::resume(woken);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Semaphore")
            .field("permits", &state.permits)
            .field("waiters", &state.waiters.len())
            .field("closed", &state.closed)
            .finish()
    }
}

/// One acquire in progress.
#[derive(Debug)]
struct Request {
    needed: usize,
    ticket: Option<u64>,
    done: bool,
}

impl Request {
    #[track_caller]
    fn new(needed: usize) -> Self {
        assert!(
            needed <= Semaphore::MAX_PERMITS,
            "Semaphore::acquire_many({needed}): more permits than a semaphore can ever hold \
             (Semaphore::MAX_PERMITS); this wait could never end"
        );
        Request {
            needed,
            ticket: None,
            done: false,
        }
    }
}

/// The future returned by [`Semaphore::acquire`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    semaphore: &'a Semaphore,
    request: Request,
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<SemaphorePermit<'a>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let semaphore = this.semaphore;
        semaphore
            .poll_request(&mut this.request, cx)
            .map_ok(|()| SemaphorePermit {
                semaphore,
                permits: this.request.needed,
            })
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.semaphore.cancel_request(&self.request);
    }
}

/// The future returned by [`Semaphore::acquire_owned`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct AcquireOwned {
    semaphore: Arc<Semaphore>,
    request: Request,
}

impl Future for AcquireOwned {
    type Output = Result<OwnedSemaphorePermit, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.semaphore
            .poll_request(&mut this.request, cx)
            .map_ok(|()| OwnedSemaphorePermit {
                semaphore: this.semaphore.clone(),
                permits: this.request.needed,
            })
    }
}

impl Drop for AcquireOwned {
    fn drop(&mut self) {
        self.semaphore.cancel_request(&self.request);
    }
}

/// Permits borrowed from a [`Semaphore`]; given back on drop.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
    permits: usize,
}

impl SemaphorePermit<'_> {
    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Keeps the permits out of the semaphore for good (they are not returned on drop).
    pub fn forget(mut self) {
        self.permits = 0;
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if self.permits > 0 {
            self.semaphore.add_permits(self.permits);
        }
    }
}

/// Permits of a shared (`Arc`) [`Semaphore`]; given back on drop. `Send` and `'static`,
/// so it can travel into a spawned task or an offloaded job.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedSemaphorePermit {
    semaphore: Arc<Semaphore>,
    permits: usize,
}

impl OwnedSemaphorePermit {
    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Keeps the permits out of the semaphore for good.
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// The semaphore these permits came from.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        if self.permits > 0 {
            self.semaphore.add_permits(self.permits);
        }
    }
}
