//! How the watchdog looks at a blocked loop thread (`runtime/src/debug/stack/`), and what
//! broke before:
//!
//! - the signal handler ran libgcc's unwinder, which is not async-signal-safe: a capture
//!   landing while the loop thread unwound a panic or took a backtrace crashed the process
//!   (SIGSEGV in `_Unwind_Backtrace`), or hung it when a frame had been registered at run
//!   time (`__register_frame`, as JITs do: libgcc's object mutex is not recursive);
//! - the signal interrupted blocking calls with timeouts, which then failed with `EINTR`
//!   (`SA_RESTART` does not restart them): debug mode changed the program's results;
//! - a thread that masked the signal got one queued per slow poll, each capture waiting out
//!   its timeout; a program that reset the signal to its default was killed by the next
//!   capture.
//!
//! The crash and hang cases run in a child process (this binary again, one scenario
//! selected by `ONELOOP_CAPTURE_SCENARIO`), so a crash is a failed assertion here.
#![cfg(target_os = "linux")]

mod util;

use std::hint::black_box;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::panic::catch_unwind;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oneloop::Runtime;
use oneloop::debug::{Code, Report};
use oneloop::task::yield_now;
use util::{debug_runtime, in_child};

const SCENARIO: &str = "ONELOOP_CAPTURE_SCENARIO";

/// Runs test `name` in a child process with scenario `scenario`; kills it if it has not
/// finished in a minute (a hang). Returns whether it exited successfully, and its output.
fn run_child(name: &str, scenario: &str) -> (bool, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("ONELOOP_TEST_CHILD", "1")
        .env(SCENARIO, scenario)
        .env_remove("ONELOOP_DEBUG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let give_up = Instant::now() + util::hang_limit().min(Duration::from_secs(60));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= give_up {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "status {status:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status.is_some_and(|s| s.success()), text)
}

/// A runtime in debug mode whose sink counts `OL002` reports that carry a backtrace.
fn counting_runtime(threshold: Duration) -> (Runtime, Arc<AtomicUsize>) {
    let captured = Arc::new(AtomicUsize::new(0));
    let count = captured.clone();
    let rt = Runtime::builder()
        .debug(true)
        .slow_task_threshold(threshold)
        .on_report(move |report: &Report| {
            if report.code == Code::StillBlocking && report.backtrace.is_some() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    (rt, captured)
}

/// How many captures a storm waits for (`ONELOOP_CAPTURES` overrides it).
///
/// The crash this guards against needs the signal to land in the few instructions where
/// `_Unwind_Resume` installs a landing pad's context: with the handler that unwound, about
/// one capture in several thousand crashed here (3 000 captures crashed one run in three;
/// `ONELOOP_CAPTURES=30000` reproduces it nearly every time). The handler now never
/// unwinds, so no count can crash it; the default keeps the test to a few seconds. Setting
/// `ONELOOP_STORM=panics` leaves out the `Backtrace::force_capture` calls.
fn captures_wanted() -> usize {
    std::env::var("ONELOOP_CAPTURES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// Panics-and-catches and takes backtraces (both run the unwinder) in polls of 1.5 ms, each
/// past the 1 ms threshold, so each gets a capture, landing mostly inside the unwinder,
/// until `captures_wanted` captures were made.
fn unwind_storm(captures_wanted: usize) {
    // Quiet for the panics made on purpose; any other thread's panic is shown.
    let loop_thread = thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if thread::current().id() != loop_thread {
            eprintln!("panic on {:?}: {info}", thread::current().name());
        }
    }));
    let (rt, captured) = counting_runtime(Duration::from_millis(1));
    let polls = rt.block_on(async {
        let mut polls = 0usize;
        // Counted, not timed: stop after enough captures (or far too many polls).
        while captured.load(Ordering::Relaxed) < captures_wanted && polls < 100_000 {
            unwind_for(Duration::from_micros(1500));
            polls += 1;
            yield_now().await;
        }
        polls
    });
    let _ = std::panic::take_hook();
    let captured = captured.load(Ordering::Relaxed);
    println!("{captured} captures in {polls} polls");
    assert!(captured >= captures_wanted, "only {captured} captures");
}

#[inline(never)]
fn unwind_for(time: Duration) {
    let end = Instant::now() + time;
    let backtraces = std::env::var("ONELOOP_STORM").as_deref() != Ok("panics");
    while Instant::now() < end {
        let _ = black_box(catch_unwind(|| deep_panic(16)));
        if backtraces {
            let _ = black_box(std::backtrace::Backtrace::force_capture());
        }
    }
}

/// Panics `depth` frames down, each frame with a destructor, so the unwind runs landing
/// pads all the way up.
#[inline(never)]
fn deep_panic(depth: u32) {
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            black_box(self.0);
        }
    }
    let _guard = Guard(depth);
    if depth == 0 {
        std::panic::resume_unwind(Box::new("unwinding on purpose"));
    }
    deep_panic(black_box(depth - 1));
}

/// Registers an unwind table at run time, as a JIT does: one CIE and one FDE covering a
/// range no code lives at (x86_64 DWARF, little-endian). From then on, libgcc's unwinder
/// takes its object mutex on every frame lookup.
#[cfg(target_arch = "x86_64")]
fn register_a_frame() {
    unsafe extern "C" {
        fn __register_frame(begin: *const u8);
    }
    let mut table: Vec<u8> = Vec::new();
    // CIE: length 20, id 0, version 1, "zR", code align 1, data align -8, return register
    // 16, augmentation data (1 byte: pointers are absolute), padding.
    table.extend(20u32.to_le_bytes());
    table.extend(0u32.to_le_bytes());
    table.extend([1, b'z', b'R', 0, 1, 0x78, 16, 1, 0]);
    table.extend([0; 7]); // DW_CFA_nop
    // FDE: length 28, offset back to the CIE, pc_begin, pc_range, no augmentation data.
    table.extend(28u32.to_le_bytes());
    table.extend(28u32.to_le_bytes());
    table.extend(0x1000u64.to_le_bytes());
    table.extend(0x10u64.to_le_bytes());
    table.extend([0; 8]); // augmentation length 0, then DW_CFA_nop
    table.extend(0u32.to_le_bytes()); // terminator
    let table: &'static [u8] = Box::leak(table.into_boxed_slice());
    // SAFETY: `table` is a well-formed .eh_frame section (one CIE, one FDE, a zero
    // terminator) that lives for the rest of the process, as libgcc requires.
    unsafe { __register_frame(table.as_ptr()) };
}

#[test]
fn captures_landing_while_the_loop_unwinds_never_crash_it() {
    if in_child() {
        if std::env::var(SCENARIO).as_deref() == Ok("storm") {
            unwind_storm(captures_wanted());
        }
        return;
    }
    let (ok, output) = run_child(
        "captures_landing_while_the_loop_unwinds_never_crash_it",
        "storm",
    );
    assert!(ok, "the child crashed or hung:\n{output}");
}

#[test]
fn captures_landing_while_the_loop_unwinds_with_a_registered_frame_never_hang_it() {
    if !cfg!(target_arch = "x86_64") {
        println!("skipped: the registered frame is built for x86_64");
        return;
    }
    if in_child() {
        if std::env::var(SCENARIO).as_deref() == Ok("registered") {
            #[cfg(target_arch = "x86_64")]
            register_a_frame();
            unwind_storm(captures_wanted());
        }
        return;
    }
    let (ok, output) = run_child(
        "captures_landing_while_the_loop_unwinds_with_a_registered_frame_never_hang_it",
        "registered",
    );
    assert!(ok, "the child crashed or hung:\n{output}");
}

#[test]
fn a_blocking_receive_with_a_timeout_times_out_normally_and_is_named() {
    let (rt, reports) = debug_runtime(20);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let fd = socket.as_raw_fd();
    let result = rt.block_on(async {
        let mut buffer = [0u8; 16];
        socket.recv_from(&mut buffer).map(|_| ())
    });
    let error = result.expect_err("nobody sent anything");
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "the receive must time out as it would without debug mode, not fail with {error:?}"
    );
    let still = reports.with_code(Code::StillBlocking);
    let first = still.first().expect("an OL002 report");
    let message = first.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with(&format!("blocked in recvfrom on fd {fd} (socket:[")),
        "{message:?}"
    );
    // ... and the line a user greps says so.
    let line = first.to_string();
    assert!(
        line.contains(&format!(", blocked in recvfrom on fd {fd} (socket:[")),
        "{line}"
    );
}

/// Parks the loop thread until `reported` (the sink unparks it): asleep in the kernel the
/// whole time. Not inlined, so it shows in the backtrace.
#[inline(never)]
fn park_the_loop(reported: &AtomicBool) {
    while !reported.load(Ordering::Acquire) {
        thread::park();
    }
}

/// A runtime whose sink keeps the reports, raises `flag` at the first `OL002` and unparks
/// the thread that built the runtime (its loop thread).
fn flagging_runtime(threshold_ms: u64) -> (Runtime, util::Reports, Arc<AtomicBool>) {
    let reports = util::Reports::default();
    let flag = Arc::new(AtomicBool::new(false));
    let sink = reports.sink();
    let raise = flag.clone();
    let loop_thread = thread::current();
    let rt = Runtime::builder()
        .debug(true)
        .slow_task_threshold(Duration::from_millis(threshold_ms))
        .on_report(move |report: &Report| {
            sink(report);
            if report.code == Code::StillBlocking {
                raise.store(true, Ordering::Release);
                loop_thread.unpark();
            }
        })
        .build()
        .unwrap();
    (rt, reports, flag)
}

#[test]
fn a_loop_asleep_in_the_kernel_is_named_with_its_stack_and_not_interrupted() {
    let (rt, reports, reported) = flagging_runtime(20);
    rt.block_on(async { park_the_loop(&reported) });
    let still = reports.with_code(Code::StillBlocking);
    let first = &still[0];
    let message = first.message.as_deref().unwrap_or_default();
    assert_eq!(message, "blocked in futex", "the call is named");
    let backtrace = first.backtrace.as_ref().expect("a backtrace").to_string();
    println!("{first}");
    assert!(
        backtrace.contains("park_the_loop"),
        "the stack is read while the thread sleeps:\n{backtrace}"
    );
}

/// Spins until `stop` (one atomic load per turn: the signal lands in this function).
#[inline(never)]
fn spin_the_loop_until(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
}

#[test]
fn a_busy_loop_gets_a_backtrace_naming_the_user_s_function() {
    let (rt, reports, reported) = flagging_runtime(20);
    rt.block_on(async { spin_the_loop_until(&reported) });
    let first = &reports.with_code(Code::StillBlocking)[0];
    assert_eq!(first.message, None);
    let backtrace = first.backtrace.as_ref().expect("a backtrace").to_string();
    println!("{first}");
    assert!(
        backtrace.contains("spin_the_loop_until"),
        "frame pointers walked over the copy:\n{backtrace}"
    );
}

/// The capture signal's pending bits for thread `tid` (`SigPnd` in its status).
fn pending_signals(tid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigPnd:"))
        .unwrap();
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

#[test]
fn a_loop_thread_masking_the_signal_is_not_sent_it() {
    let (rt, reports, reported) = flagging_runtime(20);
    let signal = libc::SIGRTMIN() + 7;
    // SAFETY: a sigset_t on the stack, initialized by sigemptyset before use; blocking a
    // signal on this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    rt.block_on(async { spin_the_loop_until(&reported) });
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
    let pending = pending_signals(tid);
    // SAFETY: as above, unblocking what this test blocked (nothing is pending, or the
    // assertion below fails first... after the handler ran, which is harmless).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    assert_eq!(pending & (1 << (signal - 1)), 0, "a signal was queued");
    let first = &reports.with_code(Code::StillBlocking)[0];
    assert!(first.backtrace.is_none());
    assert!(
        first
            .message
            .as_deref()
            .is_some_and(|m| m.contains("blocks the backtrace signal")),
        "{:?}",
        first.message
    );
}

#[test]
fn a_program_that_resets_the_signal_is_not_killed_by_the_next_capture() {
    if in_child() {
        if std::env::var(SCENARIO).as_deref() == Ok("reset") {
            let (rt, reports, reported) = flagging_runtime(20);
            // SAFETY: restores the default disposition of a signal this test owns.
            unsafe { libc::signal(libc::SIGRTMIN() + 7, libc::SIG_DFL) };
            rt.block_on(async { spin_the_loop_until(&reported) });
            reported.store(false, Ordering::Release);
            rt.block_on(async { spin_the_loop_until(&reported) });
            let still = reports.with_code(Code::StillBlocking);
            assert!(still.iter().all(|r| r.backtrace.is_none()));
            let notes: Vec<_> = still.iter().filter_map(|r| r.message.clone()).collect();
            assert_eq!(notes.len(), 1, "noted once: {notes:?}");
            assert!(notes[0].contains("replaced oneloop's handler"), "{notes:?}");
        }
        return;
    }
    let (ok, output) = run_child(
        "a_program_that_resets_the_signal_is_not_killed_by_the_next_capture",
        "reset",
    );
    assert!(ok, "the child was killed or failed:\n{output}");
}
