//! [`Waiting`]: what a pending task waits on, as the last oneloop future that returned
//! `Pending` in its poll said (through `context::note_wait`).
//!
//! A low room: the task table stores a `Waiting` beside each task, and the deadlock check
//! (`debug/deadlock.rs`) reads it; neither needs the other to say what a wait is.

use std::fmt;
use std::panic::Location;
use std::time::Instant;

use super::id::TaskRef;
use crate::reactor::Direction;

/// What a pending task waits on: the last oneloop future that returned `Pending` in its
/// latest poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Not known: a future oneloop does not know returned `Pending` last.
    #[default]
    Unknown,
    /// A task to finish, through its `JoinHandle`.
    Join(TaskRef),
    /// A timer.
    Sleep(Instant),
    /// A socket to become ready.
    Io(Direction),
    /// A oneshot channel's value (the channel was made at `site`).
    Oneshot(&'static Location<'static>),
    /// A value from an mpsc channel made at `site`.
    Recv(&'static Location<'static>),
    /// Permits of a semaphore (or room in a bounded channel or pool queue).
    Semaphore { needed: usize },
    /// An offloaded job's result.
    Job(u64),
    /// A task spawned through a `Handle` (its `RemoteJoinHandle`).
    RemoteJoin,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Unknown => f.write_str("a future oneloop does not know"),
            Waiting::Join(task) => write!(f, "the JoinHandle of task #{}", task.id),
            Waiting::Sleep(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                write!(f, "a timer (due in {left:.1?})")
            }
            Waiting::Io(Direction::Read) => f.write_str("a socket to become readable"),
            Waiting::Io(Direction::Write) => f.write_str("a socket to become writable"),
            Waiting::Oneshot(site) => write!(f, "the oneshot channel made at {site}"),
            Waiting::Recv(site) => write!(f, "a value from the mpsc channel made at {site}"),
            Waiting::Semaphore { needed } => write!(
                f,
                "{needed} permit{} of a Semaphore (or room in a bounded channel or queue)",
                if *needed == 1 { "" } else { "s" }
            ),
            Waiting::Job(id) => write!(f, "the result of offloaded job #{id}"),
            Waiting::RemoteJoin => f.write_str("a task spawned through a Handle"),
        }
    }
}

impl From<oneloop_pool::waiting::WaitingOn> for Waiting {
    fn from(on: oneloop_pool::waiting::WaitingOn) -> Self {
        use oneloop_pool::waiting::WaitingOn;
        match on {
            WaitingOn::Semaphore { needed } => Waiting::Semaphore { needed },
            WaitingOn::Job { id } => Waiting::Job(id),
            _ => Waiting::Unknown,
        }
    }
}

impl Waiting {
    /// A oneloop channel or semaphore: its other side (a sender, a permit) may be held by
    /// a task of this loop, or by any thread; nothing tells which.
    pub(crate) fn is_primitive(self) -> bool {
        matches!(
            self,
            Waiting::Oneshot(_) | Waiting::Recv(_) | Waiting::Semaphore { .. }
        )
    }
}
