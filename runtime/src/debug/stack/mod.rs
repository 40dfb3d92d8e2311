//! A backtrace of the loop thread, taken while a poll blocks it (Linux, x86_64 and aarch64).
//!
//! The watchdog (`watch/watchdog.rs`) cannot read another thread's registers, so it looks at the
//! loop thread from outside first, through `/proc/self/task/<tid>/syscall`:
//!
//! - **Blocked in a system call** (`recvfrom`, `nanosleep`, a lock's `futex`...): the thread
//!   is never interrupted. A signal would make a call with a timeout (`poll`, `select`,
//!   `epoll_wait`, `nanosleep`, socket calls with `SO_RCVTIMEO`) fail with `EINTR` even with
//!   `SA_RESTART` (signal(7)): debug mode would change the program it watches. The kernel
//!   gives the call's number, first argument, stack pointer and program counter, so the
//!   report names the call and its file descriptor (`blocked in recvfrom on fd 7
//!   (socket:[1234])`), and the stack is copied with `process_vm_readv` (which fails
//!   cleanly instead of faulting) while the thread sleeps.
//! - **Running user code**: the watchdog sends the thread a real-time signal
//!   (`SIGRTMIN + 7`) whose handler copies the interrupted registers and a bounded slice of
//!   the stack into a static slot, and returns.
//!
//! Either way the stack is *unwound on the watchdog thread, over the copy*: a frame-pointer
//! walk, bounds-checked, aligned, strictly upward, at most 64 frames, which never touches
//! the real stack. Symbols are resolved later still, when the report is displayed.
//!
//! The rooms: `capture.rs` looks at the thread and decides whether it may be signalled;
//! `signal.rs` is the signal's handler and the slots it copies into; `blocked.rs` reads
//! what `/proc` says about a thread in a system call; `unwind.rs` walks a copy and resolves
//! its symbols.
//!
//! Frame pointers: the workspace builds with `-C force-frame-pointers=yes`
//! (`.cargo/config.toml`); a program that wants complete backtraces sets the same flag.
//! Without it the walk stops early, safely.
//! [`Builder::debug_backtraces(false)`](crate::Builder::debug_backtraces) turns all of
//! this off.

/// Installs the signal handler once per process. Returns whether backtraces are available.
pub(crate) fn install() -> bool {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        signal::install()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
mod blocked;
#[cfg(target_os = "linux")]
mod capture;
#[cfg(target_os = "linux")]
mod signal;
#[cfg(target_os = "linux")]
mod unwind;

#[cfg(target_os = "linux")]
pub(crate) use capture::{LoopThread, capture};

/// Loads the binary's debug info on a short-lived thread of its own, once per process, so
/// that the first report's symbols resolve quickly and the watchdog (which renders a
/// report's backtrace when its sink prints it) never spends the first resolution's
/// hundreds of milliseconds instead of looking at the loop.
pub(crate) fn warm_up_symbols() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("oneloop-symbols".into())
                .spawn(unwind::warm_up);
        });
    }
}

/// Turns captured instruction pointers into text (resolving symbols loads the binary's
/// debug info the first time, which can take a moment: see `warm_up_symbols`).
pub(crate) fn render(ips: &[usize]) -> String {
    #[cfg(target_os = "linux")]
    {
        unwind::render(ips)
    }
    #[cfg(not(target_os = "linux"))]
    {
        format!(
            "  <{} frames; symbols are only resolved on Linux>",
            ips.len()
        )
    }
}
