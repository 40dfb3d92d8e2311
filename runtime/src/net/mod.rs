//! Sockets on the reactor: [`TcpListener`], [`TcpStream`] (with borrowed and owned halves)
//! and [`UdpSocket`].
//!
//! Each socket is a mio socket registered with the loop's reactor (`io.rs`); every
//! operation tries the system call and, on `WouldBlock`, waits for the reactor to report
//! readiness. Addresses given as names are resolved on the runtime's default pool, never
//! on the loop (asyncio runs `getaddrinfo` in its executor too): see [`ToSocketAddrs`].
//!
//! Sockets are `Send` (a future holding one can be handed to `Handle::spawn`), but they
//! belong to the runtime that created them and must be used on its thread.

#[cfg(feature = "futures-io")]
mod io_traits;
mod split;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

/// Something that names socket addresses: an address, an `(ip, port)` pair, or a
/// `"host:port"` / `("host", port)` to resolve.
///
/// Literal IP addresses are used as they are; host names are resolved with the system
/// resolver on the runtime's default pool, so a slow DNS server never blocks the loop.
pub trait ToSocketAddrs: sealed::ToSocketAddrsPriv {}

mod sealed {
    use std::net::SocketAddr;

    /// What a `ToSocketAddrs` turns into: addresses at once, or a name to look up.
    #[derive(Debug)]
    pub enum Addrs {
        Ready(Vec<SocketAddr>),
        Lookup(String),
    }

    pub trait ToSocketAddrsPriv {
        fn to_addrs(&self) -> Addrs;
    }
}

use sealed::{Addrs, ToSocketAddrsPriv};

macro_rules! ready_addrs {
    ($($ty:ty => |$this:ident| $addr:expr;)*) => {$(
        impl ToSocketAddrs for $ty {}
        impl ToSocketAddrsPriv for $ty {
            fn to_addrs(&self) -> Addrs {
                let $this = self;
                Addrs::Ready(vec![$addr])
            }
        }
    )*};
}

ready_addrs! {
    SocketAddr => |a| *a;
    SocketAddrV4 => |a| SocketAddr::V4(*a);
    SocketAddrV6 => |a| SocketAddr::V6(*a);
    (IpAddr, u16) => |a| SocketAddr::new(a.0, a.1);
    (Ipv4Addr, u16) => |a| SocketAddr::new(IpAddr::V4(a.0), a.1);
    (Ipv6Addr, u16) => |a| SocketAddr::new(IpAddr::V6(a.0), a.1);
}

impl ToSocketAddrs for str {}
impl ToSocketAddrsPriv for str {
    fn to_addrs(&self) -> Addrs {
        match self.parse() {
            Ok(addr) => Addrs::Ready(vec![addr]),
            Err(_) => Addrs::Lookup(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl ToSocketAddrsPriv for String {
    fn to_addrs(&self) -> Addrs {
        self.as_str().to_addrs()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl ToSocketAddrsPriv for (&str, u16) {
    fn to_addrs(&self) -> Addrs {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Addrs::Ready(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => Addrs::Lookup(format!("{}:{}", self.0, self.1)),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl ToSocketAddrsPriv for (String, u16) {
    fn to_addrs(&self) -> Addrs {
        (self.0.as_str(), self.1).to_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl ToSocketAddrsPriv for [SocketAddr] {
    fn to_addrs(&self) -> Addrs {
        Addrs::Ready(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrsPriv + ?Sized> ToSocketAddrsPriv for &T {
    fn to_addrs(&self) -> Addrs {
        (**self).to_addrs()
    }
}

/// Resolves `host` (for instance `"localhost:8080"`) to its socket addresses, on the
/// runtime's default pool.
///
/// # Examples
///
/// ```
/// oneloop::Runtime::new().block_on(async {
///     let addrs: Vec<_> = oneloop::net::lookup_host("localhost:80").await.unwrap().collect();
///     assert!(addrs.iter().all(|a| a.ip().is_loopback()));
/// });
/// ```
///
/// # Panics
///
/// Outside a runtime, when a name must be looked up.
pub async fn lookup_host(host: impl ToSocketAddrs) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(resolve(&host).await?.into_iter())
}

/// The addresses `addr` names, resolving a name off the loop.
async fn resolve(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Vec<SocketAddr>> {
    match addr.to_addrs() {
        Addrs::Ready(addrs) => Ok(addrs),
        Addrs::Lookup(name) => {
            let lookup = crate::to_thread(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&name).map(Iterator::collect)
            });
            lookup.await.map_err(io::Error::other)?
        }
    }
}

/// Tries `attempt` on each address in turn; returns the first success, or the last error.
async fn first_success<T, F>(
    addr: &(impl ToSocketAddrs + ?Sized),
    mut attempt: impl FnMut(SocketAddr) -> F,
) -> io::Result<T>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for addr in resolve(addr).await? {
        match attempt(addr).await {
            Ok(value) => return Ok(value),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to try")))
}
