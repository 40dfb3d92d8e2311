//! Helpers shared by the integration tests: a hang guard, drop counters, captured reports.
#![allow(dead_code)] // each test file uses a different subset

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::{Code, Report};

/// How long a test may run before it is declared hung. Generous: this only turns a hang
/// into a failure; it is not a performance limit.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

/// Runs `body` on its own thread and fails the test if it does not finish within
/// [`HANG_LIMIT`], so a lost wake-up is a red test rather than a stuck CI job. Panics in
/// `body` are re-raised here.
pub fn hang_guard<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(body)));
        })
        .expect("spawn test thread");
    match finished.recv_timeout(HANG_LIMIT) {
        Ok(Ok(value)) => {
            worker.join().expect("test thread");
            value
        }
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("test hung: no result after {HANG_LIMIT:?}"),
    }
}

/// Counts how many times the values it hands out are dropped.
#[derive(Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

/// Increments its counter when dropped.
pub struct Tracked(Arc<AtomicUsize>);

impl DropCounter {
    pub fn new() -> Self {
        DropCounter::default()
    }

    pub fn track(&self) -> Tracked {
        Tracked(self.0.clone())
    }

    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reports captured from a runtime's sink.
#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<Report>>>);

impl Reports {
    pub fn all(&self) -> Vec<Report> {
        self.0.lock().unwrap().clone()
    }

    pub fn with_code(&self, code: Code) -> Vec<Report> {
        self.all().into_iter().filter(|r| r.code == code).collect()
    }

    pub fn sink(&self) -> impl Fn(&Report) + Send + Sync + 'static {
        let log = self.0.clone();
        move |report: &Report| log.lock().unwrap().push(report.clone())
    }
}

/// A runtime in debug mode with threshold `threshold_ms`, reporting into a capture.
pub fn debug_runtime(threshold_ms: u64) -> (Runtime, Reports) {
    let reports = Reports::default();
    let rt = Runtime::builder()
        .debug(true)
        .slow_task_threshold(Duration::from_millis(threshold_ms))
        .on_report(reports.sink())
        .build()
        .expect("runtime");
    (rt, reports)
}

/// A runtime (debug off) whose reports are captured.
pub fn quiet_runtime() -> (Runtime, Reports) {
    let reports = Reports::default();
    let rt = Runtime::builder()
        .debug(false)
        .on_report(reports.sink())
        .build()
        .expect("runtime");
    (rt, reports)
}

/// The message of a caught panic.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `f`, expecting a panic, and returns its message.
pub fn expect_panic(f: impl FnOnce()) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("expected a panic"),
        Err(payload) => panic_text(&*payload),
    }
}

pub fn assert_send<T: Send>() {}
pub fn assert_sync<T: Sync>() {}

/// How many threads of this process have a name starting with `prefix` (Linux: read from
/// `/proc/self/task/*/comm`; elsewhere always 0, so the assertions hold trivially).
pub fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// A unique thread-name prefix (thread names are capped at 15 bytes on Linux).
pub fn unique_prefix(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{tag}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A latch a test opens once: jobs wait on it to hold a worker busy.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}

/// Waits (polling, a millisecond at a time) until `condition` holds; the hang guard bounds
/// it. For states another thread reaches, where there is nothing to block on.
pub fn wait_until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        thread::sleep(Duration::from_millis(1));
    }
}

/// A small deterministic generator, so "random" choices are the same on every run.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Runs this test binary again, as a child process, for the one test `name` with the
/// extra environment `env`, and says whether it passed. For what must be set before the
/// process starts (environment variables read at runtime creation). The child sees
/// `ONELOOP_TEST_CHILD=1`.
pub fn run_test_in_child(name: &str, env: &[(&str, &str)]) -> bool {
    // A child that starts a child would start another, and so on: refuse.
    assert!(
        !in_child(),
        "run_test_in_child called inside the child: check in_child() first"
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", name, "--quiet"])
        .env("ONELOOP_TEST_CHILD", "1");
    for (key, value) in env {
        child.env(key, value);
    }
    child.status().unwrap().success()
}

/// True in the child process started by [`run_test_in_child`].
pub fn in_child() -> bool {
    std::env::var_os("ONELOOP_TEST_CHILD").is_some()
}
