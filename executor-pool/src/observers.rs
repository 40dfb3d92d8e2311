//! The observers a pool attaches to the jobs it builds itself (`ThreadPool::spawn` and
//! friends), so a runtime that watches its own jobs can watch a pool's other jobs too.
//!
//! A runtime registers its observer with [`Executor::observe`](crate::Executor::observe)
//! (oneloop's debug mode does, on `run_in_executor`). The pool holds it weakly, and so do
//! the jobs it builds (through a [`Forward`]): a runtime that drops stops watching without
//! telling the pool, even the jobs already submitted. A job holding the observer strongly
//! would keep it alive while it runs, and a job built meanwhile would pick it up again,
//! and so on for as long as the pool is busy. Jobs built with `JobBuilder` and
//! submitted through `execute` carry whatever observer their builder gave them; the pool
//! adds none.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::WorkerDeath;
use crate::job::{DefaultObserver, JobInfo, JobObserver};

/// A pool's registered observers.
#[derive(Default)]
pub(crate) struct Observers {
    /// Whether any was ever registered: the one load `spawn` pays when none was. Set by
    /// `add`, never cleared (a dropped observer is found dead under the lock instead).
    any: AtomicBool,
    /// Written by `add`, read by `current` (per job built, only once `any` is set).
    list: Mutex<Vec<Arc<Forward>>>,
}

impl Observers {
    /// Registers `observer`, once however often it is registered; forgets dead ones.
    pub(crate) fn add(&self, observer: &Arc<dyn JobObserver>) {
        let mut list = self.list.lock();
        list.retain(|forward| forward.0.strong_count() > 0);
        let new = Arc::downgrade(observer);
        if !list.iter().any(|forward| Weak::ptr_eq(&forward.0, &new)) {
            list.push(Arc::new(Forward(new)));
        }
        self.any.store(true, Ordering::Release);
    }

    /// The observer for a job built now: none, the one live observer, or all of them.
    pub(crate) fn current(&self) -> Option<Arc<dyn JobObserver>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut list = self.list.lock();
        list.retain(|forward| forward.0.strong_count() > 0);
        match list.len() {
            0 => None,
            1 => Some(list[0].clone()),
            _ => Some(Arc::new(Fanout(list.clone()))),
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("registered", &self.list.lock().len())
            .finish()
    }
}

/// A registered observer as a job holds it: weakly, each call forwarded while it lives.
struct Forward(Weak<dyn JobObserver>);

impl Forward {
    /// Calls `f` on the observer while it lives; once it is gone, on the trait's own
    /// defaults, which ignore the job's events but still print a panic nobody saw on
    /// stderr: that is still worth a line once the observer is gone.
    fn call(&self, f: impl FnOnce(&dyn JobObserver)) {
        match self.0.upgrade() {
            Some(observer) => f(&*observer),
            None => f(&DefaultObserver),
        }
    }
}

impl JobObserver for Forward {
    fn submitted(&self, info: &JobInfo) {
        self.call(|o| o.submitted(info));
    }

    fn cancelled(&self, info: &JobInfo) {
        self.call(|o| o.cancelled(info));
    }

    fn started(&self, info: &JobInfo) {
        self.call(|o| o.started(info));
    }

    fn finished(&self, info: &JobInfo) {
        self.call(|o| o.finished(info));
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        self.call(|o| o.unobserved_panic(info, message));
    }

    fn discarded_result_panicked(&self, info: &JobInfo, message: &str) {
        self.call(|o| o.discarded_result_panicked(info, message));
    }

    fn worker_died(&self, info: &JobInfo, death: &WorkerDeath) {
        self.call(|o| o.worker_died(info, death));
    }
}

/// Several observers of one job, called in registration order.
struct Fanout(Vec<Arc<Forward>>);

impl JobObserver for Fanout {
    fn submitted(&self, info: &JobInfo) {
        self.0.iter().for_each(|o| o.submitted(info));
    }

    fn cancelled(&self, info: &JobInfo) {
        self.0.iter().for_each(|o| o.cancelled(info));
    }

    fn started(&self, info: &JobInfo) {
        self.0.iter().for_each(|o| o.started(info));
    }

    fn finished(&self, info: &JobInfo) {
        self.0.iter().for_each(|o| o.finished(info));
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        self.0
            .iter()
            .for_each(|o| o.unobserved_panic(info, message));
    }

    fn discarded_result_panicked(&self, info: &JobInfo, message: &str) {
        self.0
            .iter()
            .for_each(|o| o.discarded_result_panicked(info, message));
    }

    fn worker_died(&self, info: &JobInfo, death: &WorkerDeath) {
        self.0.iter().for_each(|o| o.worker_died(info, death));
    }
}
