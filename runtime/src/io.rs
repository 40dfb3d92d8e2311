//! `Registration`: a mio source registered with the loop's reactor, plus the
//! "try the operation, wait on `WouldBlock`" cycle every socket operation is made of.
//!
//! The sockets in `net/` wrap one each. The reactor (`reactor.rs`) keeps the readiness and
//! the waiting tasks; this type owns the source and deregisters it when dropped.

// Sockets (`net/`) are its users; until they land only the tests below use it.
#![cfg_attr(not(test), allow(dead_code))]

use std::io;
use std::task::{Context, Poll};

use mio::Interest;
use mio::event::Source;

use crate::context;
use crate::reactor::{Direction, IoKey};

/// How the misuse messages name an I/O object.
const WHAT: &str = "a oneloop I/O object";

/// A source registered with the current runtime's reactor.
pub(crate) struct Registration<S: Source> {
    source: S,
    key: IoKey,
    /// The runtime it is registered with; it must be used there only.
    runtime: u64,
}

impl<S: Source> Registration<S> {
    /// Registers `source` with the current runtime for reading and writing.
    #[track_caller]
    pub(crate) fn new(mut source: S) -> io::Result<Self> {
        let core = context::current(WHAT);
        let key = core
            .reactor()
            .register(&mut source, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Registration {
            source,
            key,
            runtime: core.id(),
        })
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Runs `op` until it does something other than `WouldBlock`, waiting for readiness in
    /// `dir` in between. Readiness is cleared only after a `WouldBlock`, as edge-triggered
    /// polling requires.
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let core = context::current_for(WHAT, self.runtime);
        let reactor = core.reactor();
        loop {
            if reactor.poll_ready(self.key, dir, cx).is_pending() {
                return Poll::Pending;
            }
            match op(&self.source) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    reactor.clear_ready(self.key, dir)
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<S: Source> Drop for Registration<S> {
    fn drop(&mut self) {
        let (key, runtime) = (self.key, self.runtime);
        let source = &mut self.source;
        context::with_current(|core| {
            if core.id() == runtime {
                // Deregistering can only fail if the fd is already gone; dropping the
                // source closes it either way, which removes it from epoll.
                let _ = core.reactor().deregister(key, source);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::{Read, Write};

    use mio::net::UnixStream;

    use super::*;
    use crate::Runtime;

    async fn read_some(reg: &Registration<UnixStream>, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| reg.poll_io(Direction::Read, cx, |mut s| s.read(buf))).await
    }

    #[test]
    fn a_reader_waits_for_readiness_and_wakes_when_data_arrives() {
        let rt = Runtime::new();
        rt.block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let reader = Registration::new(a).unwrap();
            let writer = Registration::new(b).unwrap();
            let task = crate::spawn(async move {
                let mut buf = [0u8; 16];
                let n = read_some(&reader, &mut buf).await.unwrap();
                buf[..n].to_vec()
            });
            crate::time::sleep(std::time::Duration::from_millis(5)).await;
            assert!(!task.is_finished(), "nothing was written yet");
            poll_fn(|cx| writer.poll_io(Direction::Write, cx, |mut s| s.write(b"ping")))
                .await
                .unwrap();
            assert_eq!(task.await.unwrap(), b"ping");
        });
    }

    #[test]
    fn a_reader_and_a_writer_on_one_socket_both_progress() {
        let rt = Runtime::new();
        rt.block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let shared = std::rc::Rc::new(Registration::new(a).unwrap());
            let peer = Registration::new(b).unwrap();
            let reader = crate::spawn({
                let shared = shared.clone();
                async move {
                    let mut buf = [0u8; 4];
                    read_some(&shared, &mut buf).await.unwrap()
                }
            });
            let writer = crate::spawn({
                let shared = shared.clone();
                async move {
                    poll_fn(|cx| shared.poll_io(Direction::Write, cx, |mut s| s.write(b"out")))
                        .await
                        .unwrap()
                }
            });
            assert_eq!(writer.await.unwrap(), 3);
            let mut got = [0u8; 3];
            poll_fn(|cx| peer.poll_io(Direction::Read, cx, |mut s| s.read(&mut got)))
                .await
                .unwrap();
            poll_fn(|cx| peer.poll_io(Direction::Write, cx, |mut s| s.write(b"in!!")))
                .await
                .unwrap();
            assert_eq!(reader.await.unwrap(), 4);
            assert_eq!(&got, b"out");
        });
    }

    #[test]
    fn dropping_a_registration_frees_its_reactor_slot() {
        let rt = Runtime::new();
        rt.block_on(async {
            let (a, _b) = UnixStream::pair().unwrap();
            let reg = Registration::new(a).unwrap();
            assert!(reg.source().peer_addr().is_ok());
            assert_eq!(rt.metrics().io_sources, 1);
            drop(reg);
            assert_eq!(rt.metrics().io_sources, 0);
        });
        assert_eq!(rt.metrics().io_sources, 0);
    }
}
