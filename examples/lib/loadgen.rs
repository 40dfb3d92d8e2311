//! A load generator for the service lesson: some connections poll one path on a
//! schedule and time each answer, others ask for another path back to back. It runs on a
//! loop of its own, on the calling thread; the requests are `http.rs`'s.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::net::TcpStream;
use oneloop::time::{interval, sleep_until};

use crate::http::request;

/// What load to put on a server.
#[derive(Clone, Debug)]
pub struct Load {
    /// Connections polling `poll_path`, each every `poll_every`; each answer is timed.
    pub pollers: usize,
    /// What the pollers ask for.
    pub poll_path: String,
    /// How often each poller asks.
    pub poll_every: Duration,
    /// Connections asking for `busy_path` back to back; answers are counted.
    pub busy: usize,
    /// What the busy connections ask for.
    pub busy_path: String,
}

/// What a run of a [`Load`] measured.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The pollers' latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Answers the busy connections got.
    pub busy_answers: usize,
    /// How long the load ran, connecting included.
    pub elapsed: Duration,
}

/// The `p`-th percentile (0.0 to 1.0) of `sorted` latencies; zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

impl Load {
    /// Runs this load against `addr` for `duration`.
    pub fn run(&self, addr: SocketAddr, duration: Duration) -> Measured {
        let started = Instant::now();
        let rt = oneloop::Runtime::new();
        let (mut latencies, busy_answers) = rt.block_on(async move {
            let until = Instant::now() + duration;
            let answers = Rc::new(Cell::new(0usize));
            let mut pollers = Vec::new();
            for _ in 0..self.pollers {
                let (path, every) = (self.poll_path.clone(), self.poll_every);
                pollers.push(oneloop::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await.expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    let (mut buf, mut latencies) = (Vec::new(), Vec::new());
                    let mut every = interval(every);
                    while Instant::now() < until {
                        every.tick().await;
                        let sent = Instant::now();
                        request(&mut stream, &path, &mut buf).await.expect(&path);
                        latencies.push(sent.elapsed());
                    }
                    latencies
                }));
            }
            let mut busy = Vec::new();
            for _ in 0..self.busy {
                let (answers, path) = (answers.clone(), self.busy_path.clone());
                busy.push(oneloop::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await.expect("connect");
                    let mut buf = Vec::new();
                    while Instant::now() < until {
                        request(&mut stream, &path, &mut buf).await.expect(&path);
                        answers.set(answers.get() + 1);
                    }
                }));
            }
            sleep_until(until).await;
            let mut latencies = Vec::new();
            for poller in pollers {
                latencies.extend(poller.await.expect("polling connection"));
            }
            for connection in busy {
                connection.await.expect("busy connection");
            }
            (latencies, answers.get())
        });
        let elapsed = started.elapsed();
        latencies.sort();
        Measured {
            latencies,
            busy_answers,
            elapsed,
        }
    }
}
