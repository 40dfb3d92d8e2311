//! A worker's watch thread: kills the calls their callers cancelled, renews the entries
//! running here, and takes over those of dead workers (`worker/mod.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::link::Link;
use crate::protocol::{self, Outcome, Reply, Request};

use super::{Shared, Taken};

/// How long a slot (or this thread) blocks on a stream before it looks around again: here,
/// less than a slot's, since a call running this long is announced to its caller.
const BLOCK: Duration = Duration::from_millis(20);

/// How long a call runs before its caller is told it started (`announce`).
const ANNOUNCE_AFTER: Duration = Duration::from_millis(20);

/// The cancellations remembered for a call that has not registered yet (a cancel can
/// arrive between a slot's take and its registration).
const EARLY_CANCELS: usize = 4096;

pub(super) fn run(shared: &Shared) {
    let Some(mut link) = super::link(shared) else {
        return;
    };
    let mut last_cancel = "$".to_owned();
    let renew_every = shared.visibility / 3;
    let reclaim_every = shared.visibility / 2;
    let (mut renewed, mut reclaimed) = (Instant::now(), Instant::now() - reclaim_every);
    while !shared.stop.load(Ordering::Acquire) {
        read_cancels(shared, &mut link, &mut last_cancel);
        announce(shared, &mut link);
        if renewed.elapsed() >= renew_every {
            renew(shared, &mut link);
            renewed = Instant::now();
        }
        if reclaimed.elapsed() >= reclaim_every {
            reclaim(shared, &mut link);
            reclaimed = Instant::now();
        }
    }
}

/// Kills the calls running here that their callers cancelled.
fn read_cancels(shared: &Shared, link: &mut Link, last: &mut String) {
    let read = link.with(|connection| {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&shared.cancels)
            .arg(&*last)
            .query::<redis::Value>(connection)
    });
    let entries = match read {
        Ok(value) => protocol::entries(value),
        Err(_) => {
            std::thread::sleep(link.backoff_left().max(Duration::from_millis(10)));
            return;
        }
    };
    for (id, fields) in entries {
        last.clone_from(&id);
        let call = protocol::field(&fields, "call")
            .and_then(|bytes| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok());
        let client = protocol::field(&fields, "client")
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
        let (Some(call), Some(client)) = (call, client) else {
            continue;
        };
        let who = (client, call);
        let cancel = shared
            .running
            .lock()
            .get(&who)
            .and_then(|running| running.cancel.clone());
        match cancel {
            Some(cancel) => cancel.fire(),
            None => {
                let mut early = shared.early_cancels.lock();
                early.push_back(who);
                if early.len() > EARLY_CANCELS {
                    early.pop_front();
                }
            }
        }
    }
}

/// Tells the callers of the calls running here for `ANNOUNCE_AFTER` that they run, and
/// since when (`Outcome::Running`): their caller's debug mode and trace see a call start
/// when it did, not when it answers; a short call needs no such message.
fn announce(shared: &Shared, link: &mut Link) {
    let due: Vec<((String, u64), u64, u32, u64)> = shared
        .running
        .lock()
        .iter_mut()
        .filter(|(_, running)| !running.announced && running.taken.elapsed() >= ANNOUNCE_AFTER)
        .map(|(who, running)| {
            running.announced = true;
            (
                who.clone(),
                running.taken_us,
                running.attempt,
                running.reply_ttl_ms,
            )
        })
        .collect();
    for ((client, call), taken_us, attempt, ttl_ms) in due {
        let reply = Reply {
            call,
            outcome: Outcome::Running,
            attempt,
            worker: shared.name.clone(),
            taken_us,
            sent_us: protocol::unix_us(),
        };
        let bytes = postcard::to_allocvec(&reply).expect("a reply always encodes");
        let replies = protocol::replies(&shared.queue, &client);
        let _ = link.with(|connection| {
            redis::pipe()
                .cmd("XADD")
                .arg(&replies)
                .arg("*")
                .arg(protocol::REPLY_FIELD)
                .arg(&bytes)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&replies)
                .arg(ttl_ms)
                .ignore()
                .query::<()>(connection)
        });
    }
}

/// Resets the idle time of the entries running here, so no other worker takes them.
fn renew(shared: &Shared, link: &mut Link) {
    let entries: Vec<String> = shared
        .running
        .lock()
        .values()
        .map(|running| running.entry.clone())
        .collect();
    if entries.is_empty() {
        return;
    }
    let _ = link.with(|connection| {
        redis::cmd("XCLAIM")
            .arg(&shared.requests)
            .arg(protocol::GROUP)
            .arg(&shared.name)
            .arg(0)
            .arg(&entries)
            .arg("JUSTID")
            .query::<redis::Value>(connection)
    });
}

/// Takes over the entries of workers that gave no sign of life for the visibility
/// timeout, as many as this worker has free slots.
fn reclaim(shared: &Shared, link: &mut Link) {
    let free = shared
        .idle
        .load(Ordering::Acquire)
        .saturating_sub(shared.reclaimed.lock().len());
    if free == 0 {
        return;
    }
    let idle_ms = shared.visibility.as_millis() as u64;
    let pending = link.with(|connection| {
        redis::cmd("XPENDING")
            .arg(&shared.requests)
            .arg(protocol::GROUP)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(free)
            .query::<redis::Value>(connection)
    });
    let Ok(redis::Value::Array(pending)) = pending else {
        return;
    };
    for item in pending {
        let redis::Value::Array(parts) = item else {
            continue;
        };
        let (Some(entry), Some(owner), Some(redis::Value::Int(deliveries))) = (
            parts.first().and_then(protocol::text),
            parts.get(1).and_then(protocol::text),
            parts.get(3),
        ) else {
            continue;
        };
        claim(shared, link, &entry, &owner, *deliveries as u32, idle_ms);
    }
}

/// Claims `entry` from `owner` (taken for dead), and queues it here or, past its attempts,
/// answers it with the workers that took it.
fn claim(
    shared: &Shared,
    link: &mut Link,
    entry: &str,
    owner: &str,
    deliveries: u32,
    idle_ms: u64,
) {
    let lost = protocol::lost(&shared.queue, entry);
    let claimed = link.with(|connection| {
        redis::cmd("XCLAIM")
            .arg(&shared.requests)
            .arg(protocol::GROUP)
            .arg(&shared.name)
            .arg(idle_ms)
            .arg(entry)
            .query::<redis::Value>(connection)
    });
    let Ok(redis::Value::Array(claimed)) = claimed else {
        return;
    };
    let Some((entry, fields)) = claimed.into_iter().find_map(protocol::entry) else {
        return; // another worker claimed it first, or it was deleted
    };
    let workers = link.with(|connection| {
        redis::pipe()
            .cmd("RPUSH")
            .arg(&lost)
            .arg(owner)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&lost)
            .arg(24 * 3600 * 1000)
            .ignore()
            .cmd("LRANGE")
            .arg(&lost)
            .arg(0)
            .arg(-1)
            .query::<(Vec<String>,)>(connection)
    });
    let workers = workers.map(|(workers,)| workers).unwrap_or_default();
    let Some(request) = protocol::field(&fields, protocol::REQUEST_FIELD)
        .and_then(|bytes| postcard::from_bytes::<Request>(bytes).ok())
    else {
        return;
    };
    let taken = Taken {
        entry,
        attempt: deliveries + 1,
        request,
    };
    if deliveries >= taken.request.max_attempts {
        let reply = Reply {
            call: taken.request.call,
            outcome: Outcome::AttemptsExhausted {
                attempts: deliveries,
                workers,
            },
            attempt: deliveries,
            worker: shared.name.clone(),
            taken_us: protocol::unix_us(),
            sent_us: 0,
        };
        super::slot::answer(shared, link, &taken, &reply);
        return;
    }
    shared.reclaimed.lock().push_back(taken);
}
