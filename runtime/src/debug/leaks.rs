//! Runtimes that are never dropped, reported when the process exits (`OL009`).
//!
//! A task that holds an `Rc` of its own runtime makes a cycle: the runtime owns the task,
//! the task owns the runtime, and neither is ever freed. Its tasks, its debug watchdog
//! thread and its default pool's threads live on until the process exits, and nothing
//! says so. In debug mode, every runtime enters a process-wide registry when it starts
//! (`register`, from `instruments.rs`) and leaves it when it is dropped (the registration's
//! `Drop`). An `atexit` handler, installed by the first registration, reports each runtime
//! still registered when the process exits, unless it is running (inside `block_on`: the
//! process exited under it, which is no leak). A runtime kept in the main thread's
//! thread-locals is not reported: C's `exit` destroys that thread's locals, dropping it,
//! before it calls the `atexit` handlers.
//!
//! What the report says is read on the exiting thread, so it is kept in atomics the loop
//! updates: the number of task slots (`TaskTable`, `task/table.rs`) and whether the loop
//! is inside `block_on` (`context.rs`).

use std::sync::Arc;
#[cfg(unix)]
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{Code, Report, Reporter};

/// Every debug-mode runtime not dropped yet. Pushed by `register`, removed by
/// `Registration::drop`, read by `report_at_exit`.
static LIVE: Mutex<Vec<Arc<Live>>> = Mutex::new(Vec::new());

/// What the exit report needs to know about one runtime.
pub(crate) struct Live {
    id: u64,
    /// The loop thread's name (a runtime never leaves the thread that made it).
    thread: String,
    /// Task slots in use; stored by the task table on every change.
    pub(crate) tasks: Arc<AtomicUsize>,
    /// True while the loop is inside `block_on` (set and cleared by `context::enter`'s
    /// guard).
    running: AtomicBool,
    reporter: Arc<Reporter>,
}

/// A runtime's place in the registry; dropping it (the runtime dropped) removes it.
pub(crate) struct Registration {
    live: Arc<Live>,
}

/// Registers the debug-mode runtime `id`, made on this thread, whose reports go to
/// `reporter`.
pub(crate) fn register(id: u64, reporter: Arc<Reporter>) -> Registration {
    install_exit_report();
    let live = Arc::new(Live {
        id,
        thread: thread_label(),
        tasks: Arc::default(),
        running: AtomicBool::new(false),
        reporter,
    });
    LIVE.lock().push(live.clone());
    Registration { live }
}

impl Registration {
    /// The counter the task table keeps up to date.
    pub(crate) fn task_count(&self) -> Arc<AtomicUsize> {
        self.live.tasks.clone()
    }

    /// Marks the runtime as running until the returned guard drops.
    pub(crate) fn running(&self) -> Running {
        self.live.running.store(true, Ordering::Release);
        Running {
            live: self.live.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        LIVE.lock().retain(|live| !Arc::ptr_eq(live, &self.live));
    }
}

/// The loop is inside `block_on` while this lives.
pub(crate) struct Running {
    live: Arc<Live>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.live.running.store(false, Ordering::Release);
    }
}

impl Live {
    fn report(&self) -> Report {
        let tasks = self.tasks.load(Ordering::Acquire);
        let mut report = Report::empty(Code::RuntimeLeaked);
        report.message = Some(format!(
            "runtime #{} (loop thread {}) with {tasks} task{}",
            self.id,
            self.thread,
            if tasks == 1 { "" } else { "s" }
        ));
        report
    }
}

/// Installs `report_at_exit` with the C library, once per process.
#[cfg(unix)]
fn install_exit_report() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // `atexit` stores a function pointer to call from `exit`. If registration fails
        // (the C library's table is full), there is just no report.
        // SAFETY: the function is a plain `extern "C" fn()` with no captured state that
        // never unwinds (it catches every panic): sound to call from `exit`, on any thread.
        unsafe {
            libc::atexit(report_at_exit);
        }
    });
}

/// Elsewhere there is no `atexit` to hook: leaks go unreported.
#[cfg(not(unix))]
fn install_exit_report() {}

#[cfg(unix)]
/// How long the exit report waits for the registry's lock, held only for a push or a
/// removal: if another thread is stuck holding it, exiting matters more than the report.
const LOCK_WAIT: Duration = Duration::from_millis(100);

/// Reports every registered runtime that is not running. Called by `exit`, after the
/// exiting thread's locals were destroyed; other threads still run.
#[cfg(unix)]
extern "C" fn report_at_exit() {
    // A panic must not unwind out of an `extern "C"` function (it would abort the exit).
    let _ = std::panic::catch_unwind(|| {
        let Some(live) = LIVE.try_lock_for(LOCK_WAIT).map(|live| live.clone()) else {
            return;
        };
        for runtime in live {
            if !runtime.running.load(Ordering::Acquire) {
                runtime.reporter.emit(&runtime.report());
            }
        }
    });
}

/// How messages name the current thread: its name, or its id when it has none.
pub(crate) fn thread_label() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) => format!("'{name}'"),
        None => format!("{:?}", thread.id()),
    }
}
