//! A `TcpStream` in two halves, so one task reads while another writes.
//!
//! Borrowed halves (`split`) share the stream by reference; owned halves (`into_split`)
//! share it through an `Arc` and can move into separate tasks. Each direction has exactly
//! one half, so a direction never has two waiting tasks.
//!
//! [`TcpStream::split`] and [`TcpStream::into_split`] are defined here, beside the halves
//! they make: the halves read and write through the stream (`tcp.rs`), and the stream
//! needs nothing from this file.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use super::TcpStream;

/// The read half of [`TcpStream::split`].
pub struct ReadHalf<'a>(&'a TcpStream);

/// The write half of [`TcpStream::split`].
pub struct WriteHalf<'a>(&'a TcpStream);

/// The read half of [`TcpStream::into_split`].
pub struct OwnedReadHalf(Arc<TcpStream>);

/// The write half of [`TcpStream::into_split`]. Dropping it shuts the write side down, so
/// the peer reads end-of-file (unless it is dropped by `reunite`).
pub struct OwnedWriteHalf(Arc<TcpStream>, ShutdownOnDrop);

/// Whether dropping an `OwnedWriteHalf` shuts the write side down.
struct ShutdownOnDrop(bool);

impl TcpStream {
    /// Splits into a read half and a write half borrowed from this stream, so one task can
    /// read while another writes.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf(self), WriteHalf(self))
    }

    /// Splits into owned halves (each can move into its own task); `reunite` puts them
    /// back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let shared = Arc::new(self);
        (
            OwnedReadHalf(shared.clone()),
            OwnedWriteHalf(shared, ShutdownOnDrop(true)),
        )
    }
}

/// Two owned halves that did not come from the same stream.
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Debug for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the halves belong to different streams")
    }
}

impl std::error::Error for ReuniteError {}

macro_rules! read_methods {
    () => {
        /// Reads into `buf`; `Ok(0)` means the peer closed its side.
        pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read_shared(buf).await
        }

        /// Reads exactly `buf.len()` bytes (`UnexpectedEof` if the peer closes first).
        pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
            self.0.read_exact_shared(buf).await
        }

        /// The peer's address.
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.0.peer_addr()
        }
    };
}

macro_rules! write_methods {
    () => {
        /// Writes some of `buf`; returns how much.
        pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write_shared(buf).await
        }

        /// Writes all of `buf`.
        pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            self.0.write_all_shared(buf).await
        }

        /// Flushes (nothing is buffered here).
        pub async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }

        /// The peer's address.
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.0.peer_addr()
        }
    };
}

impl ReadHalf<'_> {
    read_methods!();
}

impl WriteHalf<'_> {
    write_methods!();
}

impl OwnedReadHalf {
    read_methods!();

    /// Puts the stream back together.
    ///
    /// # Errors
    ///
    /// If `write` came from another stream (both halves come back).
    pub fn reunite(self, mut write: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.0, &write.0) {
            return Err(ReuniteError(self, write));
        }
        write.1 = ShutdownOnDrop(false); // the stream lives on: keep its write side open
        drop(write);
        Ok(Arc::try_unwrap(self.0).unwrap_or_else(|_| unreachable!("both halves were given")))
    }
}

impl OwnedWriteHalf {
    write_methods!();
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.1.0 {
            // The peer learns we are done writing; the read half still works.
            let _ = self.0.shutdown(Shutdown::Write);
        }
    }
}

impl fmt::Debug for ReadHalf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadHalf").field(self.0).finish()
    }
}

impl fmt::Debug for WriteHalf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteHalf").field(self.0).finish()
    }
}

impl fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedReadHalf").field(&*self.0).finish()
    }
}

impl fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedWriteHalf").field(&*self.0).finish()
    }
}

#[cfg(feature = "futures-io")]
super::io_traits::async_read!(ReadHalf<'_>, |half| half.0);
#[cfg(feature = "futures-io")]
super::io_traits::async_read!(OwnedReadHalf, |half| half.0);
#[cfg(feature = "futures-io")]
super::io_traits::async_write!(WriteHalf<'_>, |half| half.0);
#[cfg(feature = "futures-io")]
super::io_traits::async_write!(OwnedWriteHalf, |half| half.0);
