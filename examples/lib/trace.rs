//! Reading a trace file back (the Chrome trace-event JSON `Builder::trace_file` writes)
//! as a timeline: one track per thread, the loop's first, with its slices, and the flow
//! arrows between tracks. The timeline lesson draws it with `picture.rs`.

use std::path::Path;

use serde_json::Value;

/// One slice of a track: start and duration in ms, and its label.
#[derive(Clone, Debug)]
pub struct Slice {
    /// Start, ms from the trace's start.
    pub start: f64,
    /// Duration, ms.
    pub duration: f64,
    /// The task or job name.
    pub label: String,
}

/// A trace read back: tracks by name (the loop first), and the arrows as (from, to) points.
#[derive(Debug, Default)]
pub struct Timeline {
    /// `(track name, slices)`, the loop's track first.
    pub tracks: Vec<(String, Vec<Slice>)>,
    /// Flow arrows: (from track, from ms) -> (to track, to ms).
    pub arrows: Vec<((usize, f64), (usize, f64))>,
}

/// Reads a trace written by `trace_file`.
pub fn read(trace: &Path) -> Timeline {
    let text = std::fs::read_to_string(trace).expect("trace file");
    let events: Vec<Value> = serde_json::from_str(&text).expect("a JSON trace");
    let mut tids: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap_or(0),
                e["args"]["name"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    tids.sort();
    let track = |tid: u64| tids.iter().position(|(t, _)| *t == tid);
    let mut timeline = Timeline {
        tracks: tids
            .iter()
            .map(|(_, name)| (name.clone(), Vec::new()))
            .collect(),
        arrows: Vec::new(),
    };
    let ms = |e: &Value, key: &str| e[key].as_f64().unwrap_or(0.0) / 1000.0;
    let mut flows: Vec<(u64, Vec<(usize, f64)>)> = Vec::new();
    for e in &events {
        let Some(t) = e["tid"].as_u64().and_then(track) else {
            continue;
        };
        match e["ph"].as_str() {
            Some("X") => timeline.tracks[t].1.push(Slice {
                start: ms(e, "ts"),
                duration: ms(e, "dur"),
                label: e["name"].as_str().unwrap_or("").to_owned(),
            }),
            Some("s" | "t" | "f") => {
                let id = e["id"].as_u64().unwrap_or(0);
                let point = (t, ms(e, "ts"));
                match flows.iter_mut().find(|(flow, _)| *flow == id) {
                    Some((_, points)) => points.push(point),
                    None => flows.push((id, vec![point])),
                }
            }
            _ => {}
        }
    }
    for (_, mut points) in flows {
        points.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Arrows between tracks only: submit -> worker, worker -> resume (the step along
        // the job's own slice would just cover it).
        timeline.arrows.extend(
            points
                .windows(2)
                .filter(|w| w[0].0 != w[1].0)
                .map(|w| (w[0], w[1])),
        );
    }
    timeline
}

impl Timeline {
    /// The slowest poll on the loop's track, in ms.
    pub fn longest_loop_poll(&self) -> f64 {
        self.tracks.first().map_or(0.0, |(_, slices)| {
            slices.iter().map(|s| s.duration).fold(0.0, f64::max)
        })
    }

    /// Job slices on worker tracks.
    pub fn count_jobs(&self) -> usize {
        self.tracks
            .iter()
            .skip(1)
            .map(|(_, slices)| slices.len())
            .sum()
    }
}
