//! What workers write to their stderr, passed on to this process's stderr (a worker's
//! `eprintln!`, a log line, a native library's complaint), as a thread pool's closures would
//! write it. The supervisor reads each worker's pipe (`supervisor.rs`) and hands whole
//! lines here, so two workers' lines never mix within a line.
//!
//! The supervisor must never block, and a write to stderr can (a pipe nobody reads): the
//! lines go through a bounded queue to a thread of their own that writes them. When the
//! queue is full, lines are dropped and counted, and the count is written once there is
//! room again: a flood costs lines, never the pool.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::OnceLock;

use parking_lot::{Condvar, Mutex};

/// The most bytes of lines waiting to be written.
const QUEUE_BYTES: usize = 1 << 20;

/// The longest line held back waiting for its end: a longer one goes as it is.
const LINE_MAX: usize = 64 * 1024;

/// One worker's stderr on its way out: the start of a line not yet ended.
#[derive(Default)]
pub(crate) struct Forward {
    partial: Vec<u8>,
}

impl Forward {
    /// Passes on the whole lines of what the worker wrote, keeping an unended last one.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let Some(end) = bytes.iter().rposition(|&byte| byte == b'\n') else {
            self.partial.extend_from_slice(bytes);
            if self.partial.len() >= LINE_MAX {
                self.finish();
            }
            return;
        };
        let mut lines = std::mem::take(&mut self.partial);
        lines.extend_from_slice(&bytes[..=end]);
        queue().push(lines);
        self.partial.extend_from_slice(&bytes[end + 1..]);
    }

    /// The worker is gone: an unended last line goes too, ended.
    pub(crate) fn finish(&mut self) {
        if !self.partial.is_empty() {
            let mut line = std::mem::take(&mut self.partial);
            line.push(b'\n');
            queue().push(line);
        }
    }
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: usize,
}

/// The queue, and its writer thread, started on first use.
fn queue() -> &'static Queue {
    static QUEUE: OnceLock<&'static Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue: &'static Queue = Box::leak(Box::default());
        let started = std::thread::Builder::new()
            .name("oneloop-process-stderr".into())
            .spawn(move || queue.write_forever());
        if started.is_err() {
            // No thread: nothing is passed on (the lines are still kept for the reports
            // of workers that die); pushes count them as dropped.
            queue.state.lock().bytes = usize::MAX;
        }
        queue
    })
}

impl Queue {
    fn push(&self, chunk: Vec<u8>) {
        {
            let mut state = self.state.lock();
            if state.bytes.saturating_add(chunk.len()) > QUEUE_BYTES {
                state.dropped += chunk.len();
                return;
            }
            state.bytes += chunk.len();
            state.chunks.push_back(chunk);
        }
        self.ready.notify_one();
    }

    fn write_forever(&self) {
        loop {
            let (chunk, dropped) = {
                let mut state = self.state.lock();
                while state.chunks.is_empty() {
                    self.ready.wait(&mut state);
                }
                let chunk = state.chunks.pop_front().expect("not empty");
                state.bytes -= chunk.len();
                (chunk, std::mem::take(&mut state.dropped))
            };
            let mut stderr = std::io::stderr().lock();
            if dropped > 0 {
                let _ = writeln!(
                    stderr,
                    "oneloop-process: {dropped} bytes of worker stderr dropped (this \
                     process's stderr did not keep up)"
                );
            }
            let _ = stderr.write_all(&chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_go_and_an_unended_one_waits_for_its_end() {
        let mut forward = Forward::default();
        forward.push(b"one\ntw");
        assert_eq!(forward.partial, b"tw");
        forward.push(b"o\nthree");
        assert_eq!(forward.partial, b"three");
        forward.finish();
        assert!(forward.partial.is_empty());
    }
}
