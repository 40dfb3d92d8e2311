"""W10's Celery side: the same trivial call as oneloop-remote's, through Celery on the same
Redis (broker and result backend), measured the same way. Run by `workloads/remote.rs`:

    ONELOOP_BENCH_REDIS=redis://127.0.0.1:<port>/ python celery_bench.py round-trip <calls>
    ONELOOP_BENCH_REDIS=redis://127.0.0.1:<port>/ python celery_bench.py throughput <workers> <calls>

Each mode starts a Celery worker (prefork, `workers` processes) on a queue of its own,
warms it (the workers' start is not measured, as on the Rust side), measures, and stops
the worker. The last line printed is `name=value` pairs.
"""

import os
import subprocess
import sys
import time

from celery import Celery

URL = os.environ.get("ONELOOP_BENCH_REDIS", "redis://127.0.0.1:6379/0")
QUEUE = "oneloop-bench-celery"

app = Celery("celery_bench", broker=URL, backend=URL)
app.conf.task_default_queue = QUEUE
app.conf.worker_prefetch_multiplier = 4
app.conf.result_expires = 600


@app.task
def echo(x):
    return x


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))]


def start_worker(workers):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here, ONELOOP_BENCH_REDIS=URL)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_bench", "worker",
         "--concurrency", str(workers), "-P", "prefork", "-Q", QUEUE,
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "warning"],
        cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from celery_bench import echo as task  # the name the worker knows: celery_bench.echo
    # Warm: the first answers mean every process is up.
    deadline = time.time() + 60
    while True:
        try:
            task.delay(0).get(timeout=5)
            break
        except Exception:
            if time.time() > deadline:
                worker.kill()
                raise
    for _ in range(50):
        results = [task.delay(i) for i in range(4 * workers)]
        for result in results:
            result.get(timeout=30)
    return worker, task


def round_trip(calls):
    worker, task = start_worker(1)
    try:
        times = []
        for i in range(calls):
            start = time.perf_counter_ns()
            assert task.delay(i).get(timeout=30) == i
            times.append(time.perf_counter_ns() - start)
    finally:
        worker.kill()
        worker.wait()
    print(f"median_us={percentile(times, 0.5) / 1e3} p99_us={percentile(times, 0.99) / 1e3}")


def throughput(workers, calls):
    worker, task = start_worker(workers)
    try:
        start = time.perf_counter()
        results = [task.delay(i) for i in range(calls)]
        for i, result in enumerate(results):
            assert result.get(timeout=120) == i
        elapsed = time.perf_counter() - start
    finally:
        worker.kill()
        worker.wait()
    print(f"calls_per_s={calls / elapsed}")


def main():
    mode = sys.argv[1]
    if mode == "version":
        import celery
        print(f"celery={celery.__version__} python={sys.version.split()[0]}")
    elif mode == "round-trip":
        round_trip(int(sys.argv[2]))
    elif mode == "throughput":
        throughput(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
