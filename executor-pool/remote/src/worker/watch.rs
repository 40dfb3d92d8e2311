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
    // Cancellations from now on: after the stream's last entry as it is now (`$` would
    // be read again at each `XREAD`, missing what arrives between two).
    let mut last_cancel = None;
    let renew_every = shared.visibility / 3;
    let reclaim_every = shared.visibility / 2;
    let (mut renewed, mut reclaim_at) = (Instant::now(), Instant::now());
    let mut connected = true;
    // Until the slots have left: their calls are renewed, and cancelled, to the end.
    while !shared.slots_done.load(Ordering::Acquire) {
        let last = last_cancel.get_or_insert_with(|| last_entry(shared, &mut link));
        read_cancels(shared, &mut link, last);
        if !link.is_connected() {
            connected = false;
            continue;
        }
        if !connected {
            // Back after an outage, perhaps past the visibility timeout: every entry looks
            // abandoned now, those of live workers too. Ours are renewed at once, and none
            // is taken over before the others have had a visibility timeout to renew.
            connected = true;
            renewed = Instant::now() - renew_every;
            reclaim_at = Instant::now() + shared.visibility;
        }
        announce(shared, &mut link);
        if renewed.elapsed() >= renew_every {
            renew(shared, &mut link);
            renewed = Instant::now();
        }
        if Instant::now() >= reclaim_at && !shared.stop.load(Ordering::Acquire) {
            reclaim(shared, &mut link);
            reclaim_at = Instant::now() + reclaim_every;
        }
    }
}

/// The id of the cancel stream's last entry, or `0-0` when it has none.
fn last_entry(shared: &Shared, link: &mut Link) -> String {
    let last = link.with(|connection| {
        redis::cmd("XREVRANGE")
            .arg(&shared.cancels)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query::<redis::Value>(connection)
    });
    match last {
        Ok(redis::Value::Array(entries)) => entries
            .into_iter()
            .find_map(protocol::entry)
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id),
        _ => "0-0".to_owned(),
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
        // Remembered first, then looked up: a slot registers its call first, then looks
        // at what is remembered, so whichever comes second sees the other's (and a call
        // fired twice is killed once).
        {
            let mut early = shared.early_cancels.lock();
            early.push_back(who.clone());
            if early.len() > EARLY_CANCELS {
                early.pop_front();
            }
        }
        let cancel = shared
            .running
            .lock()
            .get(&who)
            .and_then(|running| running.cancel.clone());
        if let Some(cancel) = cancel {
            cancel.fire();
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
            sent_us: 0, // stamped when written
        };
        let replies = protocol::replies(&shared.queue, &client);
        let _ = link.with(|connection| {
            protocol::reply_pipe(&replies, &reply, ttl_ms).query::<()>(connection)
        });
    }
}

/// Resets the idle time of the entries running here, so no other worker takes them.
fn renew(shared: &Shared, link: &mut Link) {
    // The calls running here, and those taken over and waiting for a slot.
    let mut entries: Vec<String> = shared
        .running
        .lock()
        .values()
        .map(|running| running.entry.clone())
        .collect();
    entries.extend(
        shared
            .reclaimed
            .lock()
            .iter()
            .map(|taken| taken.entry.clone()),
    );
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
        if owner == shared.name {
            continue; // ours: running here, or waiting for a slot here (renewed)
        }
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
