//! Trace export: the loop's polls and the workers' jobs as a Chrome trace-event file,
//! which Perfetto (ui.perfetto.dev) and chrome://tracing open as a timeline.
//!
//! What is drawn:
//! - one track for the loop thread, with a slice per task poll (task name and id);
//! - one track per worker thread, with a slice per job (its submit site; its queue wait in
//!   the slice's arguments), and each job's queue wait as an async slice beside them;
//! - an instant event for every report (`OL001 ...`);
//! - flow arrows that follow each offloaded job: submitted by a poll on the loop, started
//!   and finished on a worker, then the submitting task's next poll, when it resumes with the
//!   result. That causal chain is the "inline vs offloaded" story as a picture.
//!
//! Events are streamed to the file through a 64 KiB buffer as they happen, so memory stays
//! bounded however long the run (the file grows by about 150 bytes per event). The file is
//! a JSON array, closed when the runtime drops. Writing stops, with one report, if the file
//! cannot be written.
//!
//! The buffer is flushed with every report, by the first event written a second or more
//! after the last flush, and by debug mode's watchdog once a second (`flush_if_due`). So a
//! program that ends without dropping its runtime (`process::exit`, a signal's default
//! action) leaves a file that holds every report and everything up to about a second
//! before the end; it lacks the closing `]`, which Perfetto and chrome://tracing accept.
//! SIGINT and SIGTERM flush it too, in debug mode, before they end the program
//! (`signals.rs` says how, and what is guaranteed without debug mode).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use oneloop_pool::JobInfo;
use parking_lot::Mutex;

use super::Report;

/// The trace's process id and the loop thread's track id.
const PID: u32 = 1;
const LOOP_TID: u32 = 1;

pub(crate) struct Tracer {
    base: Instant,
    out: Mutex<Output>,
    /// Offloaded jobs by id -> the task that submitted them (written at submit, taken when
    /// the job finishes).
    submitters: Mutex<HashMap<u64, u64>>,
    /// Finished jobs whose submitting task has not been polled since: (task, job).
    resumes: Mutex<Vec<(u64, u64)>>,
    /// Cheap check for the loop: is `resumes` worth locking?
    has_resumes: AtomicBool,
}

struct Output {
    /// `None` once closed, or after a write error.
    file: Option<BufWriter<File>>,
    /// No event written yet (events are separated by commas).
    first: bool,
    /// Worker threads seen so far, and their track ids.
    threads: HashMap<ThreadId, u32>,
    /// Workers named by their jobs (a process pool's worker processes), and their tracks.
    named: HashMap<String, u32>,
    /// A write error, to report once.
    error: Option<std::io::Error>,
    /// When the buffer was last flushed (written by `flush`, read by every write).
    flushed: Instant,
}

/// How stale the file may get: what a program killed without dropping its runtime loses
/// at most. Once a second costs one `write(2)` a second, nothing next to the events.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

impl Output {
    fn flush(&mut self) {
        self.flushed = Instant::now();
        if let Some(file) = self.file.as_mut()
            && let Err(error) = file.flush()
        {
            self.file = None;
            self.error = Some(error);
        }
    }
}

impl Tracer {
    /// Creates the trace file and writes the header.
    pub(crate) fn create(path: &Path) -> std::io::Result<Tracer> {
        let mut file = BufWriter::with_capacity(64 * 1024, File::create(path)?);
        // SIGINT and SIGTERM flush the buffer before they end the program (`signals.rs`).
        #[cfg(unix)]
        super::signals::install();
        file.write_all(b"[\n")?;
        let tracer = Tracer {
            base: Instant::now(),
            out: Mutex::new(Output {
                file: Some(file),
                first: true,
                threads: HashMap::new(),
                named: HashMap::new(),
                error: None,
                flushed: Instant::now(),
            }),
            submitters: Mutex::new(HashMap::new()),
            resumes: Mutex::new(Vec::new()),
            has_resumes: AtomicBool::new(false),
        };
        tracer.write(format_args!(
            r#"{{"ph":"M","pid":{PID},"name":"process_name","args":{{"name":"oneloop"}}}}"#
        ));
        tracer.write(format_args!(
            r#"{{"ph":"M","pid":{PID},"tid":{LOOP_TID},"name":"thread_name","args":{{"name":"loop"}}}}"#
        ));
        tracer.write(format_args!(
            r#"{{"ph":"M","pid":{PID},"tid":{LOOP_TID},"name":"thread_sort_index","args":{{"sort_index":0}}}}"#
        ));
        Ok(tracer)
    }

    fn micros(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.base).as_secs_f64() * 1e6
    }

    /// Appends one event (a JSON object) to the file.
    fn write(&self, event: std::fmt::Arguments<'_>) {
        let mut out = self.out.lock();
        let separator: &[u8] = if out.first { b"" } else { b",\n" };
        out.first = false;
        let Some(file) = out.file.as_mut() else {
            return;
        };
        let result = file
            .write_all(separator)
            .and_then(|()| file.write_fmt(event));
        if let Err(error) = result {
            out.file = None;
            out.error = Some(error);
        } else if out.flushed.elapsed() >= FLUSH_EVERY {
            out.flush();
        }
    }

    /// Flushes the file now.
    pub(crate) fn flush(&self) {
        self.out.lock().flush();
    }

    /// Flushes the file if a second has passed since the last flush (the watchdog calls
    /// this, so a quiet program's last events reach the file too).
    pub(crate) fn flush_if_due(&self) {
        let mut out = self.out.lock();
        if out.flushed.elapsed() >= FLUSH_EVERY {
            out.flush();
        }
    }

    /// The track of the calling worker thread, named after it on first use.
    /// The track of the worker running `job`: the one it names (a worker process: one
    /// track per process), else the current thread's (a pool's worker thread).
    fn worker_tid(&self, job: &JobInfo) -> u32 {
        let current = thread::current();
        let (tid, new) = {
            let mut out = self.out.lock();
            let next = LOOP_TID + 1 + (out.threads.len() + out.named.len()) as u32;
            let mut new = false;
            let mut assign = || {
                new = true;
                next
            };
            let tid = match &job.worker {
                Some(worker) => *out.named.entry(worker.clone()).or_insert_with(&mut assign),
                None => *out.threads.entry(current.id()).or_insert_with(assign),
            };
            (tid, new)
        };
        if new {
            let name = job.worker.as_deref().or(current.name()).unwrap_or("worker");
            let name = json_escape(name);
            self.write(format_args!(
                r#"{{"ph":"M","pid":{PID},"tid":{tid},"name":"thread_name","args":{{"name":"{name}"}}}}"#
            ));
            self.write(format_args!(
                r#"{{"ph":"M","pid":{PID},"tid":{tid},"name":"thread_sort_index","args":{{"sort_index":{tid}}}}}"#
            ));
        }
        tid
    }

    /// A task poll on the loop (called when it returns).
    pub(crate) fn poll(&self, task: u64, name: Option<&str>, start: Instant, end: Instant) {
        let label = match name {
            Some(name) => format!("{} #{task}", json_escape(name)),
            None => format!("task #{task}"),
        };
        let (ts, dur) = (self.micros(start), self.micros(end) - self.micros(start));
        self.write(format_args!(
            r#"{{"ph":"X","cat":"poll","name":"{label}","pid":{PID},"tid":{LOOP_TID},"ts":{ts:.3},"dur":{dur:.3},"args":{{"task":{task}}}}}"#
        ));
    }

    /// The loop is about to poll `task`, or has just polled it: draw the end of the arrows
    /// of jobs it submitted that have finished since (it resumes with their results).
    /// `at` is the slice's start (`ending` false) or its end (`ending` true).
    pub(crate) fn resuming(&self, task: u64, at: Instant, ending: bool) {
        if !self.has_resumes.load(Ordering::Acquire) {
            return;
        }
        let finished: Vec<u64> = {
            let mut resumes = self.resumes.lock();
            let mut mine = Vec::new();
            resumes.retain(|&(waiting, job)| {
                let is_mine = waiting == task;
                if is_mine {
                    mine.push(job);
                }
                !is_mine
            });
            self.has_resumes
                .store(!resumes.is_empty(), Ordering::Release);
            mine
        };
        // Just inside the poll's slice, so the arrow binds to it.
        let ts = self.micros(at) + if ending { -0.5 } else { 0.5 };
        for job in finished {
            self.write(format_args!(
                r#"{{"ph":"f","bp":"e","cat":"job","name":"job #{job}","id":{job},"pid":{PID},"tid":{LOOP_TID},"ts":{ts:.3}}}"#
            ));
        }
    }

    /// Task `task` submitted job `job` (called on the loop, during the task's poll).
    pub(crate) fn submitted(&self, task: u64, job: u64) {
        self.submitters.lock().insert(job, task);
        let ts = self.micros(Instant::now());
        self.write(format_args!(
            r#"{{"ph":"s","cat":"job","name":"job #{job}","id":{job},"pid":{PID},"tid":{LOOP_TID},"ts":{ts:.3}}}"#
        ));
    }

    /// A worker started `job` (its queue wait ends here).
    pub(crate) fn job_started(&self, job: &JobInfo) {
        let tid = self.worker_tid(job);
        let (submitted, started) = (
            self.micros(job.submitted),
            self.micros(job.started.unwrap_or_else(Instant::now)),
        );
        let id = job.id;
        let site = json_escape(&job.location.to_string());
        self.write(format_args!(
            r#"{{"ph":"b","cat":"queue","name":"queued: job #{id}","id":{id},"pid":{PID},"ts":{submitted:.3},"args":{{"site":"{site}"}}}}"#
        ));
        self.write(format_args!(
            r#"{{"ph":"e","cat":"queue","name":"queued: job #{id}","id":{id},"pid":{PID},"ts":{started:.3}}}"#
        ));
        if self.submitters.lock().contains_key(&id) {
            let ts = started + 0.5;
            self.write(format_args!(
                r#"{{"ph":"t","bp":"e","cat":"job","name":"job #{id}","id":{id},"pid":{PID},"tid":{tid},"ts":{ts:.3}}}"#
            ));
        }
    }

    /// A worker finished `job` (returned or panicked).
    pub(crate) fn job_finished(&self, job: &JobInfo) {
        let tid = self.worker_tid(job);
        let end = Instant::now();
        let started = job.started.unwrap_or(end);
        let (ts, dur) = (
            self.micros(started),
            self.micros(end) - self.micros(started),
        );
        let waited_us = started
            .saturating_duration_since(job.submitted)
            .as_secs_f64()
            * 1e6;
        let id = job.id;
        let site = json_escape(&job.location.to_string());
        self.write(format_args!(
            r#"{{"ph":"X","cat":"job","name":"job #{id}","pid":{PID},"tid":{tid},"ts":{ts:.3},"dur":{dur:.3},"args":{{"site":"{site}","queue_wait_us":{waited_us:.1}}}}}"#
        ));
        if let Some(task) = self.submitters.lock().remove(&id) {
            let ts = self.micros(end) - 0.5;
            self.write(format_args!(
                r#"{{"ph":"t","bp":"e","cat":"job","name":"job #{id}","id":{id},"pid":{PID},"tid":{tid},"ts":{ts:.3}}}"#
            ));
            self.resumes.lock().push((task, id));
            self.has_resumes.store(true, Ordering::Release);
        }
    }

    /// A report, as an instant event on the loop's track.
    pub(crate) fn report(&self, report: &Report) {
        let ts = self.micros(Instant::now());
        let name = json_escape(&report.headline().to_string());
        self.write(format_args!(
            r#"{{"ph":"i","s":"t","cat":"report","name":"{name}","pid":{PID},"tid":{LOOP_TID},"ts":{ts:.3}}}"#
        ));
        // A report is what a reader looks for first: on disk at once, whatever follows.
        self.out.lock().flush();
    }

    /// Finishes the file (the runtime is dropping). Returns the write error, if any.
    pub(crate) fn close(&self) -> Option<std::io::Error> {
        let mut out = self.out.lock();
        if let Some(mut file) = out.file.take() {
            let result = file.write_all(b"\n]\n").and_then(|()| file.flush());
            if let Err(error) = result {
                out.error = Some(error);
            }
        }
        out.error.take()
    }
}

/// Escapes a string for a JSON string literal.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::json_escape;

    #[test]
    fn names_are_escaped_for_json() {
        assert_eq!(json_escape(r#"say "hi"\now"#), r#"say \"hi\"\\now"#);
        assert_eq!(json_escape("a\nb\u{1}"), "a\\nb\\u0001");
    }
}
