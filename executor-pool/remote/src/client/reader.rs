//! The reading thread of an executor (`client/mod.rs`).

use std::time::{Duration, Instant};

use crate::answer::Answer;
use crate::link::{Failure, Link};
use crate::protocol::{self, Outcome, Reply};

use super::Client;

/// How long the reader blocks on its stream before it looks at the state again.
const READ_BLOCK: Duration = Duration::from_millis(200);

pub(super) fn run(client: &Client) {
    let read_timeout = READ_BLOCK + Duration::from_secs(5);
    let Ok(mut link) = Link::new(
        &client.config.url,
        client.config.connect_timeout,
        read_timeout,
    ) else {
        return; // the sender checked the URL: unreachable
    };
    let replies = protocol::replies(&client.config.queue, &client.id);
    let mut last = "0-0".to_owned();
    loop {
        if client.state.lock().closed {
            return;
        }
        let read = link.with(|connection| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&replies)
                .arg(&last)
                .query::<redis::Value>(connection)
        });
        let entries = match read {
            Ok(value) => protocol::entries(value),
            Err(Failure::Unreachable(_)) => {
                std::thread::sleep(link.backoff_left().max(Duration::from_millis(10)));
                continue;
            }
            Err(Failure::Server(_)) => {
                std::thread::sleep(READ_BLOCK);
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            if let Some(bytes) = protocol::field(&fields, protocol::REPLY_FIELD)
                && let Ok(reply) = postcard::from_bytes::<Reply>(bytes)
            {
                answer(client, reply);
            }
            last.clone_from(&id);
            ids.push(id);
        }
        // Read: they need not wait for the stream's expiry.
        let _ = link.with(|connection| {
            redis::cmd("XDEL")
                .arg(&replies)
                .arg(&ids)
                .query::<i64>(connection)
        });
    }
}

/// Resolves the call a reply is for (if it is still in flight: a call resolved already,
/// or answered twice after a resend, is not touched again).
fn answer(client: &Client, reply: Reply) {
    let mut state = client.state.lock();
    if matches!(reply.outcome, Outcome::Running) {
        // Not an answer: the call runs, since the time this says.
        let Some(call) = state.calls.get(&reply.call) else {
            return;
        };
        let (slot, submitted) = (call.slot.clone(), call.submitted);
        drop(state); // the start is told to observers: never under the lock
        slot.start_on(started_at(&reply, submitted), reply.worker);
        return;
    }
    let Some(call) = state.calls.remove(&reply.call) else {
        return;
    };
    drop(state);
    call.slot
        .start_on(started_at(&reply, call.submitted), reply.worker.clone());
    let result = match reply.outcome {
        Outcome::Value(value) => Ok(Answer {
            value,
            attempt: reply.attempt,
            worker: reply.worker,
        }),
        outcome => outcome
            .into_result(call.slot.key, &reply.worker)
            .map(|value| Answer {
                value,
                attempt: reply.attempt,
                worker: reply.worker,
            }),
    };
    call.slot.resolve(result);
}

/// When the worker took the call, on our clock (and never before it was submitted): the
/// worker's clock's offset from ours is taken from when it sent the reply and when we read
/// it, the transit counted as nothing.
fn started_at(reply: &Reply, submitted: Instant) -> Instant {
    let received_us = protocol::unix_us();
    let offset = reply.sent_us as i64 - received_us as i64;
    let taken_us = reply.taken_us as i64 - offset;
    let ago = Duration::from_micros(received_us.saturating_sub(taken_us.max(0) as u64));
    Instant::now()
        .checked_sub(ago)
        .unwrap_or(submitted)
        .max(submitted)
}
