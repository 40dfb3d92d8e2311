//! Just enough HTTP/1.1 for the service lesson: a server that parses keep-alive requests
//! with `httparse` and answers each through a route the lesson writes, and the client
//! side the load generator (`loadgen.rs`) sends with. Plain text bodies, no chunking.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;

use oneloop::net::{TcpListener, TcpStream};
use oneloop::sync::oneshot;

/// What a route answers: the status code and a plain-text body.
pub type Response = (u16, String);

/// A server's start: the listener it accepts on, who to tell once it does, and the signal
/// that stops it. [`run_against`] makes one.
#[derive(Debug)]
pub struct Serving {
    listener: std::net::TcpListener,
    /// Told once the server accepts connections.
    ready: mpsc::Sender<()>,
    stop: oneshot::Receiver<()>,
}

impl Serving {
    /// Serves keep-alive connections, each in a task named "http connection", answering
    /// every request with `route(path)`; returns once told to stop. Run it inside the
    /// server's `block_on`.
    pub async fn serve<R>(self, route: R)
    where
        R: AsyncFn(&str) -> io::Result<Response> + 'static,
    {
        let Serving {
            listener,
            ready,
            stop,
        } = self;
        let listener = TcpListener::from_std(listener).expect("listener");
        let route = Rc::new(route);
        let acceptor = oneloop::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let route = route.clone();
                oneloop::task::Builder::new()
                    .name("http connection")
                    .spawn(async move { connection(stream, &*route).await })
                    .detach();
            }
        });
        let _ = ready.send(());
        let _ = stop.await;
        acceptor.abort();
    }
}

/// Runs `server` on a thread of its own, accepting on a free local port, and `client` on
/// this thread against that port once the server is ready; then stops the server and
/// returns what each returned.
pub fn run_against<S, C>(
    server: impl FnOnce(Serving) -> S + Send + 'static,
    client: impl FnOnce(SocketAddr) -> C,
) -> (S, C)
where
    S: Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel();
    let (ready, server_ready) = mpsc::channel();
    let serving = Serving {
        listener,
        ready,
        stop: stopped,
    };
    let server = std::thread::spawn(move || server(serving));
    server_ready.recv().expect("the server started");
    let client = client(addr);
    let _ = stop.send(());
    (server.join().expect("server thread"), client)
}

/// One keep-alive connection: parse requests with httparse, answer each.
async fn connection<R>(mut stream: TcpStream, route: &R) -> io::Result<()>
where
    R: AsyncFn(&str) -> io::Result<Response>,
{
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
                Err(_) => return respond(&mut stream, (400, "bad request\n".into())).await,
            };
            let path = request.path.unwrap_or("/").to_owned();
            respond(&mut stream, route(&path).await?).await?;
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
    }
}

async fn respond(stream: &mut TcpStream, (status, body): Response) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// Sends `GET path` on a keep-alive connection and reads the whole response into `buf`.
pub async fn request(stream: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
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
