//! The watchdog's backtrace capture (`runtime/src/debug/stack/signal.rs`: `claim`, `wait`,
//! `on_signal`): a slot's state is a generation and a phase; a watchdog claims a free slot
//! (`IDLE`/`ABANDONED` -> `CLAIMED`), writes the target thread, publishes `REQUESTED` and
//! signals; the handler, on its own thread with its signal's generation, moves `REQUESTED`
//! -> `COPYING`, copies, and moves to `DONE` (or, if the watchdog gave up meanwhile,
//! `ORPHANED` -> `ABANDONED`); the watchdog reads on `DONE` and frees the slot, or gives up:
//! `REQUESTED` -> `ABANDONED`, `COPYING` -> `ORPHANED`.
//!
//! Simplified: one slot; the copy is a record of which thread wrote it for which
//! generation, in a loom `UnsafeCell` (so two parties touching it at once is a failure);
//! a signal is a thread spawned when it is sent, which loom may run at once or after
//! everything else (a late signal: the thread had it masked); the watchdog's 200 ms wait is
//! one look before it gives up. Two runtimes' watchdogs take turns: the first asks loop
//! thread A for generation 1, the second asks loop thread B for generation 2.
//!
//! Checked: a watchdog that gets a copy gets its own thread's, made for its own request;
//! and once everyone is done the slot is free (nobody left it stuck).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::{breaks, holds};

const IDLE: u64 = 0;
const CLAIMED: u64 = 1;
const REQUESTED: u64 = 2;
const COPYING: u64 = 3;
const DONE: u64 = 4;
const ABANDONED: u64 = 5;
const ORPHANED: u64 = 6;

fn pack(generation: u64, phase: u64) -> u64 {
    (generation << 3) | phase
}

/// The code under test, or a negative control's change to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The code as it is.
    Real,
    /// The handler takes whatever request is pending, whatever its thread or generation
    /// (as the code once did): a late handler fills another runtime's request.
    NoBinding,
    /// On timeout the watchdog takes `REQUESTED` back to `IDLE` and leaves a running
    /// handler alone (as the code once did): that handler's `DONE` is never cleared.
    NoAbandon,
    /// On timeout the watchdog frees a slot whose handler is still copying: the next
    /// capture shares the buffer with it.
    FreeWhileCopying,
}

struct Slot {
    state: AtomicU64,
    /// The target thread, written while `CLAIMED`.
    tid: AtomicU64,
    /// The copy: which thread wrote it, for which generation.
    copy: UnsafeCell<Option<(u64, u64)>>,
}

impl Slot {
    /// `claim` then publish: returns false if the slot is not free.
    fn claim(&self, generation: u64, tid: u64) -> bool {
        let state = self.state.load(Ordering::Acquire);
        if !matches!(state & 7, IDLE | ABANDONED)
            || self
                .state
                .compare_exchange(
                    state,
                    pack(generation, CLAIMED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        self.tid.store(tid, Ordering::Relaxed);
        self.state
            .store(pack(generation, REQUESTED), Ordering::Release);
        true
    }

    /// The handler, on thread `tid`, for a signal carrying `generation`.
    fn on_signal(&self, shape: Shape, tid: u64, generation: u64) {
        let taken = if shape == Shape::NoBinding {
            // Any pending request will do (a compare-exchange on the phase alone).
            let mut state = self.state.load(Ordering::Relaxed);
            loop {
                if state & 7 != REQUESTED {
                    return;
                }
                match self.state.compare_exchange(
                    state,
                    pack(state >> 3, COPYING),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break state >> 3,
                    Err(now) => state = now,
                }
            }
        } else {
            if self
                .state
                .compare_exchange(
                    pack(generation, REQUESTED),
                    pack(generation, COPYING),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                return;
            }
            generation
        };
        let ours = shape == Shape::NoBinding || self.tid.load(Ordering::Relaxed) == tid;
        // SAFETY: (model) the handler owns the copy while COPYING; loom checks it.
        self.copy
            .with_mut(|copy| unsafe { *copy = ours.then_some((tid, generation)) });
        if self
            .state
            .compare_exchange(
                pack(taken, COPYING),
                pack(taken, DONE),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.state.store(pack(taken, ABANDONED), Ordering::Release);
        }
    }

    /// The watchdog's wait: one look, then it gives up unless the copy is there.
    fn wait(&self, shape: Shape, generation: u64) -> Option<Option<(u64, u64)>> {
        let mut looked = false;
        loop {
            if self.state.load(Ordering::Acquire) == pack(generation, DONE) {
                // SAFETY: (model) DONE for our generation: the handler is finished.
                let copy = self.copy.with(|copy| unsafe { *copy });
                self.state.store(pack(generation, IDLE), Ordering::Release);
                return Some(copy);
            }
            if !looked {
                looked = true;
                thread::yield_now();
                continue;
            }
            let give_up = |from, to| {
                self.state
                    .compare_exchange(
                        pack(generation, from),
                        pack(generation, to),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            };
            let gave_up = match shape {
                Shape::NoAbandon => give_up(REQUESTED, IDLE) || self.is_copying(generation),
                Shape::FreeWhileCopying => {
                    give_up(REQUESTED, ABANDONED) || give_up(COPYING, ABANDONED)
                }
                _ => give_up(REQUESTED, ABANDONED) || give_up(COPYING, ORPHANED),
            };
            if gave_up {
                return None;
            }
            thread::yield_now();
        }
    }

    fn is_copying(&self, generation: u64) -> bool {
        self.state.load(Ordering::Acquire) == pack(generation, COPYING)
    }
}

/// One capture: claim, signal (a thread that runs the handler whenever loom likes), wait.
/// Returns the copy, if any, and the signal's thread.
fn capture(
    slot: &Arc<Slot>,
    shape: Shape,
    tid: u64,
    generation: u64,
) -> (Option<Option<(u64, u64)>>, Option<thread::JoinHandle<()>>) {
    if !slot.claim(generation, tid) {
        return (None, None);
    }
    let signal = {
        let slot = slot.clone();
        thread::spawn(move || slot.on_signal(shape, tid, generation))
    };
    (slot.wait(shape, generation), Some(signal))
}

fn capture_model(shape: Shape) {
    const A: u64 = 1;
    const B: u64 = 2;
    let slot = Arc::new(Slot {
        state: AtomicU64::new(IDLE),
        tid: AtomicU64::new(0),
        copy: UnsafeCell::new(None),
    });
    let (first, signal_a) = capture(&slot, shape, A, 1);
    let (second, signal_b) = capture(&slot, shape, B, 2);
    for copy in [(first, A, 1), (second, B, 2)] {
        if let (Some(Some(got)), thread, generation) = copy {
            assert_eq!(
                got,
                (thread, generation),
                "a capture got another thread's or another request's copy"
            );
        }
    }
    for signal in [signal_a, signal_b].into_iter().flatten() {
        signal.join().unwrap();
    }
    let phase = slot.state.load(Ordering::Acquire) & 7;
    assert!(
        matches!(phase, IDLE | ABANDONED),
        "the slot is left in phase {phase}: no capture can use it again"
    );
}

#[test]
fn a_capture_gets_only_its_own_thread_s_copy_and_never_leaves_the_slot_stuck() {
    holds(|| capture_model(Shape::Real));
}

#[test]
fn negative_control_an_unbound_handler_fills_another_runtime_s_request() {
    breaks(|| capture_model(Shape::NoBinding));
}

#[test]
fn negative_control_without_an_abandoned_phase_the_slot_stays_done() {
    breaks(|| capture_model(Shape::NoAbandon));
}

#[test]
fn negative_control_freeing_a_slot_while_its_handler_copies_shares_the_buffer() {
    breaks(|| capture_model(Shape::FreeWhileCopying));
}
