//! Code the lessons share: a real CPU-bound kernel (CRC-32) and simple measurements here,
//! and the plumbing of the later lessons in `lib/`, so each lesson file reads as its story:
//!
//! - `http`: just enough HTTP/1.1 to serve and to request (lesson 08);
//! - `loadgen`: connections that poll and connections that keep a server busy (lesson 08);
//! - `trace`: a trace file read back as a timeline (lesson 09);
//! - `picture`: timelines drawn as an SVG (lesson 09);
//! - `native`: a stand-in for a native library that crashes or hangs on cue (lesson 11).
//!
//! The examples themselves are the numbered files next to this one; read them in order.

#[path = "lib/http.rs"]
pub mod http;
#[path = "lib/loadgen.rs"]
pub mod loadgen;
#[path = "lib/native.rs"]
pub mod native;
#[path = "lib/picture.rs"]
pub mod picture;
#[path = "lib/trace.rs"]
pub mod trace;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::JoinHandle;
use oneloop::time::{MissedTickBehavior, interval};

/// The CRC-32 (IEEE 802.3) lookup table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32 of `data`, one byte at a time: a real checksum, and honest CPU work.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// How many bytes per second `crc32` processes on this machine: the best of five ~5 ms
/// measurements, so a moment of preemption on a busy machine does not make the machine
/// look slower than it is (which would make calibrated work too short).
pub fn crc_rate() -> f64 {
    let data = vec![0x5Au8; 64 * 1024];
    (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut bytes = 0usize;
            while start.elapsed() < Duration::from_millis(5) {
                std::hint::black_box(crc32(std::hint::black_box(&data)));
                bytes += data.len();
            }
            bytes as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// A checksum job: `rounds` passes of CRC-32 over `data`, and at least `at_least` of wall
/// time (more passes if the machine turned out
/// faster than calibrated), so a lesson's "this takes 300 ms" holds on a busy machine too.
#[derive(Clone, Debug)]
pub struct Checksum {
    data: std::sync::Arc<Vec<u8>>,
    rounds: u32,
    at_least: Duration,
}

impl Checksum {
    /// A job over `kib` KiB of pseudo-random bytes, repeated until one run takes about
    /// `target` on this machine (measured once here), so lessons show the same durations
    /// in debug and release builds.
    pub fn calibrated(kib: usize, target: Duration) -> Checksum {
        let data: Vec<u8> = (0..kib * 1024)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut job = Checksum {
            data: std::sync::Arc::new(data),
            rounds: 1,
            at_least: Duration::ZERO,
        };
        // Warm the caches, then time enough passes to average out noise. `black_box`
        // keeps an optimizing build from dropping runs whose result is unused.
        std::hint::black_box(job.run());
        let sample = target / 10;
        let start = Instant::now();
        let mut passes = 0u32;
        while passes == 0 || start.elapsed() < sample {
            std::hint::black_box(job.run());
            passes += 1;
        }
        let one = start.elapsed().as_secs_f64() / f64::from(passes);
        job.rounds = (target.as_secs_f64() / one).round().max(1.0) as u32;
        job.at_least = target;
        job
    }

    /// Computes the checksum (the CRC-32 of the data, the same every pass), blocking the
    /// calling thread for the calibrated time.
    pub fn run(&self) -> u32 {
        let start = Instant::now();
        let mut crc = 0;
        let mut passes = 0;
        while passes < self.rounds || start.elapsed() < self.at_least {
            // `black_box` on both sides: every pass really reads the data, and no pass's
            // result counts as unused, so none is optimized away.
            crc = std::hint::black_box(crc32(std::hint::black_box(&self.data)));
            passes += 1;
        }
        crc
    }
}

/// A task that should tick every `period`, measuring how late the loop lets it be: the
/// symptom of a blocked loop, as users see it.
#[derive(Debug)]
pub struct Heartbeat {
    stop: Rc<Cell<bool>>,
    task: JoinHandle<Gaps>,
}

/// What a [`Heartbeat`] saw.
#[derive(Clone, Copy, Debug)]
pub struct Gaps {
    /// Ticks delivered.
    pub ticks: u32,
    /// The longest time between two ticks (ideally the period).
    pub worst: Duration,
}

impl Heartbeat {
    /// Starts the heartbeat on the current runtime.
    pub fn start(period: Duration) -> Heartbeat {
        let stop = Rc::new(Cell::new(false));
        let task = oneloop::spawn({
            let stop = stop.clone();
            async move {
                let mut ticker = interval(period);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut last = ticker.tick().await;
                let mut gaps = Gaps {
                    ticks: 0,
                    worst: Duration::ZERO,
                };
                while !stop.get() {
                    ticker.tick().await;
                    let now = Instant::now();
                    gaps.worst = gaps.worst.max(now - last);
                    gaps.ticks += 1;
                    last = now;
                }
                gaps
            }
        });
        Heartbeat { stop, task }
    }

    /// Stops it and returns what it saw.
    pub async fn stop(self) -> Gaps {
        self.stop.set(true);
        self.task.await.expect("the heartbeat task does not fail")
    }
}

/// How a child process ended: the lessons that show a crash run it in one, so that the
/// crash ends the child, not the lesson.
#[derive(Debug)]
pub struct Ended {
    /// The child's process id.
    pub pid: u32,
    /// Its exit status: a code, or the signal that ended it.
    pub status: std::process::ExitStatus,
    /// The last line it wrote to stderr.
    pub last_words: String,
}

impl Ended {
    /// Runs `child` to its end (its stdout discarded, its stderr kept).
    pub fn run(mut child: std::process::Command) -> Ended {
        use std::process::Stdio;
        let child = child.stdout(Stdio::null()).stderr(Stdio::piped());
        let child = child.spawn().expect("start the child");
        let pid = child.id();
        let output = child.wait_with_output().expect("wait for the child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_words = stderr.lines().last().unwrap_or_default().to_owned();
        Ended {
            pid,
            status: output.status,
            last_words,
        }
    }
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
