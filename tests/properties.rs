//! Property tests of the Semaphore against a reference model: random sequences of
//! acquires, try-acquires, releases, cancellations, added permits and polls give the same
//! grants, in the same order, with the same counts. (The timer queue's property test is a
//! unit test in `runtime/src/time/timers.rs`, as the queue is private to the runtime.)

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use oneloop_pool::Semaphore;
use oneloop_pool::semaphore::{AcquireError, OwnedSemaphorePermit};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// A new waiter asks for `n` permits (its future is polled once).
    Acquire(usize),
    /// `try_acquire_many(n)`.
    TryAcquire(usize),
    /// Drop the i-th held permit (modulo).
    Release(usize),
    /// Drop the i-th pending waiter (modulo), granted meanwhile or not.
    Cancel(usize),
    AddPermits(usize),
    /// Poll every pending waiter: the granted ones complete.
    PollAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..=3).prop_map(Op::Acquire),
        2 => (1usize..=3).prop_map(Op::TryAcquire),
        3 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (0usize..=2).prop_map(Op::AddPermits),
        3 => Just(Op::PollAll),
    ]
}

/// The reference: free permits, a FIFO of (waiter, n), the waiters granted but not yet
/// polled.
#[derive(Debug)]
struct Model {
    permits: usize,
    queue: VecDeque<(usize, usize)>,
    granted: Vec<(usize, usize)>,
}

impl Model {
    /// Grants the head of the queue while it fits (no overtaking).
    fn grant(&mut self) {
        while let Some(&(id, n)) = self.queue.front() {
            if n > self.permits {
                break;
            }
            self.permits -= n;
            self.queue.pop_front();
            self.granted.push((id, n));
        }
    }

    fn add(&mut self, n: usize) {
        self.permits += n;
        self.grant();
    }
}

type Waiting = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>>>>;

fn poll(future: &mut Waiting) -> Option<OwnedSemaphorePermit> {
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => Some(result.expect("the semaphore is never closed here")),
        Poll::Pending => None,
    }
}

proptest! {
    #[test]
    fn the_semaphore_grants_what_the_model_grants_in_the_same_order(
        initial in 0usize..=4,
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let sem = Arc::new(Semaphore::new(initial));
        let mut model = Model { permits: initial, queue: VecDeque::new(), granted: Vec::new() };
        let mut pending: Vec<(usize, usize, Waiting)> = Vec::new();
        let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
        let mut next_id = 0;
        let mut added = 0;
        for op in ops {
            match op {
                Op::Acquire(n) => {
                    let id = next_id;
                    next_id += 1;
                    let mut future: Waiting = Box::pin(sem.clone().acquire_many_owned(n));
                    // The first poll: granted at once only if nobody waits and it fits.
                    let immediate = model.queue.is_empty() && model.permits >= n;
                    match poll(&mut future) {
                        Some(permit) => {
                            prop_assert!(immediate, "waiter {} overtook the queue {:?}", id, model);
                            model.permits -= n;
                            held.push(permit);
                        }
                        None => {
                            prop_assert!(!immediate, "waiter {} should have been granted at once", id);
                            model.queue.push_back((id, n));
                            model.grant();
                            pending.push((id, n, future));
                        }
                    }
                }
                Op::TryAcquire(n) => {
                    let fits = model.queue.is_empty() && model.permits >= n;
                    match sem.clone().try_acquire_many_owned(n) {
                        Ok(permit) => {
                            prop_assert!(fits, "try_acquire({}) jumped the queue {:?}", n, model);
                            model.permits -= n;
                            held.push(permit);
                        }
                        Err(_) => prop_assert!(!fits, "try_acquire({}) refused {:?}", n, model),
                    }
                }
                Op::Release(i) if !held.is_empty() => {
                    let permit = held.swap_remove(i % held.len());
                    let n = permit.num_permits();
                    drop(permit);
                    model.add(n);
                }
                Op::Cancel(i) if !pending.is_empty() => {
                    let (id, n, future) = pending.remove(i % pending.len());
                    drop(future);
                    if let Some(at) = model.granted.iter().position(|&(g, _)| g == id) {
                        model.granted.remove(at);
                        model.add(n); // granted meanwhile: handed on
                    } else {
                        model.queue.retain(|&(q, _)| q != id);
                        model.grant(); // leaving the head may let the next through
                    }
                }
                Op::Release(_) | Op::Cancel(_) => {}
                Op::AddPermits(n) => {
                    added += n;
                    sem.add_permits(n);
                    model.add(n);
                }
                Op::PollAll => {
                    let mut still = Vec::new();
                    for (id, n, mut future) in pending.drain(..) {
                        let granted = model.granted.iter().any(|&(g, _)| g == id);
                        match poll(&mut future) {
                            Some(permit) => {
                                prop_assert!(granted, "waiter {} completed out of turn {:?}", id, model);
                                held.push(permit);
                            }
                            None => {
                                prop_assert!(!granted, "waiter {} was granted and did not complete", id);
                                still.push((id, n, future));
                            }
                        }
                    }
                    pending = still;
                    model.granted.clear();
                }
            }
            prop_assert_eq!(sem.available_permits(), model.permits, "{:?}", model);
        }
        // Conservation: every permit is free, held, or granted to a waiter.
        let held_total: usize = held.iter().map(OwnedSemaphorePermit::num_permits).sum();
        let granted_total: usize = model.granted.iter().map(|&(_, n)| n).sum();
        prop_assert_eq!(sem.available_permits() + held_total + granted_total, initial + added);
    }
}
