//! The loop's timers: [`Timers`] (the queue, the clock it is compared against, and the
//! `Sleep` future's side: arm, refresh, cancel), over [`TimerQueue`] (deadlines ordered in a
//! `BTreeMap`, each with the waker to call). `Sleep` is in `sleep.rs`; the loop asks
//! `Timers` how long it may sleep and fires what is due each tick (`runtime.rs`).
//!
//! Keys are `(deadline, sequence)`: the sequence breaks ties in registration order and
//! makes every key unique, so a `Sleep` can remove exactly its own entry when it is
//! dropped or reset. Removal is a real O(log n) delete, so cancelled timers never pile up
//! and nothing needs compacting. The loop asks for the nearest deadline when it decides
//! how long to sleep (`Core::react`) and fires what is due right after (`Core::fire_timers`).
//!
//! Wakers are user code: `Timers` clones a waker, and drops one it replaces, outside its
//! borrow of the queue (`oneloop_pool::wake`), and hands fired ones to the loop to call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::task::{Poll, Waker};
use std::time::Instant;

use oneloop_pool::wake::{self, WakeList};

use Stored::{NeedsClone, NotArmed};

/// The timers of one runtime, used on its loop thread only.
pub(crate) struct Timers {
    queue: RefCell<TimerQueue>,
    /// The time timers were last fired at; refreshed once per tick (`fire_due`). A timer
    /// compared against it can only be late, never early, because the clock only moves
    /// forward.
    now: Cell<Instant>,
    /// Timers fired so far (`Metrics::timers_fired`).
    fired: Cell<u64>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            queue: RefCell::default(),
            now: Cell::new(Instant::now()),
            fired: Cell::new(0),
        }
    }

    /// When the loop's current turn began (its timers were checked then).
    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    /// The nearest deadline: the loop sleeps until then at most.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.borrow().next_deadline()
    }

    /// Reads the clock for this tick and moves the wakers of every due timer into `out`,
    /// earliest first, for the loop to call outside this borrow.
    pub(crate) fn fire_due(&self, out: &mut Vec<Waker>) {
        let now = Instant::now();
        self.now.set(now);
        if self.queue.borrow().is_empty() {
            return;
        }
        let fired = self.queue.borrow_mut().fire_due(now, out);
        self.fired.set(self.fired.get() + fired as u64);
    }

    /// `Sleep::poll`: ready once `deadline` has passed (by this tick's clock); otherwise
    /// the timer is armed (or its waker refreshed) and `key` remembers it.
    pub(crate) fn poll(
        &self,
        deadline: Instant,
        key: &mut Option<TimerKey>,
        waker: &Waker,
    ) -> Poll<()> {
        if deadline <= self.now.get() {
            if let Some(key) = key.take() {
                self.cancel(key);
            }
            return Poll::Ready(());
        }
        // The waker is cloned, and the one it replaces dropped, outside the borrow: both
        // are user code (`oneloop_pool::wake`).
        let mut fresh = None;
        loop {
            let mut queue = self.queue.borrow_mut();
            let stored = match *key {
                Some(armed) => queue.update_waker(armed, waker, &mut fresh),
                None => Err(NotArmed),
            };
            match stored {
                Ok(old) => {
                    drop(queue);
                    wake::discard((old, fresh));
                    return Poll::Pending;
                }
                Err(NotArmed) => {
                    if let Some(waker) = fresh.take() {
                        *key = Some(queue.insert(deadline, waker));
                        return Poll::Pending;
                    }
                }
                Err(NeedsClone) => {}
            }
            drop(queue);
            fresh = Some(waker.clone());
        }
    }

    /// Disarms a timer (a `Sleep` dropped or reset); one that already fired is ignored.
    pub(crate) fn cancel(&self, key: TimerKey) {
        let waker = self.queue.borrow_mut().remove(key);
        wake::discard(waker); // after the borrow, contained (it runs in `Sleep::drop`)
    }

    /// Timers armed right now.
    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Timers fired so far.
    pub(crate) fn fired(&self) -> u64 {
        self.fired.get()
    }

    /// Disarms every timer (the runtime shuts down), dropping each waker outside the borrow,
    /// every one even if one panics.
    pub(crate) fn clear(&self) {
        let timers = self.queue.borrow_mut().take_all();
        drop(WakeList::from_iter(timers.into_values()));
    }
}

/// Identifies one registered timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    deadline: Instant,
    seq: u64,
}

/// Why [`TimerQueue::update_waker`] stored nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    NotArmed,
    NeedsClone,
}

#[derive(Default)]
pub(crate) struct TimerQueue {
    entries: BTreeMap<TimerKey, Waker>,
    next_seq: u64,
}

impl TimerQueue {
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let key = TimerKey {
            deadline,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.entries.insert(key, waker);
        key
    }

    /// Removes a timer; a key that already fired is ignored. Returns the waker so the
    /// caller can drop it after releasing its borrow.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Waker> {
        self.entries.remove(&key)
    }

    /// Points an armed timer at `waker` (the task that polls it may have changed). Waker
    /// code never runs here, under the caller's borrow: if the stored waker does not wake
    /// the same task, the clone the caller made beforehand (`fresh`) replaces it and the
    /// old one comes back to be dropped after the borrow; without a clone, `NeedsClone`.
    /// `NotArmed` when the timer has already fired (or was never armed).
    pub(crate) fn update_waker(
        &mut self,
        key: TimerKey,
        waker: &Waker,
        fresh: &mut Option<Waker>,
    ) -> Result<Option<Waker>, Stored> {
        let current = self.entries.get_mut(&key).ok_or(Stored::NotArmed)?;
        wake::replace_waker(current, waker, fresh).map_err(|_| Stored::NeedsClone)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.first_key_value().map(|(key, _)| key.deadline)
    }

    /// Moves the wakers of every timer with `deadline <= now` into `out`, earliest first.
    pub(crate) fn fire_due(&mut self, now: Instant, out: &mut Vec<Waker>) -> usize {
        let mut fired = 0;
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().deadline > now {
                break;
            }
            out.push(entry.remove());
            fired += 1;
        }
        fired
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the queue (runtime shutdown), handing the wakers back to be dropped outside
    /// any borrow.
    pub(crate) fn take_all(&mut self) -> BTreeMap<TimerKey, Waker> {
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    //! The queue against a reference model (a plain list, sorted when fired): random
    //! sequences of inserts, removals and firings give the same timers fired, in the same
    //! order, and the same nearest deadline.
    use std::sync::{Arc, Mutex};
    use std::task::Wake;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    struct Record {
        id: usize,
        fired: Arc<Mutex<Vec<usize>>>,
    }

    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            self.fired.lock().unwrap().push(self.id);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A timer `ms` after the current time.
        Insert(u64),
        /// Remove the n-th timer inserted so far (modulo), fired or not.
        Remove(usize),
        /// Advance the time by `ms` and fire what is due.
        Fire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..50).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            2 => (0u64..30).prop_map(Op::Fire),
        ]
    }

    proptest! {
        #[test]
        fn the_queue_fires_what_the_model_fires_in_the_same_order(
            ops in proptest::collection::vec(op(), 1..200)
        ) {
            let base = Instant::now();
            let fired = Arc::new(Mutex::new(Vec::new()));
            let mut queue = TimerQueue::default();
            let mut keys = Vec::new();
            // The model: (deadline, id, armed), in insertion order.
            let mut model: Vec<(Instant, usize, bool)> = Vec::new();
            let mut now = base;
            for op in ops {
                match op {
                    Op::Insert(ms) => {
                        let id = keys.len();
                        let deadline = now + Duration::from_millis(ms);
                        let waker = Waker::from(Arc::new(Record { id, fired: fired.clone() }));
                        keys.push(queue.insert(deadline, waker));
                        model.push((deadline, id, true));
                    }
                    Op::Remove(n) if !keys.is_empty() => {
                        let i = n % keys.len();
                        let was_armed = model[i].2;
                        prop_assert_eq!(queue.remove(keys[i]).is_some(), was_armed);
                        model[i].2 = false;
                    }
                    Op::Remove(_) => {}
                    Op::Fire(ms) => {
                        now += Duration::from_millis(ms);
                        let mut wakers = Vec::new();
                        let count = queue.fire_due(now, &mut wakers);
                        wakers.into_iter().for_each(Waker::wake);
                        let mut due: Vec<(Instant, usize)> = model
                            .iter_mut()
                            .filter(|(deadline, _, armed)| *armed && *deadline <= now)
                            .map(|entry| {
                                entry.2 = false;
                                (entry.0, entry.1)
                            })
                            .collect();
                        // Earliest deadline first; ties in insertion order.
                        due.sort();
                        let expected: Vec<usize> = due.into_iter().map(|(_, id)| id).collect();
                        let got = std::mem::take(&mut *fired.lock().unwrap());
                        prop_assert_eq!(count, expected.len());
                        prop_assert_eq!(got, expected);
                    }
                }
                let armed = model.iter().filter(|entry| entry.2);
                prop_assert_eq!(queue.next_deadline(), armed.clone().map(|entry| entry.0).min());
                prop_assert_eq!(queue.len(), armed.count());
            }
        }
    }
}
