"""W9's CPython side: concurrent.futures.ProcessPoolExecutor doing what oneloop's process
pool does in `workloads/process.rs`, with the same number of workers.

Run by `cargo bench --bench compare` (one process per round, so rounds alternate with
oneloop's); prints one line of `name=value` pairs for it to read:

    python3 process_pool.py version
    python3 process_pool.py round-trip WORKERS CALLS      # median_us=.. p99_us=..
    python3 process_pool.py throughput WORKERS CALLS      # calls_per_s=..
    python3 process_pool.py bytes WORKERS SIZE CALLS      # median_ms=..

Every mode starts the pool and warms it first, as the Rust side does: the workers' start
(a fork each, under Linux's default start method) is paid before the clock starts, so
only calls are measured.
"""

import multiprocessing
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait


def echo(x):
    """The trivial call: its cost is the pool's own."""
    return x


def warm(pool, workers):
    # 50 batches of 4 calls per worker, as the Rust side does: every worker has started
    # and answered before anything is timed.
    for _ in range(50):
        wait([pool.submit(echo, i) for i in range(4 * workers)])


def percentile(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)]


def round_trip(workers, calls):
    with ProcessPoolExecutor(max_workers=workers) as pool:
        warm(pool, workers)
        latencies = []
        for i in range(calls):
            start = time.perf_counter_ns()
            pool.submit(echo, i).result()
            latencies.append(time.perf_counter_ns() - start)
    print(f"median_us={percentile(latencies, 0.5) / 1e3} p99_us={percentile(latencies, 0.99) / 1e3}")


def throughput(workers, calls):
    with ProcessPoolExecutor(max_workers=workers) as pool:
        warm(pool, workers)
        start = time.perf_counter()
        # All submitted, then all awaited, as on the Rust side.
        futures = [pool.submit(echo, i) for i in range(calls)]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
    print(f"calls_per_s={calls / elapsed}")


def big(workers, size, calls):
    data = bytes(size)  # allocated once, outside the clock, as on the Rust side
    with ProcessPoolExecutor(max_workers=workers) as pool:
        warm(pool, workers)
        times = []
        for call in range(calls + 2):  # two untimed first, as on the Rust side
            start = time.perf_counter_ns()
            back = pool.submit(echo, data).result()
            if call >= 2:
                times.append(time.perf_counter_ns() - start)
            assert len(back) == size
    print(f"median_ms={percentile(times, 0.5) / 1e6}")


def main():
    mode, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if mode == "version":
        method = multiprocessing.get_start_method()
        print(f"version={platform.python_version()} start_method={method}")
    elif mode == "round-trip":
        round_trip(*args)
    elif mode == "throughput":
        throughput(*args)
    elif mode == "bytes":
        big(*args)
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
