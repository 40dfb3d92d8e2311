//! A remote worker for the Redis tests (`tests/remote.rs`): serves a queue with the
//! functions of `oneloop_tests::remote_fns` until it is killed.
//!
//! `remote-worker <redis url> <queue> <processes> <visibility ms>`

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, queue, processes, visibility] = &args[..] else {
        eprintln!("usage: remote-worker <redis url> <queue> <processes> <visibility ms>");
        std::process::exit(2);
    };
    assert!(oneloop_tests::remote_fns::registered() > 0);
    // A test that hangs, or is killed, must not leave its workers behind: they leave when
    // their parent does.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    });
    let worker = oneloop_remote::Worker::builder(url, queue)
        .processes(processes.parse().expect("processes"))
        .visibility_timeout(std::time::Duration::from_millis(
            visibility.parse().expect("visibility ms"),
        ))
        .build()
        .unwrap_or_else(|e| panic!("remote-worker: cannot start: {e}"));
    worker.run().expect("remote-worker");
}
