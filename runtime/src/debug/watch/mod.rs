//! Debug mode's poll watch: timing polls on the loop, and the watchdog thread that looks at
//! them.
//!
//! Reading a clock costs 10-30 ns, as much as a small task's whole poll, so the loop does
//! not read it around every poll. It times polls in *windows*: it reads the clock when a
//! window starts and when it closes, and a window closes after `limit` polls, at the end
//! of a batch, or after a poll during which the watchdog looked. The watchdog thread looks
//! every eighth of the threshold and stores the time of each look in `Shared::looked_at`;
//! the loop loads that value after each poll (one load, no clock) and compares it with the
//! value it saw last. So:
//!
//! - a poll the watchdog looked into closes its window when it returns, and is timed
//!   alone from a moment known to be before it began: the latest look, when that look saw
//!   the loop not yet in it (each look publishes the poll `seq` it saw, `looked_seq`), or
//!   else the look before the first one that saw it running (`first_seen_*`), and never
//!   before the window's start. So it includes at most one look interval (an eighth of
//!   the threshold) before the poll, and never the time the loop spent between polls
//!   (preempted, or running a destructor: those are timed as what they are, `Activity`);
//! - a poll nobody looked into fits between two looks, so it is shorter than the gap
//!   between them: an eighth of the threshold when the watchdog keeps time. The watchdog
//!   publishes any gap of half a threshold or more (`blind_until`); a window that lasted a
//!   threshold while the watchdog was away is reported for what it is: polls that could not
//!   be told apart (`Finding::Unseen`), and the next polls are timed alone;
//! - `limit` adapts: it doubles (up to 64) while full windows take under 1/64 of the
//!   threshold and halves when one takes over 1/16, so programs of tiny polls read the
//!   clock once per 64 polls and programs of long ones time each poll alone.
//!
//! While a poll runs, the loop also publishes which task it is and its sequence number.
//! A poll the watchdog sees running past the threshold is reported (`OL002`) while it is
//! still running, then again at doubling intervals, the first time with a backtrace of the
//! loop thread (`stack/`). When that poll finally returns, the loop's `OL001` says
//! "unblocked after ..." and how many times it was reported.
//!
//! Per poll, the loop's side costs a few plain stores, one load and no lock: task names
//! and spawn sites are interned once per site (`PollWatch::intern`), so a poll publishes only
//! two numbers; each site's polls are counted when their window closes.
//!
//! The rooms: `windows.rs` is the loop's side (windows, sites, per-site counts), and
//! `finding.rs` what it hands to `instruments.rs` when a window closes; `watchdog.rs` is the
//! watchdog thread (its looks, the `OL002` reports, the job scans); `shared.rs` is the
//! record they publish to each other through (the running poll, the looks), the only state
//! both touch.

mod finding;
mod shared;
mod watchdog;
mod windows;

pub(crate) use finding::{Activity, Finding, UnseenSite};
pub(crate) use windows::{PollTimer, PollWatch, SitePolls};
