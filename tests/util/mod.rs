//! Helpers shared by the integration tests: a hang guard, drop counters, captured reports,
//! adversarial wakers and payloads, extreme-value helpers, the teardown child (`child.rs`),
//! and a real `redis-server` per test (`redis.rs`).
#![allow(dead_code)] // each test file uses a different subset

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::{Code, Report};
use oneloop::time::MissedTickBehavior;

pub mod child;
pub mod processes;
pub mod redis;

/// How long a test may run before it is declared hung. Generous: this only turns a hang
/// into a failure; it is not a performance limit.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

/// [`HANG_LIMIT`], or `ONELOOP_TEST_HANG_SECS` seconds when that is set (to see quickly
/// that a regression test hangs on the code before its fix).
pub fn hang_limit() -> Duration {
    std::env::var("ONELOOP_TEST_HANG_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(HANG_LIMIT, Duration::from_secs)
}

/// Runs `body` on its own thread and fails the test if it does not finish within
/// [`hang_limit`], so a lost wake-up is a red test rather than a stuck CI job. Panics in
/// `body` are re-raised here.
pub fn hang_guard<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let limit = hang_limit();
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(body)));
        })
        .expect("spawn test thread");
    match finished.recv_timeout(limit) {
        Ok(Ok(value)) => {
            worker.join().expect("test thread");
            value
        }
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("test hung: no result after {limit:?}"),
    }
}

/// What a [`hook_waker`] does besides waking: each hook runs inside the waker's own
/// `wake`, `clone` or `drop`, so a test can make a waker panic there or call back into
/// the structure that holds it.
#[derive(Default)]
pub struct Hooks {
    pub wake: Option<Box<dyn Fn() + Send + Sync>>,
    pub clone: Option<Box<dyn Fn() + Send + Sync>>,
    pub drop: Option<Box<dyn Fn() + Send + Sync>>,
    /// Woken (by reference) after the `wake` hook, so the waiting task still runs.
    pub inner: Option<std::task::Waker>,
}

/// A waker whose `wake`, `clone` and `drop` run user-chosen code (see [`Hooks`]): the
/// adversarial waker of the waker-safety tests.
pub fn hook_waker(hooks: Hooks) -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};

    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

    fn raw(hooks: Arc<Hooks>) -> RawWaker {
        RawWaker::new(Arc::into_raw(hooks).cast(), &VTABLE)
    }
    /// Borrows the `Hooks` behind `data` without taking over its count.
    ///
    /// # Safety
    ///
    /// `data` came from `Arc::into_raw` in `raw` and its count is still held.
    unsafe fn hooks_of<'a>(data: *const ()) -> &'a Hooks {
        // SAFETY: per this function's contract the pointer is a live `Arc<Hooks>`'s.
        unsafe { &*data.cast::<Hooks>() }
    }
    unsafe fn clone(data: *const ()) -> RawWaker {
        // SAFETY: the vtable is only ever used with pointers made by `raw`, whose count is
        // held by the waker being cloned.
        let hooks = unsafe { hooks_of(data) };
        if let Some(hook) = &hooks.clone {
            hook();
        }
        // SAFETY: as above; the clone gets a count of its own.
        unsafe { Arc::increment_strong_count(data.cast::<Hooks>()) };
        RawWaker::new(data, &VTABLE)
    }
    unsafe fn wake(data: *const ()) {
        // SAFETY: as in `clone`; wake consumes the waker, so it also drops it.
        unsafe {
            wake_by_ref(data);
            drop_waker(data);
        }
    }
    unsafe fn wake_by_ref(data: *const ()) {
        // SAFETY: as in `clone`.
        let hooks = unsafe { hooks_of(data) };
        if let Some(hook) = &hooks.wake {
            hook();
        }
        if let Some(inner) = &hooks.inner {
            inner.wake_by_ref();
        }
    }
    unsafe fn drop_waker(data: *const ()) {
        // SAFETY: this waker's count is given back here, exactly once (the `Arc` is
        // dropped even if the hook panics).
        let hooks = unsafe { Arc::from_raw(data.cast::<Hooks>()) };
        if let Some(hook) = &hooks.drop {
            hook();
        }
    }
    // SAFETY: the vtable's functions keep `Arc`'s counting contract (see each one).
    unsafe { Waker::from_raw(raw(Arc::new(hooks))) }
}

/// A waker that panics when woken (and wakes nothing), counting its wakes.
pub fn panicking_waker(wakes: Arc<AtomicUsize>) -> std::task::Waker {
    hook_waker(Hooks {
        wake: Some(Box::new(move || {
            wakes.fetch_add(1, Ordering::SeqCst);
            panic!("a waker that panics when woken");
        })),
        ..Hooks::default()
    })
}

/// A waker that counts its wakes.
pub fn counting_waker(wakes: Arc<AtomicUsize>) -> std::task::Waker {
    hook_waker(Hooks {
        wake: Some(Box::new(move || {
            wakes.fetch_add(1, Ordering::SeqCst);
        })),
        ..Hooks::default()
    })
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

/// A panic payload whose destructor panics.
pub struct PoisonedPayload;

impl Drop for PoisonedPayload {
    fn drop(&mut self) {
        panic!("the panic payload's destructor panicked too");
    }
}

/// How long a test waits for something that may be due at once or in a century: long
/// enough for the loop to turn, and no assertion depends on it.
pub const GLIMPSE: Duration = Duration::from_millis(2);

/// Every missed-tick policy.
pub const MISSED_TICK_BEHAVIORS: [MissedTickBehavior; 3] = [
    MissedTickBehavior::Burst,
    MissedTickBehavior::Delay,
    MissedTickBehavior::Skip,
];

/// The error `build` gave, or the panic it raised instead.
pub fn build_pool(builder: oneloop_pool::Builder) -> Result<std::io::Error, String> {
    match catch_unwind(AssertUnwindSafe(|| builder.build())) {
        Ok(Ok(_pool)) => Err("it built".to_owned()),
        Ok(Err(error)) => Ok(error),
        Err(panic) => Err(format!("it panicked: {}", panic_text(&*panic))),
    }
}

/// A small workload that touches every debug-mode path: polls, a timer, an offloaded job.
pub fn debug_workload(rt: &Runtime) {
    rt.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                oneloop::spawn(async move {
                    oneloop::task::yield_now().await;
                    i
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        oneloop::time::sleep(Duration::ZERO).await;
        assert_eq!(oneloop::to_thread(|| 1).await, Ok(1));
    });
}

/// Spawns "a" and "b", each awaiting the other's handle: neither can ever finish.
pub fn spawn_join_cycle() {
    let (to_a, a_gets) = oneloop::sync::oneshot::channel::<oneloop::JoinHandle<()>>();
    let (to_b, b_gets) = oneloop::sync::oneshot::channel::<oneloop::JoinHandle<()>>();
    let a = oneloop::task::Builder::new().name("a").spawn(async move {
        let b = a_gets.await.unwrap();
        b.await.unwrap();
    });
    let b = oneloop::task::Builder::new().name("b").spawn(async move {
        let a = b_gets.await.unwrap();
        a.await.unwrap();
    });
    let _ = to_a.send(b);
    let _ = to_b.send(a);
}
