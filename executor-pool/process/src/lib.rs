//! Process pools for oneloop: registered functions run in worker processes that may crash,
//! hang or be hard-killed without taking the service down.
//!
//! A thread pool shares the service's address space: a segfault in a native library, an
//! `abort`, a stack overflow or the OOM killer inside one job ends every task, and a job
//! that never returns can only be asked to stop. A [`ProcessPool`] runs each call in a
//! worker process instead. A call whose worker dies fails alone, with what happened (the
//! signal or exit code, whether oneloop killed it and why, the last lines of its stderr);
//! the worker is replaced and the queue runs on. A call past its timeout, or cancelled
//! while running, has its worker killed: SIGTERM, a grace, then SIGKILL, through a pidfd so
//! a recycled pid is never hit.
//!
//! ```
//! oneloop_process::process_fn! {
//!     /// Runs in a worker process: a crash here fails this call only.
//!     pub fn checksum(data: Vec<u8>) -> u32 {
//!         data.iter().fold(0u32, |sum, byte| sum.rotate_left(5) ^ u32::from(*byte))
//!     }
//! }
//!
//! let pool = oneloop_process::ProcessPool::new(2)?;
//! let sum = oneloop_pool::block_on(pool.call(checksum, vec![1, 2, 3]));
//! assert!(sum.is_ok());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How it works
//!
//! - **Registered functions** (`function.rs`): a closure cannot cross a process boundary,
//!   so [`process_fn!`] registers a function under a stable key (its path and signature)
//!   in a registry the linker assembles; arguments and results travel as postcard bytes.
//! - **Large payloads** (`payload/`): over 64 KiB, arguments and results are encoded
//!   straight into shared memory regions each side keeps mapped and reuses, whose
//!   descriptor goes with the frame; the other side decodes them in place. A 16 MiB
//!   argument and result cost one copy per side each way (see the `compare` benchmark's
//!   W9 rows). Mark byte buffers as bytes (`serde_bytes`): a plain `Vec<u8>` is encoded a
//!   byte at a time.
//! - **Workers start safely in any program** (`entry.rs`, `worker.rs`): the program
//!   re-executes itself (`/proc/self/exe`, never a bare `fork` of a multithreaded
//!   process), and a constructor of this crate runs the worker loop before `main`, so it
//!   works under `cargo test` and in a library inside someone else's binary. The start
//!   costs about 1.5 ms (measured: a release test binary on a 2-vCPU VM, from
//!   `build` to the first answer), once per worker, never per call.
//! - **One supervisor thread per pool** (`supervisor.rs`) owns the workers: each one's
//!   socket, stderr and pidfd are non-blocking sources of one `mio::Poll`, so no worker
//!   can block it; it reaps every worker that exits (no zombies), fails only that
//!   worker's call, and starts a replacement. What a worker writes to stderr is passed on
//!   to this process's stderr, a whole line at a time (`stderr.rs`;
//!   [`Builder::forward_stderr`]), and its last lines are kept for the error if it dies.
//! - **Calls** (`call.rs`, `future.rs`): a [`ProcessCall`] is a plain `Send` future;
//!   dropping it cancels the call (a queued call never runs; a running one is killed or
//!   finishes, [`CancelRunning`]). The queue may be bounded, with the thread pool's
//!   overflow policies.
//!
//! # Failures
//!
//! | what happened | the call resolves to |
//! |---|---|
//! | the function returned | `Ok(value)` |
//! | it panicked (the worker lives on) | `JobError::Panicked` (message and location) |
//! | its worker died: a signal, `exit`, an abort, the memory limit | `JobError::WorkerDied` (pid, signal or code, who killed it, stderr tail) |
//! | it ran past its timeout | `JobError::TimedOut` (the worker was killed) |
//! | it was cancelled while queued | `JobError::Cancelled` (it never ran) |
//! | its arguments could not be encoded, or decoded in the worker | `JobError::Arguments` |
//! | its result could not be encoded, or decoded here | `JobError::Result` |
//! | the same call crashed its worker N times in a row | `JobError::Quarantined` |
//! | workers cannot start (3 in a row died before they were ready or within the start timeout, an initializer failing), or a crash loop (32 calls in a row crashed their worker, none answered) | `JobError::Broken(reason)` (also [`ProcessPool::broken`]) |
//! | the queue is full, overflow `Reject` | `JobError::Rejected` |
//! | the pool was shut down | `JobError::Shutdown` |
//!
//! A type whose `Serialize` fails says why in the error (its own message). One whose
//! `Deserialize` fails is only reported as a decoding error: postcard's decoder keeps no
//! text for a type's own error.
//!
//! # Layout
//!
//! - `function.rs`: [`ProcessFn`], [`process_fn!`], the registry.
//! - `entry.rs`: the constructor that makes a process a worker; `worker.rs`: its loop;
//!   `overflow.rs`: the handler that tells a stack overflow from other crashes.
//! - `wire.rs`: the frames on the socket between parent and worker; `payload/`: large
//!   arguments and results in shared memory regions, and the socket's sends and receives.
//! - `config.rs`: the settings and [`CancelRunning`]; `builder.rs`: [`Builder`];
//!   `pool.rs`: [`ProcessPool`]; `shared.rs`: what the handles and the supervisor share;
//!   `supervisor.rs`: the worker processes' lives; `stderr.rs`: their stderr passed on.
//! - `call.rs`: a call's slot; `future.rs`: [`ProcessCall`].

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod call;
mod config;
mod entry;
mod function;
mod future;
mod overflow;
mod payload;
mod pool;
mod shared;
mod stderr;
mod supervisor;
mod wire;
mod worker;

pub use builder::Builder;
pub use config::CancelRunning;
pub use function::ProcessFn;
pub use future::ProcessCall;
pub use oneloop_pool::{JobError, WorkerDeath};
pub use pool::{ProcessPool, run_in_process};

/// What `oneloop-remote` builds on: a call's slot, resolved by other threads; not part of
/// the API.
#[doc(hidden)]
pub mod __remote {
    pub use crate::call::{Slot, State};
}

/// What `process_fn!` expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::function::{Encoding, Entry, Exchange, REGISTRY, run_encoded};
    pub use linkme;
}
