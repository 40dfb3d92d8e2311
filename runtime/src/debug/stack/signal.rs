//! The capture signal: its handler, which copies the loop thread's registers and stack
//! into a static slot, and the lock-free hand-off of that copy to the watchdog (Linux).
//!
//! `capture.rs` decides whether the thread may be signalled at all, then claims a slot,
//! sends the signal and waits here; the copy is unwound by `unwind.rs`.
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

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::unwind::WORD;

/// Bytes of stack copied per capture: 64 frames of ordinary code fit many times over,
/// and the copy stays a few microseconds.
pub(super) const STACK_BYTES: usize = 64 * 1024;
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
pub(super) struct Slot {
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

/// The signal used: a real-time signal, so it never collides with the classic ones
/// (SIGUSR1/2 are the application's). glibc reserves the first real-time signals for
/// itself and `SIGRTMIN()` already skips them; `+ 7` keeps clear of libraries that
/// take the first few of the rest.
pub(super) fn signal() -> libc::c_int {
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
pub(super) fn still_ours() -> bool {
    // SAFETY: a query only (`act` is null); `old` lives for the call.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal(), std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == handler_address()
    }
}

/// The signal handler. Async-signal-safe: atomics, `gettid`, `memcpy`, and reads of the
/// `siginfo`/`ucontext` the kernel handed it. It never unwinds.
extern "C" fn on_signal(_signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
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

/// Claims a free slot for a new generation and publishes the request: a capture of thread
/// `tid`, whose stack is `stack` ([low, high)).
pub(super) fn claim(tid: libc::pid_t, stack: (usize, usize)) -> Option<(&'static Slot, u64)> {
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
        slot.tid.store(tid, Ordering::Relaxed);
        slot.stack_low.store(stack.0, Ordering::Relaxed);
        slot.stack_high.store(stack.1, Ordering::Relaxed);
        slot.state
            .store(pack(generation, REQUESTED), Ordering::Release);
        return Some((slot, generation));
    }
    None
}

/// Sends the capture signal to `tid`, carrying `generation`.
pub(super) fn send(tid: libc::pid_t, generation: u64) -> bool {
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
    const _: () =
        assert!(cfg!(not(target_pointer_width = "64")) || std::mem::size_of::<QueuedInfo>() == 128);
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

/// Frees a slot claimed for `generation` whose request was never sent.
pub(super) fn release(slot: &Slot, generation: u64) {
    slot.state.store(pack(generation, IDLE), Ordering::Release);
}

/// What the handler copied: the interrupted registers (0 where there is none) and the
/// stack from `sp` up.
pub(super) struct Copied {
    pub(super) pc: usize,
    pub(super) sp: usize,
    pub(super) fp: usize,
    pub(super) lr: usize,
    /// The stack's words from `sp` up (none if the thread was on another stack).
    pub(super) words: Vec<usize>,
}

/// Waits for the handler; on `DONE`, takes its copy and frees the slot. Gives up after
/// `HANDLER_TIMEOUT`, leaving the slot for the next capture to reuse.
pub(super) fn wait(slot: &Slot, generation: u64) -> Option<Copied> {
    let deadline = Instant::now() + HANDLER_TIMEOUT;
    loop {
        if slot.state.load(Ordering::Acquire) == pack(generation, DONE) {
            let load = |field: &AtomicUsize| field.load(Ordering::Relaxed);
            let len = load(&slot.len);
            let mut words = vec![0usize; len / WORD];
            // SAFETY: the slot is DONE for our generation: the handler has finished writing
            // (the Acquire load above), and nobody writes it until we free it below.
            unsafe {
                let stack = &*slot.stack.get();
                words.copy_from_slice(&stack[..len / WORD]);
            }
            let copied = Copied {
                pc: load(&slot.pc),
                sp: load(&slot.sp),
                fp: load(&slot.fp),
                lr: load(&slot.lr),
                words,
            };
            slot.state.store(pack(generation, IDLE), Ordering::Release);
            return Some(copied);
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
