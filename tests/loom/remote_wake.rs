//! The event loop's remote wake queue and its coalesced `notified` flag
//! (`runtime/src/waker.rs`: `Remote::push`, `notify`, `drain`). Another thread queues a
//! wake and writes the eventfd only if the flag was clear; the loop clears the flag, then
//! drains. Simplified: the queue holds plain numbers, and one turn of the loop stands for
//! all of them.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{breaks, holds};

struct Remote {
    queue: Mutex<Vec<u32>>,
    notified: AtomicBool,
    /// The eventfd: writes not yet consumed by the loop's `epoll_wait`.
    eventfd: AtomicUsize,
}

impl Remote {
    fn push(&self, op: u32) {
        self.queue.lock().unwrap().push(op);
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.eventfd.fetch_add(1, Ordering::Release);
        }
    }

    fn drain(&self, clear_first: bool) -> Vec<u32> {
        if clear_first {
            self.notified.store(false, Ordering::Release);
            std::mem::take(&mut *self.queue.lock().unwrap())
        } else {
            let ops = std::mem::take(&mut *self.queue.lock().unwrap());
            self.notified.store(false, Ordering::Release);
            ops
        }
    }
}

fn remote_wake_model(clear_first: bool) {
    let remote = Arc::new(Remote {
        queue: Mutex::new(Vec::new()),
        notified: AtomicBool::new(false),
        eventfd: AtomicUsize::new(0),
    });
    let waker = {
        let remote = remote.clone();
        thread::spawn(move || {
            remote.push(1);
            remote.push(2);
        })
    };
    // One turn of the loop: woken by the eventfd, it drains.
    if remote.eventfd.load(Ordering::Acquire) > 0 {
        remote.eventfd.fetch_sub(1, Ordering::AcqRel);
        remote.drain(clear_first);
    }
    waker.join().unwrap();
    // No op may be left queued with no eventfd write to wake the loop for it.
    let stranded = !remote.queue.lock().unwrap().is_empty();
    assert!(
        !stranded || remote.eventfd.load(Ordering::Acquire) > 0,
        "a wake was queued and the loop will never be told"
    );
}

#[test]
fn remote_wakes_are_never_stranded() {
    holds(|| remote_wake_model(true));
}

#[test]
fn negative_control_draining_before_clearing_strands_a_wake() {
    breaks(|| remote_wake_model(false));
}
