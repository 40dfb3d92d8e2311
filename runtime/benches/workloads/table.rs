//! The main table of `compare.rs`: each line is one figure of oneloop beside the same
//! figure of its peers, measured in the same run, and oneloop's ratio to the best of those
//! peers, judged against the line's target. W9's and W10's tables are laid out in
//! `compare.rs` and `remote.rs`.

use std::fmt::Write as _;

/// One line of the main table.
pub struct Line {
    pub workload: &'static str,
    pub measure: String,
    pub oneloop: f64,
    /// The peers' figures, in the table's order: tokio (on the line that says so, tokio's
    /// multi-thread runtime), then smol. `None` where that peer does not run this line;
    /// NaN where it was meant to but could not (the one-CPU child failed).
    pub tokio: Option<f64>,
    pub smol: Option<f64>,
    /// Latencies, times and CPU: lower is better. Rates and efficiencies: higher is.
    pub lower_is_better: bool,
    /// The target on oneloop ÷ the best peer: ≤ when lower is better, ≥ when higher is.
    /// `None`: the line is information only.
    pub ratio_target: Option<f64>,
    /// A bound oneloop's own figure must reach as well, in the same direction (W3: an
    /// efficiency of at least 0.97, whatever the peers do).
    pub absolute: Option<f64>,
    /// A target on oneloop's own figure alone, no peer in it (W8, idle CPU, early timers):
    /// its text and whether it was met. It replaces the ratio target and the ratio.
    pub own: Option<(&'static str, bool)>,
}

impl Line {
    /// A figure where lower is better, information only until given a target.
    pub fn lower(
        workload: &'static str,
        measure: impl Into<String>,
        oneloop: f64,
        tokio: impl Into<Option<f64>>,
        smol: impl Into<Option<f64>>,
    ) -> Line {
        Line {
            workload,
            measure: measure.into(),
            oneloop,
            tokio: tokio.into(),
            smol: smol.into(),
            lower_is_better: true,
            ratio_target: None,
            absolute: None,
            own: None,
        }
    }

    /// A figure where higher is better, information only until given a target.
    pub fn higher(
        workload: &'static str,
        measure: impl Into<String>,
        oneloop: f64,
        tokio: impl Into<Option<f64>>,
        smol: impl Into<Option<f64>>,
    ) -> Line {
        Line {
            lower_is_better: false,
            ..Line::lower(workload, measure, oneloop, tokio, smol)
        }
    }

    /// The target on oneloop ÷ the best peer.
    pub fn target(self, ratio: f64) -> Line {
        Line {
            ratio_target: Some(ratio),
            ..self
        }
    }

    /// A bound on oneloop's own figure, besides the ratio target.
    pub fn absolute(self, bound: f64) -> Line {
        Line {
            absolute: Some(bound),
            ..self
        }
    }

    /// A target on oneloop's own figure alone.
    pub fn own(self, text: &'static str, met: bool) -> Line {
        Line {
            own: Some((text, met)),
            ..self
        }
    }

    /// The better of the peers' figures this line has.
    fn best(&self) -> Option<f64> {
        let peers = [self.tokio, self.smol].into_iter().flatten();
        if self.lower_is_better {
            peers.reduce(f64::min)
        } else {
            peers.reduce(f64::max)
        }
    }

    /// oneloop ÷ the best peer; NaN when there is none, or a side was not measured.
    fn ratio(&self) -> f64 {
        self.best().map_or(f64::NAN, |best| self.oneloop / best)
    }

    /// The target column, and the met column.
    fn judged(&self) -> (String, &'static str) {
        let verdict = |met: bool| if met { "yes" } else { "**no**" };
        if let Some((text, met)) = self.own {
            return (text.to_owned(), verdict(met));
        }
        let Some(target) = self.ratio_target else {
            return ("-".to_owned(), "-");
        };
        let (sign, within): (_, fn(f64, f64) -> bool) = if self.lower_is_better {
            ("≤", |v, limit| v <= limit)
        } else {
            ("≥", |v, limit| v >= limit)
        };
        let mut text = format!("{sign} {}", bound(target));
        let mut met = within(self.ratio(), target);
        if let Some(floor) = self.absolute {
            let _ = write!(text, ", and {sign} {} absolute", bound(floor));
            met &= within(self.oneloop, floor);
        }
        if self.ratio().is_nan() {
            return (text, "skipped");
        }
        (text, verdict(met))
    }
}

/// The table, in Markdown.
pub fn render(lines: &[Line]) -> String {
    let mut out = String::from(
        "| workload | measure | oneloop | tokio | smol | best peer ratio | target | met |\n\
         |---|---|---:|---:|---:|---:|---|:-:|\n",
    );
    for l in lines {
        let peer = |v: Option<f64>| v.map_or("-".to_owned(), num);
        let ratio = if l.own.is_some() || l.ratio().is_nan() {
            "-".to_owned()
        } else {
            format!("{:.2}", l.ratio())
        };
        let (target, met) = l.judged();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {ratio} | {target} | {met} |",
            l.workload,
            l.measure,
            num(l.oneloop),
            peer(l.tokio),
            peer(l.smol),
        );
    }
    out
}

/// A target's figure: `1.0`, `1.5`, `0.97`.
fn bound(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A figure for a cell: whole above 1000, more digits below 0.01, `-` for NaN.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.4}") // W9's thread pool moves 16 MiB in µs: 0.00 ms would hide it
    } else {
        format!("{v:.2}")
    }
}
