//! W9, what isolation costs: calls into worker processes on oneloop's `ProcessPool`, beside
//! CPython 3.11's `concurrent.futures.ProcessPoolExecutor` doing the same work
//! (`python/process_pool.py`, run as a child process) and beside oneloop's own
//! `ThreadPool` (the same calls without a process boundary). Only `compare.rs` uses it;
//! the other workloads are in `mod.rs`.
//!
//! - Round trip: one trivial call at a time (`echo(u64) -> u64`), awaited from the loop.
//! - Throughput: 20,000 trivial calls submitted at once, then awaited, on 2 workers.
//! - Big arguments: 16 MiB in and the same 16 MiB back, one call at a time; beside it two
//!   floors: the same bytes copied through a memory file (into it and out of it, each
//!   way: what any transport through shared memory must do, [`memfd_copy`]), and a plain
//!   copy of 2 × 16 MiB in this process ([`memcpy`], half as many bytes moved).
//!
//! Every side starts its pool and warms it before the clock starts (50 batches of four
//! calls per worker), so a worker's start (an exec here, a fork in CPython) is paid once
//! and never measured; every side uses [`WORKERS`] workers. The big rows also make two
//! big calls untimed first on every side: oneloop's first one makes the shared regions it
//! then reuses (their pages faulted in once, like a worker's start).

use std::hint::black_box;
use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use oneloop::pool::ThreadPool;
use oneloop_process::ProcessPool;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Workers in every pool of W9, processes and threads alike.
pub const WORKERS: usize = 2;

oneloop_process::process_fn! {
    /// The trivial call: what it costs is the pool's own.
    fn echo(x: u64) -> u64 {
        x
    }
}

oneloop_process::process_fn! {
    /// The big call, as a user first writes it: postcard encodes a `Vec<u8>` as a
    /// sequence, one byte at a time.
    fn echo_vec(data: Vec<u8>) -> Vec<u8> {
        data
    }
}

oneloop_process::process_fn! {
    /// The big call with the bytes marked as bytes ([`Bytes`]): one copy each way.
    fn echo_bytes(data: Bytes) -> Bytes {
        data
    }
}

/// A `Vec<u8>` that serde encodes as one byte string (`serialize_bytes`), the way
/// `serde_bytes` does, instead of a sequence of `u8`s: what CPython's pickle does with
/// `bytes` too.
#[derive(Debug)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

fn process_pool() -> ProcessPool {
    ProcessPool::builder()
        .workers(WORKERS)
        .build()
        .expect("process pool")
}

fn thread_pool() -> ThreadPool {
    ThreadPool::new(WORKERS).expect("thread pool")
}

fn runtime() -> oneloop::Runtime {
    oneloop::Runtime::builder()
        .debug(false)
        .build()
        .expect("runtime")
}

/// Warms a process pool as `process_pool.py` warms CPython's: 50 batches of four calls per
/// worker, so every worker has started and answered before anything is timed.
async fn warm_processes(pool: &ProcessPool) {
    for _ in 0..50 {
        let batch: Vec<_> = (0..4 * WORKERS as u64)
            .map(|i| pool.call(echo, i))
            .collect();
        for call in batch {
            call.await.expect("warm-up call");
        }
    }
}

async fn warm_threads(pool: &ThreadPool) {
    for _ in 0..50 {
        let batch: Vec<_> = (0..4 * WORKERS)
            .map(|i| oneloop::run_in_executor(pool, move || i))
            .collect();
        for job in batch {
            job.await.expect("warm-up job");
        }
    }
}

// ------------------------------------------------------------------------------------
// Round trip.
// ------------------------------------------------------------------------------------

/// `calls` sequential `pool.call(echo, i).await`s on a process pool: each one's latency.
pub fn round_trip_processes(calls: usize) -> Vec<Duration> {
    let pool = process_pool();
    runtime().block_on(async {
        warm_processes(&pool).await;
        let mut latencies = Vec::with_capacity(calls);
        for i in 0..calls as u64 {
            let start = Instant::now();
            black_box(pool.call(echo, i).await.expect("call"));
            latencies.push(start.elapsed());
        }
        latencies
    })
}

/// The same on the thread pool: `run_in_executor(&pool, move || i).await`.
pub fn round_trip_threads(calls: usize) -> Vec<Duration> {
    let pool = thread_pool();
    runtime().block_on(async {
        warm_threads(&pool).await;
        let mut latencies = Vec::with_capacity(calls);
        for i in 0..calls {
            let start = Instant::now();
            black_box(
                oneloop::run_in_executor(&pool, move || black_box(i))
                    .await
                    .expect("job"),
            );
            latencies.push(start.elapsed());
        }
        latencies
    })
}

// ------------------------------------------------------------------------------------
// Throughput.
// ------------------------------------------------------------------------------------

/// Calls per second: `calls` trivial calls submitted at once, then awaited in order.
pub fn throughput_processes(calls: usize) -> f64 {
    let pool = process_pool();
    runtime().block_on(async {
        warm_processes(&pool).await;
        let start = Instant::now();
        let all: Vec<_> = (0..calls as u64).map(|i| pool.call(echo, i)).collect();
        for call in all {
            black_box(call.await.expect("call"));
        }
        calls as f64 / start.elapsed().as_secs_f64()
    })
}

pub fn throughput_threads(calls: usize) -> f64 {
    let pool = thread_pool();
    runtime().block_on(async {
        warm_threads(&pool).await;
        let start = Instant::now();
        let all: Vec<_> = (0..calls)
            .map(|i| oneloop::run_in_executor(&pool, move || black_box(i)))
            .collect();
        for job in all {
            black_box(job.await.expect("job"));
        }
        calls as f64 / start.elapsed().as_secs_f64()
    })
}

// ------------------------------------------------------------------------------------
// Big arguments.
// ------------------------------------------------------------------------------------

/// The time of each of `calls` round trips of `size` bytes through a process pool, as a
/// plain `Vec<u8>` (`bytes: false`) or as [`Bytes`].
pub fn big_processes(size: usize, calls: usize, bytes: bool) -> Vec<Duration> {
    let pool = process_pool();
    runtime().block_on(async {
        warm_processes(&pool).await;
        let mut data = vec![7u8; size];
        let mut times = Vec::with_capacity(calls);
        for call in 0..calls + 2 {
            // The argument moves into the call and the result comes back as the next
            // call's argument: nothing is copied here but what the pool copies.
            let start = Instant::now();
            data = if bytes {
                pool.call(echo_bytes, Bytes(data)).await.expect("call").0
            } else {
                pool.call(echo_vec, data).await.expect("call")
            };
            if call >= 2 {
                times.push(start.elapsed());
            }
            assert_eq!(data.len(), size);
        }
        times
    })
}

/// The same on the thread pool: the `Vec` moves to a worker thread and back, uncopied.
pub fn big_threads(size: usize, calls: usize) -> Vec<Duration> {
    let pool = thread_pool();
    runtime().block_on(async {
        warm_threads(&pool).await;
        let mut data = vec![7u8; size];
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            data = oneloop::run_in_executor(&pool, move || black_box(data))
                .await
                .expect("job");
            times.push(start.elapsed());
        }
        times
    })
}

/// The floor of a big round trip through shared memory: `size` bytes copied into a
/// mapped memory file and out of it, there and back (four copies: what any transport
/// through shared memory must do), with the file's pages and the buffers already touched.
pub fn memfd_copy(size: usize, calls: usize) -> Vec<Duration> {
    let file = SharedFile::new(size);
    let mut here = vec![7u8; size];
    let mut there = vec![1u8; size];
    file.copy_in(&here);
    (0..calls)
        .map(|_| {
            let start = Instant::now();
            file.copy_in(black_box(&here));
            file.copy_out(&mut there);
            file.copy_in(black_box(&there));
            file.copy_out(&mut here);
            black_box((&here, &there));
            start.elapsed()
        })
        .collect()
}

/// A memory file (`memfd_create`) of `len` bytes, mapped shared and writable.
struct SharedFile {
    ptr: *mut u8,
    len: usize,
}

impl SharedFile {
    fn new(len: usize) -> SharedFile {
        // SAFETY: a plain system call with a NUL-terminated name; the descriptor it returns
        // is checked, and closed below once mapped.
        let fd = unsafe { libc::memfd_create(c"oneloop-bench".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: `fd` is the descriptor just made, ours alone.
        assert_eq!(unsafe { libc::ftruncate(fd, len as libc::off_t) }, 0);
        // SAFETY: a new shared mapping of the whole file at an address the kernel picks;
        // the file is `len` bytes long and never shrinks while mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        // SAFETY: the mapping keeps the file alive; the descriptor is no longer needed.
        unsafe { libc::close(fd) };
        SharedFile {
            ptr: ptr.cast(),
            len,
        }
    }

    fn copy_in(&self, bytes: &[u8]) {
        assert_eq!(bytes.len(), self.len);
        // SAFETY: the mapping is `len` bytes, writable and ours alone; `bytes` is another
        // allocation of the same length.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, self.len) };
    }

    fn copy_out(&self, bytes: &mut [u8]) {
        assert_eq!(bytes.len(), self.len);
        // SAFETY: as in `copy_in`, the other way.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, bytes.as_mut_ptr(), self.len) };
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A floor no transport reaches: `size` bytes copied there and back in this process
/// (two copies where a transport makes four), into buffers already touched.
pub fn memcpy(size: usize, calls: usize) -> Vec<Duration> {
    let mut here = vec![7u8; size];
    let mut there = vec![1u8; size];
    (0..calls)
        .map(|_| {
            let start = Instant::now();
            there.copy_from_slice(black_box(&here));
            here.copy_from_slice(black_box(&there));
            black_box((&here, &there));
            start.elapsed()
        })
        .collect()
}

// ------------------------------------------------------------------------------------
// The CPython side.
// ------------------------------------------------------------------------------------

/// `python3` running `python/process_pool.py`, found once per run.
#[derive(Debug)]
pub struct Python {
    /// What the script reported: `version=3.11.7 start_method=fork`.
    pub about: String,
}

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/process_pool.py"
);

impl Python {
    /// The interpreter, or why W9's CPython side is skipped.
    pub fn find() -> Result<Python, String> {
        match run_script(&["version"]) {
            Ok(about) => Ok(Python { about }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err("SKIPPED (python3 not found)".to_owned())
            }
            Err(e) => Err(format!("SKIPPED (python3 cannot run {SCRIPT}: {e})")),
        }
    }

    /// Median and p99 of `calls` sequential round trips, in µs.
    pub fn round_trip(&self, calls: usize) -> (f64, f64) {
        let line = self.run(&["round-trip", &WORKERS.to_string(), &calls.to_string()]);
        (value(&line, "median_us"), value(&line, "p99_us"))
    }

    /// Calls per second.
    pub fn throughput(&self, calls: usize) -> f64 {
        let line = self.run(&["throughput", &WORKERS.to_string(), &calls.to_string()]);
        value(&line, "calls_per_s")
    }

    /// The median round trip of `size` bytes there and back, in ms.
    pub fn big(&self, size: usize, calls: usize) -> f64 {
        let line = self.run(&[
            "bytes",
            &WORKERS.to_string(),
            &size.to_string(),
            &calls.to_string(),
        ]);
        value(&line, "median_ms")
    }

    fn run(&self, args: &[&str]) -> String {
        // Python was there at the start of the run: failing now is a bug in the script.
        run_script(args).unwrap_or_else(|e| panic!("{SCRIPT} {args:?}: {e}"))
    }
}

/// Runs the script with `args`; its last line of output.
fn run_script(args: &[&str]) -> io::Result<String> {
    last_line(Command::new("python3").arg(SCRIPT).args(args))
}

/// Runs `command` (a Python script of the bench); the last line it printed, or why it
/// failed (its exit status and stderr).
pub fn last_line(command: &mut Command) -> io::Result<String> {
    let output = command.output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(io::Error::other(format!(
            "{}: {}",
            output.status,
            stderr.trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().last().unwrap_or_default().trim().to_owned())
}

/// The value of `name=…` in a line of `name=value` pairs.
pub fn value(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the script's output {line:?}"))
}
