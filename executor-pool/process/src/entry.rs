//! How a worker process starts: the program re-executes itself (`/proc/self/exe`), and a
//! constructor of this crate, run by the dynamic loader before `main`, sees the worker
//! role in the environment and runs the worker loop (`worker.rs`) instead of the program.
//!
//! Why this way, and what it costs:
//! - A bare `fork()` of a process that runs the loop, a watchdog and pool threads may
//!   only call async-signal-safe functions afterwards (another thread may have held the
//!   allocator's lock at the fork): no Rust code could run. `std::process::Command`
//!   execs at once, so the child is a fresh, single-threaded process.
//! - Re-executing the same binary means the same registered functions, at the same
//!   keys (`function.rs`), with nothing to install.
//! - A constructor, not an init call in `main`, because the program's `main` may not be
//!   ours: `cargo test`'s harness owns it (and runs threads), and a library using a
//!   process pool lives in someone else's binary. The constructor runs in every binary
//!   this crate is linked into, before `main` and before any thread starts; it returns at
//!   once (one environment lookup) unless the process is a worker.
//! - The cost is a process start (exec, loading the binary, the constructors): about
//!   1.5 ms from `build` to a worker's first answer for a release test binary on a 2-vCPU
//!   virtual machine (0.6 ms until `build` returns with one worker started, 3 ms with
//!   four), paid once per worker, when the pool starts or replaces a worker, never per
//!   call (a call's round trip is about 21 µs there).
//!
//! The worker's code runs before `main`: what a `main` would set up (a logger, say) is
//! not set up there; an initializer function is the place for it.
//!
//! What this cannot serve: a process pool inside a library loaded with `dlopen` (a
//! Python extension, say), where `/proc/self/exe` is the host program, which knows
//! nothing of this crate. Its workers never say they are ready; the start timeout kills
//! them and the pool is broken with that reason.

/// Runs before `main` in every process of a binary that links this crate (see the module
/// docs). Must not unwind: it is called by the loader.
extern "C" fn worker_entry() {
    let Some(settings) = std::env::var_os(crate::worker::WORKER_ENV) else {
        return; // not a worker: the program runs as usual
    };
    let initializer = std::env::var_os(crate::worker::INITIALIZER_ENV);
    // Programs the worker's functions start must not inherit the role.
    forget_role();
    ignore_sigpipe();
    // A panic outside any call (the worker loop itself) was printed by the worker's hook.
    let run = || crate::worker::run(&settings, initializer.as_deref());
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    std::process::exit(code);
}

// SAFETY: the loader calls each `.init_array` entry once, before `main`, with no
// arguments, on the main thread of a process that has no other thread yet: exactly the
// `extern "C" fn()` stored here. `worker_entry` never unwinds into the loader (it catches
// every panic and ends with `exit`), and returns at once in a process that is not a
// worker. `#[used]` keeps the entry in the object file the pool's code is in, so it is
// linked whenever a process pool can be used.
#[used]
#[allow(unsafe_code)]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = worker_entry;

/// Removes the worker's settings from its environment, so that a program one of its
/// functions starts (this same binary, say) runs as itself, not as a worker.
#[allow(unsafe_code)]
fn forget_role() {
    for name in [crate::worker::WORKER_ENV, crate::worker::INITIALIZER_ENV] {
        // SAFETY: `remove_var` is unsafe because another thread could read or write the
        // environment at the same time. None can: this runs in the loader's constructor
        // call, before `main`, in a process just exec'd by its parent, which has no other
        // thread yet (the worker starts none before this, and a constructor of another
        // library that started one would be a program no process pool can serve).
        unsafe { std::env::remove_var(name) };
    }
}

/// What a Rust `main` would have set before running (the worker never reaches it): a
/// write to a closed pipe or socket is an `EPIPE` error for the function to handle, not a
/// SIGPIPE that kills its worker.
#[allow(unsafe_code)]
fn ignore_sigpipe() {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code to run; it is called before
    // `main`, with no other thread in the process to race on the disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Keeps the constructor's object file in the link: called when a pool is built.
pub(crate) fn keep_entry() {
    std::hint::black_box(&WORKER_ENTRY);
}
