//! What submitters and workers write to Redis, and where.
//!
//! For a queue named `q`:
//! - `oneloop:q` is the request stream. Each entry has one field, `call`: a postcard
//!   [`Request`]. Workers read it as the consumer group [`GROUP`]; a worker acknowledges
//!   (`XACK`) and deletes (`XDEL`) an entry in the same transaction that writes its reply,
//!   so an entry is pending exactly while some worker holds it.
//! - `oneloop:q:replies:<client>` is one submitter's reply stream. Each entry has one field,
//!   `reply`: a postcard [`Reply`]. It expires when no reply has been written to it for the
//!   reply TTL, so a submitter that died leaves nothing behind for long.
//! - `oneloop:q:cancels` carries cancellations of running calls to every worker (each
//!   reads it whole, with no group), trimmed to its last few thousand entries.
//! - `oneloop:q:client:<client>` exists while a submitter is alive (it refreshes its
//!   expiry): a submitter that reconnects and finds it gone knows the server lost its data
//!   (a restart without persistence) and sends its calls in flight again.
//! - `oneloop:q:lost:<entry>` lists the workers that took an entry and died before
//!   answering: the error of a call that ran out of attempts names them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oneloop_pool::{JobError, WorkerDeath};
use serde::{Deserialize, Serialize};

use crate::link::{Failure, Link};

/// The consumer group of a queue's workers.
pub(crate) const GROUP: &str = "oneloop-workers";

/// The field of a request entry, and of a reply entry.
pub(crate) const REQUEST_FIELD: &str = "call";
pub(crate) const REPLY_FIELD: &str = "reply";

/// The cancellations kept in a queue's cancel stream.
pub(crate) const CANCELS_KEPT: usize = 10_000;

pub(crate) fn requests(queue: &str) -> String {
    format!("oneloop:{queue}")
}

pub(crate) fn replies(queue: &str, client: &str) -> String {
    format!("oneloop:{queue}:replies:{client}")
}

pub(crate) fn cancels(queue: &str) -> String {
    format!("oneloop:{queue}:cancels")
}

pub(crate) fn alive(queue: &str, client: &str) -> String {
    format!("oneloop:{queue}:client:{client}")
}

pub(crate) fn lost(queue: &str, entry: &str) -> String {
    format!("oneloop:{queue}:lost:{entry}")
}

/// A pipeline that adds `reply` (stamped with its send time) to its submitter's reply
/// stream `replies` and keeps the stream `ttl_ms` longer: what every reply and notice a
/// worker writes begins with.
pub(crate) fn reply_pipe(replies: &str, reply: &Reply, ttl_ms: u64) -> redis::Pipeline {
    let reply = Reply {
        sent_us: unix_us(),
        ..reply.clone()
    };
    let bytes = postcard::to_allocvec(&reply).expect("a reply always encodes");
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(replies)
        .arg("*")
        .arg(REPLY_FIELD)
        .arg(bytes)
        .ignore()
        .cmd("PEXPIRE")
        .arg(replies)
        .arg(ttl_ms)
        .ignore();
    pipe
}

/// Makes the queue's stream and its workers' group, from the stream's start, unless the
/// group is there already.
pub(crate) fn create_group(link: &mut Link, requests: &str) -> Result<(), Failure> {
    let created = link.with(|connection| {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(requests)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(connection)
    });
    match created {
        Err(failure) if failure.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// A call, as a submitter queues it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// The submitter's number for it.
    pub(crate) call: u64,
    /// The submitter: its replies go to its reply stream.
    pub(crate) client: String,
    /// The registered function's key.
    pub(crate) key: String,
    /// The postcard-encoded arguments.
    #[serde(with = "serde_bytes")]
    pub(crate) args: Vec<u8>,
    /// Unix milliseconds: not started by then, it is not started at all; running then, it
    /// is killed.
    pub(crate) deadline_ms: Option<u64>,
    /// How many times it may be started, all told.
    pub(crate) max_attempts: u32,
    /// The largest result the submitter takes, in bytes.
    pub(crate) max_payload: u64,
    /// Whether cancelling it while it runs kills it (else it finishes, unanswered).
    pub(crate) kill_on_cancel: bool,
    /// Where it was called, for the worker's reports.
    pub(crate) site: String,
    /// How long the submitter keeps its reply stream (the TTL a worker sets on it), in ms.
    pub(crate) reply_ttl_ms: u64,
}

/// A call's end, as a worker answers it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) call: u64,
    pub(crate) outcome: Outcome,
    /// Which start of the call this was (1 for the first).
    pub(crate) attempt: u32,
    /// `host:pid` of the worker.
    pub(crate) worker: String,
    /// The worker's clock, in unix µs: when it took the entry, and when it sent this.
    pub(crate) taken_us: u64,
    pub(crate) sent_us: u64,
}

/// How a call ended on the worker (or, `Running`, that it has started there).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// Not an end: the call has run for a while (its caller learns when it started).
    Running,
    /// The encoded result.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Panicked(String),
    WorkerDied {
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<String>,
        killed_because: Option<String>,
        job: String,
        stderr_tail: String,
    },
    TimedOut,
    Cancelled,
    /// Its deadline passed before a worker took it.
    Expired,
    Arguments(String),
    Result(String),
    /// The worker's binary has no function with this key.
    UnknownFunction,
    /// Started this many times by workers that never answered.
    AttemptsExhausted {
        attempts: u32,
        workers: Vec<String>,
    },
    /// The worker's process pool cannot run calls.
    Broken(String),
}

impl Outcome {
    /// A process pool's error, as it travels.
    pub(crate) fn of_error(error: JobError) -> Outcome {
        match error {
            JobError::Panicked(message) => Outcome::Panicked(message),
            JobError::WorkerDied(death) => Outcome::WorkerDied {
                pid: death.pid,
                exit_code: death.exit_code,
                signal: death.signal.map(str::to_owned),
                killed_because: death.killed_because.map(str::to_owned),
                job: death.job,
                stderr_tail: death.stderr_tail,
            },
            JobError::TimedOut => Outcome::TimedOut,
            JobError::Cancelled => Outcome::Cancelled,
            JobError::DeadlineExpired => Outcome::Expired,
            JobError::Arguments(message) => Outcome::Arguments(message),
            JobError::Result(message) => Outcome::Result(message),
            JobError::AttemptsExhausted { attempts, workers } => {
                Outcome::AttemptsExhausted { attempts, workers }
            }
            other => Outcome::Broken(other.to_string()),
        }
    }

    /// The result the caller gets, given the function's key and the worker's name.
    pub(crate) fn into_result(self, key: &str, worker: &str) -> Result<Vec<u8>, JobError> {
        Err(match self {
            Outcome::Running => JobError::Broken(format!(
                "oneloop-remote bug: a running notice from {worker} taken for an answer"
            )),
            Outcome::Value(value) => return Ok(value),
            Outcome::Panicked(message) => JobError::Panicked(format!("{message} (on {worker})")),
            Outcome::WorkerDied {
                pid,
                exit_code,
                signal,
                killed_because,
                job,
                stderr_tail,
            } => JobError::WorkerDied(WorkerDeath::new(
                pid,
                exit_code,
                signal.as_deref().map(known_signal),
                killed_because.as_deref().map(known_reason),
                format!("{job} on {worker}"),
                stderr_tail,
            )),
            Outcome::TimedOut => JobError::TimedOut,
            Outcome::Cancelled => JobError::Cancelled,
            Outcome::Expired => JobError::DeadlineExpired,
            Outcome::Arguments(message) => JobError::Arguments(message),
            Outcome::Result(message) => JobError::Result(message),
            Outcome::UnknownFunction => JobError::Arguments(format!(
                "the worker {worker} has no function registered as {key}: it runs another \
                 version of the program (deploy the same build to submitters and workers)"
            )),
            Outcome::AttemptsExhausted { attempts, workers } => {
                JobError::AttemptsExhausted { attempts, workers }
            }
            Outcome::Broken(reason) => {
                JobError::Broken(format!("the worker {worker} cannot run calls: {reason}"))
            }
        })
    }
}

/// A signal's name as a `'static` string (the names a process pool reports).
fn known_signal(name: &str) -> &'static str {
    const NAMES: [&str; 16] = [
        "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
        "SIGKILL", "SIGSEGV", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ", "SIGSYS",
    ];
    NAMES
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("a signal")
}

/// Why a process pool killed a worker, as a `'static` string.
fn known_reason(reason: &str) -> &'static str {
    const REASONS: [&str; 6] = [
        "it ran past its timeout",
        "its call was cancelled",
        "memory limit",
        "the pool's shutdown timeout ran out",
        "its stream was corrupt",
        "it did not start within the pool's start timeout",
    ];
    REASONS
        .into_iter()
        .find(|known| *known == reason)
        .unwrap_or("a reason of the worker's")
}

/// Unix time now, in µs.
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Unix time `after` from now, in ms.
pub(crate) fn unix_ms_after(after: Duration) -> u64 {
    let after = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
    unix_us().saturating_add(after) / 1000
}

/// This process, as reports name it: `host:pid`.
pub(crate) fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The one field of a stream entry's field list (`[name, value, ...]`), if it is there.
pub(crate) fn field<'a>(fields: &'a redis::Value, name: &str) -> Option<&'a [u8]> {
    let redis::Value::Array(items) = fields else {
        return None;
    };
    items.chunks(2).find_map(|pair| match pair {
        [
            redis::Value::BulkString(key),
            redis::Value::BulkString(value),
        ] if key == name.as_bytes() => Some(value.as_slice()),
        _ => None,
    })
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream: `(id, fields)`.
pub(crate) fn entries(reply: redis::Value) -> Vec<(String, redis::Value)> {
    let mut out = Vec::new();
    let streams = match reply {
        redis::Value::Array(streams) => streams,
        redis::Value::Map(map) => map
            .into_iter()
            .map(|(k, v)| redis::Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for stream in streams {
        let redis::Value::Array(mut parts) = stream else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let redis::Value::Array(list) = parts.pop().expect("two parts") else {
            continue;
        };
        out.extend(list.into_iter().filter_map(entry));
    }
    out
}

/// One `[id, fields]` entry.
pub(crate) fn entry(value: redis::Value) -> Option<(String, redis::Value)> {
    let redis::Value::Array(mut parts) = value else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop().expect("two parts");
    let id = text(&parts.pop().expect("two parts"))?;
    Some((id, fields))
}

/// A string reply's text.
pub(crate) fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_a_process_pool_gives_travels_and_comes_back_the_same() {
        let death = WorkerDeath::new(
            7,
            None,
            Some("SIGSEGV"),
            Some("it ran past its timeout"),
            "f (called at here)".into(),
            "last words".into(),
        );
        for error in [
            JobError::Panicked("boom".into()),
            JobError::TimedOut,
            JobError::Cancelled,
            JobError::DeadlineExpired,
            JobError::Arguments("a".into()),
            JobError::Result("r".into()),
            JobError::WorkerDied(death),
        ] {
            let outcome = Outcome::of_error(error.clone());
            let bytes = postcard::to_allocvec(&outcome).unwrap();
            let back: Outcome = postcard::from_bytes(&bytes).unwrap();
            let back = back.into_result("f", "host:1").unwrap_err();
            match (&error, &back) {
                (JobError::Panicked(_), JobError::Panicked(message)) => {
                    assert_eq!(message, "boom (on host:1)")
                }
                (JobError::WorkerDied(a), JobError::WorkerDied(b)) => {
                    assert_eq!(
                        (a.pid, a.signal, a.killed_because),
                        (b.pid, b.signal, b.killed_because)
                    );
                    assert_eq!(b.job, "f (called at here) on host:1");
                }
                _ => assert_eq!(back, error),
            }
        }
    }
}
