//! `JoinError`: why a task produced no value. Its own room, below the task cell
//! (`cell.rs`, which stores it) and the handles that return it (`join.rs`, `JoinSet`).

use std::fmt;

/// Why a task produced no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The task was aborted ([`JoinHandle::abort`](super::JoinHandle::abort), a `JoinSet` or `TaskGroup` cancelling it,
    /// or its runtime shutting down) before it finished.
    Cancelled,
    /// The task panicked; this is the panic's message. The loop and every other task carry
    /// on.
    Panicked(String),
}

impl JoinError {
    /// True for [`JoinError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// True for [`JoinError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panicked(message) => write!(f, "task panicked: {message}"),
        }
    }
}

impl std::error::Error for JoinError {}
