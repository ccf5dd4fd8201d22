//! The table and the SVG plot of `bench-plot` results. Given complete.
//!
//! [`table`] gives a Markdown table of the runs; [`draw`] plots requests per second against the
//! number of clients, one line per server model, in two panels: one connection per client, and
//! a connection per request.

use std::path::Path;

use plotters::prelude::*;

use crate::bench::Report;

/// One measured run: which server (`iterative`, `fork`, `thread`, `socat`...) and its report.
#[derive(Debug, Clone)]
pub struct Run {
    /// The server model or program.
    pub server: String,
    /// What `bench` measured.
    pub report: Report,
}

/// A Markdown table of `runs`: server, clients, connections, requests/s, latency p50/p99/max
/// (ms), errors.
pub fn table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| server | clients | connections | requests/s | p50 ms | p99 ms | max ms | errors |\n\
         | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in runs {
        let r = &run.report;
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} |\n",
            run.server,
            r.clients,
            if r.connect_per_request {
                "per request"
            } else {
                "per client"
            },
            r.requests_per_s,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.errors
        ));
    }
    out
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Draws `runs` as an SVG file at `path` (900 x 420 pixels): requests/s (y) against clients
/// (x, logarithmic), one line per server, left panel one connection per client, right panel a
/// connection per request. `title` goes above both.
///
/// # Errors
/// A message when the file cannot be written.
pub fn draw(path: &Path, title: &str, runs: &[Run]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| e.to_string())?;
    let mut servers: Vec<&str> = Vec::new();
    for run in runs {
        if !servers.contains(&run.server.as_str()) {
            servers.push(&run.server);
        }
    }
    let max_clients = runs.iter().map(|r| r.report.clients).max().unwrap_or(1).max(2) as f64;
    let mut counts: Vec<f64> = runs.iter().map(|r| r.report.clients as f64).collect();
    counts.sort_by(f64::total_cmp);
    counts.dedup();
    let panels = root.split_evenly((1, 2));
    for (panel, per_request) in panels.iter().zip([false, true]) {
        // Each panel has its own scale: connections per request are far slower.
        let top = runs
            .iter()
            .filter(|r| r.report.connect_per_request == per_request)
            .map(|r| r.report.requests_per_s)
            .fold(1.0_f64, f64::max)
            * 1.3;
        let caption = if per_request {
            "a connection per request"
        } else {
            "one connection per client"
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (0.8..max_clients * 1.25)
                    .log_scale()
                    .with_key_points(counts.clone()),
                0.0..top,
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("concurrent clients")
            .y_desc("requests/s")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, server) in servers.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut points: Vec<(f64, f64)> = runs
                .iter()
                .filter(|r| r.server == *server && r.report.connect_per_request == per_request)
                .map(|r| (r.report.clients as f64, r.report.requests_per_s))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*server)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
