//! The reactor: waits on mio for readiness and wakes the tasks that wait on it.
//!
//! Each registered I/O source gets a slot in a slab; the slot's key is its mio `Token`.
//! A slot remembers which readiness the OS has reported and which task waits to read or
//! to write. mio is edge-triggered, so readiness is cleared only when an operation hits
//! `WouldBlock` (`clear_ready`), never on delivery. Because events are dispatched and
//! operations run on the same thread, with `epoll_wait` only between them, clearing after
//! a `WouldBlock` cannot swallow an edge that arrived later: that edge is delivered by the
//! next `epoll_wait`.
//!
//! The remote-wake eventfd (`waker.rs`) is registered here under [`WAKER_TOKEN`]; timers
//! are in `time/`, the run queue in `task/run_queue.rs`.

use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mio::event::Source;

use crate::timerfd::TimerFd;
use mio::{Events, Interest, Token};
use oneloop_pool::wake;
use slab::Slab;

/// The token of the remote-wake `mio::Waker`.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// The token of the timerfd that ends a sleep on a timer's exact deadline (`timerfd.rs`).
const TIMER_TOKEN: Token = Token(usize::MAX - 1);

/// How many events one `epoll_wait` may return. 1024 matches mio's examples and tokio:
/// large enough that a busy server rarely needs a second call, small enough to stay in cache.
const EVENTS_CAPACITY: usize = 1024;

/// Which half of a source an operation waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// Readiness bits remembered per source.
const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const READ_CLOSED: u8 = 4;
const WRITE_CLOSED: u8 = 8;
const ERROR: u8 = 16;

impl Direction {
    /// The readiness bits that let an operation in this direction make progress (an error
    /// or a closed half counts: the operation will then return it rather than block).
    fn mask(self) -> u8 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// One registered source.
#[derive(Default)]
struct IoSlot {
    /// Readiness reported by the OS and not yet consumed by a `WouldBlock`.
    ready: u8,
    /// The tasks waiting to read, and those waiting to write: two tasks may share a socket,
    /// one in each direction, and both must make progress. Usually one each; a list, so
    /// that two tasks waiting in the same direction (a shared UDP socket) cannot make one
    /// of them lose its wake-up.
    readers: Vec<Waker>,
    writers: Vec<Waker>,
}

/// A registration in the reactor; the sockets in `net/` hold one per source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoKey(usize);

pub(crate) struct Reactor {
    /// Borrowed mutably only inside `poll`, which runs no user code.
    poll: RefCell<mio::Poll>,
    events: RefCell<Events>,
    /// A clone of the poll's registry, so sources can register while `poll` is idle and so
    /// a later issue's sockets can deregister from any thread.
    registry: mio::Registry,
    slots: RefCell<Slab<IoSlot>>,
    /// Precise timer wake-ups where the platform has them (`None`: rounded timeouts only).
    timer: Option<TimerFd>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let timer = TimerFd::new(&registry, TIMER_TOKEN).ok();
        Ok(Reactor {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(EVENTS_CAPACITY)),
            registry,
            slots: RefCell::new(Slab::new()),
            timer,
        })
    }

    pub(crate) fn new_waker(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(&self.registry, WAKER_TOKEN)
    }

    /// Registers `source` for `interest` and returns its key.
    pub(crate) fn register(
        &self,
        source: &mut impl Source,
        interest: Interest,
    ) -> io::Result<IoKey> {
        let mut slots = self.slots.borrow_mut();
        let entry = slots.vacant_entry();
        let key = entry.key();
        self.registry.register(source, Token(key), interest)?;
        entry.insert(IoSlot::default());
        Ok(IoKey(key))
    }

    /// Removes `source` from the OS poller and frees its slot. The wakers it held are
    /// dropped, not woken: the owner is going away.
    pub(crate) fn deregister(&self, key: IoKey, source: &mut impl Source) -> io::Result<()> {
        let result = self.registry.deregister(source);
        let slot = self.slots.borrow_mut().try_remove(key.0);
        wake::discard(slot); // after the borrow: dropping a waker may run arbitrary code
        result
    }

    /// Frees a slot whose source was closed on another thread (closing the fd already
    /// removed it from epoll).
    pub(crate) fn release(&self, key: IoKey) {
        let slot = self.slots.borrow_mut().try_remove(key.0);
        wake::discard(slot); // after the borrow: dropping a waker may run arbitrary code
    }

    /// Number of registered sources.
    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Ready when the OS has reported readiness in `dir` that no `WouldBlock` has consumed
    /// yet; otherwise remembers the task's waker and returns `Pending`.
    pub(crate) fn poll_ready(&self, key: IoKey, dir: Direction, cx: &mut Context<'_>) -> Poll<()> {
        // A waker is cloned before the borrow, never under it: cloning is user code, and it
        // could reach the reactor again (`oneloop_pool::wake`).
        let mut fresh = None;
        loop {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[key.0];
            if slot.ready & dir.mask() != 0 {
                drop(slots);
                wake::discard(fresh);
                return Poll::Ready(());
            }
            let waiters = match dir {
                Direction::Read => &mut slot.readers,
                Direction::Write => &mut slot.writers,
            };
            if waiters.iter().any(|w| w.will_wake(cx.waker())) {
                drop(slots);
                wake::discard(fresh);
                return Poll::Pending;
            }
            if let Some(waker) = fresh.take() {
                waiters.push(waker);
                return Poll::Pending;
            }
            drop(slots);
            fresh = Some(cx.waker().clone());
        }
    }

    /// An operation in `dir` hit `WouldBlock`: the OS has just said nothing is ready in
    /// that direction, so every readiness bit that let the operation through is consumed
    /// until the next edge, the error bit included. (An error is reported once, by the
    /// operation that hits it; a connected UDP socket's ICMP error, say, is returned by one
    /// `recv` and gone. Were the bit kept, every later `recv` would see "ready", get
    /// `WouldBlock`, and try again without end.) A closed half that still gives
    /// `WouldBlock` is not final either: the next edge will say so again.
    pub(crate) fn clear_ready(&self, key: IoKey, dir: Direction) {
        let mut slots = self.slots.borrow_mut();
        slots[key.0].ready &= !dir.mask();
    }

    /// Waits for events for at most `timeout` (forever when `None`), records readiness and
    /// collects the wakers to call into `wake` (called after every borrow is released).
    /// Returns true when the remote-wake eventfd fired.
    pub(crate) fn poll(
        &self,
        timeout: Option<Duration>,
        wake: &mut Vec<Waker>,
    ) -> io::Result<bool> {
        let mut events = self.events.borrow_mut();
        if let Some(timer) = &self.timer {
            // A blocking wait for a timer: the timerfd ends it on the deadline itself, not
            // on the millisecond mio rounds the timeout up to.
            timer.set(timeout.filter(|t| !t.is_zero()));
        }
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal (the debug watchdog's, or the user's) interrupted epoll_wait: treat it
            // as a spurious wake-up; the loop simply goes round again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut remote = false;
        let mut slots = self.slots.borrow_mut();
        for event in events.iter() {
            if event.token() == WAKER_TOKEN {
                remote = true;
                continue;
            }
            if event.token() == TIMER_TOKEN {
                if let Some(timer) = &self.timer {
                    timer.fired();
                }
                continue;
            }
            let Some(slot) = slots.get_mut(event.token().0) else {
                continue; // deregistered after this batch of events was harvested
            };
            let mut ready = 0;
            if event.is_readable() {
                ready |= READABLE;
            }
            if event.is_writable() {
                ready |= WRITABLE;
            }
            if event.is_read_closed() {
                ready |= READ_CLOSED;
            }
            if event.is_write_closed() {
                ready |= WRITE_CLOSED;
            }
            if event.is_error() {
                ready |= ERROR;
            }
            slot.ready |= ready;
            if ready & Direction::Read.mask() != 0 {
                wake.append(&mut slot.readers);
            }
            if ready & Direction::Write.mask() != 0 {
                wake.append(&mut slot.writers);
            }
        }
        Ok(remote)
    }
}
