//! Watching offloaded jobs in debug mode.
//!
//! `run_in_executor` and `to_thread` attach a [`JobWatch`] to every job when debug mode is
//! on (`offload.rs`). The pool calls it on the worker thread when the job starts, which is
//! when a long queue wait is reported (`OL004`), and when the job finishes; a panic nobody
//! awaits is reported too (`OL006`). Meanwhile the job sits in a registry of running jobs
//! that the watchdog thread (`watch.rs`) scans, reporting a job still running past the
//! slow-job limit (`OL005`), again at doubling intervals.

use std::collections::HashMap;
use std::time::Duration;

use oneloop_pool::{JobInfo, JobObserver};
use parking_lot::Mutex;

use super::{Code, Report, Sink, emit};

pub(crate) struct JobWatch {
    /// Queue waits longer than this are reported (the slow-task threshold).
    threshold: Duration,
    /// Jobs running longer than this are reported while they run.
    limit: Duration,
    sink: Sink,
    /// Running jobs by id, with the running time at which each is next reported. Written
    /// by workers at start and finish, read by the watchdog.
    running: Mutex<HashMap<u64, (JobInfo, Duration)>>,
}

impl JobWatch {
    pub(crate) fn new(threshold: Duration, limit: Duration, sink: Sink) -> Self {
        JobWatch {
            threshold,
            limit,
            sink,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Reports every job running past its next report time (called by the watchdog).
    pub(crate) fn scan(&self) {
        let mut due = Vec::new();
        {
            let mut running = self.running.lock();
            for (info, next) in running.values_mut() {
                let ran = info.running_for();
                if ran >= *next {
                    due.push((info.clone(), ran));
                    while *next <= ran {
                        *next = next.saturating_mul(2);
                    }
                }
            }
        }
        // Outside the lock: the sink is user code.
        for (info, ran) in due {
            let mut report = Report::for_job(Code::JobStillRunning, info);
            report.duration = Some(ran);
            report.threshold = Some(self.limit);
            emit(&self.sink, &report);
        }
    }
}

impl JobObserver for JobWatch {
    fn started(&self, info: &JobInfo) {
        let waited = info.waited();
        self.running
            .lock()
            .insert(info.id, (info.clone(), self.limit));
        if waited >= self.threshold {
            let mut report = Report::for_job(Code::JobWaited, info.clone());
            report.duration = Some(waited);
            report.threshold = Some(self.threshold);
            emit(&self.sink, &report);
        }
    }

    fn finished(&self, info: &JobInfo) {
        self.running.lock().remove(&info.id);
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        let mut report = Report::for_job(Code::JobPanicNotRetrieved, info.clone());
        report.message = Some(message.to_owned());
        emit(&self.sink, &report);
    }
}
