//! The worker process: started by `entry.rs` before `main`, it answers calls one at a time
//! until its parent closes the socket, then exits.
//!
//! Its stdin is the socket to the parent (the one descriptor `std::process::Command` can
//! hand a child without `unsafe`); it moves the socket off descriptor 0 and puts
//! `/dev/null` there, so a function that reads stdin cannot read the protocol. Its stderr
//! goes to the parent, which keeps the last lines for the report if the worker dies. A
//! panic in a function is caught and sent back with its message and location; the worker
//! lives on. Anything that kills the process (a signal, `exit`, an abort, the memory limit)
//! is seen by the parent's supervisor (`supervisor.rs`), which fails only the call in
//! flight and starts a replacement.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Arc;

use rustix::process::{Resource, Rlimit, Signal};

use crate::function::{self, Encoding, Exchange};
use crate::payload::{Encoded, Regions, Views};
use crate::wire::{Blocking, FromWorker, Outcome, Payload, ToWorker};

/// The environment variable that makes a process a worker: the parent's pid, then the
/// worker's settings (`worker::Settings`).
pub(crate) const WORKER_ENV: &str = "ONELOOP_PROCESS_WORKER";

/// The environment variable that names the worker's initializer (the key of a registered
/// function), when the pool has one.
pub(crate) const INITIALIZER_ENV: &str = "ONELOOP_PROCESS_INITIALIZER";

/// What a worker is told at start, through its environment (`WORKER_ENV`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The parent's pid: a worker whose parent is already gone exits at once.
    pub(crate) parent: u32,
    /// The address-space limit, in bytes (`setrlimit(RLIMIT_AS)`).
    pub(crate) memory_limit: Option<u64>,
}

impl Settings {
    pub(crate) fn encode(&self) -> String {
        match self.memory_limit {
            Some(limit) => format!("{} {limit}", self.parent),
            None => format!("{}", self.parent),
        }
    }

    fn parse(text: &OsStr) -> Option<Settings> {
        let mut words = text.to_str()?.split(' ');
        let parent = words.next()?.parse().ok()?;
        let memory_limit = match words.next() {
            Some(word) => Some(word.parse().ok()?),
            None => None,
        };
        Some(Settings {
            parent,
            memory_limit,
        })
    }
}

thread_local! {
    /// The last panic inside a call, as the hook saw it: its message and location.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    /// True while a call runs: its panics go back to the parent, any other is printed.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// The worker's life; returns its exit code.
pub(crate) fn run(settings: &OsStr, initializer: Option<&OsStr>) -> i32 {
    let Some(settings) = Settings::parse(settings) else {
        eprintln!("oneloop-process: unreadable worker settings {settings:?}");
        return 2;
    };
    // Die with the parent (strictly: with the parent's supervisor thread, which started
    // this process and lives as long as the pool); the socket's end of stream is the
    // backstop. A parent that died before this line is not our parent any more.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    let parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32);
    if parent != Some(settings.parent) {
        return 0;
    }
    if let Some(limit) = settings.memory_limit {
        let limit = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        if let Err(e) = rustix::process::setrlimit(Resource::As, limit) {
            eprintln!("oneloop-process: cannot set the memory limit: {e}");
            return 3;
        }
    }
    let mut socket = match take_socket() {
        Ok(socket) => Blocking::new(socket),
        Err(e) => {
            eprintln!("oneloop-process: the worker cannot take its socket: {e}");
            return 4;
        }
    };
    panic::set_hook(Box::new(note_panic));
    crate::overflow::install();
    // Large results are encoded into regions of ours; large arguments are read where
    // they are, in the parent's (`payload.rs`).
    let regions = Arc::new(Regions::default());
    let mut views = Views::default();
    if let Some(key) = initializer {
        let key = key.to_string_lossy();
        let failure = match run_call(&key, &[], &regions).err() {
            None => None,
            Some(Outcome::Value(_)) => None,
            Some(Outcome::Panicked { message, location }) => Some(format!(
                "its initializer {key} panicked at {location}: {message}"
            )),
            Some(Outcome::UnknownFunction) => {
                Some(format!("no initializer is registered as {key}"))
            }
            Some(Outcome::Arguments(message) | Outcome::Result(message)) => {
                Some(format!("its initializer {key} failed: {message}"))
            }
        };
        if let Some(failure) = failure {
            let _ = socket.write(&FromWorker::StartFailed(failure), None);
            return 6;
        }
    }
    if socket.write(&FromWorker::Ready, None).is_err() {
        return 0; // the parent is gone
    }
    loop {
        let call = match socket.read::<ToWorker>() {
            Ok(Some(call)) => call,
            Ok(None) => return 0, // the parent closed the socket: the pool shut down
            Err(e) => {
                eprintln!("oneloop-process: the worker's socket failed: {e}");
                return 5;
            }
        };
        let ToWorker::Call { id, key, args } = call;
        // Regions the parent has given back are free again (and a big one over the keep
        // limits goes).
        regions.tidy();
        let ran = match args.open(&mut socket.fds, &mut views) {
            Ok(args) => run_call(&key, args.bytes(), &regions),
            Err(e) => Err(Outcome::Arguments(format!(
                "the worker cannot read them: {e}"
            ))),
        };
        // A large result is in a region of ours, lent to the parent until it has decoded
        // it (`payload.rs`).
        let mut result = None;
        let (outcome, file) = match ran {
            Ok(value) => {
                let (value, file) = Payload::of(result.insert(value), true);
                (Outcome::Value(value), file)
            }
            Err(outcome) => (outcome, None),
        };
        let done = FromWorker::Done { id, outcome };
        if socket.write(&done, file).is_err() {
            return 0;
        }
    }
}

/// Moves the socket the parent gave as stdin to a descriptor of its own, and puts
/// `/dev/null` on stdin.
fn take_socket() -> std::io::Result<UnixStream> {
    let socket = std::io::stdin().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(UnixStream::from(socket))
}

/// Runs one call, catching a panic in the function: its encoded result (in one of
/// `regions` if it is large), or the outcome that says why there is none.
fn run_call(key: &str, args: &[u8], regions: &Arc<Regions>) -> Result<Encoded, Outcome> {
    let Some(entry) = function::find(key) else {
        return Err(Outcome::UnknownFunction);
    };
    let mut exchange = Exchange::new(args, regions);
    IN_CALL.with(|in_call| in_call.set(true));
    let ran = panic::catch_unwind(AssertUnwindSafe(|| (entry.run)(&mut exchange)));
    IN_CALL.with(|in_call| in_call.set(false));
    Err(match ran {
        Ok(Ok(())) => {
            return exchange
                .into_output()
                .ok_or_else(|| Outcome::Result("the function gave no result".to_owned()));
        }
        Ok(Err(Encoding::Arguments(message))) => Outcome::Arguments(message),
        Ok(Err(Encoding::Result(message))) => Outcome::Result(message),
        Err(payload) => {
            let (message, location) = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| (oneloop_pool::panic_message(&*payload), String::new()));
            // The payload's destructor is the function's code too: it must not take the
            // worker down after the fact.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(payload)));
            Outcome::Panicked { message, location }
        }
    })
}

/// The worker's panic hook: inside a call, keeps the message and location for the reply
/// instead of printing them (the parent reports them with the call); outside, prints.
fn note_panic(info: &PanicHookInfo<'_>) {
    if !IN_CALL.try_with(Cell::get).unwrap_or(false) {
        eprintln!("oneloop-process: the worker panicked outside any call: {info}");
        return;
    }
    let message = oneloop_pool::panic_message(info.payload());
    let location = info.location().map(|at| at.to_string()).unwrap_or_default();
    // A panic that cannot come back as a reply (the process aborts next: a build with
    // `panic = "abort"`, or a second panic while the first unwinds) leaves its words on
    // stderr, which the parent keeps for the worker's death report.
    let pending = LAST_PANIC
        .try_with(|last| last.borrow().clone())
        .ok()
        .flatten();
    if cfg!(panic = "abort") || pending.is_some() {
        if let Some((first, at)) = &pending {
            eprintln!("oneloop-process: the call panicked at {at}: {first}");
        }
        eprintln!("oneloop-process: the call panicked at {location}: {message}");
    }
    let _ = LAST_PANIC.try_with(|last| *last.borrow_mut() = Some((message, location)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_environment() {
        for settings in [
            Settings {
                parent: 7,
                memory_limit: None,
            },
            Settings {
                parent: 1 << 20,
                memory_limit: Some(1 << 40),
            },
        ] {
            let text = settings.encode();
            assert_eq!(Settings::parse(OsStr::new(&text)), Some(settings));
        }
        assert_eq!(Settings::parse(OsStr::new("x")), None);
    }
}
