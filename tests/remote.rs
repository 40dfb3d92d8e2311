//! Remote executors (`oneloop-remote`) against a real `redis-server` each test starts on a
//! free loopback port (`util/redis.rs`), with real worker processes (`bin/remote_worker.rs`)
//! running the functions of `oneloop_tests::remote_fns`: typed results and errors, a
//! worker killed mid-call (the call is taken over and answered once more), a poison call
//! (the retry limit names the attempts and the workers), Redis restarted mid-run (every
//! call resolves), cancellation and limits, and 10,000 calls through three workers. Each
//! test prints SKIPPED and passes where `redis-server` is not installed (`.ci/run` fails
//! on that line in CI); each runs under a hang guard.

mod util;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oneloop_pool::{JobError, Overflow, block_on};
use oneloop_remote::RedisExecutor;
use oneloop_tests::remote_fns::{
    add, bytes, kill_my_worker, mark_then_sleep, panics, segfaults, sleep_then_worker_pid,
    spins_forever,
};
use util::hang_guard;
use util::processes::{Markers, process_state};
use util::redis::{RedisServer, connect};

/// Worker processes of one queue, killed and reaped when dropped.
struct Fleet {
    url: String,
    queue: String,
    workers: Vec<Child>,
}

impl Fleet {
    /// `count` workers of `processes` each, taking over a dead worker's calls after
    /// `visibility`.
    fn start(
        server: &RedisServer,
        queue: &str,
        count: usize,
        processes: usize,
        visibility: Duration,
    ) -> Fleet {
        let mut fleet = Fleet {
            url: server.url(),
            queue: queue.to_owned(),
            workers: Vec::new(),
        };
        for _ in 0..count {
            fleet.add(processes, visibility);
        }
        fleet
    }

    fn add(&mut self, processes: usize, visibility: Duration) {
        let child = Command::new(env!("CARGO_BIN_EXE_remote-worker"))
            .args([
                self.url.as_str(),
                self.queue.as_str(),
                &processes.to_string(),
                &visibility.as_millis().to_string(),
            ])
            .stdout(Stdio::null())
            .env_remove("ONELOOP_DEBUG")
            .spawn()
            .expect("start remote-worker");
        self.workers.push(child);
    }

    fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(Child::id).collect()
    }

    /// SIGKILL to worker `pid` (and it is reaped).
    fn kill(&mut self, pid: u32) {
        let child = self
            .workers
            .iter_mut()
            .find(|child| child.id() == pid)
            .expect("one of ours");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Entries in the queue's stream, and entries pending (taken, not answered).
fn queue_state(url: &str, queue: &str) -> (u64, u64) {
    let mut con = connect(url);
    let stream = format!("oneloop:{queue}");
    let len: u64 = redis::cmd("XLEN").arg(&stream).query(&mut con).unwrap();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("oneloop-workers")
        .query(&mut con)
        .unwrap();
    let pending = match pending {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    };
    (len, pending)
}

fn worker_name(pid: u32) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!("{}:{pid}", host.trim())
}

#[test]
fn a_call_runs_on_a_remote_worker_and_comes_back_with_who_ran_it() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "basic", 1, 2, Duration::from_secs(30));
        let remote = RedisExecutor::connect(&server.url(), "basic").unwrap();
        let mut call = remote.call(add, (2, 3));
        assert_eq!(block_on(&mut call), Ok(5));
        assert_eq!(call.attempt(), Some(1));
        assert_eq!(call.worker(), Some(worker_name(fleet.pids()[0]).as_str()));
        // The worker ran it in its own process pool: a child of the worker.
        let ran_in = block_on(remote.call(sleep_then_worker_pid, 0)).unwrap();
        assert_eq!(ran_in, fleet.pids()[0]);
        assert_eq!(queue_state(&server.url(), "basic"), (0, 0), "nothing left");
    });
}

#[test]
fn failures_on_the_worker_come_back_typed_and_the_worker_carries_on() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "errors", 1, 1, Duration::from_secs(30));
        let remote = RedisExecutor::builder(&server.url(), "errors")
            .max_payload(1 << 20)
            .connect()
            .unwrap();
        match block_on(remote.call(panics, "the model is missing".to_owned())) {
            Err(JobError::Panicked(message)) => {
                assert!(message.contains("the model is missing"), "{message}");
                let worker = worker_name(fleet.pids()[0]);
                assert!(message.contains(&worker), "names the worker: {message}");
            }
            other => panic!("{other:?}"),
        }
        match block_on(remote.call(segfaults, ())) {
            Err(JobError::WorkerDied(death)) => assert_eq!(death.signal, Some("SIGSEGV")),
            other => panic!("{other:?}"),
        }
        // Arguments too big: refused at the call, nothing queued.
        match block_on(remote.call(panics, "x".repeat(2 << 20))) {
            Err(JobError::Arguments(message)) => {
                assert!(message.contains("max_payload"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // A result too big: refused on the worker.
        match block_on(remote.call(bytes, 2 << 20)) {
            Err(JobError::Result(message)) => assert!(message.contains("max_payload"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(block_on(remote.call(bytes, 10)), Ok(vec![7; 10]));
    });
}

oneloop_process::process_fn! {
    /// Registered in this test binary only: the worker binary does not have it.
    fn only_here() -> u32 {
        1
    }
}

#[test]
fn a_function_the_workers_do_not_have_is_an_error_naming_the_worker_and_the_key() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "skew", 1, 1, Duration::from_secs(30));
        let remote = RedisExecutor::connect(&server.url(), "skew").unwrap();
        match block_on(remote.call(only_here, ())) {
            Err(JobError::Arguments(message)) => {
                assert!(message.contains(only_here.key()), "{message}");
                assert!(message.contains(&worker_name(fleet.pids()[0])), "{message}");
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn redis_that_cannot_be_reached_is_an_error_at_once_never_a_hang() {
    hang_guard(|| {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let url = server.url();
        let remote = RedisExecutor::builder(&url, "down")
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .unwrap();
        server.kill();
        match block_on(remote.call(add, (1, 2))) {
            Err(JobError::Unreachable(reason)) => assert!(reason.contains(&url), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A second call, while the executor waits to reconnect, fails as fast.
        assert!(matches!(
            block_on(remote.call(add, (1, 2))),
            Err(JobError::Unreachable(_))
        ));
        assert!(
            RedisExecutor::connect(&url, "down").is_err(),
            "connect says so too"
        );
    });
}

#[test]
fn a_worker_killed_mid_call_leaves_it_to_another_which_answers_it_once_more() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let visibility = Duration::from_millis(1000);
        let mut fleet = Fleet::start(&server, "takeover", 2, 1, visibility);
        let remote = RedisExecutor::connect(&server.url(), "takeover").unwrap();
        let markers = Markers::new("remote-takeover");
        let mut call = remote.call(mark_then_sleep, (markers.dir(), 1500));
        // Whichever worker took it is killed while it runs.
        let first = loop {
            if let Some(pid) = fleet
                .pids()
                .into_iter()
                .find(|pid| markers.is_set(&pid.to_string()))
            {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        fleet.kill(first);
        let answered_by = block_on(&mut call).expect("taken over and answered");
        assert_ne!(answered_by, first);
        assert_eq!(call.attempt(), Some(2));
        assert_eq!(call.worker(), Some(worker_name(answered_by).as_str()));
        assert_eq!(queue_state(&server.url(), "takeover"), (0, 0));
    });
}

#[test]
fn a_call_that_kills_every_worker_that_takes_it_fails_naming_its_attempts_and_workers() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "poison", 3, 1, Duration::from_millis(500));
        let remote = RedisExecutor::builder(&server.url(), "poison")
            .max_attempts(2)
            .connect()
            .unwrap();
        match block_on(remote.call(kill_my_worker, ())) {
            Err(JobError::AttemptsExhausted { attempts, workers }) => {
                assert_eq!(attempts, 2);
                assert_eq!(workers.len(), 2, "{workers:?}");
                let names: Vec<String> = fleet.pids().into_iter().map(worker_name).collect();
                for worker in &workers {
                    assert!(names.contains(worker), "{worker} is not one of {names:?}");
                }
            }
            other => panic!("{other:?}"),
        }
        // The one worker left still serves.
        assert_eq!(block_on(remote.call(add, (40, 2))), Ok(42));
        assert_eq!(queue_state(&server.url(), "poison"), (0, 0));
    });
}

#[test]
fn redis_restarted_mid_run_without_its_data_still_resolves_every_call() {
    hang_guard(|| {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let _fleet = Fleet::start(&server, "restart", 2, 2, Duration::from_secs(5));
        let remote = RedisExecutor::builder(&server.url(), "restart")
            .timeout(Duration::from_secs(30))
            .connect()
            .unwrap();
        let calls: Vec<_> = (0..20)
            .map(|_| remote.call(sleep_then_worker_pid, 200))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        server.kill();
        std::thread::sleep(Duration::from_millis(300));
        server.restart();
        let mut answered = 0;
        for call in calls {
            match block_on(call) {
                Ok(_) => answered += 1,
                Err(JobError::TimedOut | JobError::DeadlineExpired) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        // The server lost them: the executor queued them again, and the workers made the
        // consumer group again.
        assert_eq!(answered, 20);
        assert_eq!(block_on(remote.call(add, (1, 1))), Ok(2));
    });
}

#[test]
fn a_call_cancelled_while_queued_is_removed_and_a_running_one_is_killed() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let remote = RedisExecutor::connect(&server.url(), "cancel").unwrap();
        // No worker yet: the call waits in the stream, and cancelling takes it out.
        let mut queued = remote.call(add, (1, 2));
        util::wait_until(|| queue_state(&server.url(), "cancel").0 == 1);
        assert!(queued.cancel());
        assert_eq!(block_on(queued), Err(JobError::Cancelled));
        util::wait_until(|| queue_state(&server.url(), "cancel").0 == 0);
        // Running: the worker kills the process that runs it, and serves on.
        let fleet = Fleet::start(&server, "cancel", 1, 1, Duration::from_secs(30));
        let markers = Markers::new("remote-cancel");
        let mut running = remote.call(mark_then_sleep, (markers.dir(), 60_000));
        util::wait_until(|| markers.is_set(&fleet.pids()[0].to_string()));
        let pool_child = util::processes::children_of(fleet.pids()[0]);
        // Long enough for the worker to have said it runs (after 20 ms): the cancel must
        // still reach it.
        std::thread::sleep(Duration::from_millis(300));
        running.cancel();
        assert_eq!(block_on(running), Err(JobError::Cancelled));
        util::wait_until(|| remote.in_flight() == 0);
        util::wait_until(|| pool_child.iter().any(|pid| process_state(*pid).is_none()));
        assert_eq!(block_on(remote.call(add, (2, 2))), Ok(4));
        util::wait_until(|| queue_state(&server.url(), "cancel") == (0, 0));
    });
}

#[test]
fn a_call_past_its_limit_is_removed_from_the_queue_or_killed_on_its_worker() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let remote = RedisExecutor::connect(&server.url(), "limits").unwrap();
        // Nobody takes it in time.
        let expired = remote.call_with_timeout(add, (1, 2), Duration::from_millis(200));
        assert_eq!(block_on(expired), Err(JobError::DeadlineExpired));
        let _fleet = Fleet::start(&server, "limits", 1, 1, Duration::from_secs(30));
        let spinning = remote.call_with_timeout(spins_forever, (), Duration::from_millis(1500));
        assert_eq!(block_on(spinning), Err(JobError::TimedOut));
        assert_eq!(block_on(remote.call(add, (3, 4))), Ok(7));
        util::wait_until(|| queue_state(&server.url(), "limits") == (0, 0));
    });
}

#[test]
fn ten_thousand_calls_through_three_workers_each_resolve_once_and_leave_nothing_pending() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let _fleet = Fleet::start(&server, "many", 3, 1, Duration::from_secs(30));
        let remote = RedisExecutor::builder(&server.url(), "many")
            .max_in_flight(500)
            .overflow(Overflow::Wait)
            .connect()
            .unwrap();
        let calls: Vec<_> = (0..10_000u64)
            .map(|i| (i, remote.call(add, (i, i))))
            .collect();
        let mut answered = 0;
        for (i, call) in calls {
            assert_eq!(block_on(call), Ok(2 * i));
            answered += 1;
        }
        assert_eq!(answered, 10_000);
        assert_eq!(remote.in_flight(), 0);
        assert_eq!(queue_state(&server.url(), "many"), (0, 0));
    });
}

#[test]
fn debug_mode_sees_a_long_remote_call_run_on_its_worker_not_wait_in_a_queue() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "debug", 1, 1, Duration::from_secs(30));
        let remote = RedisExecutor::connect(&server.url(), "debug").unwrap();
        // Warm: the worker's first call starts its pool.
        assert_eq!(block_on(remote.call(add, (1, 1))), Ok(2));
        let (rt, reports) = util::debug_runtime(100);
        let (ran_in, still_running) = rt.block_on(async {
            let call = remote.call(sleep_then_worker_pid, 600);
            // Long past the threshold, the call runs on its worker: it is not waiting.
            oneloop::time::sleep(Duration::from_millis(400)).await;
            let still_running = reports.with_code(oneloop::debug::Code::JobWaited);
            (call.await, still_running)
        });
        assert_eq!(ran_in, Ok(fleet.pids()[0]));
        assert!(still_running.is_empty(), "{still_running:?}");
        drop(rt);
        let waited = reports.with_code(oneloop::debug::Code::JobWaited);
        assert!(waited.is_empty(), "reported as waiting: {waited:?}");
    });
}

#[test]
fn a_trace_draws_remote_calls_on_their_worker_track_with_arrows_from_submit_to_resume() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::start(&server, "trace", 1, 1, Duration::from_secs(30));
        let remote = RedisExecutor::connect(&server.url(), "trace").unwrap();
        let path = std::env::temp_dir().join(format!(
            "oneloop-test-remote-trace-{}.json",
            std::process::id()
        ));
        let rt = oneloop::Runtime::builder()
            .trace_file(&path)
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(remote.call(add, (1, 2)).await, Ok(3));
            assert!(remote.call(sleep_then_worker_pid, 100).await.is_ok());
        });
        drop(rt);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let track = worker_name(fleet.pids()[0]);
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
fn a_submitter_that_is_gone_leaves_nothing_behind_once_its_replies_expire() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let _fleet = Fleet::start(&server, "expiry", 1, 1, Duration::from_secs(30));
        let remote = RedisExecutor::builder(&server.url(), "expiry")
            .reply_ttl(Duration::from_secs(1))
            .connect()
            .unwrap();
        assert_eq!(block_on(remote.call(add, (1, 1))), Ok(2));
        let mut con = connect(&server.url());
        let keys = |con: &mut redis::Connection| -> Vec<String> {
            redis::cmd("KEYS")
                .arg("oneloop:expiry:*")
                .query(con)
                .unwrap()
        };
        let held = keys(&mut con);
        assert!(
            held.iter().any(|key| key.contains(":client:")),
            "its liveness key, while it lives: {held:?}"
        );
        drop(remote); // as if its process had died: nobody refreshes its keys now
        util::wait_until(|| keys(&mut con).is_empty());
    });
}
