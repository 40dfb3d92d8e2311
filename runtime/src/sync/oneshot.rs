//! A channel for exactly one value, from any thread to one task.
//!
//! # Examples
//!
//! ```
//! use oneloop::sync::oneshot;
//!
//! oneloop::Runtime::new().block_on(async {
//!     let (tx, rx) = oneshot::channel();
//!     std::thread::spawn(move || tx.send(21 * 2).unwrap()); // Sender is Send
//!     assert_eq!(rx.await, Ok(42));
//! });
//! ```

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use std::panic::Location;

use oneloop_pool::wake;

use crate::context;
use crate::task::waiting::Waiting;
use parking_lot::Mutex;

/// Creates a one-value channel.
#[track_caller]
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Mutex::new(State {
        value: None,
        sender_gone: false,
        receiver_gone: false,
        receiver_waker: None,
        sender_waker: None,
    }));
    (
        Sender {
            inner: Some(inner.clone()),
        },
        Receiver {
            inner,
            done: false,
            site: Location::caller(),
        },
    )
}

struct State<T> {
    value: Option<T>,
    sender_gone: bool,
    receiver_gone: bool,
    /// The receiver waiting for the value.
    receiver_waker: Option<Waker>,
    /// The sender waiting in `closed()` for the receiver to go.
    sender_waker: Option<Waker>,
}

/// Sends the value. `Send` when `T` is.
pub struct Sender<T> {
    /// `None` once the value was sent.
    inner: Option<Arc<Mutex<State<T>>>>,
}

/// Receives the value: a future resolving to `Ok(value)`, or `Err(RecvError)` if the sender
/// was dropped without sending.
pub struct Receiver<T> {
    inner: Arc<Mutex<State<T>>>,
    done: bool,
    /// Where the channel was made: the deadlock check names it.
    site: &'static Location<'static>,
}

/// The sender was dropped without sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError(());

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the oneshot sender was dropped without sending")
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing sent yet.
    Empty,
    /// The sender was dropped without sending (or the value was already taken).
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no value sent yet"),
            TryRecvError::Closed => f.write_str("the oneshot sender is gone"),
        }
    }
}

impl std::error::Error for TryRecvError {}

impl<T> Sender<T> {
    /// Sends `value`; hands it back in `Err` if the receiver is gone.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let inner = self.inner.take().expect("oneloop bug: oneshot sent twice");
        let waker = {
            let mut state = inner.lock();
            if state.receiver_gone {
                return Err(value);
            }
            state.value = Some(value);
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            wake::resume(wake::wake(waker));
        }
        Ok(())
    }

    /// True once the receiver was dropped or closed: nobody will read a value.
    pub fn is_closed(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.lock().receiver_gone)
    }

    /// Waits until the receiver is dropped or closed (to stop work nobody wants).
    pub async fn closed(&mut self) {
        poll_fn(|cx| {
            let Some(inner) = &self.inner else {
                return Poll::Ready(());
            };
            wake::poll_waker_slot(
                cx.waker(),
                || inner.lock(),
                |state| {
                    if state.receiver_gone {
                        Ok(())
                    } else {
                        Err(&mut state.sender_waker)
                    }
                },
            )
        })
        .await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let waker = {
            let mut state = inner.lock();
            state.sender_gone = true;
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            wake::resume(wake::wake(waker));
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the value if it has been sent, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.inner.lock();
        match state.value.take() {
            Some(value) => {
                self.done = true;
                Ok(value)
            }
            None if state.sender_gone || self.done => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// True once awaiting would not wait: the value was sent, or the sender is gone.
    pub(crate) fn is_terminated(&self) -> bool {
        let state = self.inner.lock();
        state.value.is_some() || state.sender_gone
    }

    /// Refuses the value: a later `send` fails and hands it back. A value already sent
    /// can still be taken with `try_recv`.
    pub fn close(&mut self) {
        let waker = {
            let mut state = self.inner.lock();
            state.receiver_gone = true;
            state.sender_waker.take()
        };
        if let Some(waker) = waker {
            wake::resume(wake::wake(waker));
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.done,
            "oneloop: oneshot Receiver polled after it completed"
        );
        // Waker code (clone, drop) runs outside the lock (`oneloop_pool::wake`).
        let polled = wake::poll_waker_slot(
            cx.waker(),
            || this.inner.lock(),
            |state| match state.value.take() {
                Some(value) => Ok(Ok(value)),
                None if state.sender_gone => Ok(Err(RecvError(()))),
                None => Err(&mut state.receiver_waker),
            },
        );
        if polled.is_ready() {
            this.done = true;
        } else {
            context::note_wait(Waiting::Oneshot(this.site));
        }
        polled
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (waker, value) = {
            let mut state = self.inner.lock();
            state.receiver_gone = true;
            (state.sender_waker.take(), state.value.take())
        };
        // Outside the lock, and the sender's waiter first: T's destructor is user code, and
        // a panic in it must not leave `closed()` waiting.
        let woken = waker.map_or(Ok(()), wake::wake);
        drop(value);
        wake::resume(woken);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Receiver").finish_non_exhaustive()
    }
}
