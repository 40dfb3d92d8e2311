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

    /// Points an armed timer at a new waker (the task that polls it may have changed).
    /// Returns false when the timer has already fired.
    pub(crate) fn update_waker(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.entries.get_mut(&key) {
            Some(current) => {
                if !current.will_wake(waker) {
                    current.clone_from(waker);
                }
                true
            }
            None => false,
        }
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
