//! futures-io's `AsyncRead` and `AsyncWrite`, written once for [`TcpStream`] and its halves
//! (behind the default `futures-io` feature).
//!
//! Each impl is a thin shim over the stream's shared-reference I/O (`poll_read_shared`,
//! `poll_write_shared`, in `tcp.rs`); only how to reach the stream differs, so the macros
//! take that as `|this| expression` and `tcp.rs` and `split.rs` invoke them for their own
//! types. Nothing here names a type, so both files can use it without using each other.
//!
//! [`TcpStream`]: super::TcpStream

/// `futures_io::AsyncRead` for `$ty`, reading through the stream `$stream` (`$this` is
/// `&Self`).
macro_rules! async_read {
    ($ty:ty, |$this:ident| $stream:expr) => {
        impl ::futures_io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let $this: &Self = &self;
                $stream.poll_read_shared(cx, buf)
            }
        }
    };
}

/// `futures_io::AsyncWrite` for `$ty`, writing through the stream `$stream` (`$this` is
/// `&Self`). Nothing is buffered, so a flush is done at once; closing shuts the write
/// side down, and the peer reads end-of-file.
macro_rules! async_write {
    ($ty:ty, |$this:ident| $stream:expr) => {
        impl ::futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let $this: &Self = &self;
                $stream.poll_write_shared(cx, buf)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                _: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: ::std::pin::Pin<&mut Self>,
                _: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let $this: &Self = &self;
                ::std::task::Poll::Ready($stream.shutdown(::std::net::Shutdown::Write))
            }
        }
    };
}

pub(super) use {async_read, async_write};
