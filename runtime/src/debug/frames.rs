//! Trimming a resolved backtrace to the user's frames, the same in every build profile.
//!
//! The watchdog's backtrace of the loop thread (`stack/` captures and resolves it) runs
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

/// Keeps the task's own frames: from the innermost user frame out to the last user frame
/// before the runtime's own code (the poll that called the task), so the runtime's loop and
/// whatever called `block_on` are left out. Library frames between two kept user frames
/// stay: they are the path between them. With no user frame at all (a runtime bug, or no
/// symbols), keeps everything.
pub(crate) fn trim(frames: &[Frame<'_>]) -> Trimmed {
    let first = frames.iter().position(|frame| !is_library(frame));
    let runtime = first.and_then(|first| {
        frames[first..]
            .iter()
            .position(is_runtime)
            .map(|offset| first + offset)
    });
    let outer = runtime.map_or(frames, |runtime| &frames[..runtime]);
    let last = outer.iter().rposition(|frame| !is_library(frame));
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

/// Whether a frame is this runtime's own code (where a task's stack ends: its poll).
fn is_runtime(frame: &Frame<'_>) -> bool {
    let name = frame.name.trim_start_matches('<');
    name.starts_with("oneloop::")
        || frame
            .file
            .is_some_and(|file| file.starts_with(concat!(env!("CARGO_MANIFEST_DIR"), "/src/")))
}

/// Whether a frame belongs to std, the runtime, a dependency or the C library.
pub(crate) fn is_library(frame: &Frame<'_>) -> bool {
    // `<oneloop::task::cell::Cell<F> as ...>::poll`: the type's crate decides.
    let name = frame.name.trim_start_matches('<');
    if name.is_empty() || name.starts_with("0x") {
        return true; // unresolved
    }
    let by_name = name
        .split_once("::")
        .map(|(krate, _)| LIBRARY_CRATES.contains(&krate));
    if let Some(file) = frame.file {
        // The file decides when the name cannot: in release builds (`line-tables-only`)
        // names come without their crate path (`crc32`, `run_task`), files keep theirs.
        // std's sources as shipped with the toolchain, dependencies from a registry, and
        // this runtime's own sources (and its pool's, beside it in the workspace).
        let by_file = file.starts_with("/rustc/")
            || file.contains("/rustlib/src/")
            || file.contains("/.cargo/registry/")
            || file.contains("/.cargo/git/")
            || file.starts_with(concat!(env!("CARGO_MANIFEST_DIR"), "/src/"))
            || is_pool_source(file);
        return by_file || by_name == Some(true);
    }
    // No file: the name's crate, and no path at all is a C symbol (`clock_nanosleep`,
    // `__restore_rt`, `start_thread`, `main`).
    by_name.unwrap_or(true)
}

/// The pool crate's sources, as the compiler names them in a workspace build: the
/// workspace root (the runtime's parent directory) followed by `executor-pool/src/`.
fn is_pool_source(file: &str) -> bool {
    let runtime = env!("CARGO_MANIFEST_DIR");
    let root = runtime.rsplit_once('/').map_or("", |(root, _)| root);
    !root.is_empty()
        && file
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with("/executor-pool/src/"))
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

    #[test]
    fn release_names_without_paths_are_told_apart_by_their_files() {
        let runtime = concat!(env!("CARGO_MANIFEST_DIR"), "/src/task/cell.rs");
        let frames = [
            frame("__memcpy_avx_unaligned", None),
            frame("crc32", Some("/home/me/demo/examples/lib.rs")),
            frame("run", Some("/home/me/demo/examples/lib.rs")),
            frame("{closure#0}<demo::handler>", Some(runtime)),
            frame("run_task", Some(runtime)),
            frame("main", None),
        ];
        let trimmed = trim(&frames);
        assert_eq!(trimmed.keep, 1..3, "the user's two frames, by their file");
        assert_eq!((trimmed.hidden_inner, trimmed.hidden_outer), (1, 3));
    }

    #[test]
    fn the_task_s_stack_ends_at_the_runtime_s_poll() {
        let runtime = concat!(env!("CARGO_MANIFEST_DIR"), "/src/task/cell.rs");
        let frames = [
            frame("crc32", Some("/home/me/demo/examples/lib.rs")),
            frame("{async_block#0}", Some("/home/me/demo/examples/demo.rs")),
            frame("poll<demo::handler>", Some(runtime)),
            frame("block_on<demo::main>", Some(runtime)),
            // What called `block_on`: user code too, but not the task's.
            frame("main", Some("/home/me/demo/examples/demo.rs")),
            frame("lang_start", Some("/rustc/abc/library/std/src/rt.rs")),
        ];
        let trimmed = trim(&frames);
        assert_eq!(trimmed.keep, 0..2);
        assert_eq!(trimmed.hidden_outer, 4);
    }
}
