//! Debug mode's reports are complete: jobs still waiting for a worker, jobs spawned on a
//! pool directly, results whose `Drop` panics, a default pool that cannot start, a trace
//! file of a program that never drops its runtime, and an exit summary that says what it
//! knows (and nothing when it knows nothing).

mod util;

use std::sync::mpsc;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::Code;
use oneloop_pool::{JobError, ThreadPool};
use util::{Gate, Reports, debug_runtime, hang_guard, in_child, run_test_in_child, wait_until};

/// A value whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("result destructor failed");
    }
}

#[test]
fn a_job_still_waiting_for_a_worker_is_reported_while_it_waits() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = gate.clone();
        let blocker = rt.run_in_executor(&pool, move || held.wait());
        let waiting = rt.run_in_executor(&pool, || ());
        let waiting_id = format!("job #{} ", waiting_id(&waiting));
        // The job never starts until the gate opens: only the watchdog can report it.
        wait_until(|| !reports.with_code(Code::JobWaited).is_empty());
        let report = reports.with_code(Code::JobWaited).remove(0);
        let job = report.job.as_ref().expect("a job report");
        assert!(job.started.is_none(), "reported while it waits: {report}");
        let text = report.to_string();
        assert!(text.contains(&waiting_id), "{text}");
        assert!(text.contains("has been waiting"), "{text}");
        assert!(text.contains("give it more workers"), "{text}");
        gate.open();
        rt.block_on(async move {
            blocker.await.unwrap();
            waiting.await.unwrap();
        });
        // Its start does not report the same wait again.
        let about_it = reports
            .with_code(Code::JobWaited)
            .iter()
            .filter(|report| report.job.as_ref().unwrap().started.is_some())
            .count();
        assert_eq!(about_it, 0, "{:?}", reports.all());
    });
}

fn waiting_id<T>(offload: &oneloop::Offload<T>) -> String {
    // `Offload`'s Debug names its job: "Offload { handle: JobHandle(job #7 submitted ...".
    let text = format!("{offload:?}");
    let start = text.find("job #").expect("a job id") + "job #".len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn a_job_cancelled_after_a_long_wait_is_reported() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = gate.clone();
        let blocker = rt.run_in_executor(&pool, move || held.wait());
        let waiting = rt.run_in_executor(&pool, || ());
        let id = waiting_id(&waiting);
        // Past the threshold, then cancelled: it never starts. Reported by the watchdog
        // while it waited, or at the cancellation, never not at all.
        std::thread::sleep(Duration::from_millis(30));
        drop(waiting);
        gate.open();
        rt.block_on(blocker).unwrap();
        let about_it: Vec<_> = reports
            .with_code(Code::JobWaited)
            .into_iter()
            .filter(|report| report.job.as_ref().unwrap().id.to_string() == id)
            .collect();
        assert!(!about_it.is_empty(), "{:?}", reports.all());
    });
}

#[test]
fn jobs_spawned_directly_on_a_pool_the_runtime_uses_are_watched() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        rt.block_on(async { oneloop::run_in_executor(&pool, || ()).await })
            .unwrap();
        pool.spawn(|| -> u32 { panic!("spawned directly") })
            .detach();
        // One worker, first in first out: once this one ran, the panic was handled.
        pool.spawn(|| ()).join().unwrap();
        let panics = reports.with_code(Code::JobPanicNotRetrieved);
        assert_eq!(panics.len(), 1, "{:?}", reports.all());
        assert!(
            panics[0].to_string().contains("spawned directly"),
            "{}",
            panics[0]
        );
        drop(rt);
        // A dropped runtime no longer watches the pool.
        pool.spawn(|| -> u32 { panic!("after the runtime") })
            .detach();
        pool.spawn(|| ()).join().unwrap();
        assert_eq!(reports.with_code(Code::JobPanicNotRetrieved).len(), 1);
    });
}

#[test]
fn a_discarded_result_whose_drop_panics_is_reported() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = gate.clone();
        let (started, running) = mpsc::channel();
        rt.block_on(async {
            let job = oneloop::run_in_executor(&pool, move || {
                started.send(()).unwrap();
                held.wait();
                PanicsOnDrop
            });
            running.recv().unwrap();
            // Dropped while it runs: its result is discarded on the worker.
            drop(job);
        });
        gate.open();
        pool.spawn(|| ()).join().unwrap();
        let panics = reports.with_code(Code::JobPanicNotRetrieved);
        assert_eq!(panics.len(), 1, "{:?}", reports.all());
        let text = panics[0].to_string();
        assert!(text.contains("result destructor failed"), "{text}");
        assert!(text.contains("Drop"), "{text}");
    });
}

/// Caps this process's address space a little above what it uses now, so a pool of
/// thousands of threads (2 MiB of stack each) cannot start.
fn cap_address_space() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    let limit = (kib * 1024 + (512 << 20)) as libc::rlim_t;
    let cap = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is shared.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
}

#[test]
fn a_default_pool_that_cannot_start_has_its_own_report_and_is_not_rebuilt_per_call() {
    if in_child() {
        hang_guard(|| {
            let reports = Reports::default();
            // (No backtraces: loading the binary's debug info for them, on a thread of its
            // own, could land after the cap below and run out of address space itself.)
            let rt = Runtime::builder()
                .debug(true)
                .debug_backtraces(false)
                .default_pool_workers(ThreadPool::MAX_WORKERS)
                .on_report(reports.sink())
                .build()
                .unwrap();
            cap_address_space();
            let began = std::time::Instant::now();
            let results = rt.block_on(async {
                let mut results = Vec::new();
                for _ in 0..5 {
                    results.push(oneloop::to_thread(|| ()).await);
                }
                results
            });
            // Attempts are at least a second apart (a loaded machine may take over a second
            // to start and join the threads of one failed attempt): never one per call.
            let attempts_allowed = 1 + began.elapsed().as_secs() as usize;
            assert!(
                results.iter().all(|r| matches!(
                    r,
                    Err(JobError::Broken(why)) if why.contains("could not start its threads")
                )),
                "{results:?}"
            );
            let codes: Vec<&str> = reports.all().iter().map(|r| r.code.as_str()).collect();
            // One report per attempt, and the calls after a failure do not rebuild the pool.
            let attempts = codes.iter().filter(|&&code| code == "OL012").count();
            assert!(
                attempts >= 1 && attempts <= attempts_allowed.min(4),
                "{attempts} attempts for 5 calls: {codes:?}"
            );
            assert!(!codes.contains(&"OL007"), "{codes:?}");
            let report = reports
                .all()
                .into_iter()
                .find(|r| r.code.as_str() == "OL012")
                .unwrap();
            let text = report.to_string();
            assert!(text.contains("could not start"), "{text}");
            assert!(text.contains("default_pool_workers"), "{text}");
        });
        return;
    }
    // One malloc arena: each thread that starts before the cap bites would otherwise get
    // an arena of its own, each reserving 64 MiB of the capped address space, and a
    // failed allocation aborts the child (how many do depends on scheduling).
    assert!(run_test_in_child(
        "a_default_pool_that_cannot_start_has_its_own_report_and_is_not_rebuilt_per_call",
        &[("MALLOC_ARENA_MAX", "1")]
    ));
}

#[test]
fn a_trace_file_holds_the_reports_of_a_program_that_exits_without_dropping_its_runtime() {
    let path = std::env::temp_dir().join(format!("oneloop-exit-trace-{}.json", std::process::id()));
    if in_child() {
        let path = std::env::var("EXIT_TRACE_PATH").unwrap();
        let rt = Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(20))
            .on_report(|_: &oneloop::debug::Report| {})
            .trace_file(path)
            .build()
            .unwrap();
        rt.block_on(async { std::thread::sleep(Duration::from_millis(60)) });
        // No drop, no flush at the end: what the file holds was flushed on the way.
        std::process::exit(0);
    }
    let _ = std::fs::remove_file(&path);
    assert!(run_test_in_child(
        "a_trace_file_holds_the_reports_of_a_program_that_exits_without_dropping_its_runtime",
        &[("EXIT_TRACE_PATH", path.to_str().unwrap())]
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(text.contains("OL001"), "{text}");
}

#[test]
fn the_exit_summary_says_a_job_is_still_running() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = gate.clone();
        let (started, running) = mpsc::channel();
        rt.block_on(async {
            let job = oneloop::run_in_executor(&pool, move || {
                started.send(()).unwrap();
                held.wait();
            });
            running.recv().unwrap();
            drop(job);
        });
        drop(rt);
        gate.open();
        let summary = reports.with_code(Code::Summary);
        assert_eq!(summary.len(), 1, "{:?}", reports.all());
        let text = summary[0].to_string();
        assert!(text.contains("still running ("), "{text}");
        assert!(!text.contains("ran "), "{text}");
    });
}

#[test]
fn a_runtime_that_did_nothing_prints_no_exit_summary() {
    let (rt, reports) = debug_runtime(20);
    drop(rt);
    assert!(reports.all().is_empty(), "{:?}", reports.all());
}

#[test]
fn sigterm_flushes_the_trace_and_still_ends_the_program() {
    use std::os::unix::process::ExitStatusExt;

    let path =
        std::env::temp_dir().join(format!("oneloop-sigterm-trace-{}.json", std::process::id()));
    if in_child() {
        let path = std::env::var("SIGTERM_TRACE_PATH").unwrap();
        let rt = Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(20))
            .on_report(|_: &oneloop::debug::Report| {})
            .trace_file(path)
            .build()
            .unwrap();
        rt.block_on(async {
            oneloop::task::Builder::new()
                .name("before the signal")
                .spawn(async {})
                .await
                .unwrap();
        });
        // SAFETY: raise takes no pointers.
        unsafe { libc::raise(libc::SIGTERM) };
        // The signal ends the process; should it not, this exits with a failure.
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::process::exit(3);
    }
    let _ = std::fs::remove_file(&path);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_flushes_the_trace_and_still_ends_the_program",
            "--quiet",
        ])
        .env("ONELOOP_TEST_CHILD", "1")
        .env("SIGTERM_TRACE_PATH", &path)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    // The program's own ending (the default action), not taken from it.
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(text.contains("before the signal"), "{text}");
}

#[test]
fn a_trace_leaves_the_program_s_own_sigint_handler_in_charge() {
    use std::sync::atomic::{AtomicBool, Ordering};

    static CAUGHT: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_sigint(_: libc::c_int) {
        CAUGHT.store(true, Ordering::SeqCst);
    }
    if in_child() {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_sigint as extern "C" fn(libc::c_int) as usize,
            )
        };
        let path = std::env::temp_dir().join(format!("oneloop-sigint-{}.json", std::process::id()));
        let rt = Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(20))
            .trace_file(&path)
            .build()
            .unwrap();
        rt.block_on(async {});
        // SAFETY: raise takes no pointers.
        unsafe { libc::raise(libc::SIGINT) };
        assert!(CAUGHT.load(Ordering::SeqCst), "the program's handler ran");
        drop(rt);
        let _ = std::fs::remove_file(&path);
        return;
    }
    assert!(run_test_in_child(
        "a_trace_leaves_the_program_s_own_sigint_handler_in_charge",
        &[]
    ));
}
