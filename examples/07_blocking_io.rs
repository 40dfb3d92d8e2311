//! 07: A blocking client, moved off the loop; and the native async one.
//!
//! Some libraries only offer blocking calls (a `std::net::TcpStream` client, `std::fs`):
//! wrap them in `to_thread` and the loop stays free. But each call then holds a worker
//! thread for its whole duration, so concurrency is capped by the pool's size, and a call
//! cannot be cancelled once it runs. A native async socket holds no thread while it waits:
//! twenty requests take the time of one. Prefer native async I/O where it exists; keep
//! `to_thread` for what has no async form (files, blocking client libraries).
//!
//! Run with: cargo run --example 07_blocking_io

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::net::{TcpListener, TcpStream};
use oneloop::task::join_all;
use oneloop::time::sleep;
use oneloop_examples::ms;

/// Each request takes the server this long to answer (it waits, without blocking).
const SERVICE_TIME: Duration = Duration::from_millis(100);

/// Which client makes the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// `std::net::TcpStream` (blocking) inside `to_thread`.
    BlockingInToThread,
    /// `oneloop::net::TcpStream`.
    NativeAsync,
}

/// What a run saw.
#[derive(Debug)]
pub struct Seen {
    /// Wall time for all the requests.
    pub total: Duration,
    /// The most requests the server was handling at once.
    pub peak_concurrent: usize,
}

/// A tiny server: reads one byte, waits `SERVICE_TIME`, answers one byte; counts how many
/// requests it handles at once.
async fn server(listener: TcpListener, load: Rc<(Cell<usize>, Cell<usize>)>) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let load = load.clone();
        oneloop::spawn(async move {
            let mut byte = [0u8; 1];
            if conn.read_exact(&mut byte).await.is_ok() {
                load.0.set(load.0.get() + 1);
                load.1.set(load.1.get().max(load.0.get()));
                sleep(SERVICE_TIME).await;
                load.0.set(load.0.get() - 1);
                let _ = conn.write_all(&byte).await;
            }
        })
        .detach();
    }
}

/// One request with a blocking `std` client: connect, send a byte, wait for the answer.
fn blocking_request(addr: SocketAddr) -> std::io::Result<u8> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"x")?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?; // the worker thread sleeps here, doing nothing
    Ok(byte[0])
}

/// The same request with oneloop's socket.
async fn native_request(addr: SocketAddr) -> std::io::Result<u8> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?; // the task waits; the loop runs others
    Ok(byte[0])
}

/// Makes `requests` concurrent requests with `client`.
pub fn run(client: Client, requests: usize) -> Seen {
    let rt = oneloop::Runtime::new();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let load = Rc::new((Cell::new(0), Cell::new(0)));
        let server = oneloop::spawn(server(listener, load.clone()));
        let start = Instant::now();
        match client {
            Client::BlockingInToThread => {
                let calls =
                    (0..requests).map(|_| oneloop::to_thread(move || blocking_request(addr)));
                for reply in join_all(calls).await {
                    reply.expect("job").expect("request");
                }
            }
            Client::NativeAsync => {
                for reply in join_all((0..requests).map(|_| native_request(addr))).await {
                    reply.expect("request");
                }
            }
        }
        let total = start.elapsed();
        server.abort();
        Seen {
            total,
            peak_concurrent: load.1.get(),
        }
    })
}

fn main() {
    let requests = 20;
    let pool = std::thread::available_parallelism().map_or(1, usize::from) + 4;
    println!(
        "{requests} requests at once; the server takes {} ms to answer each.",
        ms(SERVICE_TIME)
    );
    println!("(to_thread's default pool here: {} threads)", pool.min(32));
    println!();
    println!(
        "{:<22} {:>12} {:>28}",
        "client", "total (ms)", "requests in flight at once"
    );
    for client in [Client::BlockingInToThread, Client::NativeAsync] {
        let seen = run(client, requests);
        let name = match client {
            Client::BlockingInToThread => "blocking, to_thread",
            Client::NativeAsync => "native async",
        };
        println!(
            "{name:<22} {:>12.0} {:>28}",
            ms(seen.total),
            seen.peak_concurrent
        );
    }
    // A file read has no async form: to_thread is the right tool for it.
    let rt = oneloop::Runtime::new();
    let manifest =
        rt.block_on(async { oneloop::to_thread(|| std::fs::read_to_string("Cargo.toml")).await });
    println!();
    println!(
        "and a blocking file read via to_thread: {} bytes",
        manifest.expect("job").map_or(0, |t| t.len())
    );
    println!();
    println!("Notice: the blocking client never has more requests in flight than the pool has");
    println!("threads, so it takes several rounds; the native client has all {requests} in flight");
    println!("and takes about one round, with no thread held while it waits.");
}
