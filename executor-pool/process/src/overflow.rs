//! Telling a stack overflow from other crashes in a worker.
//!
//! The worker loop runs before `main` (`entry.rs`), where the handler std installs for a
//! program's main thread (the one that prints "has overflowed its stack") was never
//! installed: an overflowing call would die of a bare SIGSEGV, indistinguishable from a
//! bad memory access. This module installs the smallest handler that says which it was:
//! on SIGSEGV or SIGBUS, on an alternate signal stack, it writes one line to stderr if the
//! faulting address lies where the main thread's stack meets its limit, then raises the
//! signal again. It was installed with `SA_RESETHAND`, so the default action is back, and
//! the process ends with the same signal as if no handler had run. The parent keeps the
//! line in the worker's death report (`supervisor.rs`).
//!
//! The handler calls only `write(2)` and `raise(3)`, which are async-signal-safe, and
//! reads two atomics.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::Resource;

/// The address range a stack overflow of the main thread faults in (see `install`);
/// empty until installed.
static GUARD_LOW: AtomicUsize = AtomicUsize::new(0);
static GUARD_HIGH: AtomicUsize = AtomicUsize::new(0);

/// How much room the handler gets to run in: it runs on a stack of its own, since the
/// thread's own is exhausted when it is needed.
const ALT_STACK: usize = 64 * 1024;

const MESSAGE: &[u8] =
    b"oneloop-process: the worker's main thread has overflowed its stack (a call recursed too deep)\n";

/// Installs the handler, for the worker's main thread. Does nothing when the stack has
/// no limit or cannot be found (the worker then dies of a bare SIGSEGV, as before).
pub(crate) fn install() {
    let Some((low, high)) = guard_range() else {
        return;
    };
    GUARD_LOW.store(low, Ordering::Relaxed);
    GUARD_HIGH.store(high, Ordering::Relaxed);
    // The handler's stack lives as long as the process.
    let stack: &'static mut [u8] = Vec::leak(vec![0; ALT_STACK]);
    let alt = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast::<c_void>(),
        ss_flags: 0,
        ss_size: stack.len(),
    };
    // SAFETY: `alt` describes memory that is valid, writable and never freed (leaked
    // above), of `ALT_STACK` bytes; a null old-stack pointer is allowed.
    if unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) } != 0 {
        return;
    }
    // SAFETY: a zeroed `sigaction` is a valid value (no flags, empty mask, null handler)
    // that every field is then set on.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_fault as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: `action` is fully initialised, `on_fault` has the three-argument
        // signature `SA_SIGINFO` requires and calls only async-signal-safe functions; a
        // null old-action pointer is allowed. This runs before `main`, with no other
        // thread to race on the signal disposition.
        unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
    }
}

/// The addresses a main-thread stack overflow faults at: just below the lowest address
/// its stack may grow to (the top of the `[stack]` mapping less `RLIMIT_STACK`), within
/// the kernel's guard gap (256 pages, whatever their size) and a MiB more.
fn guard_range() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|line| line.ends_with("[stack]"))?;
    let range = line.split_whitespace().next()?;
    let top = usize::from_str_radix(range.split_once('-')?.1, 16).ok()?;
    let limit = usize::try_from(rustix::process::getrlimit(Resource::Stack).current?).ok()?;
    let floor = top.checked_sub(limit)?;
    // The kernel keeps a gap of 256 pages below a growing stack (16 MiB with 64 KiB pages).
    let gap = rustix::param::page_size() * 256;
    Some((floor.saturating_sub(gap + (1 << 20)), floor + (64 << 10)))
}

/// The handler (see the module docs). Async-signal-safe: two atomic loads, `write(2)`
/// and `raise(3)`.
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    // SAFETY: with `SA_SIGINFO`, the kernel passes a valid `siginfo_t` for the fault;
    // `si_addr` is the faulting address for SIGSEGV and SIGBUS.
    let address = unsafe { (*info).si_addr() } as usize;
    let (low, high) = (
        GUARD_LOW.load(Ordering::Relaxed),
        GUARD_HIGH.load(Ordering::Relaxed),
    );
    if (low..high).contains(&address) {
        // SAFETY: `write` is async-signal-safe; `MESSAGE` is a valid buffer of its length.
        unsafe { libc::write(2, MESSAGE.as_ptr().cast::<c_void>(), MESSAGE.len()) };
    }
    // `SA_RESETHAND` restored the default action: raise the signal again so that it ends
    // the process with this signal even when no access will fault again (a signal sent
    // with `kill` or `raise`, not by a fault). Blocked while this handler runs, it is
    // delivered as the handler returns.
    // SAFETY: `raise` is async-signal-safe.
    unsafe { libc::raise(signal) };
}
