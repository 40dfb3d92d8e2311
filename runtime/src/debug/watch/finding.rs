//! What the loop's side of the poll watch hands back when a window of polls closes
//! (`windows.rs`): a poll that ran past the threshold, or polls that may have and cannot be
//! told apart, and what the loop was running for the task (`Activity`). `instruments.rs`
//! turns each `Finding` into an `OL001` report.

use std::time::Duration;

use crate::debug::TaskInfo;

/// What the loop runs for a task: its poll, or, between polls, a destructor of its
/// (`Tasks::between_polls`, `task/lifecycle.rs`), timed like a poll so that it is blamed on that task and never
/// on the next poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Activity {
    #[default]
    Poll,
    /// Dropping the output of a task nobody awaits.
    DropOutput,
    /// Dropping the future of a cancelled task.
    DropFuture,
}

impl Activity {
    /// How a report says it, after the task (`None` for a poll).
    pub(crate) fn describe(self) -> Option<&'static str> {
        match self {
            Activity::Poll => None,
            Activity::DropOutput => Some("while its output was dropped (its destructor ran)"),
            Activity::DropFuture => {
                Some("while its future was dropped on cancellation (its destructor ran)")
            }
        }
    }
}

/// What closing a window found.
pub(crate) enum Finding {
    /// The window's last poll, timed alone, ran past the threshold.
    Slow(SlowPoll),
    /// Polls timed together, in a window that lasted past the threshold while the watchdog
    /// could not look: one of them may have been slow, which one is unknown.
    Unseen(UnseenPolls),
}

/// Polls of one spawn site among `UnseenPolls`.
pub(crate) struct UnseenSite {
    /// The site: its task name and spawn location (the id is 0).
    pub(crate) site: TaskInfo,
    /// How many of the polls timed together were of this site.
    pub(crate) polls: usize,
}

/// A poll that ran past the threshold.
pub(crate) struct SlowPoll {
    pub(crate) task: TaskInfo,
    pub(crate) elapsed: Duration,
    pub(crate) times_reported: u32,
    /// A poll, or a destructor the loop ran for the task between polls.
    pub(crate) activity: Activity,
}

/// Polls that may have blocked the loop, timed together.
pub(crate) struct UnseenPolls {
    /// How long the polls (and the loop's work between them) took together.
    pub(crate) elapsed: Duration,
    /// Each site among them and its number of polls.
    pub(crate) sites: Vec<UnseenSite>,
}
