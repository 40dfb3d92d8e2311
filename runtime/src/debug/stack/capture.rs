//! Looking at the loop thread from the watchdog (Linux): first from outside, through
//! `/proc`, and only when it runs user code by signalling it (`signal.rs`).
//!
//! A thread asleep in a system call is never interrupted: its call is named from `/proc`
//! (`blocked.rs`) and its stack copied with `process_vm_readv`. Either copy is walked by
//! `unwind.rs`.
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

use std::ffi::c_void;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::blocked::{signal_blocked, syscall_name, takes_fd};
use super::signal::{STACK_BYTES, claim, release, send, signal, still_ours, wait};
use super::unwind::{StackCopy, read_stack, walk};

/// Whether the "signal is no longer ours" note was given (once per process).
static DISPOSITION_NOTED: AtomicBool = AtomicBool::new(false);

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
    let Some((slot, generation)) = claim(thread.tid, thread.stack) else {
        return Capture::default(); // every slot busy with other runtimes' captures
    };
    // Look once more, as late as possible: a thread that entered a system call since
    // the first look must not get the signal. (What is left is the few microseconds
    // between this read and `send`: see the module docs.)
    match kernel_state(&task) {
        KernelState::Running => {}
        state => {
            release(slot, generation);
            drop(alive);
            return match state {
                KernelState::InSyscall(text) => in_syscall(thread, &task, &text),
                _ => Capture::default(),
            };
        }
    }
    if !still_blocked() || !send(thread.tid, generation) {
        release(slot, generation);
        return Capture::default();
    }
    drop(alive); // the thread may exit now: the handler has run, or never will
    let Some(copied) = wait(slot, generation) else {
        return Capture::default();
    };
    if copied.pc == 0 {
        return Capture::default();
    }
    let copy = StackCopy {
        base: copied.sp,
        words: copied.words,
    };
    Capture {
        ips: Some(walk(copied.pc, Some(copied.fp), copied.lr, &copy)),
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

#[cfg(test)]
mod tests {
    use super::{LoopThread, capture};

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
