//! oneloop vs tokio, side by side: every workload (see `workloads/mod.rs`) runs on both
//! runtimes in the same run, alternating, and the medians' ratios (oneloop ÷ tokio) are
//! printed as one table and written to `benches/RESULTS.md`. W9 (`workloads/process.rs`)
//! has a table of its own: oneloop's process pool beside CPython's `ProcessPoolExecutor`
//! (`python3` runs `python/process_pool.py`; the rows say SKIPPED without it), with
//! oneloop's thread pool in a last column. W10 (`workloads/remote.rs`) has one too: calls
//! through Redis to remote workers, beside a raw ping-pong through the same streams and
//! Celery (SKIPPED without `redis-server`, or without Celery).
//! (Long because every workload's rows, targets and peers are laid out in one table-making place.)
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

/// A line of the best-peer table: oneloop beside tokio and smol, measured in the same run,
/// and the ratio to whichever peer did better.
struct PeerRow {
    workload: &'static str,
    measure: &'static str,
    oneloop: f64,
    tokio: f64,
    smol: f64,
    /// Latencies and times: lower is better. Rates: higher is.
    lower_is_better: bool,
    /// The target on oneloop ÷ best peer, for a latency (≤) or a rate (≥).
    target: f64,
}

impl PeerRow {
    fn best(&self) -> f64 {
        if self.lower_is_better {
            self.tokio.min(self.smol)
        } else {
            self.tokio.max(self.smol)
        }
    }

    fn ratio(&self) -> f64 {
        self.oneloop / self.best()
    }

    fn met(&self) -> bool {
        if self.lower_is_better {
            self.ratio() <= self.target
        } else {
            self.ratio() >= self.target
        }
    }
}

fn render_peers(rows: &[PeerRow]) -> String {
    let mut out = String::from(
        "| workload | measure | oneloop | tokio | smol | ratio to the best peer | target | met |\n\
         |---|---|---:|---:|---:|---:|---|:-:|\n",
    );
    for r in rows {
        let target = if r.lower_is_better { "≤" } else { "≥" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {target} {:.1} | {} |",
            r.workload,
            r.measure,
            num(r.oneloop),
            num(r.tokio),
            num(r.smol),
            r.ratio(),
            r.target,
            if r.met() { "yes" } else { "**no**" }
        );
    }
    out
}

use std::fmt::Write as _;
use std::time::Duration;

use workloads::*;

/// One line of a table.
struct Row {
    workload: &'static str,
    measure: &'static str,
    oneloop: f64,
    tokio: f64,
    /// oneloop ÷ tokio (or oneloop's own value, when `tokio` is NaN; NaN when the other
    /// side was skipped).
    ratio: f64,
    target: &'static str,
    met: bool,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // smol's `blocking` pool gets two threads, as the other peers' pools do in W11 (W1
    // uses one at a time). Read once, when the pool first starts.
    // SAFETY: the first line of `main`: no other thread exists yet to read the environment.
    unsafe { std::env::set_var("BLOCKING_MAX_THREADS", "2") };
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
    let cores = cores();
    println!("oneloop vs tokio: {rounds} round(s) per workload, alternating; {cores} cores");
    let mut rows = Vec::new();
    let mut peers = Vec::new();
    let kernel = Kernel::calibrated(Duration::from_millis(2));

    // W1 and its floor.
    if want("W1") {
        // Each round runs the 20,000 round trips as 5 chunks of 4,000 per contender,
        // interleaved, each chunk with fresh threads: a wake-up's cost depends on where the
        // scheduler puts the two threads (same core or not; on a VM, a halted virtual CPU
        // costs tens of µs to wake), and interleaving gives every contender the same luck.
        let (mut o_med, mut o_p99, mut t_med, mut t_p99, mut floor) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut o_cpu, mut t_cpu) = (vec![], vec![]);
        let (mut s_med, mut s_p99) = (vec![], vec![]);
        // CPU per round trip: the whole process's, the pool's start and the 200 warm-up
        // round trips included (on both sides alike).
        let per_trip = |cpu: Duration| micros(cpu) / 4_200.0;
        for _ in 0..rounds * 5 {
            let (mut o, cpu) = cpu::with_cpu(|| w1_oneloop(4_000));
            o_cpu.push(per_trip(cpu));
            let (mut t, cpu) = cpu::with_cpu(|| w1_tokio(4_000));
            t_cpu.push(per_trip(cpu));
            let mut s = smol::w1(4_000);
            s_med.push(micros(percentile(&mut s, 0.5)));
            s_p99.push(micros(percentile(&mut s, 0.99)));
            let mut p = ping_pong(4_000);
            o_med.push(micros(percentile(&mut o, 0.5)));
            o_p99.push(micros(percentile(&mut o, 0.99)));
            t_med.push(micros(percentile(&mut t, 0.5)));
            t_p99.push(micros(percentile(&mut t, 0.99)));
            floor.push(micros(percentile(&mut p, 0.5)));
        }
        let (om, tm, fm) = (median(&mut o_med), median(&mut t_med), median(&mut floor));
        peers.push(PeerRow {
            workload: "W1 offload round trip",
            measure: "median µs",
            oneloop: om,
            tokio: tm,
            smol: median(&mut s_med),
            lower_is_better: true,
            target: 1.0,
        });
        rows.push(row(
            "W1 offload round trip",
            "median µs",
            om,
            tm,
            "≤ 0.8",
            |r| r <= 0.8,
        ));
        let (o99, t99) = (median(&mut o_p99), median(&mut t_p99));
        peers.push(PeerRow {
            workload: "W1 offload round trip",
            measure: "p99 µs",
            oneloop: o99,
            tokio: t99,
            smol: median(&mut s_p99),
            lower_is_better: true,
            target: 1.0,
        });
        rows.push(row(
            "W1 offload round trip",
            "p99 µs",
            o99,
            t99,
            "-",
            |_| true,
        ));
        rows.push(row(
            "W1 CPU per round trip (process, user + sys)",
            "µs",
            median(&mut o_cpu),
            median(&mut t_cpu),
            "≤ 1.0",
            |r| r <= 1.0,
        ));
        let (mut o_idle, mut t_idle) = (vec![], vec![]);
        for _ in 0..rounds {
            o_idle.push(micros(cpu::idle_oneloop()) / 1e3);
            t_idle.push(micros(cpu::idle_tokio()) / 1e3);
        }
        let (oi, ti) = (median(&mut o_idle), median(&mut t_idle));
        rows.push(Row {
            workload: "Idle loop + idle pool of 2 (1 s)",
            measure: "ms of CPU",
            oneloop: oi,
            tokio: ti,
            ratio: oi / ti,
            target: "≈ 0 (≤ 1 ms)",
            met: oi <= 1.0,
        });
        rows.push(Row {
            workload: "W1 vs raw mio::Waker ping-pong",
            measure: "median µs",
            oneloop: om,
            tokio: fm,
            ratio: om / fm,
            target: "≤ 1.5 (vs floor)",
            met: om / fm <= 1.5,
        });
        println!("  W1 done");
    }

    // W2.
    if want("W2") {
        let (mut o, mut t) = (vec![], vec![]);
        for _ in 0..rounds {
            o.push(w2_oneloop(200_000, 1024));
            t.push(w2_tokio(200_000, 1024));
        }
        rows.push(row(
            "W2 offload throughput",
            "jobs/s",
            median(&mut o),
            median(&mut t),
            "≥ 1.5",
            |r| r >= 1.5,
        ));
        println!("  W2 done");
    }

    // W3.
    if want("W3") {
        let one = kernel.time(21);
        let ideal = one * 64_usize.div_ceil(cores) as u32;
        let (mut o, mut t) = (vec![], vec![]);
        // A run lasts ~70 ms, so one preemption by a neighbour on a shared machine moves
        // it by several percent: three times the rounds for a steadier median.
        for _ in 0..rounds * 3 {
            o.push(ideal.as_secs_f64() / w3_oneloop(64, cores, kernel).as_secs_f64());
            t.push(ideal.as_secs_f64() / w3_tokio(64, cores, kernel).as_secs_f64());
        }
        let (oe, te) = (median(&mut o), median(&mut t));
        rows.push(Row {
            workload: "W3 CPU scaling (64 × 2 ms)",
            measure: "efficiency",
            oneloop: oe,
            tokio: te,
            ratio: oe,
            target: "≥ 0.95 (oneloop's own)",
            met: oe >= 0.95,
        });
        println!("  W3 done");
    }

    // W4.
    if want("W4") {
        let run_for = Duration::from_secs(2);
        let (mut o99, mut t99, mut omax, mut tmax, mut o50, mut t50) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let mut o = w4_oneloop(false, run_for, kernel, cores);
            let mut t = w4_tokio(false, run_for, kernel, cores);
            o50.push(micros(percentile(&mut o, 0.5)));
            t50.push(micros(percentile(&mut t, 0.5)));
            o99.push(micros(percentile(&mut o, 0.99)));
            t99.push(micros(percentile(&mut t, 0.99)));
            omax.push(micros(percentile(&mut o, 1.0)));
            tmax.push(micros(percentile(&mut t, 1.0)));
        }
        rows.push(row(
            "W4 heartbeat, offloaded",
            "p50 late µs",
            median(&mut o50),
            median(&mut t50),
            "-",
            |_| true,
        ));
        rows.push(row(
            "W4 heartbeat, offloaded",
            "p99 late µs",
            median(&mut o99),
            median(&mut t99),
            "≤ 1.0",
            |r| r <= 1.0,
        ));
        rows.push(row(
            "W4 heartbeat, offloaded",
            "max late µs",
            median(&mut omax),
            median(&mut tmax),
            "-",
            |_| true,
        ));
        let mut oi = w4_oneloop(true, run_for, kernel, cores);
        let mut ti = w4_tokio(true, run_for, kernel, cores);
        rows.push(row(
            "W4 heartbeat, inline (the problem)",
            "p99 late µs",
            micros(percentile(&mut oi, 0.99)),
            micros(percentile(&mut ti, 0.99)),
            "-",
            |_| true,
        ));
        println!("  W4 done");
    }

    // W5 and W8.
    if want("W5") || want("W8") {
        let tasks = 1_000_000;
        let (mut o, mut t, mut s) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            o.push(tasks as f64 / w5_oneloop(tasks, false).as_secs_f64());
            t.push(tasks as f64 / w5_tokio(tasks).as_secs_f64());
            s.push(tasks as f64 / smol::w5(tasks).as_secs_f64());
        }
        let plain = median(&mut o);
        let tokio_w5 = median(&mut t);
        peers.push(PeerRow {
            workload: "W5 spawn + poll (1M tasks)",
            measure: "tasks/s",
            oneloop: plain,
            tokio: tokio_w5,
            smol: median(&mut s),
            lower_is_better: false,
            target: 1.1,
        });
        rows.push(row(
            "W5 spawn + poll (1M tasks)",
            "tasks/s",
            plain,
            tokio_w5,
            "≥ 1.0",
            |r| r >= 1.0,
        ));
        // W8 looks for a few percent on a machine whose speed drifts by more than that from
        // one second to the next: it compares runs in adjacent pairs (off then on, then on
        // then off) and takes the median of the pairs' ratios, over three times the rounds.
        let (mut extra, mut on, mut off) = (vec![], vec![], vec![]);
        for pair in 0..rounds * 3 {
            let (plain_time, debug_time) = if pair % 2 == 0 {
                let plain_time = w5_oneloop(tasks, false);
                (plain_time, w5_oneloop(tasks, true))
            } else {
                let debug_time = w5_oneloop(tasks, true);
                (w5_oneloop(tasks, false), debug_time)
            };
            extra.push(debug_time.as_secs_f64() / plain_time.as_secs_f64() - 1.0);
            on.push(tasks as f64 / debug_time.as_secs_f64());
            off.push(tasks as f64 / plain_time.as_secs_f64());
        }
        let extra = median(&mut extra);
        rows.push(Row {
            workload: "W8 debug mode's cost (W5)",
            measure: "tasks/s, on vs off",
            oneloop: median(&mut on),
            tokio: median(&mut off),
            ratio: extra,
            target: "≤ 0.05 extra time",
            met: extra <= 0.05,
        });
        println!("  W5, W8 done");
    }

    // W6.
    if want("W6") {
        let (mut ow, mut tw, mut ol, mut tl, mut early) = (vec![], vec![], vec![], vec![], 0);
        for _ in 0..rounds {
            let o = w6_oneloop(100_000);
            let t = w6_tokio(100_000);
            ow.push(micros(o.wall) / 1e3);
            tw.push(micros(t.wall) / 1e3);
            ol.push(micros(o.mean_lateness));
            tl.push(micros(t.mean_lateness));
            early += o.early;
        }
        rows.push(row(
            "W6 100k timers",
            "wall ms",
            median(&mut ow),
            median(&mut tw),
            "≤ 1.1",
            |r| r <= 1.1,
        ));
        rows.push(row(
            "W6 100k timers",
            "mean late µs",
            median(&mut ol),
            median(&mut tl),
            "-",
            |_| true,
        ));
        rows.push(Row {
            workload: "W6 100k timers",
            measure: "fired early",
            oneloop: early as f64,
            tokio: f64::NAN,
            ratio: early as f64,
            target: "0",
            met: early == 0,
        });
        println!("  W6 done");
    }

    // W7.
    if want("W7") {
        let echo_for = Duration::from_secs(3);
        let (mut o, mut t) = (vec![], vec![]);
        for _ in 0..rounds {
            o.push(w7(echo_server_oneloop, echo_for));
            t.push(w7(echo_server_tokio, echo_for));
        }
        rows.push(row(
            "W7 TCP echo (50 conns, 64 B)",
            "round trips/s",
            median(&mut o),
            median(&mut t),
            "≥ 0.95",
            |r| r >= 0.95,
        ));
        println!("  W7 done");
    }

    // W11: an offload burst.
    if want("W11") {
        let (mut o_wall, mut t_wall, mut floor) = (vec![], vec![], vec![]);
        let mut s_wall = vec![];
        let (mut o50, mut o99, mut t50, mut t99) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let mut o = burst::oneloop();
            let mut t = burst::tokio();
            floor.push(micros(burst::threads()) / 1e3);
            s_wall.push(micros(burst::smol().0) / 1e3);
            o_wall.push(micros(o.wall) / 1e3);
            t_wall.push(micros(t.wall) / 1e3);
            o50.push(micros(percentile(&mut o.completions, 0.5)));
            o99.push(micros(percentile(&mut o.completions, 0.99)));
            t50.push(micros(percentile(&mut t.completions, 0.5)));
            t99.push(micros(percentile(&mut t.completions, 0.99)));
        }
        let (ow, tw, fw) = (median(&mut o_wall), median(&mut t_wall), median(&mut floor));
        peers.push(PeerRow {
            workload: "W11 offload burst",
            measure: "wall ms",
            oneloop: ow,
            tokio: tw,
            smol: median(&mut s_wall),
            lower_is_better: true,
            target: 1.0,
        });
        rows.push(row(
            "W11 offload burst (10k × 20 µs, 100 tasks, 2 workers)",
            "wall ms",
            ow,
            tw,
            "≤ 1.0",
            |r| r <= 1.0,
        ));
        rows.push(row(
            "W11 offload burst",
            "completion p50 µs",
            median(&mut o50),
            median(&mut t50),
            "-",
            |_| true,
        ));
        rows.push(row(
            "W11 offload burst",
            "completion p99 µs",
            median(&mut o99),
            median(&mut t99),
            "-",
            |_| true,
        ));
        rows.push(Row {
            workload: "W11 efficiency vs plain threads",
            measure: "threads' wall ÷ wall",
            oneloop: fw / ow,
            tokio: fw / tw,
            ratio: (fw / ow) / (fw / tw),
            target: "≥ 1.0 (vs tokio)",
            met: fw / ow >= fw / tw,
        });
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

    let table = render(&rows);
    println!("\n{table}");
    let mut page = format!(
        "# oneloop vs tokio\n\nMeasured by `cargo bench --bench compare{}` on a {cores}-core machine \
         ({rounds} round(s) per workload, alternating the runtimes; medians). Ratios are \
         oneloop ÷ tokio. Workloads are defined in `benches/workloads/mod.rs`.\n\n{table}",
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
    if !peers.is_empty() {
        let table = render_peers(&peers);
        println!("Best peer: tokio or smol, same run\n\n{table}");
        let _ = write!(
            page,
            "\n## The best peer: oneloop beside tokio and smol\n\nThe same workloads on smol's \
             parts (`async-executor`, `async-io`, `blocking`; `benches/workloads/smol.rs`), \
             measured in the same run. The ratio is to whichever peer did better.\n\n{table}"
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
            tokio: through_file,
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
            tokio: copy,
            ratio: bytes / copy,
            target: "-",
            met: true,
        },
        threads: f64::NAN,
    });
    rows
}

fn row(
    workload: &'static str,
    measure: &'static str,
    oneloop: f64,
    tokio: f64,
    target: &'static str,
    ok: fn(f64) -> bool,
) -> Row {
    let ratio = oneloop / tokio;
    Row {
        workload,
        measure,
        oneloop,
        tokio,
        ratio,
        target,
        met: ok(ratio),
    }
}

/// A line of W9's table: a [`Row`] whose `tokio` is CPython's figure (or, on the memcpy
/// line, the copy's), and the same work on oneloop's thread pool.
struct ProcessRow {
    row: Row,
    threads: f64,
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | measure | oneloop | tokio | ratio | target | met |\n|---|---|---:|---:|---:|---|:-:|\n",
    );
    for r in rows {
        let _ = writeln!(out, "{} |", cells(r));
    }
    out
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
        num(r.tokio),
        if r.ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.2}", r.ratio)
        },
        r.target,
        met
    )
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.4}") // W9's thread pool moves 16 MiB in µs: 0.00 ms would hide it
    } else {
        format!("{v:.2}")
    }
}
