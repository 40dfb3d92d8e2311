//! Trace export and the exit summary: a timeline file that opens in Perfetto, and debug
//! mode's profile when the runtime drops.

mod util;

use std::path::PathBuf;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::Code;
use oneloop::pool::ThreadPool;
use serde_json::Value;
use util::{Reports, hang_guard, in_child, run_test_in_child};

fn trace_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("oneloop-test-{name}-{}.json", std::process::id()))
}

fn read_events(path: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("trace written");
    serde_json::from_str(&text).expect("the trace is valid JSON")
}

fn count(events: &[Value], ph: &str, cat: &str) -> usize {
    events
        .iter()
        .filter(|e| e["ph"] == ph && e["cat"] == cat)
        .count()
}

#[test]
fn a_trace_holds_polls_jobs_reports_and_the_arrows_between_them() {
    hang_guard(|| {
        let path = trace_path("full");
        let reports = Reports::default();
        let pool = ThreadPool::builder()
            .workers(1)
            .thread_name("tracer-w")
            .build()
            .unwrap();
        let rt = Runtime::builder()
            .trace_file(&path)
            .debug(true)
            .slow_task_threshold(Duration::from_millis(20))
            .on_report(reports.sink())
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = pool.clone();
            let task = oneloop::task::Builder::new()
                .name("worker \"quoted\"")
                .spawn(async move {
                    std::thread::sleep(Duration::from_millis(30)); // a slow poll: a report
                    oneloop::run_in_executor(&pool, || 1).await.unwrap()
                        + oneloop::run_in_executor(&pool, || 2).await.unwrap()
                });
            assert_eq!(task.await.unwrap(), 3);
        });
        drop(rt);
        let events = read_events(&path);
        let threads: Vec<&str> = events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .filter_map(|e| e["args"]["name"].as_str())
            .collect();
        assert!(threads.contains(&"loop"));
        assert!(
            threads.iter().any(|t| t.starts_with("tracer-w")),
            "{threads:?}"
        );
        assert!(count(&events, "X", "poll") >= 3);
        assert!(
            events.iter().any(|e| e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("worker \"quoted\" #"))),
            "task names are escaped, not lost"
        );
        assert_eq!(count(&events, "X", "job"), 2);
        assert_eq!(count(&events, "b", "queue"), 2);
        // Every job: submit (s), start and finish on the worker (t, t), resume (f).
        assert_eq!(count(&events, "s", "job"), 2);
        assert_eq!(count(&events, "t", "job"), 4);
        assert_eq!(count(&events, "f", "job"), 2);
        assert!(
            count(&events, "i", "report") >= 1,
            "the slow poll is marked"
        );
        let _ = std::fs::remove_file(path);
    });
}

#[test]
fn the_environment_can_turn_tracing_on() {
    if in_child() {
        let rt = Runtime::new(); // ONELOOP_TRACE is set for us
        rt.block_on(async { oneloop::task::yield_now().await });
        return;
    }
    let path = trace_path("env");
    assert!(run_test_in_child(
        "the_environment_can_turn_tracing_on",
        &[("ONELOOP_TRACE", path.to_str().unwrap())]
    ));
    // The child traced to the path given in its environment.
    let events = read_events(&path);
    assert!(count(&events, "X", "poll") >= 1);
    let _ = std::fs::remove_file(path);
}

#[test]
fn an_unwritable_trace_file_is_a_build_error() {
    let error = Runtime::builder()
        .trace_file("/nonexistent-dir/trace.json")
        .build()
        .expect_err("the directory does not exist");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn debug_mode_prints_an_exit_summary_when_the_runtime_drops() {
    hang_guard(|| {
        let (rt, reports) = util::debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        let line = line!() + 4; // the `.spawn(` line
        rt.block_on(async {
            oneloop::task::Builder::new()
                .name("slow one")
                .spawn(async { std::thread::sleep(Duration::from_millis(30)) })
                .await
                .unwrap();
            oneloop::run_in_executor(&pool, || ()).await.unwrap();
        });
        assert!(
            reports.with_code(Code::Summary).is_empty(),
            "not before the drop"
        );
        drop(rt);
        let summary = reports.with_code(Code::Summary);
        assert_eq!(summary.len(), 1);
        let text = summary[0].to_string();
        assert!(text.contains("exit summary"), "{text}");
        assert!(
            text.contains(&format!("\"slow one\" spawned at tests/trace.rs:{line}")),
            "{text}"
        );
        assert!(text.contains("(1 of 1 polls over the threshold)"), "{text}");
        assert!(text.contains("offloaded jobs"), "{text}");
        assert!(text.contains("OL001 x1"), "{text}");
    });
}
