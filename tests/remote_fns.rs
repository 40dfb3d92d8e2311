//! The registered functions of the Redis tests (`remote.rs`): linked into the test binary,
//! which calls them, and into `bin/remote_worker.rs`, which runs them, under the same keys.

use std::time::Duration;

oneloop_process::process_fn! {
    pub fn add(a: u64, b: u64) -> u64 {
        a + b
    }
}

oneloop_process::process_fn! {
    /// Sleeps, then answers with this process's parent: the remote worker that ran it.
    pub fn sleep_then_worker_pid(millis: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(millis));
        std::os::unix::process::parent_id()
    }
}

oneloop_process::process_fn! {
    /// Writes `<dir>/<parent pid>` (the remote worker's pid: it has started), then sleeps.
    pub fn mark_then_sleep(dir: String, millis: u64) -> u32 {
        let worker = std::os::unix::process::parent_id();
        std::fs::write(format!("{dir}/{worker}"), b"").unwrap();
        std::thread::sleep(Duration::from_millis(millis));
        worker
    }
}

oneloop_process::process_fn! {
    /// Kills the remote worker that runs it (this process's parent), as a machine that
    /// dies under a call would.
    pub fn kill_my_worker() -> u32 {
        let worker = std::os::unix::process::parent_id();
        let _ = std::process::Command::new("kill")
            .args(["-9", &worker.to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(60));
        0
    }
}

oneloop_process::process_fn! {
    pub fn panics(message: String) -> u32 {
        panic!("{message}")
    }
}

oneloop_process::process_fn! {
    /// Dies of SIGSEGV (its process in the worker's pool; the worker lives on).
    pub fn segfaults() -> u32 {
        let _ = std::process::Command::new("kill")
            .args(["-SEGV", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(60));
        0
    }
}

oneloop_process::process_fn! {
    pub fn spins_forever() -> u32 {
        loop {
            std::hint::spin_loop();
        }
    }
}

oneloop_process::process_fn! {
    pub fn bytes(len: usize) -> Vec<u8> {
        vec![7; len]
    }
}

/// How many functions this module registers: called by the worker binary so the linker
/// keeps the module (and its registry entries) in it.
pub fn registered() -> usize {
    [
        add.key(),
        sleep_then_worker_pid.key(),
        mark_then_sleep.key(),
        kill_my_worker.key(),
        panics.key(),
        segfaults.key(),
        spins_forever.key(),
        bytes.key(),
    ]
    .len()
}
