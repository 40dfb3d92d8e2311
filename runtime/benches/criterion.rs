//! Criterion benchmarks of the workloads that time well per iteration, each run on oneloop
//! and on tokio as two functions of one group: `cargo bench --bench criterion`.
//! `compare.rs` runs every workload and prints the table of ratios.

#[path = "workloads/mod.rs"]
mod workloads;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use workloads::*;

fn total(latencies: Vec<Duration>) -> Duration {
    latencies.into_iter().sum()
}

fn offload_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("W1 offload round trip");
    group.bench_function("oneloop", |b| {
        b.iter_custom(|n| total(w1_oneloop(n as usize)))
    });
    group.bench_function("tokio", |b| b.iter_custom(|n| total(w1_tokio(n as usize))));
    group.bench_function("raw mio::Waker ping-pong", |b| {
        b.iter_custom(|n| total(ping_pong(n as usize)))
    });
    group.finish();
}

fn offload_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("W2 offload throughput (10k jobs, 1024 in flight)");
    group.sample_size(10);
    let per_iter = |jobs_per_sec: f64| Duration::from_secs_f64(10_000.0 / jobs_per_sec);
    group.bench_function("oneloop", |b| {
        b.iter_custom(|n| (0..n).map(|_| per_iter(w2_oneloop(10_000, 1024))).sum())
    });
    group.bench_function("tokio", |b| {
        b.iter_custom(|n| (0..n).map(|_| per_iter(w2_tokio(10_000, 1024))).sum())
    });
    group.finish();
}

fn spawn_and_poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5 spawn + poll (100k tasks); W8 with debug mode");
    group.sample_size(10);
    group.bench_function("oneloop", |b| {
        b.iter_custom(|n| (0..n).map(|_| w5_oneloop(100_000, false)).sum())
    });
    group.bench_function("oneloop, debug mode", |b| {
        b.iter_custom(|n| (0..n).map(|_| w5_oneloop(100_000, true)).sum())
    });
    group.bench_function("tokio (LocalSet)", |b| {
        b.iter_custom(|n| (0..n).map(|_| w5_tokio(100_000)).sum())
    });
    group.finish();
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("W6 10k timers (0-100 ms)");
    group.sample_size(10);
    let run = |f: fn(usize) -> Timers| {
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|n| {
                let start = Instant::now();
                for _ in 0..n {
                    assert_eq!(f(10_000).early, 0);
                }
                start.elapsed()
            })
        }
    };
    group.bench_function("oneloop", run(w6_oneloop));
    group.bench_function("tokio", run(w6_tokio));
    group.finish();
}

criterion_group!(
    benches,
    offload_round_trip,
    offload_throughput,
    spawn_and_poll,
    timers
);
criterion_main!(benches);
