//! oneloop beside its best peer: every workload (see `workloads/mod.rs`) runs on oneloop,
//! on tokio and on smol (`workloads/smol.rs`) in the same run, alternating, and one table
//! gives each figure's medians and oneloop's ratio to the better of the peers, against its
//! target (`workloads/table.rs`); it is printed and written to `benches/RESULTS.md`. W7 also
//! runs on tokio's multi-thread runtime; W1 and W11 also run with every thread on one CPU,
//! in a child process (`workloads/one_cpu.rs`). W9 (`workloads/process.rs`) has a table of
//! its own: oneloop's process pool beside CPython's `ProcessPoolExecutor` (`python3` runs
//! `python/process_pool.py`; the rows say SKIPPED without it), with oneloop's thread pool in
//! a last column. W10 (`workloads/remote.rs`) has one too: calls through Redis to remote
//! workers, beside a raw ping-pong through the same streams and Celery (SKIPPED without
//! `redis-server`, or without Celery).
//! (Long because every workload's rounds, rows and targets are laid out in one place.)
//!
//! Full run: `cargo bench --bench compare` (5 rounds). Quick run, under 5 minutes on 2
//! cores: `cargo bench --bench compare -- --quick` (1 round).

#[path = "workloads/mod.rs"]
mod workloads;

#[path = "workloads/process.rs"]
mod process_pools;

#[path = "workloads/remote.rs"]
mod remote;

#[path = "workloads/cpu.rs"]
mod cpu;

#[path = "workloads/burst.rs"]
mod burst;

#[path = "workloads/smol.rs"]
mod smol;

#[path = "workloads/one_cpu.rs"]
mod one_cpu;

#[path = "workloads/table.rs"]
mod table;

use std::fmt::Write as _;
use std::time::Duration;

use table::{Line, num};
use workloads::*;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // The one-CPU child pins itself before anything else runs (and sizes smol's pool
    // for itself); in this process it returns at once, having started no thread.
    one_cpu::maybe_run_child();
    let cores = cores();
    // smol's `blocking` pool gets one thread per core, as the other runtimes' pools do in
    // W1–W4 (W1 uses one at a time; W11 wants two: see `w11`). Read once, when the pool
    // first starts.
    // SAFETY: no other thread exists yet to read the environment: `main` has just begun
    // and the check above started none.
    unsafe { std::env::set_var("BLOCKING_MAX_THREADS", cores.to_string()) };
    maybe_run_echo_client();
    remote::maybe_serve();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Names (`W1` … `W11`) to run only those; none runs all. cargo passes `--bench` too.
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name));
    let rounds = if quick { 1 } else { 5 };
    println!(
        "oneloop vs the best of tokio and smol: {rounds} round(s) per workload, alternating; \
         {cores} cores"
    );
    let mut lines = Vec::new();
    let kernel = Kernel::calibrated(Duration::from_millis(2));

    // W1's and W11's one-CPU rounds, in one start of the child.
    let parts: Vec<&str> = ["W1", "W11"].into_iter().filter(|w| want(w)).collect();
    let one_cpu = if parts.is_empty() {
        one_cpu::skipped()
    } else {
        one_cpu::run(rounds, &parts).unwrap_or_else(|e| {
            println!("  one CPU: SKIPPED ({e})");
            one_cpu::skipped()
        })
    };
    if !parts.is_empty() {
        println!("  {} on one CPU done", parts.join(", "));
    }
    if want("W1") {
        w1(rounds, &one_cpu.w1, &mut lines);
        println!("  W1 done");
    }
    if want("W2") {
        w2(rounds, &mut lines);
        println!("  W2 done");
    }
    if want("W3") {
        w3(rounds, cores, kernel, &mut lines);
        println!("  W3 done");
    }
    if want("W4") {
        w4(rounds, cores, kernel, &mut lines);
        println!("  W4 done");
    }
    if want("W5") || want("W8") {
        w5_w8(rounds, &mut lines);
        println!("  W5, W8 done");
    }
    if want("W6") {
        w6(rounds, &mut lines);
        println!("  W6 done");
    }
    if want("W7") {
        w7_all(rounds, cores, &mut lines);
        println!("  W7 done");
    }
    if want("W11") {
        w11(rounds, cores, one_cpu.w11, &mut lines);
        println!("  W11 done");
    }

    // W9: process pools.
    let mut process_rows = Vec::new();
    let mut python_about = String::new();
    if want("W9") {
        process_rows = w9(rounds, &mut python_about);
        println!("  W9 done");
    }

    // W10: remote workers through Redis.
    let mut remote_table = None;
    if want("W10") {
        remote_table = Some(remote::w10(rounds));
        println!("  W10 done");
    }

    let table = table::render(&lines);
    println!("\n{table}");
    let mut page = format!(
        "# oneloop vs the best of tokio and smol\n\nMeasured by `cargo bench --bench \
         compare{}` on a {cores}-core machine ({rounds} round(s) per workload, alternating \
         the runtimes; medians). The peers are tokio (a current-thread runtime) and smol \
         (`async-executor`, `async-io`, `blocking`), and on one W7 row tokio's multi-thread \
         runtime; each row's ratio is oneloop ÷ the better of the peers it shows. Rows \
         \"one CPU\" come from a child process with all its threads pinned to one CPU. \
         Workloads are defined in `benches/workloads/`; a `-` is a figure that row does not \
         have.\n\n{table}",
        if quick { " -- --quick" } else { "" }
    );
    if !process_rows.is_empty() {
        let table = render_processes(&process_rows);
        println!("W9 against {python_about}\n\n{table}");
        let _ = write!(
            page,
            "\n## Process pools: oneloop vs CPython\n\nW9 (`benches/workloads/process.rs`), \
             against {python_about}, {} workers on every side, pools warmed before the clock \
             starts. Ratios are oneloop ÷ CPython; the last column is the same work on \
             oneloop's thread pool, for what the process boundary costs.\n\n{table}",
            process_pools::WORKERS
        );
    }
    if let Some(table) = remote_table {
        println!("{table}");
        let _ = write!(
            page,
            "\n## Remote workers through Redis: oneloop vs the raw streams and Celery\n\n\
             W10 (`benches/workloads/remote.rs`): {table}"
        );
    }
    if !only.is_empty() {
        return; // a partial run does not replace the recorded table
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/RESULTS.md");
    std::fs::write(path, page).expect("write RESULTS.md");
    println!("written to {path}");
}

/// One runtime's W1 figures, medians over chunks: the round trip's p50 and p99, and the
/// whole process's CPU per round trip, all in µs.
#[derive(Clone, Copy, Debug)]
pub struct Trips {
    pub p50: f64,
    pub p99: f64,
    pub cpu: f64,
}

/// W1 on each runtime, and the raw `mio::Waker` ping-pong's median (NaN when not run).
#[derive(Debug)]
pub struct W1 {
    pub oneloop: Trips,
    pub tokio: Trips,
    pub smol: Trips,
    pub floor: f64,
}

impl W1 {
    /// Nothing measured: every cell `-`.
    pub fn nan() -> W1 {
        let none = Trips {
            p50: f64::NAN,
            p99: f64::NAN,
            cpu: f64::NAN,
        };
        W1 {
            oneloop: none,
            tokio: none,
            smol: none,
            floor: f64::NAN,
        }
    }
}

/// W1's figures over `chunks` chunks of 4,000 round trips per runtime (and of the raw
/// ping-pong when `floor`), interleaved. Used here on two CPUs and by the one-CPU child.
pub fn w1_figures(chunks: usize, floor: bool) -> W1 {
    // Each chunk has fresh threads: a wake-up's cost depends on where the scheduler puts
    // the two threads (same core or not; on a VM, a halted virtual CPU costs tens of µs to
    // wake), and interleaving gives every runtime the same luck.
    #[derive(Default)]
    struct Chunks {
        p50: Vec<f64>,
        p99: Vec<f64>,
        cpu: Vec<f64>,
    }
    impl Chunks {
        fn push(&mut self, (mut latencies, cpu): (Vec<Duration>, Duration)) {
            self.p50.push(micros(percentile(&mut latencies, 0.5)));
            self.p99.push(micros(percentile(&mut latencies, 0.99)));
            // The whole process's CPU, the pool's start and the 200 warm-up round trips
            // included (smol's pool is the process's own, started once: its start is not).
            self.cpu.push(micros(cpu) / 4_200.0);
        }
        fn medians(&mut self) -> Trips {
            Trips {
                p50: median(&mut self.p50),
                p99: median(&mut self.p99),
                cpu: median(&mut self.cpu),
            }
        }
    }
    let (mut o, mut t, mut s, mut f) = <(Chunks, Chunks, Chunks, Vec<f64>)>::default();
    for _ in 0..chunks {
        o.push(cpu::with_cpu(|| w1_oneloop(4_000)));
        t.push(cpu::with_cpu(|| w1_tokio(4_000)));
        s.push(cpu::with_cpu(|| smol::w1(4_000)));
        if floor {
            f.push(micros(percentile(&mut ping_pong(4_000), 0.5)));
        }
    }
    W1 {
        oneloop: o.medians(),
        tokio: t.medians(),
        smol: s.medians(),
        floor: if floor { median(&mut f) } else { f64::NAN },
    }
}

/// W1 on two CPUs and on one (`one`, from the child), its floor, and idle CPU.
fn w1(rounds: usize, one: &W1, lines: &mut Vec<Line>) {
    let two = w1_figures(rounds * 5, true);
    for (workload, w) in [
        ("W1 offload round trip", &two),
        ("W1 offload round trip, one CPU", one),
    ] {
        let (o, t, s) = (w.oneloop, w.tokio, w.smol);
        lines.push(Line::lower(workload, "p50 µs", o.p50, t.p50, s.p50).target(1.0));
        lines.push(Line::lower(workload, "p99 µs", o.p99, t.p99, s.p99).target(1.0));
    }
    for (workload, w) in [
        ("W1 CPU per round trip (process, user + sys)", &two),
        ("W1 CPU per round trip, one CPU", one),
    ] {
        let (o, t, s) = (w.oneloop, w.tokio, w.smol);
        lines.push(Line::lower(workload, "µs", o.cpu, t.cpu, s.cpu).target(1.0));
    }
    lines.push(Line::lower(
        "W1 vs raw mio::Waker ping-pong (information)",
        format!("p50 ÷ the ping-pong's {} µs", num(two.floor)),
        two.oneloop.p50 / two.floor,
        None,
        None,
    ));
    let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        o.push(micros(cpu::idle_oneloop()) / 1e3);
        t.push(micros(cpu::idle_tokio()) / 1e3);
        s.push(micros(cpu::idle_smol()) / 1e3);
    }
    let oi = median(&mut o);
    lines.push(
        Line::lower(
            "Idle loop + idle pool of 2 (1 s)",
            "ms of CPU",
            oi,
            median(&mut t),
            median(&mut s),
        )
        .own("≈ 0 (≤ 1 ms)", oi <= 1.0),
    );
}

/// W2: 200,000 tiny jobs, at most 1,024 in flight.
fn w2(rounds: usize, lines: &mut Vec<Line>) {
    let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        o.push(w2_oneloop(200_000, 1024));
        t.push(w2_tokio(200_000, 1024));
        s.push(smol::w2(200_000, 1024));
    }
    let (o, t, s) = (median(&mut o), median(&mut t), median(&mut s));
    lines.push(Line::higher("W2 offload throughput", "jobs/s", o, t, s).target(1.5));
}

/// W3: 64 kernels of 2 ms on `cores` workers; efficiency against ⌈64 / cores⌉ kernels.
fn w3(rounds: usize, cores: usize, kernel: Kernel, lines: &mut Vec<Line>) {
    let one = kernel.time(21);
    let ideal = (one * 64_usize.div_ceil(cores) as u32).as_secs_f64();
    let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
    // A run lasts ~70 ms, so one preemption by a neighbour on a shared machine moves it by
    // several percent: three times the rounds for a steadier median.
    for _ in 0..rounds * 3 {
        o.push(ideal / w3_oneloop(64, cores, kernel).as_secs_f64());
        t.push(ideal / w3_tokio(64, cores, kernel).as_secs_f64());
        s.push(ideal / smol::w3(64, cores, kernel).as_secs_f64());
    }
    let (o, t, s) = (median(&mut o), median(&mut t), median(&mut s));
    lines.push(
        Line::higher("W3 CPU scaling (64 × 2 ms)", "efficiency", o, t, s)
            .target(0.99)
            .absolute(0.97),
    );
}

/// W4: a 1 ms heartbeat's lateness while `cores` kernels stay offloaded (and inline).
fn w4(rounds: usize, cores: usize, kernel: Kernel, lines: &mut Vec<Line>) {
    let run_for = Duration::from_secs(2);
    // Per runtime: the medians over rounds of p50, p99 and max.
    let mut late: [[Vec<f64>; 3]; 3] = Default::default();
    let mut push = |runtime: usize, mut lateness: Vec<Duration>| {
        for (i, p) in [0.5, 0.99, 1.0].into_iter().enumerate() {
            late[runtime][i].push(micros(percentile(&mut lateness, p)));
        }
    };
    for _ in 0..rounds {
        push(0, w4_oneloop(false, run_for, kernel, cores));
        push(1, w4_tokio(false, run_for, kernel, cores));
        push(2, smol::w4(false, run_for, kernel, cores));
    }
    let mut at = |i: usize| late.each_mut().map(|runtime| median(&mut runtime[i]));
    let workload = "W4 heartbeat, offloaded";
    let [o, t, s] = at(0);
    lines.push(Line::lower(workload, "p50 late µs", o, t, s).target(1.0));
    let [o, t, s] = at(1);
    lines.push(Line::lower(workload, "p99 late µs", o, t, s).target(1.0));
    let [o, t, s] = at(2);
    lines.push(Line::lower(workload, "max late µs", o, t, s));
    let p99 = |mut lateness: Vec<Duration>| micros(percentile(&mut lateness, 0.99));
    let o = p99(w4_oneloop(true, run_for, kernel, cores));
    let t = p99(w4_tokio(true, run_for, kernel, cores));
    let s = p99(smol::w4(true, run_for, kernel, cores));
    lines.push(Line::lower(
        "W4 heartbeat, inline (the problem)",
        "p99 late µs",
        o,
        t,
        s,
    ));
}

/// W5: a million local tasks that yield once; W8: the same with debug mode on.
fn w5_w8(rounds: usize, lines: &mut Vec<Line>) {
    let tasks = 1_000_000;
    let rate = |time: Duration| tasks as f64 / time.as_secs_f64();
    let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        o.push(rate(w5_oneloop(tasks, false)));
        t.push(rate(w5_tokio(tasks)));
        s.push(rate(smol::w5(tasks)));
    }
    let (o, t, s) = (median(&mut o), median(&mut t), median(&mut s));
    lines.push(Line::higher("W5 spawn + poll (1M tasks)", "tasks/s", o, t, s).target(1.1));
    // W8 looks for a few percent on a machine whose speed drifts by more than that from
    // one second to the next: it compares runs in adjacent pairs (off then on, then on
    // then off) and takes the median of the pairs' ratios, over three times the rounds.
    let mut extra = vec![];
    for pair in 0..rounds * 3 {
        let (plain_time, debug_time) = if pair % 2 == 0 {
            let plain_time = w5_oneloop(tasks, false);
            (plain_time, w5_oneloop(tasks, true))
        } else {
            let debug_time = w5_oneloop(tasks, true);
            (w5_oneloop(tasks, false), debug_time)
        };
        extra.push(debug_time.as_secs_f64() / plain_time.as_secs_f64() - 1.0);
    }
    let extra = median(&mut extra);
    lines.push(
        Line::lower(
            "W8 debug mode's cost (W5)",
            "extra time, on ÷ off − 1",
            extra,
            None,
            None,
        )
        .own("≤ 0.05 (oneloop's own)", extra <= 0.05),
    );
}

/// W6: 100,000 concurrent sleeps, uniform in 0–100 ms.
fn w6(rounds: usize, lines: &mut Vec<Line>) {
    // Per runtime: wall ms, mean and p99 lateness µs, over rounds; early fires in all.
    let mut figures: [[Vec<f64>; 3]; 3] = Default::default();
    let mut early = [0; 3];
    for _ in 0..rounds {
        let runs = [w6_oneloop(100_000), w6_tokio(100_000), smol::w6(100_000)];
        for (runtime, run) in runs.into_iter().enumerate() {
            figures[runtime][0].push(micros(run.wall) / 1e3);
            figures[runtime][1].push(micros(run.mean_lateness));
            figures[runtime][2].push(micros(run.p99_lateness));
            early[runtime] += run.early;
        }
    }
    let mut at = |i: usize| figures.each_mut().map(|runtime| median(&mut runtime[i]));
    let workload = "W6 100k timers";
    let [o, t, s] = at(0);
    lines.push(Line::lower(workload, "wall ms", o, t, s).target(1.0));
    let [o, t, s] = at(2);
    lines.push(Line::lower(workload, "p99 late µs", o, t, s).target(1.0));
    let [o, t, s] = at(1);
    lines.push(Line::lower(workload, "mean late µs", o, t, s));
    let [o, t, s] = early.map(|n| n as f64);
    lines.push(Line::lower(workload, "fired early", o, t, s).own("0 (oneloop's own)", o == 0.0));
}

/// W7: TCP echo, served by each runtime in turn to the same client process.
fn w7_all(rounds: usize, cores: usize, lines: &mut Vec<Line>) {
    let echo_for = Duration::from_secs(3);
    let (mut o, mut t, mut s, mut mt) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        o.push(w7(echo_server_oneloop, echo_for));
        t.push(w7(echo_server_tokio, echo_for));
        s.push(w7(smol::echo_server, echo_for));
        mt.push(w7(echo_server_tokio_mt, echo_for));
    }
    let o = median(&mut o);
    let (t, s) = (median(&mut t), median(&mut s));
    lines.push(Line::higher("W7 TCP echo (50 conns, 64 B)", "round trips/s", o, t, s).target(1.0));
    lines.push(
        Line::higher(
            "W7 TCP echo vs tokio multi-thread (in the tokio column)",
            format!("round trips/s, {cores} worker threads"),
            o,
            median(&mut mt),
            None,
        )
        .target(0.9),
    );
}

/// W11: an offload burst on two workers (`burst.rs`), here and on one CPU (`one`: the
/// child's walls, oneloop, tokio, smol).
fn w11(rounds: usize, cores: usize, one: [f64; 3], lines: &mut Vec<Line>) {
    // smol's pool has as many threads as `main` gave `blocking`, the cores: a fair W11
    // only where that is the two workers the others have (in the one-CPU child it is).
    let smol_fits = cores == burst::WORKERS;
    let [mut walls, mut p50, mut p99]: [[Vec<f64>; 4]; 3] = Default::default();
    for _ in 0..rounds {
        let mut runs = vec![burst::oneloop(), burst::tokio()];
        if smol_fits {
            runs.push(burst::smol());
        }
        for (runtime, mut run) in runs.into_iter().enumerate() {
            walls[runtime].push(micros(run.wall) / 1e3);
            p50[runtime].push(micros(percentile(&mut run.completions, 0.5)));
            p99[runtime].push(micros(percentile(&mut run.completions, 0.99)));
        }
        walls[3].push(micros(burst::threads()) / 1e3);
    }
    // `None` where smol did not run: its cells read `-`.
    let at = |figures: &mut [Vec<f64>; 4]| {
        let [o, t, s, _] = figures;
        let s = if smol_fits { Some(median(s)) } else { None };
        (median(o), median(t), s)
    };
    let floor = median(&mut walls[3]);
    let (o, t, s) = at(&mut walls);
    let workload = "W11 offload burst (10k × 20 µs, 100 tasks, 2 workers)";
    lines.push(Line::lower(workload, "wall ms", o, t, s).target(1.0));
    let [o1, t1, s1] = one;
    lines.push(Line::lower("W11 offload burst, one CPU", "wall ms", o1, t1, s1).target(1.0));
    let (p50o, p50t, p50s) = at(&mut p50);
    lines.push(Line::lower(
        "W11 offload burst",
        "completion p50 µs",
        p50o,
        p50t,
        p50s,
    ));
    let (p99o, p99t, p99s) = at(&mut p99);
    lines.push(Line::lower(
        "W11 offload burst",
        "completion p99 µs",
        p99o,
        p99t,
        p99s,
    ));
    lines.push(Line::higher(
        "W11 efficiency vs plain threads",
        "threads' wall ÷ wall",
        floor / o,
        floor / t,
        s.map(|s| floor / s),
    ));
}

/// W9's rounds, alternating oneloop's process pool, CPython's (when `python3` is there) and
/// oneloop's thread pool; its rows, and what it ran CPython as in `about`.
fn w9(rounds: usize, about: &mut String) -> Vec<ProcessRow> {
    use process_pools as p;
    let python = p::Python::find();
    *about = match &python {
        Ok(python) => format!("CPython ({})", python.about),
        Err(why) => format!("CPython: {why}"),
    };
    println!("  W9 against {about}");
    let python = python.ok();
    let mut rows = Vec::new();
    // The CPython side, or NaN (SKIPPED) without python3.
    let py = |f: &dyn Fn(&p::Python) -> f64| python.as_ref().map_or(f64::NAN, f);

    // Round trip: chunks of 2,000 calls, interleaved as W1's are, each with a fresh pool.
    let calls = 2_000;
    let (mut o50, mut o99, mut c50, mut c99, mut t50, mut t99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds * 3 {
        let mut o = p::round_trip_processes(calls);
        o50.push(micros(percentile(&mut o, 0.5)));
        o99.push(micros(percentile(&mut o, 0.99)));
        let (median, p99) = python
            .as_ref()
            .map_or((f64::NAN, f64::NAN), |py| py.round_trip(calls));
        c50.push(median);
        c99.push(p99);
        let mut t = p::round_trip_threads(calls);
        t50.push(micros(percentile(&mut t, 0.5)));
        t99.push(micros(percentile(&mut t, 0.99)));
    }
    rows.push(ProcessRow {
        row: row(
            "W9 process call round trip (u64)",
            "median µs",
            median(&mut o50),
            median(&mut c50),
            "≤ 0.2",
            |r| r <= 0.2,
        ),
        threads: median(&mut t50),
    });
    rows.push(ProcessRow {
        row: row(
            "W9 process call round trip (u64)",
            "p99 µs",
            median(&mut o99),
            median(&mut c99),
            "-",
            |_| true,
        ),
        threads: median(&mut t99),
    });

    // Throughput: all submitted, then all awaited.
    let calls = 20_000;
    let (mut o, mut c, mut t) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        o.push(p::throughput_processes(calls));
        c.push(py(&|py| py.throughput(calls)));
        t.push(p::throughput_threads(calls));
    }
    rows.push(ProcessRow {
        row: row(
            "W9 process call throughput (20k u64)",
            "calls/s",
            median(&mut o),
            median(&mut c),
            "≥ 5",
            |r| r >= 5.0,
        ),
        threads: median(&mut t),
    });

    // 16 MiB there and back: 7 calls per round and side, the median of each.
    let (size, calls) = (16 << 20, 7);
    let ms = |mut times: Vec<Duration>| micros(percentile(&mut times, 0.5)) / 1e3;
    let (mut vec, mut bytes, mut c, mut t) = (vec![], vec![], vec![], vec![]);
    let (mut through_file, mut copy) = (vec![], vec![]);
    for _ in 0..rounds {
        vec.push(ms(p::big_processes(size, calls, false)));
        bytes.push(ms(p::big_processes(size, calls, true)));
        c.push(py(&|py| py.big(size, calls)));
        t.push(ms(p::big_threads(size, calls)));
        through_file.push(ms(p::memfd_copy(size, calls)));
        copy.push(ms(p::memcpy(size, calls)));
    }
    let (bytes, copy, t) = (median(&mut bytes), median(&mut copy), median(&mut t));
    let through_file = median(&mut through_file);
    let c = median(&mut c);
    rows.push(ProcessRow {
        row: row(
            "W9 16 MiB there and back, `Vec<u8>`",
            "ms",
            median(&mut vec),
            c,
            "-",
            |_| true,
        ),
        threads: t,
    });
    rows.push(ProcessRow {
        row: row(
            "W9 16 MiB there and back, as bytes",
            "ms",
            bytes,
            c,
            "-",
            |_| true,
        ),
        threads: t,
    });
    rows.push(ProcessRow {
        row: Row {
            workload: "W9 16 MiB as bytes vs the same bytes copied through a memory file",
            measure: "ms",
            oneloop: bytes,
            other: through_file,
            ratio: bytes / through_file,
            target: "≤ 2 (vs the copy)",
            met: bytes / through_file <= 2.0,
        },
        threads: f64::NAN,
    });
    rows.push(ProcessRow {
        row: Row {
            workload: "W9 16 MiB as bytes vs memcpy of 2 × 16 MiB",
            measure: "ms",
            oneloop: bytes,
            other: copy,
            ratio: bytes / copy,
            target: "-",
            met: true,
        },
        threads: f64::NAN,
    });
    rows
}

/// One line of W9's table, oneloop beside one other figure (CPython's, or a copy's).
struct Row {
    workload: &'static str,
    measure: &'static str,
    oneloop: f64,
    other: f64,
    /// oneloop ÷ the other figure; NaN when the other side was skipped.
    ratio: f64,
    target: &'static str,
    met: bool,
}

fn row(
    workload: &'static str,
    measure: &'static str,
    oneloop: f64,
    other: f64,
    target: &'static str,
    ok: fn(f64) -> bool,
) -> Row {
    let ratio = oneloop / other;
    Row {
        workload,
        measure,
        oneloop,
        other,
        ratio,
        target,
        met: ok(ratio),
    }
}

/// A line of W9's table: a [`Row`] whose other figure is CPython's (or, on the memory file
/// and memcpy lines, the copy's), and the same work on oneloop's thread pool.
struct ProcessRow {
    row: Row,
    threads: f64,
}

fn render_processes(rows: &[ProcessRow]) -> String {
    let mut out = String::from(
        "| workload | measure | oneloop ProcessPool | CPython ProcessPoolExecutor | ratio | target | met | oneloop ThreadPool |\n\
         |---|---|---:|---:|---:|---|:-:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(out, "{} | {} |", cells(&r.row), num(r.threads));
    }
    out
}

/// A row's cells up to `met`, without the closing `|`. A NaN ratio means the other side
/// was skipped.
fn cells(r: &Row) -> String {
    let met = if r.ratio.is_nan() {
        "skipped"
    } else if r.met {
        "yes"
    } else {
        "**no**"
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {}",
        r.workload,
        r.measure,
        num(r.oneloop),
        num(r.other),
        if r.ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.2}", r.ratio)
        },
        r.target,
        met
    )
}
