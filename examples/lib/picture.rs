//! Drawing timelines (`trace.rs`) as an SVG: one panel per timeline, a row per track,
//! a box per slice coloured by what ran, the flow arrows, and a time axis.

use std::path::Path;

use svg::Document;
use svg::node::element::{Line, Rectangle, Text};

use crate::trace::Timeline;

const WIDTH: f64 = 1000.0;
const LABELS: f64 = 110.0;
const ROW: f64 = 34.0;
const TITLE: f64 = 30.0;
const AXIS: f64 = 28.0;

/// Handlers red, jobs orange, everything else green.
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

/// Draws `panels` (a title and a timeline each) one above the other, on one time scale,
/// into the SVG file `out`.
pub fn draw(panels: &[(&str, &Timeline)], out: &Path) {
    let span = |t: &Timeline| {
        t.tracks
            .iter()
            .flat_map(|(_, slices)| slices.iter().map(|s| s.start + s.duration))
            .fold(0.0, f64::max)
    };
    let span_ms = panels
        .iter()
        .map(|(_, timeline)| span(timeline))
        .fold(1.0, f64::max);
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
    // Panels 10 px apart.
    let mut top = 0.0;
    for (title, timeline) in panels {
        let (drawn, height) = panel(doc, top, title, timeline, span_ms);
        doc = drawn;
        top += height + 10.0;
    }
    let height = (top - 10.0).max(0.0);
    doc = doc
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height);
    svg::save(out, &doc).expect("write the svg");
}
