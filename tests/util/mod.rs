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
