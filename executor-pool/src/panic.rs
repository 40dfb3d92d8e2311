//! The message of a caught panic: what [`JobError::Panicked`](crate::JobError::Panicked)
//! carries, what the pool's reports print. The lowest room of the crate: `wake.rs` (which
//! contains the panics of user code) and `job/cell.rs` (which catches a job's panic) both read it.

/// The message of a caught panic's payload, as [`JobError::Panicked`](crate::JobError::Panicked) carries it
/// (`panic!("...")` gives a `&str` or a `String`; anything else has no message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
