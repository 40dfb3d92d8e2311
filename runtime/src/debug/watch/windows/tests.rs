//! The loop's side of poll timing, with the test playing the watchdog: it stores
//! `looked_at` when a look should land, or never looks at all (a starved watchdog).

use super::*;
use crate::builder::DEFAULT_SLOW_JOB_LIMIT;
use crate::debug::stderr_sink;
use crate::task::Id;

const THRESHOLD: Duration = Duration::from_millis(40);

fn debug() -> PollWatch {
    let reporter = Arc::new(Reporter::new(stderr_sink(), None));
    let jobs = Arc::new(JobWatch::new(None, None, reporter.clone()));
    let config = DebugConfig {
        threshold: THRESHOLD,
        backtraces: false,
        job_limit: DEFAULT_SLOW_JOB_LIMIT,
    };
    PollWatch::without_watchdog(config, Clock::new(), reporter, jobs)
}

/// One poll of task `task` from `site`, running `body`.
fn poll(debug: &PollWatch, task: u64, site: u32, body: impl FnOnce()) -> Option<Finding> {
    let timer = debug.begin_poll(task, site);
    body();
    debug.end_poll(timer, site)
}

/// What the watchdog does when it looks: publish the look, and if a poll is running
/// that no look saw before, that it saw it (the previous look is its bound).
fn look(debug: &PollWatch) {
    let shared = &debug.shared;
    let previous = shared.looked_at.load(Ordering::Relaxed);
    let now = shared.clock.now().max(previous + 1);
    let seq = shared.seq.load(Ordering::Acquire);
    shared.looked_seq.store(seq, Ordering::Relaxed);
    shared.looked_at.store(now, Ordering::Release);
    if seq % 2 == 1 && shared.first_seen_seq.load(Ordering::Relaxed) != seq {
        shared.first_seen_bound.store(previous, Ordering::Relaxed);
        shared.first_seen_seq.store(seq, Ordering::Release);
    }
}

fn sites(debug: &PollWatch) -> (u32, u32) {
    let quick = debug.intern(Location::caller(), Some("quick"));
    let slow = debug.intern(Location::caller(), Some("slow"));
    (quick, slow)
}

/// Quick polls until the window holds the most it can; returns how many. (Windows of
/// quick polls double the limit; a preemption of this thread may halve it again, so
/// this polls until the limit is reached rather than a fixed number of times.)
fn grow_window(debug: &PollWatch, site: u32) -> u64 {
    let mut polls = 0;
    while debug.window.limit.get() < MAX_WINDOW {
        assert!(polls < 10_000_000, "the window never grew");
        debug.restart_window();
        for task in 0..1_000 {
            poll(debug, task, site, || ());
        }
        debug.end_batch();
        polls += 1_000;
    }
    polls
}

/// A window that may hold 64 polls, opened with three quick ones; returns the number
/// of quick polls made.
fn three_quick_polls_in_a_full_window(debug: &PollWatch, site: u32) -> u64 {
    let grown = grow_window(debug, site);
    debug.restart_window();
    for task in 0..3 {
        assert!(poll(debug, task, site, || ()).is_none());
    }
    grown + 3
}

#[test]
fn tiny_polls_share_a_clock_reading_and_long_windows_shrink_the_window() {
    let debug = debug();
    let (quick, slow) = sites(&debug);
    let grown = grow_window(&debug, quick);
    debug.restart_window();
    // 5 ms is over 1/16 of the threshold: the next windows hold fewer polls.
    assert!(poll(&debug, 1, slow, || thread::sleep(Duration::from_millis(5))).is_none());
    assert!(debug.end_batch().is_none());
    assert_eq!(debug.window.limit.get(), MAX_WINDOW / 2);
    let stats = debug.site_stats();
    assert_eq!(stats[quick as usize].stats.polls, grown);
    assert_eq!(stats[slow as usize].stats.polls, 1);
    assert!(stats[slow as usize].stats.longest >= Duration::from_millis(5));
}

#[test]
fn a_poll_the_watchdog_looked_into_is_timed_alone_and_named() {
    let debug = debug();
    let (quick, slow) = sites(&debug);
    let quick_polls = three_quick_polls_in_a_full_window(&debug, quick);
    let finding = poll(&debug, 7, slow, || {
        thread::sleep(Duration::from_millis(30));
        look(&debug);
        thread::sleep(Duration::from_millis(30));
    });
    let Some(Finding::Slow(slow_poll)) = finding else {
        panic!("the slow poll was not reported alone");
    };
    assert_eq!(slow_poll.task.id, Id(7));
    assert_eq!(slow_poll.task.name.as_deref(), Some("slow"));
    assert!(slow_poll.elapsed >= Duration::from_millis(60));
    assert_eq!(debug.slow_polls.get(), 1);
    // The quick polls before it were accounted for together, not reported.
    assert!(debug.end_batch().is_none());
    assert_eq!(debug.site_stats()[quick as usize].stats.polls, quick_polls);
}

#[test]
fn short_polls_the_watchdog_keeps_looking_into_are_never_reported() {
    let debug = debug();
    let (_, slow) = sites(&debug);
    debug.restart_window();
    // 20 polls of 4 ms: 80 ms in all, twice the threshold, but none of them slow. (A
    // poll this thread's scheduler stretched past the threshold may be reported: only
    // a report of a poll that was really shorter is a failure.)
    for task in 0..20 {
        let began = std::time::Instant::now();
        let finding = poll(&debug, task, slow, || {
            look(&debug);
            thread::sleep(Duration::from_millis(4));
        });
        let real = began.elapsed();
        assert!(finding.is_none() || real >= THRESHOLD, "{real:?} reported");
    }
    assert!(debug.end_batch().is_none());
}

#[test]
fn polls_a_starved_watchdog_never_looked_into_are_reported_together() {
    let debug = debug();
    let (quick, slow) = sites(&debug);
    three_quick_polls_in_a_full_window(&debug, quick);
    // Nobody looks during this one: which of the four polls was slow is unknown.
    assert!(poll(&debug, 9, slow, || thread::sleep(Duration::from_millis(60))).is_none());
    let Some(Finding::Unseen(unseen)) = debug.end_batch() else {
        panic!("a window past the threshold went unreported");
    };
    assert!(unseen.elapsed >= Duration::from_millis(60));
    let named: Vec<_> = unseen
        .sites
        .iter()
        .map(|unseen| (unseen.site.name.clone().unwrap(), unseen.polls))
        .collect();
    assert_eq!(named, [("quick".to_owned(), 3), ("slow".to_owned(), 1)]);
    // The next polls are timed alone until windows are short again.
    assert_eq!(debug.window.limit.get(), 1);
    assert_eq!(debug.slow_polls.get(), 0, "nothing was proven slow");
}

#[test]
fn a_slow_poll_alone_in_its_window_is_timed_exactly() {
    let debug = debug();
    let (_, slow) = sites(&debug);
    debug.restart_window();
    // The window holds one poll (the limit starts at 1), and the watchdog keeps time
    // (it looked just now, before the poll): no look is needed during it.
    look(&debug);
    let Some(Finding::Slow(slow_poll)) =
        poll(&debug, 4, slow, || thread::sleep(Duration::from_millis(50)))
    else {
        panic!("a poll timed alone went unreported");
    };
    assert!(slow_poll.elapsed >= Duration::from_millis(50));
    assert_eq!(slow_poll.task.id, Id(4));
}

#[test]
fn time_between_polls_is_never_blamed_on_the_next_poll() {
    let debug = debug();
    let (quick, _) = sites(&debug);
    // The loop is away between two polls (preempted, or running a destructor) for
    // longer than the threshold, while the watchdog keeps looking; then a quick poll.
    for (alone_in_window, gap) in [(false, 60), (true, 60)] {
        if alone_in_window {
            debug.window.limit.set(1);
        } else {
            three_quick_polls_in_a_full_window(&debug, quick);
        }
        for _ in 0..6 {
            thread::sleep(Duration::from_millis(gap / 6));
            look(&debug);
        }
        let finding = poll(&debug, 3, quick, || ());
        assert!(
            !matches!(finding, Some(Finding::Slow(_))),
            "the quick poll was blamed for the gap before it"
        );
        assert!(!matches!(debug.end_batch(), Some(Finding::Slow(_))));
    }
    assert_eq!(debug.slow_polls.get(), 0);
}

#[test]
fn a_slow_poll_after_a_gap_is_named_for_its_own_time() {
    let debug = debug();
    let (quick, slow) = sites(&debug);
    three_quick_polls_in_a_full_window(&debug, quick);
    thread::sleep(Duration::from_millis(30));
    look(&debug); // during the gap: the poll below begins after this look
    let Some(Finding::Slow(slow_poll)) = poll(&debug, 5, slow, || {
        thread::sleep(Duration::from_millis(30));
        look(&debug); // sees it running
        thread::sleep(Duration::from_millis(30));
    }) else {
        panic!("the slow poll was not named");
    };
    assert_eq!(slow_poll.task.id, Id(5));
    assert!(slow_poll.elapsed >= Duration::from_millis(60));
}
