//! The fair semaphore (`executor-pool/src/semaphore.rs`), in its real shape: one `State`
//! under one lock, with the waiters in ticket order, the tickets granted but not yet
//! polled, and the closed flag.
//! (Long because the model mirrors the semaphore's real shape, with its negative controls.)
//!
//! Mirrored: `State::grant` (grant the head, then the next, for as long as each fits,
//! collecting the wakers), `add_permits` and `close` (decide under the lock, wake every
//! collected waker after it, then re-raise the first waker panic: `wake::resume`),
//! `poll_request` (take at once only if nobody queues, else queue; a queued request sees
//! its grant, or the close) and `cancel_request` (a dropped request leaves the queue, or
//! hands on permits granted to it, in one critical section).
//!
//! Simplified: a waker is a counter of its wakes; one that "panics" reports it as an
//! `Err`, as `WakeList::wake_all` reports a caught panic, and a panic that would be
//! re-raised to the caller is counted instead (`Sem::raised`). Storing and replacing a
//! waker (`store_waker`) is not modelled: each request is polled with one waker. A woken
//! task may look at the semaphore at once, so each wake takes the lock after it: a wake
//! made under the lock deadlocks the model (loom then aborts the run).
//!
//! The three models share the invariants `Sem::check`: permits are conserved, no waiter is
//! stranded (queued at the head while its permits are free), requests are served in the
//! order they arrived (none overtakes a queued one), each waiter granted or closed out is
//! woken exactly once and no other is woken, and a panicking waker's panic surfaces once.

use std::collections::{BTreeMap, BTreeSet};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{breaks, holds};

/// The code under test, or a negative control's change to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The code as it is.
    Real,
    /// The old `add_permits`: grant the head, unlock, wake it, relock for the next; a
    /// waker's panic unwinds out of the loop.
    WakeBetweenGrants,
    /// A grant that skips a head that does not fit and serves a smaller request behind it.
    GrantPastTheHead,
    /// An arriving request takes free permits even though others are queued.
    TakePastTheQueue,
    /// The old `close`: takes every waiter, then wakes them until a waker panics.
    CloseStopsAtAPanic,
    /// A dropped request checks whether it was granted, then leaves, in two critical
    /// sections.
    CheckThenLeave,
}

/// A task's waker: it counts its wakes. One that panics says so with `Err`.
#[derive(Debug)]
struct Waker {
    woken: AtomicUsize,
    panics: bool,
}

/// A waker's panic, caught.
#[derive(Debug)]
struct WakerPanicked;

impl Waker {
    fn new(panics: bool) -> Arc<Self> {
        Arc::new(Waker {
            woken: AtomicUsize::new(0),
            panics,
        })
    }

    fn wake(&self) -> Result<(), WakerPanicked> {
        self.woken.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            Err(WakerPanicked)
        } else {
            Ok(())
        }
    }

    fn woken(&self) -> usize {
        self.woken.load(Ordering::SeqCst)
    }
}

struct Waiter {
    needed: usize,
    waker: Arc<Waker>,
}

/// The semaphore's `State`, plus `served`, the model's record of the order it served in.
struct State {
    /// Permits not handed out.
    permits: usize,
    /// Queued requests by ticket.
    waiters: BTreeMap<u64, Waiter>,
    /// Tickets granted their permits, not yet polled to see them.
    granted: BTreeSet<u64>,
    next_ticket: u64,
    closed: bool,
    /// Each request served, by its place in line, in the order served (not in the real
    /// state). A queued request's place is its ticket; one served on arrival ranks as the
    /// next ticket would.
    served: Vec<u64>,
}

impl State {
    /// `State::grant`: under the lock, decides every grant the free permits allow.
    fn grant(&mut self, wake: &mut Vec<Arc<Waker>>, shape: Shape) {
        loop {
            let fits = if shape == Shape::GrantPastTheHead {
                self.waiters
                    .iter()
                    .find(|(_, waiter)| waiter.needed <= self.permits)
            } else {
                self.waiters
                    .first_key_value()
                    .filter(|(_, waiter)| waiter.needed <= self.permits)
            };
            let Some((&ticket, _)) = fits else { return };
            let waiter = self.waiters.remove(&ticket).expect("a queued ticket");
            self.permits -= waiter.needed;
            self.granted.insert(ticket);
            self.served.push(ticket);
            wake.push(waiter.waker);
            if shape == Shape::WakeBetweenGrants {
                return; // the old `grant_head`: one grant per call
            }
        }
    }
}

struct Sem {
    state: Mutex<State>,
    /// Waker panics re-raised to whoever released, closed or cancelled.
    raised: AtomicUsize,
    shape: Shape,
}

/// One `Acquire` future: its request and its task's waker.
struct Request {
    needed: usize,
    ticket: Option<u64>,
    waker: Arc<Waker>,
    /// What its last poll returned: `None` while pending.
    outcome: Option<Result<(), Closed>>,
}

/// `AcquireError`: the semaphore was closed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Closed;

impl Request {
    fn new(needed: usize, waker: &Arc<Waker>) -> Self {
        Request {
            needed,
            ticket: None,
            waker: waker.clone(),
            outcome: None,
        }
    }

    /// Permits it holds: granted and seen.
    fn held(&self) -> usize {
        if self.outcome == Some(Ok(())) {
            self.needed
        } else {
            0
        }
    }
}

impl Sem {
    /// No free permit; `queued` requests already waiting, in this order.
    fn new(shape: Shape, queued: &mut [&mut Request]) -> Arc<Self> {
        let mut waiters = BTreeMap::new();
        for (ticket, request) in (0..).zip(queued.iter_mut()) {
            request.ticket = Some(ticket);
            let waiter = Waiter {
                needed: request.needed,
                waker: request.waker.clone(),
            };
            waiters.insert(ticket, waiter);
        }
        Arc::new(Sem {
            state: Mutex::new(State {
                permits: 0,
                next_ticket: waiters.len() as u64,
                waiters,
                granted: BTreeSet::new(),
                closed: false,
                served: Vec::new(),
            }),
            raised: AtomicUsize::new(0),
            shape,
        })
    }

    /// Wakes one waiter's task. The task may look at the semaphore at once (on another
    /// thread, or from inside `wake`), so the lock must be free: a wake made under it
    /// deadlocks the model.
    fn wake(&self, waker: &Waker) -> Result<(), WakerPanicked> {
        let woken = waker.wake();
        drop(self.state.lock().unwrap());
        woken
    }

    /// `WakeList::wake_all`: wakes every waker, even after one panics; returns the first
    /// panic.
    fn wake_all(&self, wake: Vec<Arc<Waker>>) -> Result<(), WakerPanicked> {
        let mut first = Ok(());
        for waker in wake {
            if let Err(panic) = self.wake(&waker)
                && first.is_ok()
            {
                first = Err(panic);
            }
        }
        first
    }

    /// `wake::resume`: the first panic goes back to the caller (counted here).
    fn resume(&self, woken: Result<(), WakerPanicked>) {
        if woken.is_err() {
            self.raised.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `add_permits`.
    fn add_permits(&self, n: usize) {
        if self.shape == Shape::WakeBetweenGrants {
            let mut state = self.state.lock().unwrap();
            state.permits += n;
            loop {
                let mut wake = Vec::new();
                state.grant(&mut wake, self.shape); // the head, if it fits
                let Some(waker) = wake.pop() else { return };
                drop(state);
                if let Err(panic) = self.wake(&waker) {
                    return self.resume(Err(panic)); // unwinds out of the loop
                }
                state = self.state.lock().unwrap();
            }
        }
        let mut wake = Vec::new();
        {
            let mut state = self.state.lock().unwrap();
            state.permits += n;
            state.grant(&mut wake, self.shape);
        }
        self.resume(self.wake_all(wake));
    }

    /// `close`.
    fn close(&self) {
        let waiters = {
            let mut state = self.state.lock().unwrap();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        let wake: Vec<Arc<Waker>> = waiters.into_values().map(|waiter| waiter.waker).collect();
        if self.shape == Shape::CloseStopsAtAPanic {
            for waker in wake {
                if let Err(panic) = self.wake(&waker) {
                    return self.resume(Err(panic)); // the rest are dropped unwoken
                }
            }
            return;
        }
        self.resume(self.wake_all(wake));
    }

    /// `poll_request`: sets `request.outcome` once it completes.
    fn poll(&self, request: &mut Request) {
        assert!(request.outcome.is_none(), "polled after it completed");
        let mut state = self.state.lock().unwrap();
        request.outcome = match request.ticket {
            Some(ticket) if state.granted.remove(&ticket) => Some(Ok(())),
            Some(ticket) if state.closed => {
                state.waiters.remove(&ticket);
                Some(Err(Closed))
            }
            Some(ticket) => {
                assert!(
                    state.waiters.contains_key(&ticket),
                    "a ticket neither queued nor granted"
                );
                None
            }
            None if state.closed => Some(Err(Closed)),
            None if (state.waiters.is_empty() || self.shape == Shape::TakePastTheQueue)
                && state.permits >= request.needed =>
            {
                state.permits -= request.needed;
                let place = state.next_ticket;
                state.served.push(place);
                Some(Ok(()))
            }
            None => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                let waiter = Waiter {
                    needed: request.needed,
                    waker: request.waker.clone(),
                };
                state.waiters.insert(ticket, waiter);
                request.ticket = Some(ticket);
                None
            }
        };
    }

    /// `cancel_request`: the future is dropped while pending.
    fn cancel(&self, request: &Request) {
        let Some(ticket) = request.ticket.filter(|_| request.outcome.is_none()) else {
            return;
        };
        let mut wake = Vec::new();
        if self.shape == Shape::CheckThenLeave {
            let granted = self.state.lock().unwrap().granted.contains(&ticket);
            let mut state = self.state.lock().unwrap();
            if granted {
                state.granted.remove(&ticket);
                state.permits += request.needed;
            } else {
                state.waiters.remove(&ticket);
            }
            state.grant(&mut wake, self.shape);
        } else {
            let mut state = self.state.lock().unwrap();
            if state.granted.remove(&ticket) {
                state.permits += request.needed; // granted as it was dropped: hand them on
            } else {
                state.waiters.remove(&ticket);
            }
            state.grant(&mut wake, self.shape); // leaving the head may let the next through
        }
        self.resume(self.wake_all(wake));
    }

    /// The invariants, once every thread is done. `requests` are all the requests ever
    /// made (live or dropped); `dropped` says which were dropped while pending; `total` is
    /// every permit there is; `panicking` is the one waker that panics.
    fn check(&self, requests: &[&Request], dropped: &[bool], total: usize, panicking: &Waker) {
        let state = self.state.lock().unwrap();
        // Every permit is free, held by a request that saw it, or granted to one that
        // has not yet looked.
        let held: usize = requests.iter().map(|request| request.held()).sum();
        let granted: usize = requests
            .iter()
            .filter(|request| {
                request
                    .ticket
                    .is_some_and(|ticket| state.granted.contains(&ticket))
            })
            .map(|request| request.needed)
            .sum();
        assert_eq!(
            state.permits + held + granted,
            total,
            "a permit was lost or made up"
        );
        // The head waits only for permits that are not free.
        if let Some((_, head)) = state.waiters.first_key_value() {
            assert!(
                head.needed > state.permits,
                "a waiter is stranded: {} free, the head needs {}",
                state.permits,
                head.needed
            );
        }
        assert!(
            !state.closed || state.waiters.is_empty(),
            "a waiter queued on a closed semaphore"
        );
        // First in, first served.
        assert!(
            state.served.windows(2).all(|pair| pair[0] <= pair[1]),
            "served out of order: {:?}",
            state.served
        );
        for (request, &dropped) in requests.iter().zip(dropped) {
            let Some(ticket) = request.ticket else {
                assert_eq!(request.waker.woken(), 0, "woken with nothing to wait for");
                continue;
            };
            let queued = state.waiters.contains_key(&ticket);
            let granted = state.granted.contains(&ticket);
            if dropped {
                // Gone: it holds no place and no permit. (Its waker may have been woken
                // before it was dropped.)
                assert!(
                    !queued && !granted,
                    "a dropped request still holds {ticket}"
                );
                assert!(request.waker.woken() <= 1);
            } else if queued {
                assert_eq!(request.waker.woken(), 0, "woken while still queued");
            } else {
                // Granted, or closed out: woken exactly once (its next poll completes).
                assert_eq!(
                    request.waker.woken(),
                    1,
                    "ticket {ticket} left the queue, woken {} times",
                    request.waker.woken()
                );
            }
        }
        // A waker's panic surfaces exactly once, to whoever woke it (the waiters woken
        // with it were all woken: checked above).
        assert_eq!(self.raised.load(Ordering::SeqCst), panicking.woken());
    }
}

// -------------------------------------------------------------------------------------
// Releases: two permit holders give back 1 and 2 permits while a request for 1 arrives.
// Request A (2 permits, its waker panics) heads the queue. B's request for 1 must not
// overtake A, and A's panicking waker must not strand B.
// -------------------------------------------------------------------------------------

fn release_model(shape: Shape) {
    let panicking = Waker::new(true);
    let mut a = Request::new(2, &panicking);
    let sem = Sem::new(shape, &mut [&mut a]);
    let one = {
        let sem = sem.clone();
        thread::spawn(move || sem.add_permits(1))
    };
    let two = {
        let sem = sem.clone();
        thread::spawn(move || sem.add_permits(2))
    };
    let mut b = Request::new(1, &Waker::new(false));
    sem.poll(&mut b);
    one.join().unwrap();
    two.join().unwrap();
    sem.check(&[&a, &b], &[false, false], 3, &panicking);
    // Both were served: every permit was returned and they need 3.
    for request in [&mut a, &mut b] {
        if request.outcome.is_none() {
            sem.poll(request);
        }
        assert_eq!(request.outcome, Some(Ok(())));
    }
}

#[test]
fn released_permits_go_to_the_head_first_and_a_panicking_waker_strands_nobody() {
    holds(|| release_model(Shape::Real));
}

#[test]
fn negative_control_waking_between_grants_strands_a_waiter_when_a_waker_panics() {
    breaks(|| release_model(Shape::WakeBetweenGrants));
}

#[test]
fn negative_control_granting_past_the_head_lets_a_small_request_overtake() {
    breaks(|| release_model(Shape::GrantPastTheHead));
}

#[test]
fn negative_control_taking_free_permits_past_the_queue_lets_a_small_request_overtake() {
    breaks(|| release_model(Shape::TakePastTheQueue));
}

// -------------------------------------------------------------------------------------
// Close: A (2 permits, its waker panics) and B (1 permit) wait; the holder of both permits
// gives them back while the semaphore is closed and a request C for 1 arrives. Every
// waiter learns its fate: granted, or closed out.
// -------------------------------------------------------------------------------------

fn close_model(shape: Shape) {
    let panicking = Waker::new(true);
    let mut a = Request::new(2, &panicking);
    let mut b = Request::new(1, &Waker::new(false));
    let sem = Sem::new(shape, &mut [&mut a, &mut b]);
    let closer = {
        let sem = sem.clone();
        thread::spawn(move || sem.close())
    };
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || sem.add_permits(2))
    };
    let mut c = Request::new(1, &Waker::new(false));
    sem.poll(&mut c);
    closer.join().unwrap();
    releaser.join().unwrap();
    sem.check(&[&a, &b, &c], &[false, false, false], 2, &panicking);
    for request in [&mut a, &mut b, &mut c] {
        if request.outcome.is_none() {
            sem.poll(request);
        }
        assert!(request.outcome.is_some(), "a woken waiter found nothing");
    }
}

#[test]
fn close_wakes_every_waiter_even_when_a_waker_panics() {
    holds(|| close_model(Shape::Real));
}

#[test]
fn negative_control_a_close_that_stops_at_a_panicking_waker_loses_the_others() {
    breaks(|| close_model(Shape::CloseStopsAtAPanic));
}

// -------------------------------------------------------------------------------------
// A waiter dropped as it is granted: A and B wait for 1 permit each; the holder returns
// the permit while A's future is dropped. A permit granted to A passes to B.
// -------------------------------------------------------------------------------------

fn handoff_model(shape: Shape) {
    let panicking = Waker::new(false); // no waker panics here
    let mut a = Request::new(1, &Waker::new(false));
    let mut b = Request::new(1, &Waker::new(false));
    let sem = Sem::new(shape, &mut [&mut a, &mut b]);
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || sem.add_permits(1))
    };
    sem.cancel(&a);
    releaser.join().unwrap();
    sem.check(&[&a, &b], &[true, false], 1, &panicking);
    sem.poll(&mut b);
    assert_eq!(b.outcome, Some(Ok(())), "the permit did not reach B");
}

#[test]
fn a_permit_granted_to_a_cancelled_waiter_is_handed_on() {
    holds(|| handoff_model(Shape::Real));
}

#[test]
fn negative_control_checking_then_leaving_in_two_steps_loses_a_permit() {
    breaks(|| handoff_model(Shape::CheckThenLeave));
}
