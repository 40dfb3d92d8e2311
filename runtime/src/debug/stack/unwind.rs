//! Unwinding a copy of the loop thread's stack, on the watchdog thread: a frame-pointer
//! walk over the words copied in the signal handler (`signal.rs`), or with
//! `process_vm_readv` while the thread sleeps in the kernel (`capture.rs`), then symbols. Nothing here
//! reads the real stack, so a torn or garbage copy yields a short backtrace, never a fault.

use std::ffi::c_void;
use std::fmt::Write;

use crate::debug::frames::{Frame, trim};

/// Frames kept from one capture.
const MAX_FRAMES: usize = 64;
pub(super) const WORD: usize = std::mem::size_of::<usize>();
/// How far above the stack pointer to look for the first frame record when the frame
/// pointer register is of no use (code without frame pointers, such as libc).
const SCAN_BYTES: usize = 16 * 1024;

/// A copy of part of the loop thread's stack, starting at its stack pointer.
pub(super) struct StackCopy {
    pub(super) base: usize,
    pub(super) words: Vec<usize>,
}

impl StackCopy {
    /// The word at `addr` of the real stack, if the copy holds it.
    fn word(&self, addr: usize) -> Option<usize> {
        if addr < self.base || !addr.is_multiple_of(WORD) {
            return None;
        }
        self.words.get((addr - self.base) / WORD).copied()
    }

    fn end(&self) -> usize {
        self.base + self.words.len() * WORD
    }
}

/// Copies `len` bytes of this process's memory at `addr`, failing cleanly (no fault)
/// where it is not mapped.
pub(super) fn read_stack(addr: usize, len: usize) -> Option<StackCopy> {
    let mut words = vec![0usize; len / WORD];
    let local = libc::iovec {
        iov_base: words.as_mut_ptr().cast(),
        iov_len: words.len() * WORD,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: words.len() * WORD,
    };
    // SAFETY: `local` describes `words`, which we own and which outlives the call; the
    // kernel checks `remote` and reports unmapped memory as an error, never a fault.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if got <= 0 {
        return None;
    }
    words.truncate(got as usize / WORD);
    Some(StackCopy { base: addr, words })
}

/// Unwinds the copy by frame pointers: `pc` first, then (aarch64) the link register,
/// then the chain of frame records from `fp`.
///
/// Code built without frame pointers (libc, a prebuilt standard library) leaves `fp` at its
/// caller's record, so that caller's own frame would be missed; without a usable `fp` at
/// all (a thread blocked in libc) there is no chain. Either way the walk also looks for the
/// first frame record above the stack pointer (a callee saving the frame pointer pushes it
/// right above its return address) and keeps that chain when it leads into the one from
/// `fp` and is longer, or when there is nothing better.
pub(super) fn walk(pc: usize, fp: Option<usize>, lr: usize, copy: &StackCopy) -> Vec<usize> {
    let code = executable_ranges();
    let is_code = |ip: usize| code.iter().any(|range| range.contains(&ip));
    let mut ips = vec![pc];
    let from_fp = fp
        .map(|fp| frame_chain(fp, copy, &is_code))
        .unwrap_or_default();
    let scan_end = match fp {
        Some(fp) if !from_fp.is_empty() => fp,
        _ => copy.end(),
    }
    .min(copy.base + SCAN_BYTES);
    let scanned = (copy.base..scan_end)
        .step_by(WORD)
        .map(|at| frame_chain(at, copy, &is_code))
        .find(|found| found.len() >= 2 && found.ends_with(&from_fp));
    let chain = match scanned {
        Some(scanned) if scanned.len() > from_fp.len() || from_fp.len() < 2 => scanned,
        _ => from_fp,
    };
    if lr != 0 && is_code(lr) && chain.first() != Some(&lr) {
        ips.push(lr);
    }
    ips.extend(chain);
    ips.truncate(MAX_FRAMES);
    ips
}

/// Return addresses along a frame-record chain starting at `fp` (record: saved frame
/// pointer, then return address). Stops at the first record outside the copy, not
/// strictly above the previous one, or whose return address is not code.
fn frame_chain(mut fp: usize, copy: &StackCopy, is_code: &impl Fn(usize) -> bool) -> Vec<usize> {
    let mut ips = Vec::new();
    while ips.len() < MAX_FRAMES {
        let ret = fp.checked_add(WORD).and_then(|at| copy.word(at));
        let (Some(next), Some(ret)) = (copy.word(fp), ret) else {
            break;
        };
        if !is_code(ret) {
            break;
        }
        ips.push(ret);
        if next <= fp {
            break;
        }
        fp = next;
    }
    ips
}

/// The process's executable mappings, from `/proc/self/maps`.
fn executable_ranges() -> Vec<std::ops::Range<usize>> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            if !perms.contains('x') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
        })
        .collect()
}

/// Symbolizes the frames and keeps the user's part: from the interrupted code up to the
/// runtime's own poll machinery.
pub(super) fn render(ips: &[usize]) -> String {
    // (name, file, " at file:line") per resolved frame, innermost first.
    let mut all: Vec<(String, Option<String>, String)> = Vec::new();
    for &ip in ips {
        let before = all.len();
        // `resolve` takes backtrace-rs's internal lock: fine on this ordinary thread.
        backtrace::resolve(ip as *mut c_void, |symbol| {
            let name = symbol
                .name()
                .map(|name| format!("{name:#}"))
                .unwrap_or_else(|| format!("{ip:#x}"));
            let file = symbol.filename().map(|file| file.display().to_string());
            let place = match (&file, symbol.lineno()) {
                (Some(file), Some(line)) => format!(" at {file}:{line}"),
                _ => String::new(),
            };
            all.push((name, file, place));
        });
        if all.len() == before {
            all.push((format!("{ip:#x}"), None, String::new()));
        }
    }
    // The user's frames, the same in every build profile (`debug/frames.rs`): the blocking
    // call's library frames inside them and the runtime's up to `main` are only counted.
    let frames: Vec<Frame<'_>> = all
        .iter()
        .map(|(name, file, _)| Frame {
            name,
            file: file.as_deref(),
        })
        .collect();
    let trimmed = trim(&frames);
    let mut lines = Vec::new();
    if trimmed.hidden_inner > 0 {
        lines.push(format!(
            "    ... {} frames of std/libc (the blocking call)",
            trimmed.hidden_inner
        ));
    }
    lines.extend(
        all[trimmed.keep.clone()]
            .iter()
            .map(|(name, _, place)| format!("    {name}{place}")),
    );
    if trimmed.hidden_outer > 0 {
        lines.push(format!(
            "    ... {} frames of oneloop and std up to main",
            trimmed.hidden_outer
        ));
    }
    finish(lines)
}

/// Resolves one address of this binary, so that its debug info is loaded (the first
/// resolution reads it: hundreds of milliseconds) before a report needs it. Called on a
/// thread of its own when debug mode starts: never on the watchdog's timing path.
pub(super) fn warm_up() {
    let here: fn() = warm_up;
    let _ = render(&[here as usize]);
}

fn finish(frames: Vec<String>) -> String {
    let mut out = String::new();
    if frames.is_empty() {
        out.push_str("    <no frames: build with debug info to see symbols>");
    }
    for (i, frame) in frames.iter().enumerate() {
        let _ = write!(out, "{}{frame}", if i == 0 { "" } else { "\n" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses inside this test binary's code, standing for return addresses.
    fn code_addresses() -> [usize; 2] {
        let walk_fn: fn(usize, Option<usize>, usize, &StackCopy) -> Vec<usize> = walk;
        let read_fn: fn(usize, usize) -> Option<StackCopy> = read_stack;
        [walk_fn as usize + 1, read_fn as usize + 1]
    }

    #[test]
    fn the_walk_follows_frame_records_up_the_copy_and_stops_at_the_end() {
        let base = 0x7000_0000;
        let [one, two] = code_addresses();
        // Record at base+16 -> record at base+48 -> 0 (the outermost frame).
        let mut words = vec![0usize; 8];
        words[2] = base + 48;
        words[3] = one;
        words[6] = 0;
        words[7] = two;
        let copy = StackCopy { base, words };
        assert_eq!(
            walk(0x1234, Some(base + 16), 0, &copy),
            vec![0x1234, one, two]
        );
    }

    #[test]
    fn a_caller_of_code_without_frame_pointers_is_found_above_the_stack_pointer() {
        let base = 0x7000_0000;
        let [one, two] = code_addresses();
        // The interrupted code keeps no frame record but saved the frame pointer (base+32)
        // right above its return address (into `one`'s function); `fp` still points at its
        // caller's record, whose return address is `two`.
        let mut words = vec![0usize; 6];
        words[1] = base + 32;
        words[2] = one;
        words[4] = 0;
        words[5] = two;
        let copy = StackCopy { base, words };
        assert_eq!(
            walk(0x1234, Some(base + 32), 0, &copy),
            vec![0x1234, one, two]
        );
        // Blocked in the kernel, with no frame pointer at all: the same chain.
        assert_eq!(walk(0x1234, None, 0, &copy), vec![0x1234, one, two]);
    }

    #[test]
    fn the_walk_never_leaves_the_copy_nor_goes_down_it() {
        let base = 0x7000_0000;
        let [one, _] = code_addresses();
        // A record pointing below itself, then one pointing past the copy's end, then a
        // misaligned one: each ends the chain after its own return address.
        for next in [base, base + 4096, base + 33] {
            let words = vec![0, 0, next, one];
            let copy = StackCopy { base, words };
            let chain = frame_chain(base + 16, &copy, &|ip| ip == one);
            assert!(chain.len() <= 1, "{chain:?}");
        }
        // A frame pointer outside the copy reads nothing.
        let copy = StackCopy {
            base,
            words: vec![base + 8; 4],
        };
        assert!(frame_chain(usize::MAX - 3, &copy, &|_| true).is_empty());
        assert!(frame_chain(base - 8, &copy, &|_| true).is_empty());
    }
}
