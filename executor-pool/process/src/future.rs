//! [`ProcessCall`]: the future a caller awaits for a call to a process pool. Its slot is
//! `Call` (`call.rs`); a call waiting for room in a bounded queue holds its permit request
//! here until the queue (`shared.rs`) takes it.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use oneloop_pool::JobError;
use oneloop_pool::semaphore::AcquireOwned;
use oneloop_pool::waiting::{self, WaitingOn};
use oneloop_pool::wake;
use serde::de::DeserializeOwned;

use crate::call::Call;
use crate::payload::Encoded;
use crate::shared::{Pending, Shared};

/// The future of a call to a process pool: resolves to the function's result, or to a
/// [`JobError`] (the function panicked, its worker died or was killed at a timeout, the
/// arguments or result could not be encoded, the pool shut down...).
///
/// It is `Send` and needs no runtime: await it on any executor, or wait for it with
/// [`oneloop_pool::block_on`]. Dropping it cancels the call: a queued call never runs; a
/// running one is killed with its worker or left to finish, as the pool was built
/// ([`Builder::cancel_running`](crate::Builder::cancel_running)).
#[must_use = "the call is already queued; dropping this cancels it"]
pub struct ProcessCall<R> {
    inner: Inner,
    /// Set once the result has been returned.
    done: bool,
    _result: PhantomData<fn() -> R>,
}

enum Inner {
    /// Queued for a worker process, or running in one.
    Queued {
        call: Arc<Call>,
        shared: Arc<Shared>,
    },
    /// Waiting for room in the pool's bounded queue (`Overflow::Wait`).
    WaitingForRoom {
        pending: Option<Pending>,
        permit: AcquireOwned,
        shared: Arc<Shared>,
    },
    /// Settled at the call: refused, or run in the caller (`Overflow::CallerRuns`),
    /// already encoded as a worker's answer would be.
    Settled(Option<Result<Encoded, JobError>>),
}

impl<R> ProcessCall<R> {
    pub(crate) fn queued(call: Arc<Call>, shared: Arc<Shared>) -> Self {
        Self::new(Inner::Queued { call, shared })
    }

    pub(crate) fn waiting_for_room(
        pending: Pending,
        permit: AcquireOwned,
        shared: Arc<Shared>,
    ) -> Self {
        Self::new(Inner::WaitingForRoom {
            pending: Some(pending),
            permit,
            shared,
        })
    }

    pub(crate) fn settled(result: Result<Encoded, JobError>) -> Self {
        Self::new(Inner::Settled(Some(result)))
    }

    fn new(inner: Inner) -> Self {
        ProcessCall {
            inner,
            done: false,
            _result: PhantomData,
        }
    }

    /// Cancels the call. True if it had not started: it now never will. A running call is
    /// killed with its worker, or left to finish with its result discarded, as the pool
    /// was built ([`Builder::cancel_running`](crate::Builder::cancel_running)).
    pub fn cancel(&mut self) -> bool {
        match &mut self.inner {
            Inner::Queued { call, shared } => {
                let queued = call.cancel();
                if queued {
                    // Its room in a bounded queue goes back at the supervisor's next turn.
                    shared.cancelled_queued.store(true, Ordering::Release);
                }
                shared.notify(); // the supervisor decides what becomes of a running one
                queued
            }
            Inner::WaitingForRoom { pending, .. } => {
                let Some(pending) = pending.take() else {
                    return false;
                };
                pending.call.cancel();
                self.inner = Inner::Settled(Some(Err(JobError::Cancelled)));
                true
            }
            Inner::Settled(_) => false,
        }
    }

    /// True once the result is in.
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::Queued { call, .. } => call.is_done(),
            Inner::WaitingForRoom { .. } => false,
            Inner::Settled(_) => true,
        }
    }
}

impl<R: DeserializeOwned> Future for ProcessCall<R> {
    type Output = Result<R, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_result(cx).map(decode)
    }
}

impl<R> ProcessCall<R> {
    /// The result still encoded (postcard bytes of the function's result): how a worker
    /// of `oneloop-remote` passes it on without knowing its type.
    #[doc(hidden)]
    pub fn poll_encoded(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>, JobError>> {
        self.poll_result(cx)
            .map(|result| result.map(|encoded| encoded.bytes().to_vec()))
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<Encoded, JobError>> {
        let this = self;
        assert!(
            !this.done,
            "oneloop-process: ProcessCall polled after it returned its result"
        );
        loop {
            match &mut this.inner {
                Inner::WaitingForRoom {
                    pending,
                    permit,
                    shared,
                } => {
                    let granted = ready!(Pin::new(permit).poll(cx));
                    let pending = pending
                        .take()
                        .expect("oneloop-process bug: no pending call");
                    let shared = shared.clone();
                    this.inner = match granted {
                        Ok(permit) => {
                            let call = pending.call.clone();
                            match shared.enqueue(pending.with_permit(permit)) {
                                Ok(()) => Inner::Queued { call, shared },
                                Err(error) => {
                                    call.resolve(Err(error.clone())); // gives its room back
                                    Inner::Settled(Some(Err(error)))
                                }
                            }
                        }
                        Err(_closed) => Inner::Settled(Some(Err(JobError::Shutdown))),
                    };
                }
                Inner::Settled(result) => {
                    this.done = true;
                    let result = result.take().expect("checked by `done`");
                    return Poll::Ready(result);
                }
                Inner::Queued { call, .. } => {
                    let polled = wake::poll_waker_slot(
                        cx.waker(),
                        || call.lock(),
                        |state| state.take_result(),
                    );
                    return match polled {
                        Poll::Ready(result) => {
                            this.done = true;
                            Poll::Ready(result)
                        }
                        Poll::Pending => {
                            waiting::note(WaitingOn::Job { id: call.id });
                            Poll::Pending
                        }
                    };
                }
            }
        }
    }
}

/// The result, decoded (from the worker's region, given back as `encoded` drops, if it
/// came in one).
fn decode<R: DeserializeOwned>(result: Result<Encoded, JobError>) -> Result<R, JobError> {
    result.and_then(|encoded| {
        postcard::from_bytes(encoded.bytes())
            .map_err(|e| JobError::Result(format!("it cannot be decoded here: {e}")))
    })
}

impl<R> Drop for ProcessCall<R> {
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
        }
    }
}

impl<R> fmt::Debug for ProcessCall<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("ProcessCall");
        match &self.inner {
            Inner::Queued { call, .. } => out.field("id", &call.id).field("function", &call.key),
            Inner::WaitingForRoom { .. } => out.field("waiting_for_room", &true),
            Inner::Settled(_) => out.field("settled", &true),
        };
        out.finish_non_exhaustive()
    }
}
