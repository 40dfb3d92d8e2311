//! The one-CPU child: W1 and W11 with every thread of a process on one CPU, as
//! `taskset -c 0` would run them. `compare.rs` starts this program again with `ARG`; the
//! child pins itself to one CPU first thing in `main`, before any thread exists, so every
//! runtime, pool and worker thread it starts inherits the mask (and `available_parallelism`
//! says 1 there, as it would under `taskset`). It runs the rounds on oneloop, tokio and smol,
//! alternating as the parent does (`compare.rs`'s `w1_figures`, `burst.rs`), and prints
//! its medians as one line of `name=value` pairs, which `run` reads back in the parent.

use std::io;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::workloads::median;
use crate::{Trips, W1, burst, micros, w1_figures};

/// The flag that makes this program the one-CPU child: `ARG <rounds> [W1] [W11]`.
const ARG: &str = "--one-cpu-child";

/// What the child measured; NaN for what it was not asked for.
pub struct OneCpu {
    pub w1: W1,
    /// W11's wall time, ms: oneloop, tokio, smol.
    pub w11: [f64; 3],
}

/// First in `main`: in the child, pins this process to one CPU, runs what it was asked
/// for, prints the line and exits. Anywhere else, returns at once.
pub fn maybe_run_child() {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == ARG) else {
        return;
    };
    let cpu = pin_to_one_cpu().unwrap_or_else(|e| {
        eprintln!("one-CPU child: could not pin this process to one CPU: {e}");
        std::process::exit(2);
    });
    // `blocking` (smol's pool) sizes itself once from this variable: two threads, W11's
    // workers on every side (W1 runs one job at a time).
    // SAFETY: nothing but this thread exists yet to read the environment (pinning started
    // none).
    unsafe { std::env::set_var("BLOCKING_MAX_THREADS", burst::WORKERS.to_string()) };
    let rounds: usize = args
        .get(at + 1)
        .and_then(|r| r.parse().ok())
        .expect("one-CPU child: the rounds after the flag");
    let want = |name: &str| args[at + 2..].iter().any(|a| a == name);
    // A runtime that hangs on one CPU must not hang the benchmark: the parent waits for
    // this process, so this process gives itself a deadline (far over a slow run's time).
    let limit = Duration::from_secs(120 + 60 * rounds as u64);
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("one-CPU child: still running after {limit:?}; giving up");
        std::process::exit(3);
    });
    let w1 = if want("W1") {
        w1_figures(rounds * 5, false)
    } else {
        W1::nan()
    };
    let mut w11 = [f64::NAN; 3];
    if want("W11") {
        let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            o.push(micros(burst::oneloop().wall) / 1e3);
            t.push(micros(burst::tokio().wall) / 1e3);
            s.push(micros(burst::smol().wall) / 1e3);
        }
        w11 = [median(&mut o), median(&mut t), median(&mut s)];
    }
    // `cores` is what `available_parallelism` says here: 1, or the pin did not take.
    let mut line = format!("cpu={cpu} cores={}", crate::workloads::cores());
    for (name, trips) in [("o", w1.oneloop), ("t", w1.tokio), ("s", w1.smol)] {
        line += &format!(
            " {name}.p50={} {name}.p99={} {name}.cpu={}",
            trips.p50, trips.p99, trips.cpu
        );
    }
    line += &format!(" w11.o={} w11.t={} w11.s={}", w11[0], w11[1], w11[2]);
    println!("{line}");
    std::process::exit(0);
}

/// In the parent: runs the child for `rounds` of the workloads named in `parts` (`W1`,
/// `W11`), waits for it, and reads its line; or why that failed.
pub fn run(rounds: usize, parts: &[&str]) -> io::Result<OneCpu> {
    let exe = std::env::current_exe()?;
    let line = crate::process_pools::last_line(
        Command::new(exe)
            .arg(ARG)
            .arg(rounds.to_string())
            .args(parts),
    )?;
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (cpu, cores) = (field("cpu"), field("cores"));
    println!("  one CPU: the child ran on CPU {cpu}, where available_parallelism said {cores}");
    if cores != 1.0 {
        return Err(io::Error::other(format!(
            "the child was to see one CPU, and saw {cores}"
        )));
    }
    let trips = |name: &str| Trips {
        p50: field(&format!("{name}.p50")),
        p99: field(&format!("{name}.p99")),
        cpu: field(&format!("{name}.cpu")),
    };
    Ok(OneCpu {
        w1: W1 {
            oneloop: trips("o"),
            tokio: trips("t"),
            smol: trips("s"),
            floor: f64::NAN,
        },
        w11: [field("w11.o"), field("w11.t"), field("w11.s")],
    })
}

/// The child's figures when it could not run: every cell `-`.
pub fn skipped() -> OneCpu {
    OneCpu {
        w1: W1::nan(),
        w11: [f64::NAN; 3],
    }
}

/// Pins this process (its only thread, so everything it starts later) to the first CPU
/// of its current mask; that CPU's number.
#[cfg(target_os = "linux")]
fn pin_to_one_cpu() -> io::Result<usize> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeros is a valid (empty) set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is a live, writable `cpu_set_t` of `size` bytes; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, size, &mut mask) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpu = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below `CPU_SETSIZE`, the set's size in bits.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &mask) })
        .ok_or_else(|| io::Error::other("the affinity mask is empty"))?;
    // SAFETY: as above: all zeros is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a live `cpu_set_t` of `size` bytes; pid 0 is this thread, the
    // process's only one, so every thread it starts from now on inherits the mask.
    if unsafe { libc::sched_setaffinity(0, size, &one) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpu)
}

#[cfg(not(target_os = "linux"))]
fn pin_to_one_cpu() -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pinning to one CPU is written for Linux only",
    ))
}
