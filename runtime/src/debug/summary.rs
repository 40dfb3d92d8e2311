//! The exit summary of debug mode (`OL008`): where the time went, printed when the runtime
//! drops. The slowest polls by spawn site, the offloaded jobs with the longest queue wait and
//! run time by submit site, and how many reports of each code were made.

use std::fmt::Write;

use super::jobs::JobWatch;
use super::watch::{PollWatch, SitePolls};
use super::{Millis, Reporter};

/// How many sites each list shows.
const TOP: usize = 5;

/// The summary's text; `None` when there is nothing to say (no task polled, no job, no
/// report), so an idle runtime prints nothing.
pub(crate) fn render(debug: &PollWatch, jobs: &JobWatch, reporter: &Reporter) -> Option<String> {
    let mut out = String::new();
    let mut polls = debug.site_stats();
    polls.retain(|polls| polls.stats.polls > 0);
    let mut sites = jobs.site_stats();
    let counts = reporter.counts();
    if polls.is_empty() && sites.is_empty() && counts.is_empty() {
        return None;
    }
    rank_polls(&mut polls);
    let _ = writeln!(out, "  slowest polls, by spawn site:");
    if polls.is_empty() {
        let _ = writeln!(out, "    (no task was polled)");
    }
    for SitePolls { site, stats } in polls.iter().take(TOP) {
        let name = site.name.as_deref().unwrap_or("(unnamed)");
        // Polls timed only together with others are known by an upper bound (`watch/`).
        let longest = if stats.longest >= stats.longest_group {
            Millis(stats.longest).to_string()
        } else {
            format!("≤ {}", Millis(stats.longest_group))
        };
        let _ = writeln!(
            out,
            "    {longest:>9}  \"{name}\" spawned at {} ({} of {} polls over the threshold)",
            site.location, stats.slow, stats.polls
        );
    }
    if !sites.is_empty() {
        sites.sort_by_key(|site| std::cmp::Reverse(site.longest_wait));
        let _ = writeln!(out, "  offloaded jobs, longest queue wait first:");
        for site in sites.iter().take(TOP) {
            // A job still running has no run time yet: say so, with how long so far,
            // rather than count it as a job that ran for nothing.
            let ran = match (site.finished, site.still_running) {
                (0, Some(so_far)) => format!("still running ({} so far)", Millis(so_far)),
                (_, Some(so_far)) => format!(
                    "ran {:>9}, one still running ({} so far)",
                    Millis(site.longest_run).to_string(),
                    Millis(so_far)
                ),
                (_, None) => format!("ran {:>9}", Millis(site.longest_run).to_string()),
            };
            let deaths: Vec<String> = [
                (site.crashed, "crashed its worker process"),
                (site.killed, "killed with its worker process"),
            ]
            .into_iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
            let deaths = match deaths.is_empty() {
                true => String::new(),
                false => format!(" ({})", deaths.join(", ")),
            };
            let _ = writeln!(
                out,
                "    waited {:>9}, {ran}, {} job{} submitted at {}{deaths}",
                Millis(site.longest_wait).to_string(),
                site.jobs,
                if site.jobs == 1 { "" } else { "s" },
                site.location
            );
        }
    }
    let _ = write!(out, "  reports:");
    if counts.is_empty() {
        let _ = write!(out, " none");
    }
    for (i, (code, n)) in counts.iter().enumerate() {
        let _ = write!(out, "{} {code} x{n}", if i == 0 { "" } else { "," });
    }
    Some(out)
}

/// Culprits first: the sites whose polls were *timed alone* over the threshold, by their
/// slowest such poll, then the rest by the longest poll known.
///
/// A poll timed only together with others (`longest_group`) is known by an upper bound:
/// the whole window, which includes any slow poll that ran in it. A heartbeat whose quick
/// polls shared a window with a 300 ms checksum is a victim of that checksum, and its
/// bound is as large as the culprit's own time; ranking by the bound would put the victim
/// first (lesson 01 did). Only polls timed alone count as slow, so they rank first.
fn rank_polls(polls: &mut [SitePolls]) {
    polls.sort_by_key(|SitePolls { stats, .. }| {
        std::cmp::Reverse((
            stats.slow > 0,
            stats.longest,
            stats.longest.max(stats.longest_group),
        ))
    });
}

#[cfg(test)]
mod tests {
    use std::panic::Location;
    use std::time::Duration;

    use super::*;
    use crate::debug::TaskInfo;

    fn stats(name: &str, slow: u64, longest: u64, longest_group: u64) -> SitePolls {
        let mut polls = SitePolls {
            site: TaskInfo::new(0, Some(name), Location::caller()),
            stats: Default::default(),
        };
        polls.stats.polls = 10;
        polls.stats.slow = slow;
        polls.stats.longest = Duration::from_millis(longest);
        polls.stats.longest_group = Duration::from_millis(longest_group);
        polls
    }

    #[test]
    fn the_task_that_blocked_ranks_above_the_tasks_it_delayed() {
        // Lesson 01: the handler's checksum poll was timed alone (300 ms, slow); the
        // heartbeat's polls shared a window with it, so their bound is a bit larger.
        let mut polls = vec![
            stats("main", 0, 1, 40),
            stats("heartbeat", 0, 2, 301),
            stats("handler", 1, 300, 0),
        ];
        rank_polls(&mut polls);
        let order: Vec<&str> = polls
            .iter()
            .map(|polls| polls.site.name.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["handler", "heartbeat", "main"]);
    }
}
