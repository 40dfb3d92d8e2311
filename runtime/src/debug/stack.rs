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
//! # Why the handler does so little
//!
//! A signal handler may call only async-signal-safe functions. An unwinder is not one:
//! libgcc's `_Unwind_Backtrace` faults when the signal lands while the thread unwinds a
//! panic, and deadlocks on its non-recursive object mutex when the thread held it (frames
//! registered at run time by a JIT). So the handler reads its `siginfo` and `ucontext`,
//! calls `gettid`, `memcpy`s and touches atomics: nothing else.
//!
//! # The capture protocol
//!
//! A few static slots serve every runtime in the process, with no lock. A slot's state is
//! one atomic word: a generation (unique per request) and a phase. The watchdog claims a
//! free slot (`IDLE` or `ABANDONED` -> `CLAIMED`), writes the target thread and its stack
//! bounds, publishes `REQUESTED`, and signals the thread with `rt_tgsigqueueinfo`, the
//! generation riding in the signal's value. The handler acts only on `REQUESTED` with *its
//! signal's* generation on *its own* thread (`COPYING`, then `DONE`), so a late signal (the
//! thread had it masked) never fills someone else's request. On `DONE` the watchdog reads
//! the copy and frees the slot. If the handler has not finished in 200 ms the watchdog gives
//! up: `REQUESTED` becomes `ABANDONED` (free again: the late handler's generation no longer
//! matches), `COPYING` becomes `ORPHANED` (still being written: the handler frees it when it
//! finishes). No state is left that nobody will clear. `tests/loom/capture.rs` models this.
//!
//! # What is never signalled
//!
//! A thread that may be gone: each loop thread has an "alive" flag cleared by a
//! thread-local destructor, and the watchdog signals only under that flag's lock, so a
//! runtime leaked by a thread that exited never gets its thread id reused under it. A thread
//! that masks the signal (it would queue against `RLIMIT_SIGPENDING`). And nobody at all once
//! the program has put another disposition on the signal (checked before each capture;
//! reported once).
//!
//! One window remains: a thread seen running user code may enter a sleeping system call in
//! the microseconds before the signal lands, and that call may then return `EINTR`.
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
        imp::install()
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
mod unwind;

#[cfg(target_os = "linux")]
pub(crate) use imp::{LoopThread, capture};

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

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::UnsafeCell;
    use std::ffi::c_void;
    use std::fmt::Write;
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use parking_lot::Mutex;

    use super::blocked::{signal_blocked, syscall_name, takes_fd};
    use super::unwind::{StackCopy, WORD, read_stack, walk};

    /// Bytes of stack copied per capture: 64 frames of ordinary code fit many times over,
    /// and the copy stays a few microseconds.
    const STACK_BYTES: usize = 64 * 1024;
    /// Captures in flight at once, process-wide (one per runtime whose watchdog is
    /// capturing). A watchdog that finds none free reports without a backtrace.
    const SLOTS: usize = 4;
    /// How long the watchdog waits for the handler. The copy takes microseconds; 200 ms is
    /// far beyond that (a descheduled thread), yet short enough not to delay the report.
    const HANDLER_TIMEOUT: Duration = Duration::from_millis(200);
    /// `si_code` of a signal sent with a value (`SI_QUEUE` in `<signal.h>`).
    const SI_QUEUE: libc::c_int = -1;

    // Phases of a slot (the low 3 bits of its state; the generation is above them).
    const IDLE: u64 = 0;
    const CLAIMED: u64 = 1;
    const REQUESTED: u64 = 2;
    const COPYING: u64 = 3;
    const DONE: u64 = 4;
    const ABANDONED: u64 = 5;
    const ORPHANED: u64 = 6;

    fn pack(generation: u64, phase: u64) -> u64 {
        (generation << 3) | phase
    }

    fn phase(state: u64) -> u64 {
        state & 7
    }

    /// One capture's hand-off between a watchdog and a signal handler.
    struct Slot {
        /// Generation and phase (see the module docs). Claimed and freed by watchdogs;
        /// `REQUESTED` -> `COPYING` -> `DONE` (or `ORPHANED` -> `ABANDONED`) by the handler.
        state: AtomicU64,
        /// The target thread and its stack bounds: written by the watchdog while `CLAIMED`,
        /// read by the handler after it moved `REQUESTED` -> `COPYING` (Acquire).
        tid: AtomicI32,
        stack_low: AtomicUsize,
        stack_high: AtomicUsize,
        /// The interrupted registers and the bytes copied: written by the handler while
        /// `COPYING`, read by the watchdog after it saw `DONE` (Acquire).
        pc: AtomicUsize,
        sp: AtomicUsize,
        fp: AtomicUsize,
        lr: AtomicUsize,
        len: AtomicUsize,
        stack: UnsafeCell<[usize; STACK_BYTES / WORD]>,
    }

    // `stack` is written only by the handler that moved the slot to `COPYING` for its
    // generation, and read only by the watchdog that owns that generation after it saw
    // `DONE` (Release/Acquire); a slot is claimed again only from `IDLE` or `ABANDONED`.
    // SAFETY: so `stack` is never written while read, nor by two handlers at once.
    unsafe impl Sync for Slot {}

    impl Slot {
        const fn new() -> Slot {
            Slot {
                state: AtomicU64::new(IDLE),
                tid: AtomicI32::new(0),
                stack_low: AtomicUsize::new(0),
                stack_high: AtomicUsize::new(0),
                pc: AtomicUsize::new(0),
                sp: AtomicUsize::new(0),
                fp: AtomicUsize::new(0),
                lr: AtomicUsize::new(0),
                len: AtomicUsize::new(0),
                stack: UnsafeCell::new([0; STACK_BYTES / WORD]),
            }
        }
    }

    static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
    /// The next request's generation; never reused (2^61 requests).
    static GENERATION: AtomicU64 = AtomicU64::new(1);
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    /// Whether the "signal is no longer ours" note was given (once per process).
    static DISPOSITION_NOTED: AtomicBool = AtomicBool::new(false);

    /// The signal used: a real-time signal, so it never collides with the classic ones
    /// (SIGUSR1/2 are the application's). glibc reserves the first real-time signals for
    /// itself and `SIGRTMIN()` already skips them; `+ 7` keeps clear of libraries that
    /// take the first few of the rest.
    fn signal() -> libc::c_int {
        libc::SIGRTMIN() + 7
    }

    type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);

    fn handler_address() -> usize {
        on_signal as Handler as usize
    }

    pub(super) fn install() -> bool {
        *INSTALLED.get_or_init(|| {
            // SAFETY: `sigaction` is given a zeroed, then filled, `sigaction` struct that
            // lives for the call; `old` receives the previous disposition. The handler has
            // the three-argument signature that SA_SIGINFO requires.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal(), std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    return false; // someone else uses this signal: leave it alone
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler_address();
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal(), &action, std::ptr::null_mut()) == 0
            }
        })
    }

    /// Whether the signal still has our handler (the program may have reset or replaced
    /// it since `install`).
    fn still_ours() -> bool {
        // SAFETY: a query only (`act` is null); `old` lives for the call.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal(), std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == handler_address()
        }
    }

    /// The signal handler. Async-signal-safe: atomics, `gettid`, `memcpy`, and reads of the
    /// `siginfo`/`ucontext` the kernel handed it. It never unwinds.
    extern "C" fn on_signal(
        _signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut c_void,
    ) {
        // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`; `si_value` is
        // meaningful for SI_QUEUE, checked first.
        let generation = unsafe {
            if info.is_null() || (*info).si_code != SI_QUEUE {
                return; // not sent by `capture`
            }
            (*info).si_value().sival_ptr as usize as u64
        };
        // SAFETY: gettid has no preconditions, cannot fail and leaves errno alone.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        for slot in &SLOT_TABLE {
            if slot
                .state
                .compare_exchange(
                    pack(generation, REQUESTED),
                    pack(generation, COPYING),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            if slot.tid.load(Ordering::Relaxed) == tid {
                copy_into(slot, context);
            } else {
                slot.len.store(0, Ordering::Relaxed); // not our request after all: no frames
            }
            if slot
                .state
                .compare_exchange(
                    pack(generation, COPYING),
                    pack(generation, DONE),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // The watchdog gave up meanwhile (ORPHANED): nobody reads this copy; the
                // slot is free once we stop writing.
                slot.state
                    .store(pack(generation, ABANDONED), Ordering::Release);
            }
            return;
        }
    }

    /// The handler's copy: registers from the `ucontext`, and the stack from the
    /// interrupted stack pointer up to the recorded top (at most `STACK_BYTES`).
    fn copy_into(slot: &Slot, context: *mut c_void) {
        let Some([pc, sp, fp, lr]) = registers(context) else {
            slot.len.store(0, Ordering::Relaxed);
            return;
        };
        let (low, high) = (
            slot.stack_low.load(Ordering::Relaxed),
            slot.stack_high.load(Ordering::Relaxed),
        );
        // A thread on another stack (sigaltstack, a coroutine) gets its registers only.
        let len = if (low..high).contains(&sp) {
            (high - sp).min(STACK_BYTES)
        } else {
            0
        };
        // [sp, sp + len) lies within this thread's own stack ([low, high) recorded by
        // `LoopThread::current` on this thread), which is mapped, above the interrupted
        // stack pointer (the interrupted frames, none of the handler's). The destination is
        // the slot's buffer, owned by this handler while `COPYING` (see `Slot`'s `Sync`).
        // SAFETY: both ranges are valid for `len <= STACK_BYTES` bytes and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(sp as *const u8, slot.stack.get().cast::<u8>(), len);
        }
        slot.pc.store(pc, Ordering::Relaxed);
        slot.sp.store(sp, Ordering::Relaxed);
        slot.fp.store(fp, Ordering::Relaxed);
        slot.lr.store(lr, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
    }

    /// The interrupted program counter, stack pointer, frame pointer and link register (0
    /// where there is none).
    #[cfg(target_arch = "x86_64")]
    fn registers(context: *mut c_void) -> Option<[usize; 4]> {
        if context.is_null() {
            return None;
        }
        // SAFETY: with SA_SIGINFO the third argument is the interrupted `ucontext_t`.
        let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let reg = |i: libc::c_int| gregs[i as usize] as usize;
        Some([
            reg(libc::REG_RIP),
            reg(libc::REG_RSP),
            reg(libc::REG_RBP),
            0,
        ])
    }

    #[cfg(target_arch = "aarch64")]
    fn registers(context: *mut c_void) -> Option<[usize; 4]> {
        if context.is_null() {
            return None;
        }
        // SAFETY: with SA_SIGINFO the third argument is the interrupted `ucontext_t`.
        let m = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
        Some([
            m.pc as usize,
            m.sp as usize,
            m.regs[29] as usize,
            m.regs[30] as usize,
        ])
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn registers(_context: *mut c_void) -> Option<[usize; 4]> {
        None
    }

    /// A loop thread, as the watchdog may signal it: recorded on that thread when its
    /// runtime is built.
    pub(crate) struct LoopThread {
        /// The kernel's thread id (`gettid`), for `/proc` and `rt_tgsigqueueinfo`.
        tid: libc::pid_t,
        /// The thread's stack, [low, high): the handler copies nothing outside it.
        stack: (usize, usize),
        /// True while the thread exists: cleared, under the lock, by a thread-local
        /// destructor as the thread exits. The watchdog reads `/proc` about the thread and
        /// signals it only under the lock, so never after the thread id may be reused.
        alive: Arc<Mutex<bool>>,
    }

    struct AliveGuard(Arc<Mutex<bool>>);

    impl Drop for AliveGuard {
        fn drop(&mut self) {
            *self.0.lock() = false;
        }
    }

    thread_local! {
        static ALIVE: AliveGuard = AliveGuard(Arc::new(Mutex::new(true)));
    }

    impl LoopThread {
        /// The calling thread; `None` while it is exiting (backtraces are then off).
        pub(crate) fn current() -> Option<LoopThread> {
            let alive = ALIVE.try_with(|guard| guard.0.clone()).ok()?;
            // SAFETY: gettid has no preconditions. `attr` is initialized by
            // pthread_getattr_np before it is read and destroyed once, after use.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
                let mut attr: libc::pthread_attr_t = std::mem::zeroed();
                if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                    return None;
                }
                let mut low: *mut c_void = std::ptr::null_mut();
                let mut size = 0;
                let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
                libc::pthread_attr_destroy(&mut attr);
                if got != 0 {
                    return None;
                }
                Some(LoopThread {
                    tid,
                    stack: (low as usize, low as usize + size),
                    alive,
                })
            }
        }
    }

    /// What the watchdog learned about the loop thread.
    #[derive(Default)]
    pub(crate) struct Capture {
        /// Instruction pointers, innermost first, for `render`.
        pub(crate) ips: Option<Vec<usize>>,
        /// What the thread is doing, when it is not running user code (`blocked in
        /// recvfrom on fd 7 (socket:[1234])`), or why there is no backtrace.
        pub(crate) note: Option<String>,
    }

    /// Looks at the loop thread (the poll is still running while `still_blocked`) and
    /// captures its stack if it can do so without disturbing it. Symbols are resolved
    /// later, by `render`.
    pub(crate) fn capture(thread: &LoopThread, still_blocked: impl Fn() -> bool) -> Capture {
        if !still_blocked() {
            return Capture::default();
        }
        let alive = thread.alive.lock();
        if !*alive {
            return Capture::default(); // the thread is gone; its id may be someone else's
        }
        let task = format!("/proc/self/task/{}", thread.tid);
        match kernel_state(&task) {
            KernelState::Running => {}
            KernelState::InSyscall(text) => {
                drop(alive);
                return in_syscall(thread, &task, &text);
            }
            KernelState::Other(state) => {
                return note(format!("blocked in the kernel (state {state})"));
            }
        }
        if !still_ours() {
            let first = !DISPOSITION_NOTED.swap(true, Ordering::Relaxed);
            return Capture {
                ips: None,
                note: first.then(|| {
                    format!(
                        "no backtraces from now on: the program replaced oneloop's handler \
                         for signal SIGRTMIN+{}",
                        signal() - libc::SIGRTMIN()
                    )
                }),
            };
        }
        if signal_blocked(&task, signal()) {
            return note("no backtrace: the loop thread blocks the backtrace signal".into());
        }
        let Some((slot, generation)) = claim(thread) else {
            return Capture::default(); // every slot busy with other runtimes' captures
        };
        // Look once more, as late as possible: a thread that entered a system call since
        // the first look must not get the signal. (What is left is the few microseconds
        // between this read and `send`: see the module docs.)
        match kernel_state(&task) {
            KernelState::Running => {}
            state => {
                slot.state.store(pack(generation, IDLE), Ordering::Release);
                drop(alive);
                return match state {
                    KernelState::InSyscall(text) => in_syscall(thread, &task, &text),
                    _ => Capture::default(),
                };
            }
        }
        if !still_blocked() || !send(thread.tid, generation) {
            slot.state.store(pack(generation, IDLE), Ordering::Release);
            return Capture::default();
        }
        drop(alive); // the thread may exit now: the handler has run, or never will
        let Some([pc, sp, fp, lr, len]) = wait(slot, generation) else {
            return Capture::default();
        };
        let mut words = vec![0usize; len / WORD];
        // SAFETY: the slot is DONE for our generation: the handler has finished writing
        // (Acquire in `wait`), and nobody writes it until we free it below.
        unsafe {
            let stack = &*slot.stack.get();
            words.copy_from_slice(&stack[..len / WORD]);
        }
        slot.state.store(pack(generation, IDLE), Ordering::Release);
        if pc == 0 {
            return Capture::default();
        }
        let copy = StackCopy { base: sp, words };
        Capture {
            ips: Some(walk(pc, Some(fp), lr, &copy)),
            note: None,
        }
    }

    /// What the kernel says the thread is doing.
    enum KernelState {
        /// Running or runnable in user space: it may be signalled.
        Running,
        /// Asleep in a system call: the contents of its `syscall` file.
        InSyscall(String),
        /// Anything else (stopped, a zombie, a kernel without the `syscall` file and a
        /// state other than R): its scheduler state.
        Other(String),
    }

    fn kernel_state(task: &str) -> KernelState {
        match std::fs::read_to_string(format!("{task}/syscall")) {
            Ok(text) if text.trim() == "running" => KernelState::Running,
            Ok(text) => KernelState::InSyscall(text),
            // No `syscall` file (a kernel without it): the scheduler state must say R.
            Err(_) => {
                let state = std::fs::read_to_string(format!("{task}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let (_, rest) = stat.rsplit_once(')')?;
                        rest.split_whitespace().next().map(str::to_owned)
                    })
                    .unwrap_or_else(|| "unknown".into());
                if state == "R" {
                    KernelState::Running
                } else {
                    KernelState::Other(state)
                }
            }
        }
    }

    fn note(text: String) -> Capture {
        Capture {
            ips: None,
            note: Some(text),
        }
    }

    /// Claims a free slot for a new generation and publishes the request.
    fn claim(thread: &LoopThread) -> Option<(&'static Slot, u64)> {
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed) & (u64::MAX >> 3);
        for slot in &SLOT_TABLE {
            let state = slot.state.load(Ordering::Acquire);
            if !matches!(phase(state), IDLE | ABANDONED)
                || slot
                    .state
                    .compare_exchange(
                        state,
                        pack(generation, CLAIMED),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            slot.tid.store(thread.tid, Ordering::Relaxed);
            slot.stack_low.store(thread.stack.0, Ordering::Relaxed);
            slot.stack_high.store(thread.stack.1, Ordering::Relaxed);
            slot.state
                .store(pack(generation, REQUESTED), Ordering::Release);
            return Some((slot, generation));
        }
        None
    }

    /// Sends the capture signal to `tid`, carrying `generation`.
    fn send(tid: libc::pid_t, generation: u64) -> bool {
        /// `siginfo_t` as the kernel reads it for SI_QUEUE on 64-bit Linux (128 bytes).
        #[repr(C)]
        struct QueuedInfo {
            signo: libc::c_int,
            errno: libc::c_int,
            code: libc::c_int,
            pad: libc::c_int,
            pid: libc::pid_t,
            uid: libc::uid_t,
            value: usize,
            rest: [u8; 96],
        }
        // (Backtraces are only installed on 64-bit targets, where this is the layout.)
        const _: () = assert!(
            cfg!(not(target_pointer_width = "64")) || std::mem::size_of::<QueuedInfo>() == 128
        );
        // SAFETY: getpid/getuid cannot fail. rt_tgsigqueueinfo reads a 128-byte siginfo
        // from `info`, which lives for the call; a negative si_code to our own process is
        // permitted. The caller holds the thread's `alive` lock, so `tid` is that thread.
        unsafe {
            let pid = libc::getpid();
            let mut info = QueuedInfo {
                signo: signal(),
                errno: 0,
                code: SI_QUEUE,
                pad: 0,
                pid,
                uid: libc::getuid(),
                value: generation as usize,
                rest: [0; 96],
            };
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                signal(),
                &mut info as *mut QueuedInfo,
            ) == 0
        }
    }

    /// Waits for the handler; on `DONE`, its registers and the length of its copy. Gives
    /// up after `HANDLER_TIMEOUT`, leaving the slot for the next capture to reuse.
    fn wait(slot: &Slot, generation: u64) -> Option<[usize; 5]> {
        let deadline = Instant::now() + HANDLER_TIMEOUT;
        loop {
            if slot.state.load(Ordering::Acquire) == pack(generation, DONE) {
                let load = |field: &AtomicUsize| field.load(Ordering::Relaxed);
                return Some([
                    load(&slot.pc),
                    load(&slot.sp),
                    load(&slot.fp),
                    load(&slot.lr),
                    load(&slot.len),
                ]);
            }
            if Instant::now() >= deadline {
                let give_up = |from, to| {
                    slot.state
                        .compare_exchange(
                            pack(generation, from),
                            pack(generation, to),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                };
                // Not started: free now (a late handler's CAS will not match). Copying:
                // the handler frees it when it is done. Otherwise it just finished.
                if give_up(REQUESTED, ABANDONED) || give_up(COPYING, ORPHANED) {
                    return None;
                }
                continue;
            }
            // Sleep, never spin: the handler runs on the loop thread, which may share
            // this CPU.
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// The thread sleeps in a system call (`text` is its `/proc/.../syscall`): name the
    /// call, and copy its stack without interrupting it.
    fn in_syscall(thread: &LoopThread, task: &str, text: &str) -> Capture {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let number: Option<libc::c_long> = fields.first().and_then(|n| n.parse().ok());
        let hex = |i: usize| {
            fields
                .get(i)
                .and_then(|f| usize::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        };
        let Some(number) = number.filter(|&n| n >= 0) else {
            return note("stopped outside a system call".into());
        };
        let name = syscall_name(number);
        let mut what = match &name {
            Some(name) => format!("blocked in {name}"),
            None => format!("blocked in syscall {number}"),
        };
        if name.as_deref().is_some_and(takes_fd)
            && let Some(fd) = hex(1)
        {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| "closed".into());
            let _ = write!(what, " on fd {fd} ({target})");
        }
        // The user stack does not move while the thread sleeps in the kernel. Copy it, then
        // make sure the thread is still in the same call: otherwise the copy may be torn.
        let (sp, pc) = (
            hex(fields.len().wrapping_sub(2)),
            hex(fields.len().wrapping_sub(1)),
        );
        let ips = match (sp, pc) {
            (Some(sp), Some(pc)) if (thread.stack.0..thread.stack.1).contains(&sp) => {
                read_stack(sp, (thread.stack.1 - sp).min(STACK_BYTES))
                    .filter(|_| {
                        std::fs::read_to_string(format!("{task}/syscall"))
                            .is_ok_and(|again| again == text)
                    })
                    .map(|copy| walk(pc, None, 0, &copy))
            }
            _ => None,
        };
        Capture {
            ips,
            note: Some(what),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::{LoopThread, capture};

    #[test]
    fn a_loop_thread_that_has_exited_is_neither_read_nor_signalled() {
        // The thread records itself, as a runtime built on it does, then exits: its id may
        // now belong to another thread.
        let gone = std::thread::spawn(|| LoopThread::current().expect("a loop thread"))
            .join()
            .unwrap();
        let capture = capture(&gone, || true);
        assert!(capture.ips.is_none(), "no stack from a thread that is gone");
        assert!(
            capture.note.is_none(),
            "not even /proc was read for it: {:?}",
            capture.note
        );
    }
}
