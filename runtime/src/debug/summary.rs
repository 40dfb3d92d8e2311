//! The exit summary of debug mode (`OL008`): where the time went, printed when the runtime
//! drops. The slowest polls by spawn site, the offloaded jobs with the longest queue wait and
//! run time by submit site, and how many reports of each code were made.

use std::fmt::Write;

use super::jobs::JobWatch;
use super::watch::Debug;
use super::{Millis, Reporter};

/// How many sites each list shows.
const TOP: usize = 5;

pub(crate) fn render(debug: &Debug, jobs: &JobWatch, reporter: &Reporter) -> String {
    let mut out = String::new();
    let mut polls = debug.site_stats();
    polls.retain(|(_, stats)| stats.polls > 0);
    polls.sort_by_key(|(_, stats)| std::cmp::Reverse(stats.longest.max(stats.longest_group)));
    let _ = writeln!(out, "  slowest polls, by spawn site:");
    if polls.is_empty() {
        let _ = writeln!(out, "    (no task was polled)");
    }
    for (site, stats) in polls.iter().take(TOP) {
        let name = site.name.as_deref().unwrap_or("(unnamed)");
        // Polls timed only together with others are known by an upper bound (`watch.rs`).
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
    let mut sites = jobs.site_stats();
    if !sites.is_empty() {
        sites.sort_by_key(|site| std::cmp::Reverse(site.longest_wait));
        let _ = writeln!(out, "  offloaded jobs, longest queue wait first:");
        for site in sites.iter().take(TOP) {
            let _ = writeln!(
                out,
                "    waited {:>9}, ran {:>9}, {} job{} submitted at {}",
                Millis(site.longest_wait).to_string(),
                Millis(site.longest_run).to_string(),
                site.jobs,
                if site.jobs == 1 { "" } else { "s" },
                site.location
            );
        }
    }
    let counts = reporter.counts();
    let _ = write!(out, "  reports:");
    if counts.is_empty() {
        let _ = write!(out, " none");
    }
    for (i, (code, n)) in counts.iter().enumerate() {
        let _ = write!(out, "{} {code} x{n}", if i == 0 { "" } else { "," });
    }
    out
}
