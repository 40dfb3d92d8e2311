//! A worker's slot: takes an entry, runs it in the process pool (killable by its
//! caller's cancellation), and answers it (`worker/mod.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::link::{Failure, Link};
use crate::protocol::{self, Outcome, Reply, Request, create_group};

use super::{BLOCK, Cancel, RunningCall, Shared, Taken};

pub(super) fn run(shared: &Shared) {
    let Some(mut link) = super::link(shared) else {
        return;
    };
    while !shared.stop.load(Ordering::Acquire) {
        let reclaimed = shared.reclaimed.lock().pop_front();
        let taken = match reclaimed {
            Some(taken) => Some(taken),
            None => take(shared, &mut link),
        };
        if let Some(taken) = taken {
            shared.idle.fetch_sub(1, Ordering::AcqRel);
            let reply = run_call(shared, &taken);
            answer(shared, &mut link, &taken, &reply);
            // Renewed until its answer is written (the watch thread renews `running`).
            let who = (taken.request.client.clone(), taken.request.call);
            shared.running.lock().remove(&who);
            shared.idle.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The next new entry of the stream, if one comes within `BLOCK`.
fn take(shared: &Shared, link: &mut Link) -> Option<Taken> {
    let read = link.with(|connection| {
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(protocol::GROUP)
            .arg(&shared.name)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&shared.requests)
            .arg(">")
            .query::<redis::Value>(connection)
    });
    let value = match read {
        Ok(value) => value,
        Err(failure) => {
            if failure.code() == Some("NOGROUP") {
                // The server lost its data (or the stream was deleted): make it again.
                let _ = create_group(link, &shared.requests);
            } else {
                std::thread::sleep(link.backoff_left().max(Duration::from_millis(10)));
            }
            return None;
        }
    };
    let (entry, fields) = protocol::entries(value).into_iter().next()?;
    let Some(request) = protocol::field(&fields, protocol::REQUEST_FIELD)
        .and_then(|bytes| postcard::from_bytes::<Request>(bytes).ok())
    else {
        // Not one of ours: acknowledged and dropped, so it never comes back.
        let _ = link.with(|connection| {
            redis::pipe()
                .cmd("XACK")
                .arg(&shared.requests)
                .arg(protocol::GROUP)
                .arg(&entry)
                .cmd("XDEL")
                .arg(&shared.requests)
                .arg(&entry)
                .query::<()>(connection)
        });
        return None;
    };
    Some(Taken {
        entry,
        request,
        attempt: 1,
    })
}

/// Runs a taken call in the process pool: its reply.
fn run_call(shared: &Shared, taken: &Taken) -> Reply {
    let taken_us = protocol::unix_us();
    let request = &taken.request;
    let now_ms = taken_us / 1000;
    let outcome = if request
        .deadline_ms
        .is_some_and(|deadline| deadline <= now_ms)
    {
        Outcome::Expired
    } else {
        let timeout = request
            .deadline_ms
            .map(|deadline| Duration::from_millis(deadline - now_ms));
        match shared
            .pool
            .call_encoded(&request.key, request.args.clone(), timeout)
        {
            None => Outcome::UnknownFunction,
            Some(call) => {
                let who = (request.client.clone(), request.call);
                let cancel = request.kill_on_cancel.then(|| Arc::new(Cancel::default()));
                shared.running.lock().insert(
                    who.clone(),
                    RunningCall {
                        entry: taken.entry.clone(),
                        cancel: cancel.clone(),
                        taken: Instant::now(),
                        taken_us,
                        attempt: taken.attempt,
                        reply_ttl_ms: request.reply_ttl_ms,
                        announced: false,
                    },
                );
                if let Some(cancel) = &cancel
                    && shared.early_cancels.lock().contains(&who)
                {
                    cancel.fire();
                }
                let result = oneloop_pool::block_on(Killable { call, cancel });
                match result {
                    Ok(value) if value.len() as u64 > request.max_payload => {
                        Outcome::Result(format!(
                            "it is {} bytes encoded, over the executor's max_payload of {}",
                            value.len(),
                            request.max_payload
                        ))
                    }
                    Ok(value) => Outcome::Value(value),
                    Err(error) => Outcome::of_error(error),
                }
            }
        }
    };
    Reply {
        call: request.call,
        outcome,
        attempt: taken.attempt,
        worker: shared.name.clone(),
        taken_us,
        sent_us: 0,
    }
}

/// A call in the process pool that a cancellation kills (by dropping it: the pool kills
/// its worker process).
struct Killable {
    call: oneloop_process::ProcessCall<()>,
    cancel: Option<Arc<Cancel>>,
}

impl Future for Killable {
    type Output = Result<Vec<u8>, oneloop_pool::JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(cancel) = &this.cancel {
            *cancel.waker.lock() = Some(cx.waker().clone());
            if cancel.set.load(Ordering::Acquire) {
                this.call.cancel();
                return Poll::Ready(Err(oneloop_pool::JobError::Cancelled));
            }
        }
        this.call.poll_encoded(cx)
    }
}

/// Writes the reply, acknowledges and deletes the entry, in one transaction; tries again
/// (with the link's backoff) until it is written or the worker stops (then the entry stays
/// pending, and another worker runs it again after the visibility timeout).
pub(super) fn answer(shared: &Shared, link: &mut Link, taken: &Taken, reply: &Reply) {
    let replies = protocol::replies(&shared.queue, &taken.request.client);
    let lost = protocol::lost(&shared.queue, &taken.entry);
    loop {
        let written = link.with(|connection| {
            protocol::reply_pipe(&replies, reply, taken.request.reply_ttl_ms)
                .atomic()
                .cmd("XACK")
                .arg(&shared.requests)
                .arg(protocol::GROUP)
                .arg(&taken.entry)
                .ignore()
                .cmd("XDEL")
                .arg(&shared.requests)
                .arg(&taken.entry)
                .ignore()
                .cmd("DEL")
                .arg(&lost)
                .ignore()
                .query::<()>(connection)
        });
        match written {
            Ok(()) => return,
            // The server cannot take it yet (loading its data, out of memory, a replica
            // without its primary...): tried again, as after a broken connection.
            Err(failure @ Failure::Server(_)) if !transient(&failure) => return,
            Err(_) => {
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(link.backoff_left().max(Duration::from_millis(10)));
            }
        }
    }
}

/// A server error that passes: the same command may succeed later.
fn transient(failure: &Failure) -> bool {
    matches!(
        failure.code(),
        Some("LOADING" | "BUSY" | "OOM" | "READONLY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
    )
}
