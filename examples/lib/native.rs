//! A stand-in for a native library with two bugs, for the process-pool lesson (11): its
//! one function computes a checksum, or, when the caller's flag says so, crashes the
//! process with SIGSEGV or never returns. The flag puts the bugs on a schedule, so a run
//! shows them every time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crc32;

/// Which bug a call runs into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// None: the call returns its checksum.
    None,
    /// A wild write: the process gets SIGSEGV.
    Crash,
    /// A wait for something that never comes: the call never returns.
    Hang,
}

/// The fault of a service's `n`-th call: of every six calls, one crashes and one hangs.
pub fn fault_of(n: u64) -> Fault {
    match n % 6 {
        2 => Fault::Crash,
        5 => Fault::Hang,
        _ => Fault::None,
    }
}

/// The library's entry point: a checksum of `request`, or the bug `fault` names. A crash
/// writes its last words to stderr first.
pub fn checksum(request: u64, fault: Fault) -> u32 {
    match fault {
        Fault::None => crc32(&request.to_le_bytes().repeat(4096)),
        Fault::Crash => {
            eprintln!("native: request {request} wrote through a bad pointer");
            // SAFETY: deliberate: this crash is the bug the lesson is about. Restoring
            // SIGSEGV's default action (Rust's runtime catches the signal to report stack
            // overflows) and raising it ends the process as a wild write would, without
            // the undefined behaviour of a real one.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            unreachable!("SIGSEGV ends the process")
        }
        // Sleeps rather than spins: a hung call holds its thread, not a core.
        Fault::Hang => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}
