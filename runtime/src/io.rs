//! `Registration`: a mio source registered with the loop's reactor, plus the
//! "try the operation, wait on `WouldBlock`" cycle every socket operation is made of.
//!
//! The sockets in `net/` wrap one each. The reactor (`reactor.rs`) keeps the readiness and
//! the waiting tasks; this type owns the source and deregisters it when dropped. A socket
//! may be dropped on another thread (sockets are `Send`): then closing the fd removes it
//! from epoll, and the reactor's slot is freed by the loop through the remote queue.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use mio::Interest;
use mio::event::Source;

use crate::context;
use crate::reactor::{Direction, IoKey};
use crate::task::coop;
use crate::task::waiting::Waiting;
use crate::waker::{Remote, RemoteOp};

/// The most operations one `poll_io` tries before it yields. Each `WouldBlock` clears the
/// readiness it consumed, so two are enough in practice (the operation, then the look that
/// finds nothing ready); a few more absorb an edge that arrives in between.
const MAX_IO_ATTEMPTS: usize = 4;

/// How the misuse messages name an I/O object.
const WHAT: &str = "a oneloop socket";

/// A source registered with the current runtime's reactor.
pub(crate) struct Registration<S: Source> {
    /// `None` only after `into_inner`.
    source: Option<S>,
    key: IoKey,
    /// The runtime it is registered with; it must be used there only.
    runtime: u64,
    /// For freeing the reactor slot when dropped on another thread.
    remote: Arc<Remote>,
}

impl<S: Source> Registration<S> {
    /// Registers `source` with the current runtime for reading and writing.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub(crate) fn new(mut source: S) -> io::Result<Self> {
        let core = context::current(WHAT);
        let key = core
            .reactor()
            .register(&mut source, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Registration {
            source: Some(source),
            key,
            runtime: core.id(),
            remote: core.remote.clone(),
        })
    }

    pub(crate) fn source(&self) -> &S {
        self.source
            .as_ref()
            .expect("oneloop bug: registration used after into_inner")
    }

    /// Runs `op` until it does something other than `WouldBlock`, waiting for readiness in
    /// `dir` in between. Readiness is cleared only after a `WouldBlock`, as edge-triggered
    /// polling requires.
    ///
    /// # Panics
    ///
    /// Polled outside its runtime.
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let core = context::current_for(WHAT, self.runtime);
        // A task whose operations never have to wait yields after its budget's worth.
        if coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let reactor = core.reactor();
        // A `WouldBlock` consumes the readiness (`Reactor::clear_ready`), so the second look
        // normally returns `Pending`. The bound makes sure no readiness bookkeeping error
        // can ever turn this into a loop that never returns: past it, the task yields
        // (woken again at once) and the loop gets to run everything else.
        for _ in 0..MAX_IO_ATTEMPTS {
            if reactor.poll_ready(self.key, dir, cx).is_pending() {
                core.note_wait(Waiting::Io(dir));
                return Poll::Pending;
            }
            match op(self.source()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    reactor.clear_ready(self.key, dir)
                }
                result => {
                    coop::spend();
                    return Poll::Ready(result);
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Deregisters and hands the source back (to turn a socket back into a `std` one).
    pub(crate) fn into_inner(mut self) -> io::Result<S> {
        let mut source = self.source.take().expect("oneloop bug: into_inner twice");
        let core = context::current_for(WHAT, self.runtime);
        core.reactor().deregister(self.key, &mut source)?;
        Ok(source)
    }
}

impl<S: Source> Drop for Registration<S> {
    fn drop(&mut self) {
        let Some(mut source) = self.source.take() else {
            return; // handed back by into_inner
        };
        let (key, runtime) = (self.key, self.runtime);
        let on_loop = context::with_current(|core| {
            if core.id() == runtime {
                // Deregistering can only fail if the fd is already gone; dropping the
                // source closes it either way, which removes it from epoll.
                let _ = core.reactor().deregister(key, &mut source);
                true
            } else {
                false
            }
        });
        if on_loop != Some(true) {
            // Another thread: the fd closes below (epoll forgets it); the loop frees the
            // slot. If the runtime is gone, there is no slot left to free.
            let _ = self.remote.push(RemoteOp::Run(Box::new(move || {
                context::with_current(|core| core.reactor().release(key));
            })));
        }
        drop(source);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::{Read, Write};

    use mio::net::UnixStream;

    use super::*;
    use crate::Runtime;

    /// Runs `test` on a new runtime's loop with a socket pair: one end registered, the
    /// other left as it is.
    fn with_registered_pair(
        test: impl AsyncFnOnce(&Runtime, Registration<UnixStream>, UnixStream),
    ) {
        let rt = Runtime::new();
        rt.block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            test(&rt, Registration::new(a).unwrap(), b).await;
        });
    }

    async fn read_some(reg: &Registration<UnixStream>, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| reg.poll_io(Direction::Read, cx, |mut s| s.read(buf))).await
    }

    #[test]
    fn a_reader_waits_for_readiness_and_wakes_when_data_arrives() {
        with_registered_pair(async |_, reader, b| {
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
    fn dropping_a_registration_frees_its_reactor_slot() {
        with_registered_pair(async |rt, reg, _peer| {
            assert!(reg.source().peer_addr().is_ok());
            assert_eq!(rt.metrics().io_sources, 1);
            drop(reg);
            assert_eq!(rt.metrics().io_sources, 0);
        });
    }

    #[test]
    fn a_registration_dropped_on_another_thread_frees_its_slot_through_the_loop() {
        with_registered_pair(async |rt, reg, _peer| {
            std::thread::spawn(move || drop(reg)).join().unwrap();
            while rt.metrics().io_sources > 0 {
                crate::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
    }
}
