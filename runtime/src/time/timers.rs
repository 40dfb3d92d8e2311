//! The loop's timers: [`Timers`] (the queue, the clock it is compared against, and the
//! `Sleep` future's side: arm, refresh, cancel), over [`TimerQueue`]. `Sleep` is in
//! `sleep.rs`; the loop asks `Timers` how long it may sleep and fires what is due each tick
//! (`runtime.rs`). (Long because the queue's tests sit beside it: a model check, and
//! W6's shape at full size.)
//!
//! The queue keeps the armed timers in a slab (each with its waker) and their deadlines in
//! sorted runs, like a log-structured merge tree:
//! - arming a timer pushes its deadline on an unsorted list (`incoming`), ~20 ns whatever
//!   the deadline. It is what a task does on its first poll of a `Sleep`, often a hundred
//!   thousand times in a row (benchmark W6), where an insert at a random place in a
//!   `BTreeMap` of 100,000 entries cost 220-300 ns here and delayed every first poll behind;
//! - once something on that list is due, or its earliest timer is removed, the list is
//!   sorted into a run, and runs of similar lengths are merged, as a binary counter adds:
//!   each deadline is sorted once and merged O(log n) times, all in contiguous memory;
//! - firing takes the earliest of the runs' last entries (each run is sorted latest first),
//!   a pop from the end of a `Vec` that stays in cache, where a heap's pop walks a cold
//!   path from its root (180-260 ns a pop here, enough for the loop to fall behind a
//!   timer a µs).
//!
//! A timer's key is its slab slot and a sequence number: the sequence orders equal
//! deadlines by registration and tells a live slot from one reused since, so a `Sleep`
//! removes exactly its own timer when it is dropped or reset. Removal empties the slot at
//! once (the waker goes back to the caller); the entry it leaves in a run is stale, dropped
//! when it reaches the end of its run, and stale entries are swept out whenever they
//! outnumber the armed timers, so cancelled timers (a `timeout` that finished in time)
//! never pile up. The loop asks for the nearest deadline when it decides how long to sleep
//! (`Core::react`) and fires what is due right after (`Core::fire_timers`).
//!
//! Wakers are user code: `Timers` clones a waker, and drops one it replaces, outside its
//! borrow of the queue (`oneloop_pool::wake`), and hands fired ones to the loop to call.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use std::time::Instant;

use oneloop_pool::wake::{self, WakeList};
use slab::Slab;

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
            // Armed in an earlier tick, it has fired in this one (`fire_due` fires every
            // timer due by `now`, and sets `now`): nothing is left to remove.
            key.take();
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
        drop(WakeList::from_iter(timers));
    }
}

/// Identifies one registered timer: its slot, and the sequence number that slot had then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    seq: u64,
}

/// Why [`TimerQueue::update_waker`] stored nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    NotArmed,
    NeedsClone,
}

/// An armed timer.
struct Armed {
    seq: u64,
    deadline: Instant,
    waker: Waker,
}

/// A deadline in a run: ordered by the deadline, then by registration (`seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    deadline: Instant,
    seq: u64,
    slot: usize,
}

/// Stale entries beyond the armed timers that trigger a sweep.
const STALE_SLACK: usize = 64;

#[derive(Default)]
pub(crate) struct TimerQueue {
    /// The armed timers.
    armed: Slab<Armed>,
    /// Deadlines armed since the last `sort_incoming`, in no order.
    incoming: Vec<Entry>,
    /// The earliest deadline in `incoming` (exact: `remove` sorts `incoming` away rather
    /// than leave it pointing at a removed timer).
    incoming_min: Option<Instant>,
    /// Sorted runs, each latest first (the earliest entry last), oldest first; a new run
    /// is merged into the one before it while it is at least half as long. The last entry
    /// of every run is an armed timer (`drop_stale_ends`).
    runs: Vec<Vec<Entry>>,
    /// Entries in `incoming` and `runs`, stale ones included.
    entries: usize,
    next_seq: u64,
}

impl TimerQueue {
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.armed.insert(Armed {
            seq,
            deadline,
            waker,
        });
        self.incoming.push(Entry {
            deadline,
            seq,
            slot,
        });
        self.entries += 1;
        if self.incoming_min.is_none_or(|min| deadline < min) {
            self.incoming_min = Some(deadline);
        }
        TimerKey { slot, seq }
    }

    /// Removes a timer; a key that already fired is ignored. Returns the waker so the
    /// caller can drop it after releasing its borrow.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Waker> {
        if !is_armed(&self.armed, key.slot, key.seq) {
            return None;
        }
        let armed = self.armed.remove(key.slot);
        if self.incoming_min == Some(armed.deadline) {
            self.sort_incoming(); // keeps `incoming_min` exact
        }
        if self.entries > 2 * self.armed.len() + STALE_SLACK {
            self.sweep();
        }
        self.drop_stale_ends();
        Some(armed.waker)
    }

    /// Sorts `incoming` into a run, then merges the last runs while the newer is at least
    /// half as long as the one before it.
    fn sort_incoming(&mut self) {
        if self.incoming.is_empty() {
            return;
        }
        let mut run = std::mem::take(&mut self.incoming);
        self.incoming_min = None;
        run.sort_unstable_by(|a, b| b.cmp(a));
        self.runs.push(run);
        while let [.., older, newer] = &self.runs[..] {
            if newer.len() * 2 < older.len() {
                break;
            }
            let newer = self.runs.pop().expect("two runs");
            let older = self.runs.pop().expect("two runs");
            self.runs.push(merge(older, newer));
        }
        self.drop_stale_ends();
    }

    /// Pops the entries of removed timers off the ends of the runs, so that each run ends
    /// on an armed timer (and `next_deadline` is exact).
    fn drop_stale_ends(&mut self) {
        let armed = &self.armed;
        let dropped: usize = self.runs.iter_mut().map(|run| pop_stale(armed, run)).sum();
        self.runs.retain(|run| !run.is_empty());
        self.entries -= dropped;
    }

    /// Drops every stale entry.
    fn sweep(&mut self) {
        let armed = &self.armed;
        let live = |entry: &Entry| is_armed(armed, entry.slot, entry.seq);
        self.incoming.retain(live);
        self.incoming_min = self.incoming.iter().map(|entry| entry.deadline).min();
        for run in &mut self.runs {
            run.retain(live); // stays sorted
        }
        self.runs.retain(|run| !run.is_empty());
        self.entries = self.incoming.len() + self.runs.iter().map(Vec::len).sum::<usize>();
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
        let current = self
            .armed
            .get_mut(key.slot)
            .filter(|armed| armed.seq == key.seq)
            .ok_or(Stored::NotArmed)?;
        wake::replace_waker(&mut current.waker, waker, fresh).map_err(|_| Stored::NeedsClone)
    }

    /// The run whose last entry is the earliest.
    fn earliest_run(&self) -> Option<usize> {
        (0..self.runs.len())
            .min_by_key(|&i| self.runs[i].last().map(|entry| (entry.deadline, entry.seq)))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let in_runs = self
            .earliest_run()
            .and_then(|i| self.runs[i].last())
            .map(|entry| entry.deadline);
        match (in_runs, self.incoming_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the wakers of every timer with `deadline <= now` into `out`, earliest first
    /// (equal deadlines in registration order).
    pub(crate) fn fire_due(&mut self, now: Instant, out: &mut Vec<Waker>) -> usize {
        if self.incoming_min.is_some_and(|min| min <= now) {
            self.sort_incoming();
        }
        let mut fired = 0;
        while let Some(i) = self.earliest_run() {
            let run = &mut self.runs[i];
            let Some(&entry) = run.last().filter(|entry| entry.deadline <= now) else {
                break;
            };
            run.pop();
            self.entries -= 1;
            if is_armed(&self.armed, entry.slot, entry.seq) {
                out.push(self.armed.remove(entry.slot).waker);
                fired += 1;
            }
            let run = &mut self.runs[i];
            self.entries -= pop_stale(&self.armed, run);
            if run.is_empty() {
                self.runs.remove(i); // keeps the runs in the order `sort_incoming` merges
            }
        }
        fired
    }

    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Empties the queue (runtime shutdown), handing the wakers back to be dropped outside
    /// any borrow.
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        self.incoming.clear();
        self.incoming_min = None;
        self.runs.clear();
        self.entries = 0;
        self.armed.drain().map(|armed| armed.waker).collect()
    }
}

/// Whether `slot` holds the timer registered with `seq` (not one removed or fired since).
fn is_armed(armed: &Slab<Armed>, slot: usize, seq: u64) -> bool {
    armed.get(slot).is_some_and(|armed| armed.seq == seq)
}

/// Pops the entries of removed timers off the end of `run`; how many.
fn pop_stale(armed: &Slab<Armed>, run: &mut Vec<Entry>) -> usize {
    let mut dropped = 0;
    while run
        .last()
        .is_some_and(|entry| !is_armed(armed, entry.slot, entry.seq))
    {
        run.pop();
        dropped += 1;
    }
    dropped
}

/// Merges two runs sorted latest first into one.
fn merge(older: Vec<Entry>, newer: Vec<Entry>) -> Vec<Entry> {
    let mut merged = Vec::with_capacity(older.len() + newer.len());
    let (mut a, mut b) = (older.into_iter().peekable(), newer.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x > y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        merged.extend(next);
    }
    merged
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

    fn record(id: usize, fired: &Arc<Mutex<Vec<usize>>>) -> Waker {
        Waker::from(Arc::new(Record {
            id,
            fired: fired.clone(),
        }))
    }

    #[test]
    fn removed_timers_never_pile_up() {
        // A service's timeouts mostly finish in time and are removed before they fire.
        let base = Instant::now();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut queue = TimerQueue::default();
        let mut keys = Vec::new();
        for id in 0..10_000 {
            let deadline = base + Duration::from_millis(20_000 - id as u64);
            keys.push(queue.insert(deadline, record(id, &fired)));
            if id % 100 == 0 {
                // Something due: what came in is sorted into a run.
                queue.fire_due(base, &mut Vec::new());
            }
            if id >= 10 {
                assert!(queue.remove(keys[id]).is_some());
                assert!(queue.remove(keys[id]).is_none(), "a key is removed once");
            }
            assert!(queue.entries <= 2 * queue.len() + STALE_SLACK + 1);
        }
        assert_eq!(queue.len(), 10);
        let mut wakers = Vec::new();
        assert_eq!(
            queue.fire_due(base + Duration::from_secs(60), &mut wakers),
            10
        );
        wakers.into_iter().for_each(Waker::wake);
        assert_eq!(*fired.lock().unwrap(), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn a_hundred_thousand_timers_fire_in_order_through_many_runs() {
        // W6's shape: timers armed in bursts, fired as time passes in small steps, so
        // deadlines go through many sorts and merges.
        let base = Instant::now();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut queue = TimerQueue::default();
        let mut x = 88172645463325252u64;
        let mut deadlines = Vec::new();
        let mut now = base;
        let mut most_runs = 0;
        let fire = |queue: &mut TimerQueue, now: Instant, deadlines: &[Instant]| {
            let mut wakers = Vec::new();
            queue.fire_due(now, &mut wakers);
            wakers.into_iter().for_each(Waker::wake);
            let batch = std::mem::take(&mut *fired.lock().unwrap());
            for pair in batch.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!((deadlines[a], a) < (deadlines[b], b), "out of order");
            }
            assert!(batch.iter().all(|&id| deadlines[id] <= now), "fired early");
            batch.len()
        };
        let mut count = 0;
        for id in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let deadline = now + Duration::from_micros(x % 100_000);
            deadlines.push(deadline);
            queue.insert(deadline, record(id, &fired));
            if id % 128 == 127 {
                now += Duration::from_micros(45);
                count += fire(&mut queue, now, &deadlines);
                most_runs = most_runs.max(queue.runs.len());
            }
        }
        while queue.next_deadline().is_some() {
            now += Duration::from_micros(100);
            count += fire(&mut queue, now, &deadlines);
            most_runs = most_runs.max(queue.runs.len());
        }
        assert_eq!(count, 100_000);
        assert_eq!(queue.entries, 0);
        // Merging like a binary counter keeps about log2(n) runs.
        assert!(most_runs <= 20, "{most_runs} runs at once");
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
