//! 08: The whole story: a small HTTP service, its CPU endpoint inline, then offloaded.
//!
//! The production symptom of the asyncio guides, reproduced and cured in one screen. A
//! service answers `GET /health` (instantly) and `GET /checksum?kb=N` (a real CRC-32 over
//! N KiB, looped to take tens of milliseconds). A load generator keeps 8 connections
//! polling `/health` while 2 connections keep asking for checksums. Inline, every checksum
//! blocks the loop, so `/health`'s tail latency *is* the checksum's duration and debug mode
//! reports every request; offloaded to a CPU pool, `/health` stays fast and debug mode is
//! silent. Same code, same work: only where the checksum runs changed.
//!
//! Run with: cargo run --release --example 08_service

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oneloop::net::{TcpListener, TcpStream};
use oneloop::pool::ThreadPool;
use oneloop::time::{interval, sleep_until};
use oneloop_examples::{crc_rate, crc32, ms};

/// Connections polling `/health`, each every `HEALTH_EVERY`.
const HEALTH_CONNECTIONS: usize = 8;
const HEALTH_EVERY: Duration = Duration::from_millis(5);
/// Connections asking for checksums back to back.
const CHECKSUM_CONNECTIONS: usize = 2;
/// What a checksum request asks for.
const CHECKSUM_KIB: usize = 256;

/// How a run is set up.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long the load runs.
    pub duration: Duration,
    /// How long one checksum request takes to compute.
    pub checksum_takes: Duration,
    /// Debug mode's slow-task threshold on the server.
    pub slow_threshold: Duration,
}

impl Settings {
    /// The demo's settings: 5 s per mode, 40 ms checksums, a 20 ms threshold.
    pub fn demo() -> Settings {
        Settings {
            duration: Duration::from_secs(5),
            checksum_takes: Duration::from_millis(40),
            slow_threshold: Duration::from_millis(20),
        }
    }
}

/// Where `/checksum` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the loop, in the request's task.
    Inline,
    /// On a CPU pool, with `run_in_executor`.
    Offload,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `/health` latencies, sorted.
    pub health: Vec<Duration>,
    /// Requests per second, `/health` and `/checksum`.
    pub health_rps: f64,
    /// Checksums served per second.
    pub checksum_rps: f64,
    /// Slow-task reports debug mode made on the server.
    pub slow_reports: u64,
}

impl Outcome {
    /// The `p`-th percentile of `/health` latency.
    pub fn health_percentile(&self, p: f64) -> Duration {
        let i = ((self.health.len() as f64 - 1.0) * p).round() as usize;
        self.health.get(i).copied().unwrap_or_default()
    }
}

// ------------------------------------------------------------------------------------
// The service.
// ------------------------------------------------------------------------------------

/// Shared by the server's tasks: how to compute, and the data to checksum.
struct Service {
    mode: Mode,
    pool: ThreadPool,
    data: Arc<Vec<u8>>,
    /// Passes of CRC-32 per KiB requested, so a request takes about `CHECKSUM_TAKES`.
    passes_per_kib: f64,
}

/// How the server thread is started.
struct Server {
    mode: Mode,
    settings: Settings,
    /// `crc32`'s speed here, in bytes per second (measured before the load starts).
    crc_rate: f64,
    listener: std::net::TcpListener,
    /// Told once the server accepts connections.
    ready: std::sync::mpsc::Sender<()>,
    stop: oneloop::sync::oneshot::Receiver<()>,
}

/// Serves until told to stop; returns the slow-task reports debug mode made.
fn serve(server: Server) -> u64 {
    let Server {
        mode,
        settings,
        crc_rate,
        listener,
        ready,
        stop,
    } = server;
    let slow = Arc::new(AtomicU64::new(0));
    let rt = oneloop::Runtime::builder()
        .debug(true)
        .slow_task_threshold(settings.slow_threshold)
        .on_report({
            let slow = slow.clone();
            move |report| {
                if report.code == oneloop::debug::Code::SlowPoll {
                    slow.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let service = Rc::new(Service {
        mode,
        // A CPU pool sized to the cores, less one for the loop (and, here, the load
        // generator running on the same machine).
        pool: ThreadPool::builder()
            .workers(cores.saturating_sub(1).max(1))
            .thread_name("checksum")
            .build()
            .expect("pool"),
        data: Arc::new((0..8 << 20).map(|i: usize| (i >> 3) as u8).collect()),
        // Passes over a KiB-sized request so that CHECKSUM_KIB takes `checksum_takes`.
        passes_per_kib: settings.checksum_takes.as_secs_f64() * crc_rate
            / (CHECKSUM_KIB * 1024 * CHECKSUM_KIB) as f64,
    });
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        let acceptor = oneloop::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service.clone();
                oneloop::task::Builder::new()
                    .name("http connection")
                    .spawn(async move { connection(stream, &service).await })
                    .detach();
            }
        });
        let _ = ready.send(());
        let _ = stop.await;
        acceptor.abort();
    });
    slow.load(Ordering::Relaxed)
}

/// One keep-alive connection: parse requests with httparse, answer each.
async fn connection(mut stream: TcpStream, service: &Service) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(()); // the client closed the connection
        }
        filled += n;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            let consumed = match request.parse(&buf[..filled]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => break, // read more
                Err(_) => return respond(&mut stream, 400, "bad request\n").await,
            };
            let path = request.path.unwrap_or("/").to_owned();
            route(&mut stream, service, &path).await?;
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
    }
}

async fn route(stream: &mut TcpStream, service: &Service, path: &str) -> io::Result<()> {
    if path == "/health" {
        return respond(stream, 200, "ok\n").await;
    }
    let Some(kib) = path
        .strip_prefix("/checksum?kb=")
        .and_then(|kib| kib.parse::<usize>().ok())
        .filter(|kib| (1..=8192).contains(kib))
    else {
        return respond(stream, 404, "try /health or /checksum?kb=256\n").await;
    };
    let data = service.data.clone();
    let passes = (service.passes_per_kib * kib as f64).ceil().max(1.0) as u32;
    let checksum = move || {
        let mut crc = 0;
        for _ in 0..passes {
            crc = std::hint::black_box(crc32(&data[..kib * 1024]));
        }
        crc
    };
    let crc = match service.mode {
        // The bug: the loop computes, and every other connection waits.
        Mode::Inline => checksum(),
        // The cure: a worker computes; this task waits without holding the loop.
        Mode::Offload => oneloop::run_in_executor(&service.pool, checksum)
            .await
            .map_err(io::Error::other)?,
    };
    respond(stream, 200, &format!("{crc:08x}\n")).await
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

// ------------------------------------------------------------------------------------
// The load generator (on its own loop, in this thread).
// ------------------------------------------------------------------------------------

/// Sends `path` on a keep-alive connection and reads the whole response.
async fn request(stream: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(buf) {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head + length {
                return Ok(());
            }
        }
    }
}

/// Runs the load against `addr` for `duration`; returns (`/health` latencies, `/health`
/// count, `/checksum` count).
fn load(addr: SocketAddr, duration: Duration) -> (Vec<Duration>, usize, usize) {
    let rt = oneloop::Runtime::new();
    rt.block_on(async move {
        let until = Instant::now() + duration;
        let checksums = Rc::new(Cell::new(0usize));
        let mut health = Vec::new();
        for _ in 0..HEALTH_CONNECTIONS {
            health.push(oneloop::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut buf, mut latencies) = (Vec::new(), Vec::new());
                let mut every = interval(HEALTH_EVERY);
                while Instant::now() < until {
                    every.tick().await;
                    let sent = Instant::now();
                    request(&mut stream, "/health", &mut buf)
                        .await
                        .expect("health");
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut workers = Vec::new();
        for _ in 0..CHECKSUM_CONNECTIONS {
            let checksums = checksums.clone();
            workers.push(oneloop::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let mut buf = Vec::new();
                let path = format!("/checksum?kb={CHECKSUM_KIB}");
                while Instant::now() < until {
                    request(&mut stream, &path, &mut buf)
                        .await
                        .expect("checksum");
                    checksums.set(checksums.get() + 1);
                }
            }));
        }
        sleep_until(until).await;
        let mut latencies = Vec::new();
        for connection in health {
            latencies.extend(connection.await.expect("health connection"));
        }
        for worker in workers {
            worker.await.expect("checksum connection");
        }
        let count = latencies.len();
        (latencies, count, checksums.get())
    })
}

/// Runs the service in `mode` under load.
pub fn run(mode: Mode, settings: Settings) -> Outcome {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneloop::sync::oneshot::channel();
    let (ready, server_ready) = std::sync::mpsc::channel();
    let server = Server {
        mode,
        settings,
        crc_rate: crc_rate(),
        listener,
        ready,
        stop: stopped,
    };
    let server = std::thread::spawn(move || serve(server));
    server_ready.recv().expect("the server started");
    let started = Instant::now();
    let (mut health, health_count, checksum_count) = load(addr, settings.duration);
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let slow_reports = server.join().expect("server thread");
    health.sort();
    Outcome {
        health,
        health_rps: health_count as f64 / elapsed,
        checksum_rps: checksum_count as f64 / elapsed,
        slow_reports,
    }
}

fn main() {
    let settings = Settings::demo();
    println!(
        "{HEALTH_CONNECTIONS} connections poll /health every {} ms; {CHECKSUM_CONNECTIONS} ask for checksums",
        ms(HEALTH_EVERY)
    );
    println!(
        "of {CHECKSUM_KIB} KiB (~{} ms of CPU each) back to back; {} s per mode.",
        ms(settings.checksum_takes),
        settings.duration.as_secs()
    );
    println!();
    println!(
        "{:<8} {:>16} {:>16} {:>16} {:>13} {:>15} {:>13}",
        "mode",
        "/health p50 ms",
        "/health p99 ms",
        "/health max ms",
        "/health req/s",
        "checksum req/s",
        "slow reports"
    );
    for mode in [Mode::Inline, Mode::Offload] {
        let outcome = run(mode, settings);
        println!(
            "{:<8} {:>16.2} {:>16.2} {:>16.2} {:>13.0} {:>15.1} {:>13}",
            if mode == Mode::Inline {
                "inline"
            } else {
                "offload"
            },
            ms(outcome.health_percentile(0.50)),
            ms(outcome.health_percentile(0.99)),
            ms(outcome.health.last().copied().unwrap_or_default()),
            outcome.health_rps,
            outcome.checksum_rps,
            outcome.slow_reports,
        );
    }
    println!();
    println!("Notice: inline, a /health request waits for every checksum queued ahead of it");
    println!("on the loop (p99 is two or three checksums' worth), and every checksum is a");
    println!("slow-task report. Offloaded, /health stays fast, debug mode has nothing to");
    println!("report, and the checksums still get done: by a worker thread, not the loop.");
}
