//! What a call resolves to, and its slot: below the future (`call.rs`), which reads it, and
//! the executor's threads (`client/`), which fill it.

use oneloop_process::__remote::Slot;

/// A call's answer: the encoded result, and who gave it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) value: Vec<u8>,
    /// Which start of the call answered (1: the first).
    pub(crate) attempt: u32,
    /// `host:pid` of the worker.
    pub(crate) worker: String,
}

impl Answer {
    /// Run here, in the caller (`Overflow::CallerRuns`).
    pub(crate) fn here(value: Vec<u8>) -> Answer {
        Answer {
            value,
            attempt: 1,
            worker: crate::protocol::this_process(),
        }
    }
}

/// A call's slot, as the executor's threads see it.
pub(crate) type CallSlot = Slot<Answer>;
