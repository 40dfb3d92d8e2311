//! 09: The timeline: inline vs offloaded, drawn from the runtime's own trace.
//!
//! The asyncio guides draw the "inline vs offloaded" diagram by hand; here it is measured.
//! The same small workload (two request handlers computing checksums, and a heartbeat)
//! runs twice with tracing on (`Builder::trace_file`): once inline, once offloaded to a
//! CPU pool (one worker per core but one, so the loop keeps a core of its own). Both traces are read back and drawn one above the other as an SVG:
//! inline, the handlers' long polls fill the loop's track and the heartbeat has gaps;
//! offloaded, the loop's track is all short polls, the checksums sit on the worker tracks,
//! and arrows link each submit to the worker and back to the handler's resume. The trace
//! files open in Perfetto (ui.perfetto.dev) too.
//!
//! Run with: cargo run --example 09_timeline   (writes target/timeline.svg; give a path
//! to write it elsewhere: `cargo run --example 09_timeline -- examples/timeline.svg`
//! refreshes the picture the README shows)

use std::path::{Path, PathBuf};
use std::time::Duration;

use oneloop::pool::ThreadPool;
use oneloop::time::sleep;
use oneloop_examples::{Checksum, Heartbeat};
use serde_json::Value;
use svg::Document;
use svg::node::element::{Line, Rectangle, Text};

/// Where the checksums run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the handlers, on the loop.
    Inline,
    /// On a CPU pool, with `run_in_executor`.
    Offloaded,
}

/// Runs the workload in `mode`, tracing it to `trace`.
pub fn run(mode: Mode, trace: &Path, job: &Checksum) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pool = ThreadPool::builder()
        .workers(cores.saturating_sub(1).max(1))
        .thread_name("worker")
        .build()
        .expect("pool");
    let rt = oneloop::Runtime::builder()
        .trace_file(trace)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let heartbeat = Heartbeat::start(Duration::from_millis(5));
        sleep(Duration::from_millis(20)).await;
        // Two handlers, each serving two requests that compute a checksum.
        let handlers: Vec<_> = (0..2)
            .map(|_| {
                let (job, pool) = (job.clone(), pool.clone());
                oneloop::task::Builder::new()
                    .name("handler")
                    .spawn(async move {
                        for _ in 0..2 {
                            let job = job.clone();
                            match mode {
                                Mode::Inline => job.run(),
                                Mode::Offloaded => {
                                    oneloop::run_in_executor(&pool, move || job.run())
                                        .await
                                        .expect("checksum")
                                }
                            };
                            sleep(Duration::from_millis(10)).await;
                        }
                    })
            })
            .collect();
        for handler in handlers {
            handler.await.expect("handler");
        }
        sleep(Duration::from_millis(20)).await;
        heartbeat.stop().await;
    });
    // Dropping the runtime completes the trace file.
}

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

/// The slowest poll on the loop's track, in ms.
pub fn longest_loop_poll(timeline: &Timeline) -> f64 {
    timeline.tracks.first().map_or(0.0, |(_, slices)| {
        slices.iter().map(|s| s.duration).fold(0.0, f64::max)
    })
}

// ------------------------------------------------------------------------------------
// Drawing.
// ------------------------------------------------------------------------------------

const WIDTH: f64 = 1000.0;
const LABELS: f64 = 110.0;
const ROW: f64 = 34.0;
const TITLE: f64 = 30.0;
const AXIS: f64 = 28.0;

fn color(label: &str) -> &'static str {
    if label.starts_with("handler") {
        "#d9534f" // the handlers: red, the code that should not block the loop
    } else if label.starts_with("job") {
        "#f0ad4e" // offloaded checksums: orange, on the workers
    } else {
        "#5cb85c" // everything else (the heartbeat, main): green
    }
}

/// Draws one timeline as a panel starting at `top`; returns the panel's height.
fn panel(
    mut doc: Document,
    top: f64,
    title: &str,
    timeline: &Timeline,
    span_ms: f64,
) -> (Document, f64) {
    let scale = (WIDTH - LABELS - 10.0) / span_ms;
    let x = |t: f64| LABELS + t * scale;
    doc = doc.add(
        Text::new(title)
            .set("x", 10)
            .set("y", top + 20.0)
            .set("font-size", 15)
            .set("font-weight", "bold"),
    );
    let rows = top + TITLE;
    for (i, (name, slices)) in timeline.tracks.iter().enumerate() {
        let y = rows + i as f64 * ROW;
        doc = doc
            .add(
                Text::new(name.as_str())
                    .set("x", 10)
                    .set("y", y + ROW / 2.0 + 4.0)
                    .set("font-size", 12),
            )
            .add(
                Rectangle::new()
                    .set("x", LABELS)
                    .set("y", y + 4.0)
                    .set("width", WIDTH - LABELS - 10.0)
                    .set("height", ROW - 8.0)
                    .set("fill", "#f4f4f4"),
            );
        for slice in slices {
            let width = (slice.duration * scale).max(0.8);
            doc = doc.add(
                Rectangle::new()
                    .set("x", x(slice.start))
                    .set("y", y + 6.0)
                    .set("width", width)
                    .set("height", ROW - 12.0)
                    .set("fill", color(&slice.label)),
            );
            if width > 60.0 {
                doc = doc.add(
                    Text::new(slice.label.as_str())
                        .set("x", x(slice.start) + 4.0)
                        .set("y", y + ROW / 2.0 + 4.0)
                        .set("font-size", 11)
                        .set("fill", "white"),
                );
            }
        }
    }
    for &((from_row, from_t), (to_row, to_t)) in &timeline.arrows {
        let y = |row: usize| rows + row as f64 * ROW + ROW / 2.0;
        doc = doc.add(
            Line::new()
                .set("x1", x(from_t))
                .set("y1", y(from_row))
                .set("x2", x(to_t))
                .set("y2", y(to_row))
                .set("stroke", "#337ab7")
                .set("stroke-width", 1.2)
                .set("marker-end", "url(#arrow)"),
        );
    }
    let axis = rows + timeline.tracks.len() as f64 * ROW + 4.0;
    let step = if span_ms > 400.0 { 100.0 } else { 50.0 };
    let mut t = 0.0;
    while t <= span_ms {
        doc = doc
            .add(
                Line::new()
                    .set("x1", x(t))
                    .set("y1", axis)
                    .set("x2", x(t))
                    .set("y2", axis + 5.0)
                    .set("stroke", "#888"),
            )
            .add(
                Text::new(format!("{t:.0} ms"))
                    .set("x", x(t) - 12.0)
                    .set("y", axis + 17.0)
                    .set("font-size", 10),
            );
        t += step;
    }
    (doc, TITLE + timeline.tracks.len() as f64 * ROW + AXIS)
}

/// Draws both timelines, inline above offloaded, on one time scale, into `out`.
pub fn draw(inline: &Timeline, offloaded: &Timeline, out: &Path) {
    let span = |t: &Timeline| {
        t.tracks
            .iter()
            .flat_map(|(_, slices)| slices.iter().map(|s| s.start + s.duration))
            .fold(0.0, f64::max)
    };
    let span_ms = span(inline).max(span(offloaded)).max(1.0);
    let arrow = svg::node::element::Marker::new()
        .set("id", "arrow")
        .set("markerWidth", 8)
        .set("markerHeight", 8)
        .set("refX", 7)
        .set("refY", 4)
        .set("orient", "auto")
        .add(
            svg::node::element::Path::new()
                .set("d", "M0,0 L8,4 L0,8 z")
                .set("fill", "#337ab7"),
        );
    let mut doc = Document::new()
        .set("font-family", "sans-serif")
        .add(svg::node::element::Definitions::new().add(arrow));
    let (d, first) = panel(
        doc,
        0.0,
        "inline: the handlers compute on the loop",
        inline,
        span_ms,
    );
    let (d, second) = panel(
        d,
        first + 10.0,
        "offloaded: the workers compute, the loop stays free",
        offloaded,
        span_ms,
    );
    doc = d;
    let height = first + 10.0 + second;
    doc = doc
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height);
    svg::save(out, &doc).expect("write the svg");
}

fn main() {
    let dir = std::env::temp_dir();
    let (inline_trace, offloaded_trace) = (
        dir.join("oneloop-inline.json"),
        dir.join("oneloop-offloaded.json"),
    );
    let job = Checksum::calibrated(128, Duration::from_millis(40));
    run(Mode::Inline, &inline_trace, &job);
    run(Mode::Offloaded, &offloaded_trace, &job);
    let (inline, offloaded) = (read(&inline_trace), read(&offloaded_trace));
    // Never into the source tree unless asked: the path given, else the build's target dir.
    let picture = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("timeline.svg")
        });
    if let Some(dir) = picture.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).expect("create the picture's directory");
    }
    draw(&inline, &offloaded, &picture);
    println!(
        "traces: {} and {}",
        inline_trace.display(),
        offloaded_trace.display()
    );
    println!("picture: {}", picture.display());
    println!();
    println!(
        "longest poll on the loop: inline {:.1} ms, offloaded {:.1} ms",
        longest_loop_poll(&inline),
        longest_loop_poll(&offloaded)
    );
    println!(
        "jobs on worker tracks: inline {}, offloaded {}",
        count_jobs(&inline),
        count_jobs(&offloaded)
    );
    println!();
    println!("Notice: inline, the loop's track is a few long red polls (the handlers) and the");
    println!("heartbeat's green ticks stop under them; offloaded, the long orange slices moved");
    println!("to the worker tracks, arrows go from each submit to a worker and back, and the");
    println!("loop's track stays a row of short polls.");
}

/// Job slices on worker tracks.
pub fn count_jobs(timeline: &Timeline) -> usize {
    timeline
        .tracks
        .iter()
        .skip(1)
        .map(|(_, slices)| slices.len())
        .sum()
}
