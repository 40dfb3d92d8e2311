//! Trimming a resolved backtrace to the user's frames, the same in every build profile.
//!
//! The watchdog's backtrace of the loop thread (`stack.rs` captures and resolves it) runs
//! from the blocking call (a libc `nanosleep`, std's `thread::sleep`) through the user's
//! code to the runtime's poll loop and `main`: 30 to 45 frames, of which the reader wants
//! the few in between. Which frames are the library's is decided by name and file alone,
//! so it does not depend on inlining or on how much debug info the profile keeps. Pure: it
//! takes the names and files, and returns which to show.

use std::ops::Range;

/// Crates whose frames are plumbing around the user's code.
const LIBRARY_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "oneloop",
    "oneloop_pool",
    "libc",
    "futures_task",
    "futures_util",
    "futures_core",
    "parking_lot",
    "crossbeam_deque",
    "test",
];

/// One resolved frame, innermost first: its symbol name (demangled, without hash) and its
/// source file, when the debug info has one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) name: &'a str,
    pub(crate) file: Option<&'a str>,
}

/// What to show of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trimmed {
    /// The frames to print: from the innermost user frame to the outermost one.
    pub(crate) keep: Range<usize>,
    /// Library frames left out inside the kept ones (the blocking call's own frames).
    pub(crate) hidden_inner: usize,
    /// Library frames left out outside them (the runtime's poll loop up to `main`).
    pub(crate) hidden_outer: usize,
}

/// Keeps the user's frames: everything from the innermost user frame to the outermost
/// one (library frames between two user frames stay, they are the path between them).
/// With no user frame at all (a runtime bug, or no symbols), keeps everything.
pub(crate) fn trim(frames: &[Frame<'_>]) -> Trimmed {
    let first = frames.iter().position(|frame| !is_library(frame));
    let last = frames.iter().rposition(|frame| !is_library(frame));
    match (first, last) {
        (Some(first), Some(last)) => Trimmed {
            keep: first..last + 1,
            hidden_inner: first,
            hidden_outer: frames.len() - last - 1,
        },
        _ => Trimmed {
            keep: 0..frames.len(),
            hidden_inner: 0,
            hidden_outer: 0,
        },
    }
}

/// Whether a frame belongs to std, the runtime, a dependency or the C library.
pub(crate) fn is_library(frame: &Frame<'_>) -> bool {
    // `<oneloop::task::cell::Cell<F> as ...>::poll`: the type's crate decides.
    let name = frame.name.trim_start_matches('<');
    if name.is_empty() || name.starts_with("0x") {
        return true; // unresolved
    }
    if let Some(file) = frame.file {
        // std's sources as shipped with the toolchain, and dependencies from a registry.
        if file.starts_with("/rustc/")
            || file.contains("/rustlib/src/")
            || file.contains("/.cargo/registry/")
            || file.contains("/.cargo/git/")
        {
            return true;
        }
    }
    match name.split_once("::") {
        Some((krate, _)) => LIBRARY_CRATES.contains(&krate),
        // No path: a C symbol (`clock_nanosleep`, `__restore_rt`, `start_thread`, `main`).
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &'static str, file: Option<&'static str>) -> Frame<'static> {
        Frame { name, file }
    }

    /// A release-profile stack of a task sleeping in `handler::checksum`.
    fn sleeping_task() -> Vec<Frame<'static>> {
        vec![
            frame("clock_nanosleep", None),
            frame("__GI___nanosleep", None),
            frame(
                "std::thread::sleep",
                Some("/rustc/abc/library/std/src/thread/mod.rs"),
            ),
            frame("demo::checksum", Some("/home/me/demo/src/main.rs")),
            frame(
                "demo::handler::{{closure}}",
                Some("/home/me/demo/src/main.rs"),
            ),
            frame(
                "<core::pin::Pin<P> as core::future::future::Future>::poll",
                Some("/rustc/abc/library/core/src/future/future.rs"),
            ),
            frame(
                "oneloop::task::cell::Cell<F>::poll",
                Some("/home/me/oneloop/runtime/src/task/cell.rs"),
            ),
            frame("oneloop::runtime::Core::tick", None),
            frame("std::rt::lang_start_internal", None),
            frame("main", None),
            frame("__libc_start_main", None),
            frame("_start", None),
        ]
    }

    #[test]
    fn library_frames_around_the_user_s_are_hidden() {
        let trimmed = trim(&sleeping_task());
        assert_eq!(trimmed.keep, 3..5);
        assert_eq!(trimmed.hidden_inner, 3);
        assert_eq!(trimmed.hidden_outer, 7);
    }

    #[test]
    fn library_frames_between_user_frames_are_kept() {
        let mut frames = sleeping_task();
        frames.insert(4, frame("core::iter::Iterator::fold", None));
        assert_eq!(trim(&frames).keep, 3..6);
    }

    #[test]
    fn a_user_frame_without_debug_info_is_still_a_user_frame() {
        let frames = [
            frame("std::thread::sleep", None),
            frame("demo::checksum", None),
            frame("oneloop::runtime::Core::tick", None),
        ];
        assert_eq!(trim(&frames).keep, 1..2);
    }

    #[test]
    fn a_stack_without_user_frames_is_kept_whole() {
        let frames = [frame("0x5555", None), frame("std::rt::lang_start", None)];
        let trimmed = trim(&frames);
        assert_eq!(trimmed.keep, 0..2);
        assert_eq!((trimmed.hidden_inner, trimmed.hidden_outer), (0, 0));
    }

    #[test]
    fn the_type_s_crate_decides_for_trait_methods() {
        assert!(is_library(&frame(
            "<oneloop::time::sleep::Sleep as core::future::future::Future>::poll",
            None
        )));
        assert!(!is_library(&frame(
            "<demo::Checksum as core::future::future::Future>::poll",
            None
        )));
    }
}
