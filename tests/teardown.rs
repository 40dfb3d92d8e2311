//! Runtimes, pools and their handles may be dropped anywhere: in a thread-local of a thread
//! that exits (a spawned thread, a pool's worker, or `main`, whose locals are destroyed
//! inside `exit`). The bug that made this a promise (a runtime's drop in a thread-local
//! aborted the process) has its tests in `regressions.rs`.
//!
//! And a runtime that is never dropped (a task holding an `Rc` of its own runtime) is
//! reported at exit in debug mode (`OL009`), once, and only then.
//!
//! Each case runs in a child process (`bin/teardown_child.rs`, which has a `main` of its
//! own), so an abort is a failed assertion here, not a dead test binary.

mod util;

use util::child::Child;

#[test]
fn pools_and_job_handles_in_thread_locals_are_dropped_anywhere() {
    for place in ["main", "thread", "worker"] {
        for items in [&["pool"][..], &["job"], &["pool", "job"], &["job", "pool"]] {
            let mut args = vec!["tls", place];
            args.extend(items);
            Child::run(&args).assert_clean_exit();
        }
    }
}

#[test]
fn handles_and_remote_join_handles_in_thread_locals_are_dropped_anywhere() {
    for place in ["main", "thread", "worker"] {
        // Of a runtime on another thread.
        for items in [&["handle"][..], &["remote"], &["handle", "remote"]] {
            let mut args = vec!["tls", place];
            args.extend(items);
            Child::run(&args).assert_clean_exit();
        }
        // Of the runtime in the same thread's locals, created before or after it (locals
        // are destroyed in the reverse order of their creation).
        for items in [
            &["runtime", "handle", "remote"][..],
            &["handle", "remote", "runtime"],
        ] {
            let mut args = vec!["tls", place];
            args.extend(items);
            let child = Child::run(&args);
            child.assert_clean_exit();
            child.assert_dropped("remote task");
        }
    }
}

#[test]
fn everything_in_thread_locals_at_once_is_dropped_in_either_order() {
    let all = ["runtime", "pool", "handle", "job", "remote"];
    for place in ["main", "thread", "worker"] {
        for debug in [false, true] {
            for reversed in [false, true] {
                let mut items = all.to_vec();
                if reversed {
                    items.reverse(); // the runtime is destroyed first
                }
                let mut args = vec!["tls", place, "tasks", "to_thread"];
                args.extend(debug.then_some("debug"));
                args.extend(items);
                let child = Child::run(&args);
                child.assert_clean_exit();
                child.assert_dropped("pending task");
                child.assert_dropped("remote task");
            }
        }
    }
}

#[test]
fn block_on_from_a_thread_local_destructor_says_why_it_cannot_run() {
    // A panic in a thread-local's destructor aborts the process, whatever it says: what
    // matters is that it says what happened and what to do.
    let child = Child::run(&["block-on-in-destructor"]);
    assert!(!child.success, "{}", child.stderr);
    assert!(
        child
            .stderr
            .contains("block_on was called from a thread-local's destructor"),
        "{}",
        child.stderr
    );
    assert!(
        child.stderr.contains("before the thread ends"),
        "{}",
        child.stderr
    );
}
#[test]
fn a_runtime_held_by_its_own_task_is_reported_once_at_exit() {
    let child = Child::run(&["leak", "rc-cycle"]);
    assert!(child.success, "{}", child.stderr);
    assert_eq!(child.count("OL009"), 1, "{}", child.stderr);
    let report = child
        .stderr
        .lines()
        .find(|line| line.contains("OL009"))
        .unwrap();
    // It says what leaked, the likely cause, and what to do instead.
    assert!(report.contains("never dropped"), "{report}");
    assert!(report.contains("1 task"), "{report}");
    assert!(report.contains("watchdog"), "{report}");
    assert!(report.contains("Rc"), "{report}");
    assert!(report.contains("Handle"), "{report}");
    assert!(report.contains("mem::forget"), "{report}");
}

#[test]
fn a_forgotten_runtime_is_reported_at_exit() {
    let child = Child::run(&["leak", "forget"]);
    assert!(child.success, "{}", child.stderr);
    assert_eq!(child.count("OL009"), 1, "{}", child.stderr);
}

#[test]
fn a_dropped_runtime_is_not_reported_at_exit() {
    let child = Child::run(&["leak", "dropped"]);
    child.assert_clean_exit();
    assert_eq!(child.count("OL008"), 1, "{}", child.stderr);
}

#[test]
fn a_runtime_still_running_when_the_process_exits_is_not_reported() {
    let child = Child::run(&["leak", "exit-inside-block-on"]);
    child.assert_clean_exit();
}

#[test]
fn without_debug_mode_a_leak_is_not_reported() {
    let child = Child::run(&["leak", "quiet-rc-cycle"]);
    child.assert_clean_exit();
}
