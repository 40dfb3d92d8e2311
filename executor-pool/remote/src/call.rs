//! [`RemoteCall`]: the future of a call to a remote executor. Its slot is the process
//! pool's (`oneloop_process::__remote::Slot`): queued, then done exactly once, resolved by
//! the executor's threads, which wake the caller (through the runtime's cross-thread wake
//! when it is a oneloop task).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use oneloop_pool::JobError;
use oneloop_pool::semaphore::AcquireOwned;
use oneloop_pool::waiting::{self, WaitingOn};
use oneloop_pool::wake;
use serde::de::DeserializeOwned;

use crate::answer::{Answer, CallSlot};
use crate::client::{Client, Outgoing};

/// The future of a call to a [`RedisExecutor`](crate::RedisExecutor): resolves to the
/// function's result or to a [`JobError`].
///
/// It is `Send` and needs no runtime. Dropping it cancels the call: a call still in the
/// queue is removed before any worker takes it; a running one is killed on its worker, or
/// left to finish, as the executor was built. After it is ready, [`attempt`](Self::attempt)
/// and [`worker`](Self::worker) say which start of the call answered, and where (await
/// `&mut call` to keep it).
#[must_use = "the call is already queued; dropping this cancels it"]
pub struct RemoteCall<R> {
    inner: Inner,
    done: bool,
    answered: Option<(u32, String)>,
    _result: PhantomData<fn() -> R>,
}

enum Inner {
    Queued {
        slot: Arc<CallSlot>,
        client: Arc<Client>,
    },
    WaitingForRoom {
        outgoing: Option<Outgoing>,
        permit: AcquireOwned,
        client: Arc<Client>,
    },
    Settled(Option<Result<Answer, JobError>>),
}

impl<R> RemoteCall<R> {
    pub(crate) fn queued(slot: Arc<CallSlot>, client: Arc<Client>) -> Self {
        Self::new(Inner::Queued { slot, client })
    }

    pub(crate) fn waiting_for_room(
        outgoing: Outgoing,
        permit: AcquireOwned,
        client: Arc<Client>,
    ) -> Self {
        Self::new(Inner::WaitingForRoom {
            outgoing: Some(outgoing),
            permit,
            client,
        })
    }

    pub(crate) fn settled(result: Result<Answer, JobError>) -> Self {
        Self::new(Inner::Settled(Some(result)))
    }

    fn new(inner: Inner) -> Self {
        RemoteCall {
            inner,
            done: false,
            answered: None,
            _result: PhantomData,
        }
    }

    /// Cancels the call; it resolves as [`JobError::Cancelled`]. True if it had not
    /// started as far as this process knows (it may already be running on a worker: then
    /// the worker is told, and kills it or lets it finish, as the executor was built).
    pub fn cancel(&mut self) -> bool {
        match &mut self.inner {
            Inner::Queued { slot, client } => {
                // A call known to run (its worker said so) is abandoned rather than
                // resolved here; either way the sender takes it out, cancels it on its
                // worker as the executor says, and resolves it if nothing did first.
                let queued = slot.cancel();
                client.cancel(slot.id);
                queued
            }
            Inner::WaitingForRoom { outgoing, .. } => {
                let Some(outgoing) = outgoing.take() else {
                    return false;
                };
                outgoing.slot.cancel();
                self.inner = Inner::Settled(Some(Err(JobError::Cancelled)));
                true
            }
            Inner::Settled(_) => false,
        }
    }

    /// True once the result is in.
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::Queued { slot, .. } => slot.is_done(),
            Inner::WaitingForRoom { .. } => false,
            Inner::Settled(_) => true,
        }
    }

    /// Which start of the call gave its result (1: the first; more when workers died under
    /// it), once it is ready; `None` before, or if it failed.
    pub fn attempt(&self) -> Option<u32> {
        self.answered.as_ref().map(|(attempt, _)| *attempt)
    }

    /// The worker that gave the result (`host:pid`), once it is ready.
    pub fn worker(&self) -> Option<&str> {
        self.answered.as_ref().map(|(_, worker)| worker.as_str())
    }

    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Result<Answer, JobError>> {
        assert!(
            !self.done,
            "oneloop-remote: RemoteCall polled after it returned its result"
        );
        loop {
            match &mut self.inner {
                Inner::WaitingForRoom {
                    outgoing,
                    permit,
                    client,
                } => {
                    let granted = ready!(Pin::new(permit).poll(cx));
                    let outgoing = outgoing.take().expect("oneloop-remote bug: no call");
                    let client = client.clone();
                    self.inner = match granted {
                        Ok(permit) => {
                            let slot = outgoing.slot.clone();
                            match client.send(outgoing, Some(permit)) {
                                Ok(()) => Inner::Queued { slot, client },
                                Err(error) => Inner::Settled(Some(Err(error))),
                            }
                        }
                        Err(_closed) => Inner::Settled(Some(Err(JobError::Shutdown))),
                    };
                }
                Inner::Settled(result) => {
                    self.done = true;
                    return Poll::Ready(result.take().expect("checked by `done`"));
                }
                Inner::Queued { slot, .. } => {
                    let polled = wake::poll_waker_slot(
                        cx.waker(),
                        || slot.lock(),
                        |state| state.take_result(),
                    );
                    return match polled {
                        Poll::Ready(result) => {
                            self.done = true;
                            Poll::Ready(result)
                        }
                        Poll::Pending => {
                            waiting::note(WaitingOn::Job { id: slot.id });
                            Poll::Pending
                        }
                    };
                }
            }
        }
    }
}

impl<R: DeserializeOwned> Future for RemoteCall<R> {
    type Output = Result<R, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let answer = ready!(this.poll_answer(cx));
        Poll::Ready(answer.and_then(|answer| {
            let value = postcard::from_bytes(&answer.value)
                .map_err(|e| JobError::Result(format!("it cannot be decoded here: {e}")));
            this.answered = Some((answer.attempt, answer.worker));
            value
        }))
    }
}

impl<R> Drop for RemoteCall<R> {
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
        }
    }
}

impl<R> fmt::Debug for RemoteCall<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RemoteCall");
        match &self.inner {
            Inner::Queued { slot, .. } => out.field("id", &slot.id).field("function", &slot.key),
            Inner::WaitingForRoom { .. } => out.field("waiting_for_room", &true),
            Inner::Settled(_) => out.field("settled", &true),
        };
        out.field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}
