//! The sending thread of an executor (`client/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oneloop_pool::JobError;
use oneloop_process::CancelRunning;

use crate::link::Link;
use crate::protocol::{self, create_group};

use super::{Client, InFlight};
use crate::answer::CallSlot;

/// What taking a call out of the table did.
enum Unqueued {
    /// It was removed from the stream (or never queued): no worker took it.
    Removed,
    /// A worker holds it: it was told to stop (as the executor says).
    Taken,
}

/// How often the sender looks at the time limits and refreshes its keys when idle.
const TICK: Duration = Duration::from_millis(50);

/// Calls queued per pipeline.
const BATCH: usize = 512;

/// Removes a request from the stream only if no worker has taken it (it is not in the
/// group's pending list): 1 if removed, 0 if a worker holds it (or it is gone).
/// (With no group yet, no worker can have taken it.)
const UNQUEUE: &str = r"
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if ok and #pending > 0 then return 0 end
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// How often the sender checks that the server still holds its calls (its liveness key).
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

pub(super) struct Sender {
    client: Arc<Client>,
    link: Link,
    requests: String,
    cancels: String,
    alive: String,
    replies: String,
    /// When the liveness key and the reply stream's expiry were last refreshed.
    refreshed: Option<Instant>,
}

impl Sender {
    pub(super) fn new(client: Arc<Client>, link: Link) -> Sender {
        let queue = &client.config.queue;
        Sender {
            requests: protocol::requests(queue),
            cancels: protocol::cancels(queue),
            alive: protocol::alive(queue, &client.id),
            replies: protocol::replies(queue, &client.id),
            client,
            link,
            refreshed: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let (to_send, cancelled, closed) = {
                let mut state = self.client.state.lock();
                if state.to_send.is_empty() && state.cancelled.is_empty() && !state.closed {
                    self.client.signal.wait_for(&mut state, TICK);
                }
                let take = state.to_send.len().min(BATCH);
                let to_send: Vec<u64> = state.to_send.drain(..take).collect();
                (to_send, std::mem::take(&mut state.cancelled), state.closed)
            };
            if closed {
                self.leave();
                return;
            }
            self.keep_alive();
            self.queue(to_send);
            for id in cancelled {
                // Its caller gave up: `Cancelled`, unless it was answered first.
                if let Some((_, slot)) = self.unqueue(id, false) {
                    slot.resolve(Err(JobError::Cancelled));
                }
            }
            self.enforce_limits();
        }
    }

    /// Refreshes the liveness key; finding it gone after a reconnection means the server
    /// lost its data: every call already queued is queued again.
    fn keep_alive(&mut self) {
        let every = LIVENESS_CHECK.min(self.client.config.reply_ttl / 4);
        let due = self.refreshed.is_none_or(|at| at.elapsed() >= every);
        if self.link.is_connected() && !due {
            return;
        }
        let ttl = self.client.config.reply_ttl.as_millis() as u64;
        let (alive, replies) = (self.alive.clone(), self.replies.clone());
        let refreshed = self.link.with(|connection| {
            redis::pipe()
                .cmd("SET")
                .arg(&alive)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .cmd("PEXPIRE")
                .arg(&alive)
                .arg(ttl)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&replies)
                .arg(ttl)
                .ignore()
                .query::<(Option<String>,)>(connection)
        });
        let Ok((created,)) = refreshed else {
            return;
        };
        let first = self.refreshed.is_none();
        self.refreshed = Some(Instant::now());
        if created.is_some() && !first {
            // The key was gone: the server lost what it held, our queued calls with it,
            // and the workers' group (made again here, so a cancellation can tell a call
            // no worker took).
            let _ = create_group(&mut self.link, &self.requests);
            let mut state = self.client.state.lock();
            let mut lost: Vec<u64> = state
                .calls
                .iter_mut()
                .filter_map(|(id, call)| call.entry.take().map(|_| *id))
                .collect();
            lost.sort_unstable(); // in the order they were made
            state.to_send.extend(lost);
        }
    }

    /// Queues these calls in the request stream, in one pipeline.
    fn queue(&mut self, ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        let mut sent = Vec::with_capacity(ids.len());
        {
            let state = self.client.state.lock();
            for id in ids {
                if let Some(call) = state.calls.get(&id) {
                    pipe.cmd("XADD")
                        .arg(&self.requests)
                        .arg("*")
                        .arg(protocol::REQUEST_FIELD)
                        .arg(&call.request);
                    sent.push(id);
                }
            }
        }
        if sent.is_empty() {
            return;
        }
        match self
            .link
            .with(|connection| pipe.query::<Vec<String>>(connection))
        {
            Ok(entries) => {
                let mut state = self.client.state.lock();
                for (id, entry) in sent.into_iter().zip(entries) {
                    if let Some(call) = state.calls.get_mut(&id) {
                        call.entry = Some(entry);
                    }
                }
            }
            Err(failure) => {
                // Not queued (or not known to be): they fail now, rather than wait for a
                // server that may not come back.
                let reason = format!(
                    "{} (Redis at {}, queue {})",
                    failure, self.client.config.url, self.client.config.queue
                );
                let failed: Vec<InFlight> = {
                    let mut state = self.client.state.lock();
                    sent.iter()
                        .filter_map(|id| state.calls.remove(id))
                        .collect()
                };
                for call in failed {
                    call.slot
                        .resolve(Err(JobError::Unreachable(reason.clone())));
                }
            }
        }
    }

    /// Takes call `id` out of the table: removed from the stream if no worker took it yet,
    /// else the workers are told (they kill it if the executor says so, or if `expired`).
    /// Returns what became of it, with its slot (resolved by the caller, after this).
    fn unqueue(&mut self, id: u64, expired: bool) -> Option<(Unqueued, Arc<CallSlot>)> {
        let call = self.client.state.lock().calls.remove(&id)?;
        let slot = call.slot.clone();
        let Some(entry) = &call.entry else {
            // Never queued: its id may still wait in `to_send`, where it is skipped.
            return Some((Unqueued::Removed, slot));
        };
        let (requests, cancels) = (self.requests.clone(), self.cancels.clone());
        let client = self.client.id.clone();
        let removed = self.link.with(|connection| {
            redis::cmd("EVAL")
                .arg(UNQUEUE)
                .arg(1)
                .arg(&requests)
                .arg(protocol::GROUP)
                .arg(entry)
                .query::<i64>(connection)
        });
        let removed = matches!(removed, Ok(1));
        if !removed && (expired || self.client.config.cancel_running == CancelRunning::Kill) {
            // (Lost if Redis cannot be reached now: a running call is then killed only at
            // its deadline, which its worker enforces, if it has one.)
            let _ = self.link.with(|connection| {
                redis::cmd("XADD")
                    .arg(&cancels)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(protocol::CANCELS_KEPT)
                    .arg("*")
                    .arg("call")
                    .arg(id)
                    .arg("client")
                    .arg(&client)
                    .query::<String>(connection)
            });
        }
        let unqueued = if removed {
            Unqueued::Removed
        } else {
            Unqueued::Taken
        };
        Some((unqueued, slot))
    }

    /// Calls past their limit: removed from the queue if no worker took them
    /// (`DeadlineExpired`), else killed on their worker (`TimedOut`).
    fn enforce_limits(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = {
            let state = self.client.state.lock();
            state
                .calls
                .iter()
                .filter(|(_, call)| call.deadline.is_some_and(|deadline| deadline <= now))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in expired {
            // Gone meanwhile (answered): nothing to do.
            if let Some((unqueued, slot)) = self.unqueue(id, true) {
                slot.resolve(Err(match unqueued {
                    Unqueued::Removed => JobError::DeadlineExpired,
                    Unqueued::Taken => JobError::TimedOut,
                }));
            }
        }
    }

    /// The executor closes: calls still queued are taken out of the stream, and the
    /// running ones cancelled as the executor says (best effort: Redis may be gone).
    fn leave(&mut self) {
        let ids: Vec<u64> = self.client.state.lock().calls.keys().copied().collect();
        for id in ids {
            // Redis gone: the rest are resolved by `shut_down` without it.
            if !self.link.is_connected() && self.link.backoff_left() > Duration::ZERO {
                break;
            }
            if let Some((_, slot)) = self.unqueue(id, false) {
                slot.resolve(Err(JobError::Shutdown));
            }
        }
    }
}
