//! Process pools: a call runs in a worker process; what kills that process fails only that
//! call (with what happened), the worker is replaced, and nothing is left behind (no
//! zombie, no stray worker). Every call resolves exactly once. Sized for 2 cores; every
//! test runs under a hang guard. (Long because it is the process pool's behaviour spec,
//! one test per promise; the failure matrix is `process_failures.rs`.)

mod util;

use std::collections::HashSet;
use std::time::Duration;

use oneloop_pool::{JobError, block_on};
use oneloop_process::{CancelRunning, ProcessPool};
use util::hang_guard;
use util::processes::{
    Markers, child_stderr, children, mark_started, open_descriptors, process_state,
};

oneloop_process::process_fn! {
    /// The worker's pid (never the caller's).
    fn worker_pid() -> u32 {
        std::process::id()
    }
}

oneloop_process::process_fn! {
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
}

oneloop_process::process_fn! {
    fn panics(message: String) -> u32 {
        panic!("{message}")
    }
}

oneloop_process::process_fn! {
    fn exits(code: i32) -> u32 {
        std::process::exit(code)
    }
}

oneloop_process::process_fn! {
    /// Writes a last word to stderr, then dies by SIGSEGV.
    fn segfaults(last_words: String) -> u32 {
        eprintln!("{last_words}");
        // SAFETY: raising a signal is a plain libc call; SIGSEGV's default action ends
        // this worker process, which is what the test wants to see handled.
        unsafe {
            libc::raise(libc::SIGSEGV);
        }
        unreachable!("SIGSEGV ends the process")
    }
}

oneloop_process::process_fn! {
    fn spins_forever() -> u32 {
        loop {
            std::hint::spin_loop();
        }
    }
}

oneloop_process::process_fn! {
    /// Says it started (`dir/started`), then spins for ever.
    fn spins_once_started(dir: String) -> u32 {
        mark_started(&dir);
        loop {
            std::hint::spin_loop();
        }
    }
}

oneloop_process::process_fn! {
    /// Says it started (`dir/started`), then sleeps `millis` and says who it is.
    fn sleeps_once_started(dir: String, millis: u64) -> u32 {
        mark_started(&dir);
        std::thread::sleep(Duration::from_millis(millis));
        std::process::id()
    }
}

oneloop_process::process_fn! {
    fn sleeps(millis: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(millis));
        std::process::id()
    }
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_call_runs_in_a_worker_process_and_returns_its_result() {
    hang_guard(|| {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(block_on(pool.call(add, (2, 40))), Ok(42));
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        assert_ne!(pid, std::process::id());
        assert!(children().contains(&pid), "the worker is our child");
    });
}

#[test]
fn a_panic_comes_back_with_its_message_and_location_and_the_worker_lives_on() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let before = block_on(pool.call(worker_pid, ())).unwrap();
        let error = block_on(pool.call(panics, "bad input".to_owned())).unwrap_err();
        let JobError::Panicked(message) = error else {
            panic!("expected a panic, got {error:?}");
        };
        assert!(message.contains("bad input"), "{message}");
        assert!(
            message.contains("tests/process.rs"),
            "the location: {message}"
        );
        assert_eq!(
            block_on(pool.call(worker_pid, ())),
            Ok(before),
            "same worker"
        );
    });
}

#[test]
fn a_segfault_fails_only_its_own_call_with_what_happened_and_the_worker_is_replaced() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let before = block_on(pool.call(worker_pid, ())).unwrap();
        let error = block_on(pool.call(segfaults, "about to crash".to_owned())).unwrap_err();
        let JobError::WorkerDied(death) = &error else {
            panic!("expected a worker death, got {error:?}");
        };
        assert_eq!(death.pid, before);
        assert_eq!(death.signal, Some("SIGSEGV"));
        assert_eq!(death.killed_because, None, "not killed by oneloop");
        assert!(death.job.contains("segfaults"), "{}", death.job);
        assert!(death.job.contains("tests/process.rs"), "{}", death.job);
        assert!(death.stderr_tail.contains("about to crash"), "{death:?}");
        let text = error.to_string();
        assert!(
            text.contains("SIGSEGV") && text.contains("not by oneloop"),
            "{text}"
        );
        let after = block_on(pool.call(worker_pid, ())).unwrap();
        assert_ne!(after, before, "a new worker");
        assert!(!process_exists(before), "the dead worker was reaped");
    });
}

#[test]
fn an_exit_in_the_function_is_reported_with_its_code() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let error = block_on(pool.call(exits, 7)).unwrap_err();
        let JobError::WorkerDied(death) = &error else {
            panic!("expected a worker death, got {error:?}");
        };
        assert_eq!((death.exit_code, death.signal), (Some(7), None));
        assert_eq!(block_on(pool.call(add, (1, 1))), Ok(2));
    });
}

#[test]
fn a_call_past_its_timeout_is_killed_and_the_next_call_runs() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        let timed_out = pool.call_with_timeout(spins_forever, (), Duration::from_millis(100));
        assert_eq!(block_on(timed_out), Err(JobError::TimedOut));
        assert!(!process_exists(pid), "the spinning worker is gone");
        assert_eq!(block_on(pool.call(add, (3, 4))), Ok(7));
    });
}

#[test]
fn cancelling_a_running_call_kills_its_worker_or_lets_it_finish_as_the_pool_says() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        let markers = Markers::new("cancel-kill");
        let mut running = pool.call(spins_once_started, markers.dir());
        markers.wait_for("started");
        assert!(!running.cancel(), "it had started");
        drop(running);
        assert_ne!(
            block_on(pool.call(worker_pid, ())).unwrap(),
            pid,
            "killed and replaced"
        );

        let finishing = ProcessPool::builder()
            .workers(1)
            .cancel_running(CancelRunning::Finish)
            .build()
            .unwrap();
        let pid = block_on(finishing.call(worker_pid, ())).unwrap();
        let markers = Markers::new("cancel-finish");
        let running = finishing.call(sleeps_once_started, (markers.dir(), 50));
        markers.wait_for("started");
        drop(running);
        assert_eq!(
            block_on(finishing.call(worker_pid, ())),
            Ok(pid),
            "same worker"
        );
    });
}

#[test]
fn a_call_cancelled_while_queued_never_runs() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let busy = pool.call(sleeps, 100);
        let mut queued = pool.call(exits, 9); // would kill the worker if it ran
        assert!(queued.cancel());
        assert_eq!(block_on(queued), Err(JobError::Cancelled));
        let pid = block_on(busy).unwrap();
        assert_eq!(
            block_on(pool.call(worker_pid, ())),
            Ok(pid),
            "nothing killed it"
        );
    });
}

#[test]
fn the_same_call_crashing_its_worker_again_and_again_is_quarantined() {
    hang_guard(|| {
        let pool = ProcessPool::builder()
            .workers(1)
            .quarantine_after(2)
            .build()
            .unwrap();
        for _ in 0..2 {
            let error = block_on(pool.call(exits, 3)).unwrap_err();
            assert!(matches!(error, JobError::WorkerDied(_)), "{error:?}");
        }
        assert_eq!(block_on(pool.call(exits, 3)), Err(JobError::Quarantined(2)));
        // Other arguments, other calls: not quarantined.
        assert!(matches!(
            block_on(pool.call(exits, 4)),
            Err(JobError::WorkerDied(_))
        ));
        assert_eq!(block_on(pool.call(add, (1, 2))), Ok(3));
    });
}

#[test]
fn shutdown_runs_the_queue_and_leaves_no_worker_and_no_zombie() {
    hang_guard(|| {
        let pool = ProcessPool::new(2).unwrap();
        let pids: Vec<u32> = (0..2)
            .map(|_| block_on(pool.call(worker_pid, ())).unwrap())
            .collect();
        let queued: Vec<_> = (0..6).map(|i| pool.call(add, (i, 1))).collect();
        pool.shutdown();
        for (i, call) in queued.into_iter().enumerate() {
            assert_eq!(block_on(call), Ok(i as u64 + 1));
        }
        for pid in pids {
            assert!(!children().contains(&pid), "worker {pid} reaped");
        }
        assert_eq!(block_on(pool.call(add, (1, 1))), Err(JobError::Shutdown));
    });
}

#[test]
fn shutdown_timeout_kills_what_is_left_and_names_it() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        let markers = Markers::new("shutdown-timeout");
        let stuck = pool.call(spins_once_started, markers.dir());
        markers.wait_for("started");
        let killed = pool.shutdown_timeout(Duration::from_millis(100));
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert!(killed[0].contains("spins_once_started"), "{killed:?}");
        let error = block_on(stuck).unwrap_err();
        assert!(
            matches!(&error, JobError::WorkerDied(d) if d.killed_because.is_some()),
            "{error:?}"
        );
        assert!(!children().contains(&pid));
    });
}

#[test]
fn many_calls_with_crashes_and_timeouts_each_resolve_once_and_leave_nothing_behind() {
    // Alone in a process of its own: the other tests' workers are children too.
    if util::processes::ran_alone_in_child(
        "many_calls_with_crashes_and_timeouts_each_resolve_once_and_leave_nothing_behind",
    ) {
        return;
    }
    hang_guard(|| {
        let before = children();
        let fds_before = open_descriptors();
        let pool = ProcessPool::builder()
            .workers(2)
            .timeout(Duration::from_millis(100))
            .quarantine_after(u32::MAX)
            .build()
            .unwrap();
        // 1,000 calls: 5 % crash their worker, 5 % run past their timeout.
        let calls: Vec<_> = (0..1000u64)
            .map(|i| match i % 20 {
                0 => (i, "exit", pool.call(exits, 1)),
                1 => (i, "timeout", pool.call(spins_forever, ())),
                _ => (i, "ok", pool.call(worker_pid, ())),
            })
            .collect();
        let (mut ok, mut died, mut timed_out) = (0, 0, 0);
        for (i, kind, call) in calls {
            match (kind, block_on(call)) {
                ("ok", Ok(pid)) => {
                    assert_ne!(pid, std::process::id());
                    ok += 1;
                }
                ("exit", Err(JobError::WorkerDied(_))) => died += 1,
                ("timeout", Err(JobError::TimedOut)) => timed_out += 1,
                (kind, other) => panic!("call {i} ({kind}) ended as {other:?}"),
            }
        }
        assert_eq!((ok, died, timed_out), (900, 50, 50));
        // The pool kept its two workers through it all.
        let live: HashSet<u32> = children().difference(&before).copied().collect();
        assert_eq!(live.len(), 2, "worker count constant: {live:?}");
        drop(pool);
        assert_eq!(children(), before, "no worker and no zombie left");
        assert_eq!(
            open_descriptors(),
            fds_before,
            "descriptors back to baseline"
        );
    });
}

/// A value whose encoding always fails (as a type with a `Serialize` that refuses some
/// states would).
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

oneloop_process::process_fn! {
    fn takes_unencodable(value: Unencodable) -> u32 {
        let _ = value;
        1
    }
}

oneloop_process::process_fn! {
    fn returns_unencodable() -> Unencodable {
        Unencodable
    }
}

#[test]
fn arguments_that_cannot_be_encoded_fail_at_the_call_and_results_fail_as_their_own_kind() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        let error = block_on(pool.call(takes_unencodable, Unencodable)).unwrap_err();
        assert!(
            matches!(&error, JobError::Arguments(m) if m.contains("cannot be encoded")),
            "{error:?}"
        );
        let error = block_on(pool.call(returns_unencodable, ())).unwrap_err();
        assert!(
            matches!(&error, JobError::Result(m) if m.contains("cannot encode")),
            "{error:?}"
        );
        assert_eq!(
            block_on(pool.call(worker_pid, ())),
            Ok(pid),
            "the worker lives on"
        );
    });
}

#[test]
fn a_call_awaited_inside_the_oneloop_runtime_does_not_block_the_loop() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let rt = oneloop::Runtime::new();
        let ticks = rt.block_on(async {
            let ticker = oneloop::spawn(async {
                let mut ticks = 0;
                for _ in 0..5 {
                    oneloop::time::sleep(Duration::from_millis(10)).await;
                    ticks += 1;
                }
                ticks
            });
            let pid = pool.call(sleeps, 100).await.unwrap();
            assert_ne!(pid, std::process::id());
            ticker.await.unwrap()
        });
        assert_eq!(ticks, 5);
    });
}

oneloop_process::process_fn! {
    /// Reverses the bytes (so the result is not the argument echoed).
    fn reversed(bytes: Vec<u8>) -> Vec<u8> {
        bytes.into_iter().rev().collect()
    }
}

#[test]
fn large_arguments_and_results_travel_intact_in_shared_memory_regions() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        // Around the inline limit (64 KiB), and well past it.
        for len in [64 * 1024 - 16, 64 * 1024 + 1, 3 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut expected = bytes.clone();
            expected.reverse();
            assert_eq!(
                block_on(pool.call(reversed, bytes)),
                Ok(expected),
                "{len} bytes"
            );
        }
    });
}

static INITIALIZED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

oneloop_process::process_fn! {
    fn count_initialization() {
        INITIALIZED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

oneloop_process::process_fn! {
    /// How many times this worker process ran its initializer.
    fn initializations() -> u32 {
        INITIALIZED.load(std::sync::atomic::Ordering::SeqCst)
    }
}

oneloop_process::process_fn! {
    fn failing_initializer() {
        panic!("the model file is missing")
    }
}

#[test]
fn the_initializer_runs_once_in_each_worker_before_its_first_call() {
    hang_guard(|| {
        let pool = ProcessPool::builder()
            .workers(1)
            .initializer(count_initialization)
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(block_on(pool.call(initializations, ())), Ok(1));
        }
        // A replacement worker runs it too.
        let _ = block_on(pool.call(exits, 1));
        assert_eq!(block_on(pool.call(initializations, ())), Ok(1));
        assert_eq!(
            INITIALIZED.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "not here"
        );
    });
}

#[test]
fn workers_whose_initializer_fails_break_the_pool_with_the_reason_and_nothing_hangs() {
    hang_guard(|| {
        let pool = ProcessPool::builder()
            .workers(2)
            .initializer(failing_initializer)
            .build()
            .unwrap();
        let waiting: Vec<_> = (0..4).map(|i| pool.call(add, (i, 1))).collect();
        for call in waiting {
            let error = block_on(call).unwrap_err();
            assert!(
                matches!(&error, JobError::Broken(why) if why.contains("the model file is missing")),
                "every waiting call learns why: {error:?}"
            );
        }
        let reason = pool.broken().expect("broken");
        assert!(reason.contains("the model file is missing"), "{reason}");
        assert!(reason.contains("failing_initializer"), "{reason}");
        assert!(matches!(
            block_on(pool.call(add, (1, 1))),
            Err(JobError::Broken(_))
        ));
        pool.shutdown(); // returns: nothing to wait for
    });
}

#[test]
fn workers_die_with_their_parent_even_when_it_is_killed() {
    const PID_FILE: &str = "ONELOOP_TEST_WORKER_PID_FILE";
    if let Some(path) = std::env::var_os(PID_FILE) {
        // The parent to be killed: start a worker, keep it busy in a long call (so it
        // does not read its socket, whose end would also make it leave), say its pid,
        // and wait to die.
        let pool = ProcessPool::new(1).unwrap();
        let markers = Markers::new("pdeathsig");
        let _busy = pool.call(sleeps_once_started, (markers.dir(), 60_000));
        let pid = markers.started_pid();
        drop(markers); // this process is killed, not ended: clean up now
        std::fs::write(&path, pid.to_string()).unwrap();
        loop {
            std::thread::park();
        }
    }
    hang_guard(|| {
        let path = std::env::temp_dir().join(format!("oneloop-pdeathsig-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "workers_die_with_their_parent_even_when_it_is_killed",
                "--nocapture",
            ])
            .env(PID_FILE, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        util::wait_until(|| std::fs::read_to_string(&path).is_ok_and(|s| !s.is_empty()));
        let worker: u32 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert!(
            process_state(worker).is_some_and(|state| state != 'Z'),
            "the worker runs"
        );
        parent.kill().unwrap(); // SIGKILL: no destructor, no shutdown runs
        parent.wait().unwrap();
        // PR_SET_PDEATHSIG kills the orphan (its new parent reaps it, or leaves a zombie).
        util::wait_until(|| process_state(worker).is_none_or(|state| state == 'Z'));
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn debug_mode_reports_worker_deaths_and_long_calls_and_sums_them_up_at_exit() {
    use oneloop::debug::Code;
    hang_guard(|| {
        let reports = util::Reports::default();
        let rt = oneloop::Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(50))
            .slow_job_threshold(Duration::from_millis(50))
            .on_report(reports.sink())
            .build()
            .unwrap();
        let pool = ProcessPool::new(1).unwrap();
        rt.block_on(async {
            let crash = pool
                .call(segfaults, "debug mode sees this".to_owned())
                .await;
            assert!(matches!(crash, Err(JobError::WorkerDied(_))));
            let slow = pool.call_with_timeout(spins_forever, (), Duration::from_millis(300));
            assert_eq!(slow.await, Err(JobError::TimedOut));
        });
        let deaths = reports.with_code(Code::WorkerDied);
        assert_eq!(deaths.len(), 2, "the crash and the kill: {deaths:?}");
        let crash = deaths[0].to_string();
        assert!(
            crash.contains("SIGSEGV") && crash.contains("debug mode sees this"),
            "{crash}"
        );
        assert!(crash.contains("tests/process.rs"), "the call site: {crash}");
        assert!(
            crash.contains("by task #0 \"main\""),
            "the task that called: {crash}"
        );
        let kill = deaths[1].to_string();
        assert!(kill.contains("ran past its timeout"), "{kill}");
        let running = reports.with_code(Code::JobStillRunning);
        assert!(
            !running.is_empty(),
            "the spinning call was reported while it ran"
        );
        let running = running[0].to_string();
        assert!(
            running.contains("worker process") && running.contains("timeout"),
            "{running}"
        );
        drop(rt);
        let summary = reports.with_code(Code::Summary);
        let summary = summary.last().expect("the exit summary").to_string();
        assert!(
            summary.contains("(1 crashed its worker process)"),
            "{summary}"
        );
        assert!(
            summary.contains("(1 killed with its worker process)"),
            "{summary}"
        );
    });
}

#[test]
fn a_trace_gives_each_worker_process_a_track_with_arrows_from_submit_to_resume() {
    hang_guard(|| {
        let path = std::env::temp_dir().join(format!(
            "oneloop-test-process-trace-{}.json",
            std::process::id()
        ));
        let pool = ProcessPool::new(1).unwrap();
        let rt = oneloop::Runtime::builder()
            .trace_file(&path)
            .build()
            .unwrap();
        let pid = rt.block_on(async {
            let first = pool.call(worker_pid, ()).await.unwrap();
            assert_eq!(pool.call(add, (1, 2)).await, Ok(3));
            first
        });
        drop(rt);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let track = format!("worker process {pid}");
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "thread_name" && e["args"]["name"] == *track),
            "a track named {track}"
        );
        let jobs = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "job")
            .count();
        assert_eq!(jobs, 2, "both calls drawn on it");
        for phase in ["s", "f"] {
            let arrows = events
                .iter()
                .filter(|e| e["ph"] == phase && e["cat"] == "job")
                .count();
            assert_eq!(
                arrows, 2,
                "an arrow from each submit to its resume ({phase})"
            );
        }
    });
}

#[test]
fn a_crash_loop_with_no_call_answered_breaks_the_pool_with_the_reason() {
    hang_guard(|| {
        let pool = ProcessPool::builder()
            .workers(2)
            .quarantine_after(u32::MAX)
            .build()
            .unwrap();
        // Different arguments each time: no single call is quarantined, yet every call
        // kills its worker. After 32 in a row with none answered, the pool gives up.
        let calls: Vec<_> = (0..40).map(|code| pool.call(exits, 10 + code)).collect();
        let (mut died, mut broken) = (0, 0);
        for call in calls {
            match block_on(call) {
                Err(JobError::WorkerDied(_)) => died += 1,
                Err(JobError::Broken(_)) => broken += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            died >= 32 && died + broken == 40,
            "died {died}, broken {broken}"
        );
        let reason = pool.broken().expect("broken");
        assert!(
            reason.contains("crash loop") && reason.contains("exited with code"),
            "{reason}"
        );
        assert!(matches!(
            block_on(pool.call(add, (1, 1))),
            Err(JobError::Broken(_))
        ));
    });
}

#[test]
fn a_pool_dropped_while_its_owner_panics_kills_what_runs_instead_of_waiting_for_it() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let pid = block_on(pool.call(worker_pid, ())).unwrap();
        let markers = Markers::new("owner-panics");
        // No timeout: it would run for ever.
        let stuck = pool.call(spins_once_started, markers.dir());
        markers.wait_for("started");
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _pool = pool;
            panic!("the owner fails");
        }));
        assert!(unwound.is_err());
        assert!(matches!(block_on(stuck), Err(JobError::WorkerDied(_))));
        assert!(!children().contains(&pid));
    });
}

#[test]
fn a_shutdown_timeout_after_a_shutdown_now_still_kills_what_hangs() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        let markers = Markers::new("now-then-timeout");
        let hung = pool.call(spins_once_started, markers.dir());
        markers.wait_for("started");
        // shutdown_now lets running calls finish: alone, it would wait for ever. Which
        // order arrives first does not matter: the two must add up either way.
        let waiting = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.shutdown_now())
        };
        let killed = pool.shutdown_timeout(Duration::from_millis(100));
        assert_eq!(killed.len(), 1, "{killed:?}");
        waiting.join().unwrap();
        assert!(matches!(block_on(hung), Err(JobError::WorkerDied(_))));
    });
}

oneloop_process::process_fn! {
    fn never_starts() {
        loop {
            std::thread::park();
        }
    }
}

#[test]
fn an_initializer_that_hangs_breaks_the_pool_at_the_start_timeout_instead_of_hanging_calls() {
    hang_guard(|| {
        let pool = ProcessPool::builder()
            .workers(1)
            .initializer(never_starts)
            .start_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let error = block_on(pool.call(add, (1, 2))).unwrap_err();
        assert!(
            matches!(&error, JobError::Broken(why) if why.contains("start timeout")),
            "{error:?}"
        );
    });
}

oneloop_process::process_fn! {
    /// Writes to a pipe whose reader is gone; says what the write returned.
    fn writes_to_a_closed_pipe() -> String {
        let (reader, mut writer) = std::io::pipe().unwrap();
        drop(reader);
        use std::io::Write;
        match writer.write_all(b"nobody reads this") {
            Ok(()) => "written".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        }
    }
}

#[test]
fn a_write_to_a_closed_pipe_is_an_error_for_the_function_not_a_sigpipe_for_its_worker() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(
            block_on(pool.call(writes_to_a_closed_pipe, ())),
            Ok("BrokenPipe".to_owned())
        );
    });
}

oneloop_process::process_fn! {
    fn floods_stderr() {
        let line = "x".repeat(1000);
        loop {
            eprintln!("{line}");
        }
    }
}

#[test]
fn a_worker_flooding_its_stderr_does_not_keep_the_pool_from_its_other_work() {
    // In a child whose own stderr is never read: the lines passed on to it cannot be
    // written either, and must not hold anything up.
    if child_stderr(
        "a_worker_flooding_its_stderr_does_not_keep_the_pool_from_its_other_work",
        false,
    )
    .is_some()
    {
        return;
    }
    hang_guard(|| {
        let pool = ProcessPool::new(2).unwrap();
        let flood = pool.call_with_timeout(floods_stderr, (), Duration::from_millis(500));
        // The other worker's calls, and the flood's own timeout, go on meanwhile.
        for i in 0..20 {
            assert_eq!(block_on(pool.call(add, (i, 1))), Ok(i + 1));
        }
        assert_eq!(block_on(flood), Err(JobError::TimedOut));
    });
}

oneloop_process::process_fn! {
    fn says(line: String) {
        eprintln!("{line}");
        eprint!("{line} (unended)");
    }
}

#[test]
fn what_a_worker_writes_to_stderr_reaches_this_process_stderr_unless_told_not_to() {
    let Some(stderr) = child_stderr(
        "what_a_worker_writes_to_stderr_reaches_this_process_stderr_unless_told_not_to",
        true,
    ) else {
        hang_guard(|| {
            let pool = ProcessPool::new(1).unwrap();
            block_on(pool.call(says, "passed on".to_owned())).unwrap();
            let quiet = ProcessPool::builder()
                .workers(1)
                .forward_stderr(false)
                .build()
                .unwrap();
            block_on(quiet.call(says, "kept back".to_owned())).unwrap();
            // The unended line goes when its worker leaves.
            pool.shutdown();
            quiet.shutdown();
        });
        return;
    };
    assert!(stderr.contains("passed on\n"), "{stderr}");
    assert!(stderr.contains("passed on (unended)\n"), "{stderr}");
    assert!(!stderr.contains("kept back"), "{stderr}");
}

oneloop_process::process_fn! {
    /// `len` bytes of `seed`, as bytes (one copy each way, see the W9 benchmark).
    fn filled(len: usize, seed: u8) -> serde_bytes::ByteBuf {
        serde_bytes::ByteBuf::from(vec![seed; len])
    }
}

#[test]
fn a_large_result_not_yet_taken_is_never_overwritten_by_the_next_one() {
    hang_guard(|| {
        let pool = ProcessPool::new(1).unwrap();
        for round in 0..5u8 {
            // One worker: `first` has answered before `second` runs; its result waits,
            // lent, in the worker's region while `second` writes its own.
            let len = (1 << 20) + round as usize * 100_000;
            let first = pool.call(filled, (len, round));
            let second = pool.call(filled, (len + 1, round.wrapping_add(100)));
            let second = block_on(second).unwrap();
            let first = block_on(first).unwrap();
            assert!(
                first.len() == len && first.iter().all(|&b| b == round),
                "round {round}"
            );
            assert!(
                second.len() == len + 1 && second.iter().all(|&b| b == round.wrapping_add(100)),
                "round {round}"
            );
        }
    });
}

#[test]
fn large_calls_of_growing_and_shrinking_sizes_reuse_their_regions_and_leak_no_descriptor() {
    // Alone in a child process: the other tests' descriptors would be counted too.
    if util::processes::ran_alone_in_child(
        "large_calls_of_growing_and_shrinking_sizes_reuse_their_regions_and_leak_no_descriptor",
    ) {
        return;
    }
    hang_guard(|| {
        let pool = ProcessPool::new(2).unwrap();
        let sizes = [
            100_000,
            1 << 20,
            70_000,
            2 << 20,
            512 << 10,
            65_000,
            1536 << 10,
        ];
        let mut baseline = None;
        for round in 0..4 {
            let calls: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let bytes: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
                    (bytes.clone(), pool.call(reversed, bytes))
                })
                .collect();
            for (mut bytes, call) in calls {
                bytes.reverse();
                assert!(block_on(call).unwrap() == bytes, "round {round}");
            }
            // After a first round has made the regions, the same work needs no new ones.
            let now = open_descriptors();
            assert_eq!(*baseline.get_or_insert(now), now, "round {round}");
        }
    });
}
