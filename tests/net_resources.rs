//! Sockets and the process's file descriptors: none leak, and running out of them makes
//! `accept` fail gracefully and recover. These tests count the process's descriptors, so
//! they run one at a time (a lock) in a binary of their own.

mod util;

use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::net::{TcpListener, TcpStream};
use oneloop::time::timeout;
use util::{hang_guard, in_child, run_test_in_child};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

#[test]
fn a_thousand_connect_accept_drop_cycles_leak_no_descriptor() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    hang_guard(|| {
        let rt = Runtime::new();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let baseline = open_fds();
            for _ in 0..1000 {
                let client = oneloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
                let (server, _) = listener.accept().await.unwrap();
                let client = client.await.unwrap();
                drop((client, server));
            }
            assert_eq!(open_fds(), baseline, "descriptors leaked");
            assert_eq!(
                rt.metrics().io_sources,
                1,
                "only the listener is registered"
            );
        });
    });
}

/// Lowers this process's descriptor limit to `limit`.
fn limit_descriptors(limit: u64) {
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: a valid `rlimit` for the call to read.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) }, 0);
}

#[test]
fn accept_without_descriptors_fails_backs_off_and_recovers() {
    if !in_child() {
        // The limit is for the whole process: lower it in a child of its own.
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        assert!(run_test_in_child(
            "accept_without_descriptors_fails_backs_off_and_recovers",
            &[]
        ));
        return;
    }
    let rt = Runtime::new();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A client connects and waits in the backlog (connecting needs a descriptor, so
        // before they run out).
        let _client = TcpStream::connect(addr).await.unwrap();
        // Use up every descriptor left.
        limit_descriptors(open_fds() as u64 + 16);
        let mut hog = Vec::new();
        while let Ok(file) = File::open("/dev/null") {
            hog.push(file);
        }
        // `accept` fails with EMFILE: the error reaches us...
        let error = listener
            .accept()
            .await
            .expect_err("no descriptor to accept with");
        assert_eq!(error.raw_os_error(), Some(libc::EMFILE));
        // ...and a server that retries at once does not spin: each retry waits first.
        let ticks_before = rt.metrics().ticks;
        let mut attempts = 0;
        let _ = timeout(Duration::from_millis(200), async {
            loop {
                attempts += 1;
                if listener.accept().await.is_ok() {
                    panic!("accepted without a descriptor");
                }
            }
        })
        .await;
        let ticks = rt.metrics().ticks - ticks_before;
        assert!(
            attempts <= 10,
            "{attempts} accept attempts in 200 ms: it spins"
        );
        assert!(ticks <= 50, "{ticks} loop turns in 200 ms: it spins");
        // Descriptors come back: the waiting connection is accepted.
        drop(hog);
        let (stream, _) = listener.accept().await.expect("accept works again");
        assert_eq!(stream.peer_addr().unwrap(), _client.local_addr().unwrap());
    });
}
