//! [`RedisExecutor`]: the submitting side. A call is encoded here, on the caller's
//! thread, and handed to the executor's threads (`client/`), which queue it in Redis and
//! resolve it when its reply comes back.

use std::io;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use oneloop_pool::semaphore::TryAcquireError;
use oneloop_pool::{JobError, Overflow};
use oneloop_process::{CancelRunning, ProcessFn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::answer::Answer;
use crate::call::RemoteCall;
use crate::client::{self, Client, Outgoing};
use crate::config::Config;

/// Builds a [`RedisExecutor`]: `RedisExecutor::builder(url, queue)`.
#[derive(Debug)]
#[must_use = "a builder does nothing until `connect`"]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Bounds the calls in flight (queued in Redis or running on a worker) to `calls`;
    /// past it, the [`overflow`](Self::overflow) policy decides. Unbounded by default.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = Some(calls);
        self
    }

    /// What a call does when `max_in_flight` calls are already in flight: `Reject`
    /// ([`JobError::Rejected`]), `Wait` for room (the default), or `CallerRuns` (the
    /// function runs in this process, on the caller's thread).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }

    /// The default limit on a call, counted from its submission: a call not started by
    /// then is removed from the queue ([`JobError::DeadlineExpired`]); one running then is
    /// killed on its worker ([`JobError::TimedOut`]). None by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// How many times a call may be started, all told (default 3): a worker that dies
    /// under a call leaves it to be taken again by another; past this many starts the call
    /// fails as [`JobError::AttemptsExhausted`], naming the workers.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// The largest encoded arguments, and result, a call may have (default 64 MiB):
    /// larger arguments fail at the call ([`JobError::Arguments`]), a larger result on
    /// the worker ([`JobError::Result`]).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// How long replies wait in Redis for this process to read them (default 10 min, at
    /// least 1 s): if it dies, its reply stream expires after this, leaving nothing behind.
    pub fn reply_ttl(mut self, ttl: Duration) -> Self {
        self.config.reply_ttl = ttl;
        self
    }

    /// How long connecting to Redis may take (default 2 s): a call made while Redis
    /// cannot be reached fails after this as [`JobError::Unreachable`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// What cancelling a running call does: kill it on its worker (the default), or let
    /// it finish, its result discarded.
    pub fn cancel_running(mut self, cancel: CancelRunning) -> Self {
        self.config.cancel_running = cancel;
        self
    }

    /// Connects to Redis and starts the executor's two threads.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a URL the `redis` crate cannot read, an empty queue name, zero
    /// `max_in_flight`, `max_attempts` or `max_payload`; the connection's error if Redis
    /// cannot be reached now.
    pub fn connect(self) -> io::Result<RedisExecutor> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let config = self.config;
        if config.queue.is_empty() {
            return Err(invalid("a queue needs a name".into()));
        }
        if config.max_in_flight == Some(0) || config.max_attempts == 0 || config.max_payload == 0 {
            return Err(invalid(
                "max_in_flight, max_attempts and max_payload must be at least 1".into(),
            ));
        }
        if config.reply_ttl < Duration::from_secs(1) {
            return Err(invalid(
                "reply_ttl must be at least 1 s: replies must wait for their reader".into(),
            ));
        }
        let client = client::start(config)?;
        Ok(RedisExecutor {
            owner: Arc::new(Owner(client.clone())),
            client,
        })
    }
}

/// Runs registered functions ([`process_fn!`](oneloop_process::process_fn)) on remote
/// workers ([`Worker`](crate::Worker)) through a Redis stream: the same call shape as a
/// process pool.
///
/// Cloning it is cheap and gives another handle to the same executor; its threads stop
/// when the last handle is dropped, failing the calls still in flight with
/// [`JobError::Shutdown`].
///
/// # Examples
///
/// ```no_run
/// oneloop_process::process_fn! {
///     fn add(a: u64, b: u64) -> u64 {
///         a + b
///     }
/// }
///
/// let remote = oneloop_remote::RedisExecutor::connect("redis://127.0.0.1/", "jobs")?;
/// // Some worker process, on this machine or another, runs `oneloop_remote::serve`.
/// let sum = oneloop_pool::block_on(remote.call(add, (1, 2)));
/// assert_eq!(sum, Ok(3));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisExecutor {
    client: Arc<Client>,
    /// Dropped with the last handle: stops the threads (which hold `client` too).
    owner: Arc<Owner>,
}

struct Owner(Arc<Client>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

impl RedisExecutor {
    /// Connects with the default settings ([`builder`](Self::builder)).
    pub fn connect(url: &str, queue: &str) -> io::Result<RedisExecutor> {
        Self::builder(url, queue).connect()
    }

    /// An executor for the Redis server at `url` (`redis://host:port/`) and the queue
    /// named `queue`, to set up.
    pub fn builder(url: &str, queue: &str) -> Builder {
        Builder {
            config: Config {
                url: url.to_owned(),
                queue: queue.to_owned(),
                max_in_flight: None,
                overflow: Overflow::Wait,
                timeout: None,
                max_attempts: 3,
                max_payload: 64 << 20,
                reply_ttl: Duration::from_secs(600),
                connect_timeout: Duration::from_secs(2),
                cancel_running: CancelRunning::Kill,
            },
        }
    }

    /// Calls `function` with `args` on some worker, with the executor's timeout.
    ///
    /// The returned future resolves to the result; dropping it cancels the call.
    /// Arguments that cannot be encoded, or are over `max_payload`, fail here.
    #[track_caller]
    pub fn call<A, R>(&self, function: ProcessFn<A, R>, args: A) -> RemoteCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        let timeout = self.client.config.timeout;
        self.submit(function, args, timeout, Location::caller())
    }

    /// Like [`call`](Self::call), with a limit of its own, counted from now.
    #[track_caller]
    pub fn call_with_timeout<A, R>(
        &self,
        function: ProcessFn<A, R>,
        args: A,
        timeout: Duration,
    ) -> RemoteCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        self.submit(function, args, Some(timeout), Location::caller())
    }

    fn submit<A, R>(
        &self,
        function: ProcessFn<A, R>,
        args: A,
        timeout: Option<Duration>,
        site: &'static Location<'static>,
    ) -> RemoteCall<R>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        let config = &self.client.config;
        let encoded = match postcard::to_allocvec(&args) {
            Ok(encoded) => encoded,
            Err(error) => {
                return RemoteCall::settled(Err(JobError::Arguments(format!(
                    "the arguments of {} cannot be encoded: {error}",
                    function.key()
                ))));
            }
        };
        if encoded.len() > config.max_payload {
            return RemoteCall::settled(Err(JobError::Arguments(format!(
                "the arguments of {} are {} bytes encoded, over the executor's max_payload of {}",
                function.key(),
                encoded.len(),
                config.max_payload
            ))));
        }
        let outgoing = self.client.outgoing(function.key(), encoded, timeout, site);
        let Some(slots) = &self.client.admission else {
            return self.queued(outgoing, None);
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => self.queued(outgoing, Some(permit)),
            Err(TryAcquireError::Closed) => RemoteCall::settled(Err(JobError::Shutdown)),
            Err(TryAcquireError::NoPermits) => match config.overflow {
                Overflow::Reject => RemoteCall::settled(Err(JobError::Rejected)),
                Overflow::CallerRuns => {
                    // Here, in this process: what the caller asked for when the executor
                    // is full. A panic comes back as it would from a worker.
                    let ran = catch_unwind(AssertUnwindSafe(|| function.call_here(args)));
                    RemoteCall::settled(match ran {
                        Ok(value) => postcard::to_allocvec(&value)
                            .map(Answer::here)
                            .map_err(|e| JobError::Result(e.to_string())),
                        Err(payload) => {
                            Err(JobError::Panicked(oneloop_pool::panic_message(&*payload)))
                        }
                    })
                }
                _ => {
                    let permit = slots.clone().acquire_owned();
                    RemoteCall::waiting_for_room(outgoing, permit, self.client.clone())
                }
            },
        }
    }

    fn queued<R>(
        &self,
        outgoing: Outgoing,
        permit: Option<oneloop_pool::semaphore::OwnedSemaphorePermit>,
    ) -> RemoteCall<R> {
        let slot = outgoing.slot.clone();
        match self.client.send(outgoing, permit) {
            Ok(()) => RemoteCall::queued(slot, self.client.clone()),
            Err(error) => RemoteCall::settled(Err(error)),
        }
    }

    /// Stops the executor now, as dropping its last handle would: its threads stop, the
    /// calls still queued are taken out of the stream, the running ones cancelled as the
    /// executor says, and every call in flight fails as [`JobError::Shutdown`]. Later calls
    /// fail as `Shutdown` too.
    pub fn shutdown(&self) {
        self.owner.0.shut_down();
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.client.config.queue
    }

    /// Calls in flight now: queued in Redis, running on a worker, or waiting for their
    /// reply to be read.
    pub fn in_flight(&self) -> usize {
        self.client.in_flight()
    }
}

impl std::fmt::Debug for RedisExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisExecutor")
            .field("queue", &self.client.config.queue)
            .field("in_flight", &self.client.in_flight())
            .finish_non_exhaustive()
    }
}
