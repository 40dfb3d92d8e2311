//! The timer queue: deadlines ordered in a `BTreeMap`, each with the waker to call.
//!
//! Keys are `(deadline, sequence)`: the sequence breaks ties in registration order and
//! makes every key unique, so a `Sleep` can remove exactly its own entry when it is
//! dropped or reset. Removal is a real O(log n) delete, so cancelled timers never pile up
//! and nothing needs compacting. The loop asks for the nearest deadline when it decides
//! how long to sleep (`Core::park`) and fires what is due right after (`Core::fire_timers`).

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

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
        if current.will_wake(waker) {
            return Ok(None);
        }
        let new = fresh.take().ok_or(Stored::NeedsClone)?;
        Ok(Some(std::mem::replace(current, new)))
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
