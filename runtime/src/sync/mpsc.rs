//! Multi-producer, single-consumer queues: bounded ([`channel`]) and unbounded
//! ([`unbounded_channel`]).
//!
//! Senders are `Clone + Send + Sync` (when `T: Send`), so worker threads and tasks alike can
//! feed one receiving task. The bounded channel's capacity is a [`Semaphore`]: a `send`
//! waits for a slot in FIFO order, and the receiver frees one per value taken.
//!
//! # Examples
//!
//! ```
//! use oneloop::sync::mpsc;
//!
//! oneloop::Runtime::new().block_on(async {
//!     let (tx, mut rx) = mpsc::channel(8);
//!     for worker in 0..3 {
//!         let tx = tx.clone();
//!         std::thread::spawn(move || tx.blocking_send(worker).unwrap());
//!     }
//!     drop(tx);
//!     let mut got = Vec::new();
//!     while let Some(v) = rx.recv().await {
//!         got.push(v);
//!     }
//!     got.sort();
//!     assert_eq!(got, [0, 1, 2]);
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use std::panic::Location;

use oneloop_pool::wake;
use parking_lot::Mutex;

use super::Semaphore;
use crate::context;
use crate::task::coop;
use crate::task::waiting::Waiting;

/// A bounded channel holding at most `capacity` values.
///
/// # Panics
///
/// If `capacity` is zero (a rendezvous channel would need a different design; use a
/// capacity of 1).
#[track_caller]
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "oneloop::sync::mpsc::channel: the capacity must be at least 1"
    );
    let chan = Chan::new(Some(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// An unbounded channel: `send` never waits (mind the memory if the receiver falls behind).
#[track_caller]
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, Receiver<T>) {
    let chan = Chan::new(None);
    (UnboundedSender { chan: chan.clone() }, Receiver { chan })
}

struct Chan<T> {
    /// Where the channel was made: the deadlock check names it.
    site: &'static Location<'static>,
    state: Mutex<State<T>>,
    /// Free slots (bounded channels only); closed when the receiver goes.
    slots: Option<Semaphore>,
}

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    /// Set by `Receiver::close` and the receiver's drop: no value can be queued any more,
    /// so once the queue is drained the channel is over, whatever senders remain.
    closed: bool,
    receiver_waker: Option<Waker>,
}

impl<T> State<T> {
    /// True when no value can ever arrive again: every sender is gone, or the receiver
    /// closed the channel.
    fn finished(&self) -> bool {
        self.senders == 0 || self.closed
    }
}

impl<T> Chan<T> {
    #[track_caller]
    fn new(slots: Option<Semaphore>) -> Arc<Self> {
        Arc::new(Chan {
            site: Location::caller(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                senders: 1,
                closed: false,
                receiver_waker: None,
            }),
            slots,
        })
    }

    /// Queues `value` (its slot, if bounded, is already taken).
    fn push(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(value);
            }
            state.queue.push_back(value);
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            wake::resume(wake::wake(waker));
        }
        Ok(())
    }

    fn add_sender(&self) {
        self.state.lock().senders += 1;
    }

    fn drop_sender(&self) {
        let waker = {
            let mut state = self.state.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            wake::resume(wake::wake(waker));
        }
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

/// A value that could not be sent because the receiver is gone; holds the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the channel's receiver is gone")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why [`Sender::try_send`] failed; holds the value either way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel is at capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str("the channel's receiver is gone"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued right now.
    Empty,
    /// Nothing queued, and nothing ever will be: every sender is gone, or the receiver
    /// closed the channel.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the channel is empty"),
            TryRecvError::Disconnected => {
                f.write_str("the channel is empty and every sender is gone")
            }
        }
    }
}

impl std::error::Error for TryRecvError {}

/// The sending half of a bounded channel.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

fn slots<T>(chan: &Chan<T>) -> &Semaphore {
    chan.slots
        .as_ref()
        .expect("oneloop bug: bounded sender without slots")
}

impl<T> Sender<T> {
    /// Sends `value`, waiting (in FIFO order with other senders) while the channel is
    /// full. Fails, handing the value back, if the receiver is gone.
    ///
    /// Cancel-safe: dropping the future before it completes sends nothing.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        match slots(&self.chan).acquire().await {
            Ok(permit) => permit.forget(), // the slot now belongs to the queued value
            Err(_) => return Err(SendError(value)),
        }
        self.chan.push(value).map_err(SendError)
    }

    /// Sends `value` if there is room right now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match slots(&self.chan).try_acquire() {
            Ok(permit) => permit.forget(),
            Err(super::TryAcquireError::Closed) => return Err(TrySendError::Closed(value)),
            Err(super::TryAcquireError::NoPermits) => return Err(TrySendError::Full(value)),
        }
        self.chan.push(value).map_err(TrySendError::Closed)
    }

    /// Sends from a plain thread (not a task), blocking it while the channel is full.
    ///
    /// # Panics
    ///
    /// On a thread that is running a oneloop runtime: blocking it would stop the loop.
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        crate::block::block_thread_on("mpsc::Sender::blocking_send", self.send(value))
    }

    /// True once the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Free slots right now.
    pub fn capacity(&self) -> usize {
        slots(&self.chan).available_permits()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

/// The sending half of an unbounded channel.
pub struct UnboundedSender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> UnboundedSender<T> {
    /// Sends `value` at once; fails, handing it back, if the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.push(value).map_err(SendError)
    }

    /// True once the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        UnboundedSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for UnboundedSender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

/// The receiving half of either kind of channel.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// Waits for the next value; `None` once the queue is empty and no value can arrive any
    /// more (every sender is gone, or [`close`](Self::close) was called).
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next value (for hand-written futures).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // A receiver that always finds a value yields after its task's budget.
        if coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        // Waker code (clone, drop) runs outside the lock (`oneloop_pool::wake`).
        let polled = wake::poll_waker_slot(
            cx.waker(),
            || self.chan.state.lock(),
            |state| match state.queue.pop_front() {
                Some(value) => Ok(Some(value)),
                None if state.finished() => Ok(None),
                None => Err(&mut state.receiver_waker),
            },
        );
        match &polled {
            Poll::Ready(Some(_)) => {
                coop::spend();
                self.free_slot();
            }
            Poll::Ready(None) => {}
            Poll::Pending => context::note_wait(Waiting::Recv(self.chan.site)),
        }
        polled
    }

    /// Takes the next value if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let value = {
            let mut state = self.chan.state.lock();
            match state.queue.pop_front() {
                Some(value) => value,
                None if state.finished() => return Err(TryRecvError::Disconnected),
                None => return Err(TryRecvError::Empty),
            }
        };
        self.free_slot();
        Ok(value)
    }

    /// A value left the queue: give its slot back (bounded channels), waking a waiting
    /// sender. A panic in that sender's waker is contained: re-raising it here would lose
    /// the value just taken.
    fn free_slot(&self) {
        if let Some(slots) = &self.chan.slots {
            wake::contain(wake::catch(|| slots.add_permits(1)));
        }
    }

    /// Receives from a plain thread (not a task), blocking it until a value arrives.
    ///
    /// # Panics
    ///
    /// On a thread that is running a oneloop runtime.
    pub fn blocking_recv(&mut self) -> Option<T> {
        crate::block::block_thread_on("mpsc::Receiver::blocking_recv", self.recv())
    }

    /// Stops the channel: senders fail from now on; values already queued can still be
    /// received, and then `recv` returns `None` even while senders are alive.
    pub fn close(&mut self) {
        self.chan.state.lock().closed = true;
        if let Some(slots) = &self.chan.slots {
            slots.close();
        }
    }

    /// Values queued right now.
    pub fn len(&self) -> usize {
        self.chan.state.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // Drop what is left outside the lock: T's destructor is user code.
        let rest = std::mem::take(&mut self.chan.state.lock().queue);
        drop(rest);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::UnboundedSender")
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Receiver")
            .field("queued", &self.len())
            .finish()
    }
}
