//! A backtrace of the loop thread, taken while it is blocked (Linux).
//!
//! The watchdog (`watch.rs`) cannot read another thread's stack, so it asks the loop thread
//! to read its own: it sends that thread a real-time signal (`SIGRTMIN + 7`, see [`signal`]),
//! whose handler walks the stack and stores the raw instruction pointers in a static
//! buffer, then the watchdog turns those addresses into symbols on its own thread.
//!
//! # What the handler does, and what is async-signal-safe
//!
//! The handler allocates nothing, takes no lock of ours, and touches only atomics in
//! statics: all of that is async-signal-safe. The stack walk itself
//! (`backtrace::trace_unsynchronized`, i.e. libgcc's `_Unwind_Backtrace`) is **not** on
//! POSIX's async-signal-safe list. In practice it is safe here: it does not allocate, and
//! the one lock it takes (glibc's loader lock, inside `dl_iterate_phdr`) is recursive, so
//! a loop thread interrupted inside the loader cannot deadlock against itself. The one
//! known hazard is a thread interrupted *inside the unwinder* (a panic unwinding at that
//! very moment), which can yield a garbled backtrace. The watchdog waits a bounded time for
//! the handler and gives up cleanly if it does not finish. Symbolizing (which allocates
//! and locks) happens on the watchdog thread, never in the handler.
//!
//! The handler is installed only if the signal has no handler yet, with `SA_RESTART`, so a
//! blocking system call in the interrupted code resumes rather than failing with `EINTR`.
//! [`Builder::debug_backtraces(false)`](crate::Builder::debug_backtraces) turns all of
//! this off.

/// Installs the signal handler once per process. Returns whether backtraces are available.
pub(crate) fn install() -> bool {
    #[cfg(target_os = "linux")]
    {
        imp::install()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
pub(crate) use imp::capture;

/// Turns captured instruction pointers into text (resolving symbols loads the binary's
/// debug info the first time, which can take a moment).
pub(crate) fn render(ips: &[usize]) -> String {
    #[cfg(target_os = "linux")]
    {
        imp::render(ips)
    }
    #[cfg(not(target_os = "linux"))]
    {
        format!(
            "  <{} frames; symbols are only resolved on Linux>",
            ips.len()
        )
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::c_void;
    use std::fmt::Write;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use parking_lot::Mutex;

    /// Frames kept from one capture.
    const MAX_FRAMES: usize = 64;
    /// How long the watchdog waits for the handler to finish. A walk of 64 frames takes
    /// microseconds; 200 ms is far beyond that, yet short enough not to delay the report.
    const HANDLER_TIMEOUT: Duration = Duration::from_millis(200);

    const IDLE: u8 = 0;
    const REQUESTED: u8 = 1;
    const RUNNING: u8 = 2;
    const DONE: u8 = 3;

    /// The capture protocol: the watchdog moves IDLE -> REQUESTED and signals; the handler
    /// moves REQUESTED -> RUNNING -> DONE; the watchdog reads the frames and moves DONE ->
    /// IDLE. If the handler never starts, the watchdog takes REQUESTED back to IDLE, so a
    /// late signal finds nothing to do.
    static STATE: AtomicU8 = AtomicU8::new(IDLE);
    static FRAMES: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];
    static LEN: AtomicUsize = AtomicUsize::new(0);
    /// One capture at a time in the process (several runtimes may be in debug mode).
    static CAPTURE: Mutex<()> = Mutex::new(());
    static INSTALLED: OnceLock<bool> = OnceLock::new();

    /// The signal used: a real-time signal, so it never collides with the classic ones
    /// (SIGUSR1/2 are the application's). glibc reserves the first real-time signals for
    /// itself and `SIGRTMIN()` already skips them; `+ 7` keeps clear of libraries that
    /// take the first few of the rest.
    fn signal() -> libc::c_int {
        libc::SIGRTMIN() + 7
    }

    pub(super) fn install() -> bool {
        *INSTALLED.get_or_init(|| {
            // SAFETY: `sigaction` is given a zeroed, then filled, `sigaction` struct that
            // lives for the call; `old` receives the previous disposition. The handler is
            // an `extern "C" fn(c_int)` as `sa_handler` requires (no SA_SIGINFO).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal(), std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    return false; // someone else uses this signal: leave it alone
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal(), &action, std::ptr::null_mut()) == 0
            }
        })
    }

    extern "C" fn on_signal(_signal: libc::c_int) {
        if STATE
            .compare_exchange(REQUESTED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return; // not asked for (a late signal after the watchdog gave up)
        }
        // SAFETY: __errno_location returns this thread's errno slot, always valid. The
        // handler saves and restores errno so the interrupted code never sees it change.
        let errno = unsafe { *libc::__errno_location() };
        let mut len = 0;
        // Why a stack walk is acceptable inside a signal handler: see the module docs.
        // SAFETY: no unsynchronized backtrace-rs walk runs concurrently: the only other
        // user, `capture`'s symbolization (synchronized `resolve`), starts after DONE.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                FRAMES[len].store(frame.ip() as usize, Ordering::Relaxed);
                len += 1;
                len < MAX_FRAMES
            });
        }
        LEN.store(len, Ordering::Relaxed);
        // SAFETY: as above; restores the value read at entry.
        unsafe { *libc::__errno_location() = errno };
        STATE.store(DONE, Ordering::Release);
    }

    /// Captures the raw stack of `thread` (the loop thread, blocked in a poll): a few
    /// microseconds. `still_blocked` is checked before signalling, so a poll that has just
    /// returned is not interrupted for nothing. Symbols are resolved later, by `render`.
    pub(crate) fn capture(
        thread: libc::pthread_t,
        still_blocked: impl Fn() -> bool,
    ) -> Option<Vec<usize>> {
        let _one_at_a_time = CAPTURE.lock();
        if !still_blocked()
            || STATE
                .compare_exchange(IDLE, REQUESTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return None; // a previous handler never finished: do not pile up signals
        }
        // `thread` runs a runtime whose watchdog is this thread: the runtime joins its
        // watchdog before it drops, and cannot leave its thread (it is !Send).
        // SAFETY: `thread` is alive, and the signal's disposition is our handler.
        if unsafe { libc::pthread_kill(thread, signal()) } != 0 {
            STATE.store(IDLE, Ordering::Release);
            return None;
        }
        let deadline = Instant::now() + HANDLER_TIMEOUT;
        loop {
            if STATE.load(Ordering::Acquire) == DONE {
                break;
            }
            if Instant::now() >= deadline {
                // Take the request back if the handler has not started; if it is running,
                // leave it RUNNING (later captures are refused) rather than read a half-
                // written buffer.
                let _ =
                    STATE.compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Relaxed);
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let len = LEN.load(Ordering::Relaxed);
        let ips: Vec<usize> = FRAMES[..len]
            .iter()
            .map(|ip| ip.load(Ordering::Relaxed))
            .collect();
        STATE.store(IDLE, Ordering::Release);
        Some(ips)
    }

    /// Symbolizes the frames and keeps the user's part: after the signal trampoline,
    /// before the runtime's own poll machinery.
    pub(super) fn render(ips: &[usize]) -> String {
        let mut all: Vec<(String, String)> = Vec::new();
        for &ip in ips {
            let before = all.len();
            // `resolve` takes backtrace-rs's internal lock: fine on this ordinary thread.
            backtrace::resolve(ip as *mut c_void, |symbol| {
                let name = symbol
                    .name()
                    .map(|name| format!("{name:#}"))
                    .unwrap_or_else(|| format!("{ip:#x}"));
                let place = match (symbol.filename(), symbol.lineno()) {
                    (Some(file), Some(line)) => format!(" at {}:{line}", file.display()),
                    _ => String::new(),
                };
                all.push((name, place));
            });
            if all.len() == before {
                all.push((format!("{ip:#x}"), String::new()));
            }
        }
        // Everything up to the kernel's signal trampoline is the handler itself. The
        // trampoline (`__restore_rt`) often has no symbol: skip unnamed frames after the
        // handler as well.
        let mut start = all
            .iter()
            .position(|(name, _)| name.contains("__restore_rt"))
            .or_else(|| all.iter().rposition(|(name, _)| name.contains("on_signal")))
            .map_or(0, |i| i + 1);
        while all
            .get(start)
            .is_some_and(|(name, _)| name.starts_with("0x"))
        {
            start += 1;
        }
        let frames = all[start..]
            .iter()
            .take_while(|(name, _)| !is_runtime_frame(name))
            .map(|(name, place)| format!("    {name}{place}"))
            .collect();
        finish(frames)
    }

    /// The runtime's own frames around a poll: where the user's stack ends.
    fn is_runtime_frame(name: &str) -> bool {
        let name = name.trim_start_matches('<');
        name.starts_with("oneloop::task::cell") || name.starts_with("oneloop::runtime::")
    }

    fn finish(frames: Vec<String>) -> String {
        let mut out = String::new();
        if frames.is_empty() {
            out.push_str("    <no frames: build with debug info to see symbols>");
        }
        for (i, frame) in frames.iter().enumerate() {
            let _ = write!(out, "{}{frame}", if i == 0 { "" } else { "\n" });
        }
        out
    }
}
