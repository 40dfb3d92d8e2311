//! Timers: order, never early, timeout dropping its future, intervals, 100k at once.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::Runtime;
use oneloop::task::{JoinSet, join_all, yield_now};
use oneloop::time::{self, MissedTickBehavior, interval, sleep, sleep_until, timeout};
use util::{DropCounter, Lcg, hang_guard};

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    let rt = Runtime::new();
    let fired = rt.block_on(async {
        // All 1,000 timers are armed in join_all's first poll, well before the first
        // deadline (the lead only has to cover 1,000 inserts).
        let start = Instant::now() + Duration::from_millis(200);
        let fired = Rc::new(RefCell::new(Vec::new()));
        let mut rng = Lcg(7);
        let deadlines: Vec<Instant> = (0..1000)
            .map(|_| start + Duration::from_micros(rng.next(30_000)))
            .collect();
        join_all(deadlines.into_iter().enumerate().map(|(i, deadline)| {
            let fired = fired.clone();
            async move {
                sleep_until(deadline).await;
                fired.borrow_mut().push((deadline, Instant::now(), i));
            }
        }))
        .await;
        Rc::try_unwrap(fired).unwrap().into_inner()
    });
    assert_eq!(fired.len(), 1000);
    for (deadline, woke, i) in &fired {
        assert!(
            woke >= deadline,
            "timer {i} fired early by {:?}",
            *deadline - *woke
        );
    }
    for pair in fired.windows(2) {
        assert!(
            pair[0].0 <= pair[1].0,
            "timers completed out of deadline order"
        );
    }
}

#[test]
fn a_hundred_thousand_concurrent_timers_all_fire_on_time_or_later() {
    hang_guard(|| {
        let rt = Runtime::new();
        let early = rt.block_on(async {
            let mut rng = Lcg(42);
            let mut set = JoinSet::new();
            for _ in 0..100_000 {
                let wait = Duration::from_micros(rng.next(100_000));
                set.spawn(async move {
                    let deadline = Instant::now() + wait;
                    sleep_until(deadline).await;
                    Instant::now() < deadline
                });
            }
            let mut early = 0;
            while let Some(result) = set.join_next().await {
                early += usize::from(result.unwrap());
            }
            early
        });
        assert_eq!(early, 0, "no timer fires before its deadline");
        assert_eq!(rt.metrics().timers, 0, "every timer left the queue");
        assert_eq!(rt.metrics().timers_fired, 100_000);
    });
}

#[test]
fn timeout_drops_its_future_when_the_deadline_passes() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    rt.block_on(async {
        let guard = drops.track();
        let result = timeout(Duration::from_millis(10), async move {
            let _guard = guard;
            sleep(Duration::from_secs(3600)).await;
        })
        .await;
        assert!(result.is_err());
        assert_eq!(
            drops.dropped(),
            1,
            "the inner future is gone once timeout returns"
        );
        assert_eq!(result.unwrap_err().to_string(), "deadline has elapsed");
    });
    assert_eq!(
        rt.metrics().timers,
        0,
        "the inner sleep's timer was removed too"
    );
}

#[test]
fn timeout_returns_the_output_when_the_future_wins() {
    let rt = Runtime::new();
    rt.block_on(async {
        let out = timeout(Duration::from_secs(3600), async {
            sleep(Duration::from_millis(2)).await;
            "done"
        })
        .await;
        assert_eq!(out, Ok("done"));
    });
    assert_eq!(
        rt.metrics().timers,
        0,
        "the timeout's own timer was removed"
    );
}

#[test]
fn a_dropped_sleep_removes_its_timer() {
    let rt = Runtime::new();
    rt.block_on(async {
        let mut sleeps: Vec<_> = (0..100)
            .map(|_| Box::pin(sleep(Duration::from_secs(3600))))
            .collect();
        for s in &mut sleeps {
            assert!(futures::poll!(s.as_mut()).is_pending());
        }
        assert_eq!(rt.metrics().timers, 100);
        drop(sleeps);
        assert_eq!(rt.metrics().timers, 0);
    });
}

#[test]
fn sleep_zero_and_a_past_deadline_complete_on_the_next_turn() {
    let rt = Runtime::new();
    rt.block_on(async {
        sleep(Duration::ZERO).await;
        sleep_until(Instant::now() - Duration::from_secs(1)).await;
        assert!(!sleep(Duration::MAX).is_elapsed()); // "never", not an overflow
    });
}

#[test]
fn a_reset_sleep_waits_for_its_new_deadline() {
    let rt = Runtime::new();
    rt.block_on(async {
        let start = Instant::now();
        let mut nap = Box::pin(sleep(Duration::from_secs(3600)));
        assert!(futures::poll!(nap.as_mut()).is_pending());
        nap.as_mut().reset(start + Duration::from_millis(15));
        nap.await;
        assert!(start.elapsed() >= Duration::from_millis(15));
    });
    assert_eq!(rt.metrics().timers, 0);
}

#[test]
fn interval_ticks_on_a_fixed_grid() {
    let rt = Runtime::new();
    rt.block_on(async {
        let start = Instant::now();
        let period = Duration::from_millis(5);
        let mut ticker = time::interval_at(start, period);
        for n in 0..5u32 {
            let scheduled = ticker.tick().await;
            assert_eq!(scheduled, start + period * n);
            assert!(Instant::now() >= scheduled);
        }
    });
}

/// Runs an interval whose loop is stalled for 3.5 periods after the first tick, and
/// returns the next three scheduled instants relative to the start, in periods.
fn ticks_after_a_stall(behavior: MissedTickBehavior) -> Vec<f64> {
    let rt = Runtime::new();
    rt.block_on(async {
        let period = Duration::from_millis(10);
        let mut ticker = interval(period);
        ticker.set_missed_tick_behavior(behavior);
        let start = ticker.tick().await;
        std::thread::sleep(Duration::from_millis(35)); // miss three ticks
        let mut out = Vec::new();
        for _ in 0..3 {
            let at = ticker.tick().await;
            out.push((at - start).as_secs_f64() / period.as_secs_f64());
        }
        out
    })
}

#[test]
fn missed_ticks_burst_to_catch_up_by_default() {
    let ticks = ticks_after_a_stall(MissedTickBehavior::Burst);
    for (tick, expected) in ticks.iter().zip([1.0, 2.0, 3.0]) {
        assert!(
            (tick - expected).abs() < 1e-9,
            "the original grid, delivered late: {ticks:?}"
        );
    }
}

#[test]
fn missed_ticks_can_be_skipped_to_stay_on_the_grid() {
    let ticks = ticks_after_a_stall(MissedTickBehavior::Skip);
    assert!(
        (ticks[0] - 1.0).abs() < 1e-9,
        "the overdue tick is delivered once: {ticks:?}"
    );
    // The stall lasted at least 3.5 periods (longer on a busy machine): the next tick is
    // a later point of the original grid, a whole number of periods from the start.
    assert!(ticks[1] >= 4.0, "{ticks:?}");
    assert!(
        (ticks[1] - ticks[1].round()).abs() < 1e-9,
        "on the grid: {ticks:?}"
    );
    // Later ticks stay on the grid too (a busy machine may skip more of them).
    assert!(ticks[2] > ticks[1], "{ticks:?}");
    assert!(
        (ticks[2] - ticks[2].round()).abs() < 1e-9,
        "on the grid: {ticks:?}"
    );
}

#[test]
fn missed_ticks_can_delay_the_schedule() {
    let ticks = ticks_after_a_stall(MissedTickBehavior::Delay);
    assert!((ticks[0] - 1.0).abs() < 1e-9, "{ticks:?}");
    assert!(
        ticks[1] >= 4.5,
        "a fresh schedule, one period after the late tick: {ticks:?}"
    );
    // Never closer than one period (later, if the loop was late again).
    assert!(ticks[2] - ticks[1] >= 1.0 - 1e-9, "{ticks:?}");
}

#[test]
#[should_panic(expected = "period must be longer than zero")]
fn a_zero_interval_is_refused() {
    let _ = interval(Duration::ZERO);
}

#[test]
fn the_loop_sleeps_until_a_timer_instead_of_spinning() {
    let rt = Runtime::new();
    rt.block_on(async {
        yield_now().await;
        let before = rt.metrics().ticks;
        sleep(Duration::from_millis(50)).await;
        let ticks = rt.metrics().ticks - before;
        // A sleeping loop takes a tick or two (sleep, fire); a spinning one, thousands.
        assert!(ticks <= 5, "the loop took {ticks} ticks to wait 50 ms");
    });
}
