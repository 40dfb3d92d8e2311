//! The submitting side's two threads, and the state they share with the handles.
//!
//! - The **sender** (`oneloop-remote-send`) queues calls in the request stream (`XADD`,
//!   pipelined), cancels them (removed from the stream if no worker took them yet, else
//!   announced to the workers), enforces their time limits, and keeps this process's
//!   liveness key. When it (re)connects and finds that key gone, the server lost its data
//!   (a restart without persistence): it queues every call in flight again (delivery is at
//!   least once). When Redis cannot be reached, the calls not yet queued fail at once as
//!   [`JobError::Unreachable`]; those already queued wait for it (or for their limit).
//! - The **reader** (`oneloop-remote-reply`) blocks on this process's reply stream and
//!   resolves each call from its reply, reconnecting with a backoff when the connection
//!   breaks.
//!
//! Neither runs user code under the state's lock: a slot is resolved (which wakes its
//! caller) after it has been taken out of the table.//!
//! The parts: `sender.rs` and `reader.rs`, one per thread.

mod reader;
mod sender;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oneloop_pool::JobError;
use oneloop_pool::semaphore::{OwnedSemaphorePermit, Semaphore};
use oneloop_process::CancelRunning;
use parking_lot::{Condvar, Mutex};

use crate::answer::CallSlot;
use crate::config::Config;
use crate::link::Link;
use crate::protocol::{self, Request, create_group};

/// What the handles and the two threads share.
pub(crate) struct Client {
    pub(crate) config: Config,
    /// This submitter's name in Redis (`host:pid:n`): its reply stream's.
    pub(crate) id: String,
    /// Room for calls in flight, when bounded.
    pub(crate) admission: Option<Arc<Semaphore>>,
    next_call: AtomicU64,
    state: Mutex<State>,
    signal: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Calls to queue in Redis, in order.
    to_send: VecDeque<u64>,
    /// Calls whose caller gave up.
    cancelled: Vec<u64>,
    /// Every call in flight.
    calls: HashMap<u64, InFlight>,
    closed: bool,
}

struct InFlight {
    slot: Arc<CallSlot>,
    /// The encoded [`Request`], kept to queue it again if the server loses it.
    request: Vec<u8>,
    /// Its entry in the request stream, once queued.
    entry: Option<String>,
    deadline: Option<Instant>,
    submitted: Instant,
    /// Its room among the calls in flight, when bounded: given back when it resolves.
    _permit: Option<OwnedSemaphorePermit>,
}

/// A call made, not yet in the table.
pub(crate) struct Outgoing {
    pub(crate) slot: Arc<CallSlot>,
    request: Vec<u8>,
    deadline: Option<Instant>,
}

/// Starts an executor's threads, once Redis answers.
pub(crate) fn start(config: Config) -> io::Result<Arc<Client>> {
    let mut link = Link::new(&config.url, config.connect_timeout, Duration::from_secs(5))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // The workers' group, made here too (if no worker has yet): a call queued before any
    // worker came is theirs all the same, and a cancellation can tell it was not taken.
    create_group(&mut link, &protocol::requests(&config.queue))
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "{}:{}",
        protocol::this_process(),
        CLIENTS.fetch_add(1, Ordering::Relaxed)
    );
    let admission = config.max_in_flight.map(|n| Arc::new(Semaphore::new(n)));
    let client = Arc::new(Client {
        config,
        id,
        admission,
        next_call: AtomicU64::new(1),
        state: Mutex::new(State::default()),
        signal: Condvar::new(),
        threads: Mutex::new(Vec::new()),
    });
    let sender = {
        let client = client.clone();
        std::thread::Builder::new()
            .name("oneloop-remote-send".into())
            .spawn(move || sender::Sender::new(client, link).run())?
    };
    let reader = {
        let client = client.clone();
        std::thread::Builder::new()
            .name("oneloop-remote-reply".into())
            .spawn(move || reader::run(&client))
    };
    let reader = match reader {
        Ok(reader) => reader,
        Err(error) => {
            client.close();
            let _ = sender.join();
            return Err(error);
        }
    };
    client.threads.lock().extend([sender, reader]);
    Ok(client)
}

impl Client {
    /// A call of `key` with these encoded arguments, made at `site`.
    pub(crate) fn outgoing(
        &self,
        key: &'static str,
        args: Vec<u8>,
        timeout: Option<Duration>,
        site: &'static Location<'static>,
    ) -> Outgoing {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(CallSlot::new(id, key, site));
        let request = Request {
            call: id,
            client: self.id.clone(),
            key: key.to_owned(),
            args,
            deadline_ms: timeout.map(protocol::unix_ms_after),
            max_attempts: self.config.max_attempts,
            max_payload: self.config.max_payload as u64,
            kill_on_cancel: self.config.cancel_running == CancelRunning::Kill,
            site: site.to_string(),
            reply_ttl_ms: self.config.reply_ttl.as_millis() as u64,
        };
        Outgoing {
            slot,
            request: postcard::to_allocvec(&request).expect("a request always encodes"),
            deadline: timeout.and_then(|timeout| Instant::now().checked_add(timeout)),
        }
    }

    /// Hands a call to the sender; refused once the executor is closing.
    pub(crate) fn send(
        &self,
        outgoing: Outgoing,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), JobError> {
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(JobError::Shutdown);
            }
            let id = outgoing.slot.id;
            state.calls.insert(
                id,
                InFlight {
                    slot: outgoing.slot,
                    request: outgoing.request,
                    entry: None,
                    deadline: outgoing.deadline,
                    submitted: Instant::now(),
                    _permit: permit,
                },
            );
            state.to_send.push_back(id);
        }
        self.signal.notify_one();
        Ok(())
    }

    /// The caller gave up on call `id` (its slot is resolved already).
    pub(crate) fn cancel(&self, id: u64) {
        self.state.lock().cancelled.push(id);
        self.signal.notify_one();
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.state.lock().calls.len()
    }

    /// Stops taking calls; the threads leave at their next look.
    fn close(&self) {
        self.state.lock().closed = true;
        if let Some(admission) = &self.admission {
            admission.close();
        }
        self.signal.notify_all();
    }

    /// The last handle is gone: the threads stop, and every call still in flight fails as
    /// `Shutdown` (those still queued in Redis are removed, the running ones cancelled as
    /// the executor says).
    pub(crate) fn shut_down(&self) {
        self.close();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        let left: Vec<InFlight> = self
            .state
            .lock()
            .calls
            .drain()
            .map(|(_, call)| call)
            .collect();
        for call in left {
            call.slot.resolve(Err(JobError::Shutdown));
        }
    }
}
