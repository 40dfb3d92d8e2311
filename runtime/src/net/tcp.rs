//! TCP: `TcpListener` accepts connections, `TcpStream` carries them.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{ToSocketAddrs, first_success};
use crate::io::Registration;
use crate::reactor::Direction;

/// The first pause after `accept` failed for lack of resources; it doubles up to
/// `MAX_ACCEPT_BACKOFF`. Long enough that a loop calling `accept` again at once does not
/// spin; short enough that service resumes quickly once descriptors are freed.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A TCP socket listening for connections.
///
/// # Examples
///
/// ```
/// use oneloop::net::{TcpListener, TcpStream};
///
/// oneloop::Runtime::new().block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     let server = oneloop::spawn(async move {
///         let (mut conn, _) = listener.accept().await.unwrap();
///         let mut buf = [0; 4];
///         conn.read_exact(&mut buf).await.unwrap();
///         conn.write_all(&buf).await.unwrap(); // echo
///     });
///     let mut client = TcpStream::connect(addr).await.unwrap();
///     client.write_all(b"ping").await.unwrap();
///     let mut back = [0; 4];
///     client.read_exact(&mut back).await.unwrap();
///     assert_eq!(&back, b"ping");
///     server.await.unwrap();
/// });
/// ```
///
/// # Implementation notes
///
/// When `accept` fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), the
/// error is returned, and the next `accept` first waits (5 ms, doubling up to 1 s) before it
/// tries again: a server that loops on `accept` neither spins nor stops for good, and works
/// again as soon as descriptors are free.
pub struct TcpListener {
    io: Registration<mio::net::TcpListener>,
    /// After a resource error: when `accept` may try again, and the pause that led there.
    /// Set and cleared by `accept` (on the loop thread; several tasks may accept).
    backoff: Cell<Option<(Instant, Duration)>>,
}

impl TcpListener {
    /// Binds to `addr` (`"127.0.0.1:0"` picks a free port; see
    /// [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// The OS's error for the last address tried (in use, permission denied...).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        first_success(&addr, |addr| async move {
            TcpListener::from_mio(mio::net::TcpListener::bind(addr)?)
        })
        .await
    }

    /// Wraps a `std` listener (switched to non-blocking mode).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_mio(mio::net::TcpListener::from_std(listener))
    }

    #[track_caller]
    fn from_mio(listener: mio::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: Registration::new(listener)?,
            backoff: Cell::new(None),
        })
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// The OS's error. After a lack-of-resources error the next call pauses first (see
    /// the type's implementation notes).
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        if let Some((retry_at, _)) = self.backoff.get() {
            // Connections may be waiting in the backlog with no new readiness edge to
            // come: after the pause, try the call itself rather than wait for an event.
            crate::time::sleep_until(retry_at).await;
            match self.io.source().accept() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return self.accepted(result),
            }
        }
        let result = poll_fn(|cx| self.io.poll_io(Direction::Read, cx, |l| l.accept())).await;
        self.accepted(result)
    }

    fn accepted(
        &self,
        result: io::Result<(mio::net::TcpStream, SocketAddr)>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        match result {
            Ok((stream, addr)) => {
                self.backoff.set(None);
                Ok((TcpStream::from_mio(stream)?, addr))
            }
            Err(error) => {
                if lacks_resources(&error) {
                    let pause = self
                        .backoff
                        .get()
                        .map_or(FIRST_ACCEPT_BACKOFF, |(_, pause)| {
                            (pause * 2).min(MAX_ACCEPT_BACKOFF)
                        });
                    self.backoff.set(Some((Instant::now() + pause, pause)));
                }
                Err(error)
            }
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }
}

/// Errors that mean "no resources to accept with right now", not "this listener is broken".
fn lacks_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection.
///
/// Reads and writes wait for the socket without blocking the loop. One task may read
/// while another writes: [`split`](Self::split) or [`into_split`](Self::into_split) it.
/// With the `futures-io` feature (on by default) it implements `futures_io::AsyncRead` and
/// `AsyncWrite`, so the futures ecosystem's codecs and helpers work with it.
pub struct TcpStream {
    io: Registration<mio::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The OS's error for the last address tried (`ConnectionRefused` when nothing
    /// listens there).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        first_success(&addr, |addr| async move {
            let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
            // Non-blocking connect: writable means "done", successfully or not.
            poll_fn(|cx| {
                stream.io.poll_io(Direction::Write, cx, |s| {
                    if let Some(error) = s.take_error()? {
                        return Err(error);
                    }
                    match s.peer_addr() {
                        Ok(_) => Ok(()),
                        // Not connected yet (a spurious wake-up): wait again.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            Err(io::ErrorKind::WouldBlock.into())
                        }
                        Err(e) => Err(e),
                    }
                })
            })
            .await?;
            Ok(stream)
        })
        .await
    }

    /// Wraps a connected `std` stream (switched to non-blocking mode).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream))
    }

    /// Turns it back into a `std` stream (still non-blocking).
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(self.io.into_inner()?.into())
    }

    #[track_caller]
    fn from_mio(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: Registration::new(stream)?,
        })
    }

    /// Reads into `buf`; `Ok(0)` means the peer closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_shared(buf).await
    }

    /// Reads exactly `buf.len()` bytes.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the peer closes first.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_shared(buf).await
    }

    /// Writes some of `buf`; returns how much.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_shared(buf).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all_shared(buf).await
    }

    /// Flushes (TCP sends as it goes: there is nothing buffered here to flush).
    pub async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Shuts down the read side, the write side (the peer reads end-of-file) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.source().shutdown(how)
    }

    /// Sets `TCP_NODELAY` (send small writes at once instead of coalescing them).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.source().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.source().nodelay()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    // The shared-reference forms the halves use. A direction has one user at a time
    // (`&mut self` above, or the one half that owns it), so no reader or writer ever waits
    // behind another.

    pub(crate) fn poll_read_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(Direction::Read, cx, |mut s| s.read(buf))
    }

    pub(crate) fn poll_write_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(Direction::Write, cx, |mut s| s.write(buf))
    }

    pub(crate) async fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_shared(cx, buf)).await
    }

    pub(crate) async fn read_exact_shared(&self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_shared(buf).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    pub(crate) async fn write_shared(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write_shared(cx, buf)).await
    }

    pub(crate) async fn write_all_shared(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_shared(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

#[cfg(feature = "futures-io")]
super::io_traits::async_read!(TcpStream, |stream| stream);
#[cfg(feature = "futures-io")]
super::io_traits::async_write!(TcpStream, |stream| stream);
