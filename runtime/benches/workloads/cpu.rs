//! What the runtimes burn, not only how fast they answer: the process's CPU time (user +
//! system, every thread, `getrusage`) around a workload, and the CPU an idle loop with an
//! idle pool uses (oneloop, tokio and smol). A spin that buys latency with CPU shows up here.

use std::time::Duration;

/// This process's CPU time so far: user and system, every thread.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` fills the `rusage` it is given and reads nothing from it; the
    // pointer is to a live, writable, properly aligned `rusage`.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(status, 0, "getrusage: {}", std::io::Error::last_os_error());
    // SAFETY: `getrusage` returned 0, so it filled the whole struct.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The result of `work` and the CPU time the whole process spent while it ran.
pub fn with_cpu<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let before = cpu_time();
    let result = work();
    (result, cpu_time().saturating_sub(before))
}

/// How long each idle measurement lasts.
const IDLE: Duration = Duration::from_secs(1);

/// CPU time per second of an idle oneloop: a loop asleep in a one-second timer, beside a
/// pool of two workers that has just run a job (so its threads exist, and then idle).
pub fn idle_oneloop() -> Duration {
    let pool = oneloop::pool::ThreadPool::new(2).expect("pool");
    let rt = oneloop::Runtime::builder()
        .debug(false)
        .build()
        .expect("runtime");
    rt.block_on(async {
        oneloop::run_in_executor(&pool, || 1).await.expect("job");
        let ((), cpu) = {
            let before = cpu_time();
            oneloop::time::sleep(IDLE).await;
            ((), cpu_time().saturating_sub(before))
        };
        cpu
    })
}

/// The same on tokio: a current-thread runtime asleep in a timer, its blocking pool of two
/// threads having just run a job.
pub fn idle_tokio() -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::task::spawn_blocking(|| 1).await.expect("job");
        let before = cpu_time();
        tokio::time::sleep(IDLE).await;
        cpu_time().saturating_sub(before)
    })
}

/// The same on smol: async-io's `block_on` asleep in a `Timer`, `blocking`'s pool having
/// just run a job (its threads then wait 500 ms for more before they leave).
pub fn idle_smol() -> Duration {
    async_io::block_on(async {
        blocking::unblock(|| 1).await;
        let before = cpu_time();
        async_io::Timer::after(IDLE).await;
        cpu_time().saturating_sub(before)
    })
}
