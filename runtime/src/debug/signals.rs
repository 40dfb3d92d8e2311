//! The trace's last flush when the program is stopped by SIGINT or SIGTERM.
//!
//! The trace file is written through a buffer (`trace.rs`), flushed with every report and
//! once a second. A Ctrl-C would lose what the buffer holds, and a buffer cannot be
//! flushed from a signal handler (it is behind a lock, and writing it allocates). So,
//! once a trace file is open, SIGINT and SIGTERM get a handler that takes nothing from the
//! program:
//!
//! - a handler the program installed before (a Ctrl-C hook) is called as the kernel would
//!   have called it, at once;
//! - an ignored signal stays ignored (no handler is installed for it);
//! - the default action (terminate) is deferred to debug mode's watchdog, which flushes
//!   the trace at its next job scan (within half a slow-task threshold), restores the
//!   default action and raises the signal again: the process ends by the signal, as it
//!   would have, a moment later. Without a watchdog able to do that (tracing without debug
//!   mode, or a threshold over `MAX_DEFERRAL`), or on a second signal while the first
//!   waits, the default action is taken at once: the file then holds what the last
//!   flush wrote, every report and everything up to about a second before.
//!
//! A handler installed *after* the trace was opened replaces this one, as it would any.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

/// The signals handled.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// The longest threshold whose watchdog may hold a signal's default action: it scans every
/// half threshold, and a Ctrl-C that takes more than a second to act is a broken Ctrl-C.
pub(crate) const MAX_DEFERRAL: Duration = Duration::from_secs(2);

/// The dispositions found when the handler was installed (`None`: not installed for that
/// signal). Written once, before the handler can run; read by the handler.
static PREVIOUS: OnceLock<[Option<libc::sigaction>; 2]> = OnceLock::new();

/// Watchdogs that flush a trace and can take a deferred signal (debug runtimes tracing with
/// a threshold under `MAX_DEFERRAL`): written by `watching`/`Watching::drop`, read by the
/// handler.
static WATCHERS: AtomicUsize = AtomicUsize::new(0);

/// A signal whose default action waits for a watchdog's flush (0: none). Set by the
/// handler, taken by `take_pending`.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Installs the handler, once per process (a trace file is being opened).
pub(crate) fn install() {
    PREVIOUS.get_or_init(|| {
        SIGNALS.map(|signal| {
            // SAFETY: `sigaction` reads a zeroed-then-filled struct and writes the previous
            // disposition into `old`, both locals that outlive the call. The handler has the
            // `SA_SIGINFO` signature, `extern "C" fn(c_int, *mut siginfo_t, *mut c_void)`.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_IGN
                {
                    return None; // ignored on purpose (nohup): leave it so
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                (libc::sigaction(signal, &action, std::ptr::null_mut()) == 0).then_some(old)
            }
        })
    });
}

/// A watchdog that flushes a trace and takes deferred signals while this lives.
pub(crate) struct Watching(());

pub(crate) fn watching() -> Watching {
    WATCHERS.fetch_add(1, Ordering::AcqRel);
    Watching(())
}

impl Drop for Watching {
    fn drop(&mut self) {
        WATCHERS.fetch_sub(1, Ordering::AcqRel);
        // A signal deferred to this watchdog, which will scan no more: its trace is
        // closed (flushed) by now, so take the default action here.
        if let Some(signal) = take_pending() {
            raise_default(signal);
        }
    }
}

/// The signal waiting for a flush, if any; the caller flushes, then `raise_default`s it.
pub(crate) fn take_pending() -> Option<libc::c_int> {
    match PENDING.swap(0, Ordering::AcqRel) {
        0 => None,
        signal => Some(signal),
    }
}

/// Takes the default action of `signal` (terminate, for these two).
pub(crate) fn raise_default(signal: libc::c_int) {
    // SAFETY: `signal` restores the default disposition and `raise` sends the signal to
    // this thread; both are async-signal-safe and take no pointers.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Async-signal-safe: atomics, `OnceLock::get` (an atomic load), `signal`, `raise`, and the
/// previous handler (which had to be safe here anyway).
extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let Some(previous) = PREVIOUS.get().and_then(|all| {
        SIGNALS
            .iter()
            .position(|&s| s == signal)
            .and_then(|i| all[i])
    }) else {
        return raise_default(signal); // not ours: cannot happen, act as the default would
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL {
        let deferred = WATCHERS.load(Ordering::Acquire) > 0
            && PENDING
                .compare_exchange(0, signal, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !deferred {
            raise_default(signal);
        }
        return;
    }
    if handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this function with SA_SIGINFO, so it has this
        // signature; it gets the arguments the kernel gave this handler.
        let call: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        call(signal, info, context);
    } else {
        // SAFETY: installed without SA_SIGINFO, so it has the plain handler's signature.
        let call: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        call(signal);
    }
}
