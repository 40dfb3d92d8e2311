//! UDP: `UdpSocket` sends and receives datagrams.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;

use super::{ToSocketAddrs, first_success, resolve};
use crate::io::Registration;
use crate::reactor::Direction;

/// A UDP socket.
///
/// Methods take `&self`, so one task can receive while another sends (share it in an `Rc`
/// or `Arc`).
///
/// # Examples
///
/// ```
/// use oneloop::net::UdpSocket;
///
/// oneloop::Runtime::new().block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     a.send_to(b"hello", b.local_addr().unwrap()).await.unwrap();
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hello"[..], a.local_addr().unwrap()));
/// });
/// ```
pub struct UdpSocket {
    io: Registration<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr`.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        first_success(&addr, |addr| async move {
            Ok(UdpSocket {
                io: Registration::new(mio::net::UdpSocket::bind(addr)?)?,
            })
        })
        .await
    }

    /// Wraps a `std` socket (switched to non-blocking mode).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: Registration::new(mio::net::UdpSocket::from_std(socket))?,
        })
    }

    /// Sends `buf` to `target`; returns the bytes sent.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = *resolve(&target)
            .await?
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to send to"))?;
        poll_fn(|cx| {
            self.io
                .poll_io(Direction::Write, cx, |s| s.send_to(buf, target))
        })
        .await
    }

    /// Receives one datagram into `buf`; returns its length and sender. A datagram longer
    /// than `buf` is cut short.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_io(Direction::Read, cx, |s| s.recv_from(buf))).await
    }

    /// Sets the default peer for `send` and `recv`, and filters incoming datagrams to it.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        first_success(&addr, |addr| async move { self.io.source().connect(addr) }).await
    }

    /// Sends `buf` to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(Direction::Write, cx, |s| s.send(buf))).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(Direction::Read, cx, |s| s.recv(buf))).await
    }

    /// This socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().peer_addr()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
