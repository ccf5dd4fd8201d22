//! `experiment`: how many times the server executes one logical `add 1` operation, with each
//! semantics, as the network loses more datagrams. Given complete.
//!
//! [`measure`] runs a [`Server`](crate::Server) on a thread of its own, on loopback, with a
//! seeded [`UdpRelay`] in front of it that drops (and optionally duplicates) datagrams in both
//! directions, and performs the operations one after the other with a [`Client`](crate::Client)
//! through the relay. [`table`] and [`plot`] show the results. With at-least-once semantics every
//! lost reply costs an extra execution; with at-most-once the figure stays at 1.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::relay::{Faults, UdpRelay};
use plotters::prelude::*;

use crate::{Client, ClientOptions, OperationError, Semantics, Server, ServerConfig, operation};

/// What every run of the experiment shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// `add 1` operations per run.
    pub operations: u64,
    /// The client's timeout per attempt.
    pub timeout: Duration,
    /// The probability that the relay delivers a datagram twice, in each direction.
    pub duplicate: f64,
    /// The relay's seed.
    pub seed: u64,
}

/// The retries each operation may use: enough that giving up is practically impossible at the
/// loss rates the experiment accepts (below 0.9 each way).
const RETRIES: u32 = 200;

/// One run: a semantics at a loss rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The server's semantics.
    pub semantics: Semantics,
    /// The probability that a datagram is dropped, in each direction.
    pub loss: f64,
    /// Operations performed (each one `add 1`).
    pub operations: u64,
    /// How many of them got a reply.
    pub completed: u64,
    /// Requests sent, retransmissions included.
    pub attempts: u64,
    /// How many times the server executed `add`: the total it reached.
    pub executions: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Row {
    /// Executions per completed operation (1.0 means exactly once).
    pub fn per_operation(&self) -> f64 {
        self.executions as f64 / self.completed.max(1) as f64
    }

    /// A one-line summary for the progress log.
    pub fn summary(&self) -> String {
        format!(
            "{} at {:.0}% loss: {} operations, {} requests sent, {} executions ({:.2} per operation), {} ms",
            semantics_name(self.semantics),
            self.loss * 100.0,
            self.completed,
            self.attempts,
            self.executions,
            self.per_operation(),
            self.elapsed.as_millis()
        )
    }
}

/// `at-least-once` or `at-most-once`, as the command line spells them.
pub fn semantics_name(semantics: Semantics) -> &'static str {
    match semantics {
        Semantics::AtLeastOnce => "at-least-once",
        Semantics::AtMostOnce => "at-most-once",
    }
}

/// Runs `setup.operations` `add 1` operations through a relay that drops each datagram with
/// probability `loss` (each way) in front of a server with `semantics`.
///
/// # Errors
/// Socket errors of the server, the relay or the client (an operation that gives up after all
/// its retries counts as not completed, not as an error).
pub fn measure(semantics: Semantics, loss: f64, setup: &Setup) -> io::Result<Row> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let config = ServerConfig {
        semantics,
        ..ServerConfig::default()
    };
    let mut server = Server::new(socket, config)?;
    let addr = server.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let result = server.serve(&stop, |_| {});
            (server, result)
        })
    };
    let faults = Faults {
        drop: loss,
        duplicate: setup.duplicate,
        ..Faults::default()
    };
    let started = Instant::now();
    let outcome = (|| {
        let relay = UdpRelay::start(addr, faults.clone(), faults, setup.seed)?;
        let options = ClientOptions {
            timeout: setup.timeout,
            retries: RETRIES,
        };
        let mut client = Client::new(relay.addr(), options)?;
        let (mut completed, mut attempts) = (0, 0);
        for _ in 0..setup.operations {
            match client.do_operation(operation::ADD, b"1") {
                Ok(outcome) => {
                    completed += 1;
                    attempts += u64::from(outcome.attempts);
                }
                Err(OperationError::NoReply { attempts: n, .. }) => attempts += u64::from(n),
                Err(OperationError::Io(e)) => return Err(e),
            }
        }
        Ok((completed, attempts))
    })();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (server, served) = worker
        .join()
        .map_err(|_| io::Error::other("the server thread panicked"))?;
    served?;
    let (completed, attempts) = outcome?;
    Ok(Row {
        semantics,
        loss,
        operations: setup.operations,
        completed,
        attempts,
        executions: server.service().executions().add,
        elapsed,
    })
}

/// A Markdown table of `rows`: semantics, loss, operations, requests sent, executions, and
/// executions per operation.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| semantics | loss each way | operations | requests sent | executions | per operation |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.0}% | {} | {} | {} | {:.2} |\n",
            semantics_name(row.semantics),
            row.loss * 100.0,
            row.completed,
            row.attempts,
            row.executions,
            row.per_operation()
        ));
    }
    out
}

/// Draws `rows` as an SVG file at `path` (720 x 400 pixels): executions per operation (y)
/// against the loss rate (x), one line per semantics.
///
/// # Errors
/// `io::ErrorKind::Other` with the drawing library's message when the file cannot be written.
pub fn plot(rows: &[Row], setup: &Setup, path: &Path) -> io::Result<()> {
    draw(rows, setup, path).map_err(io::Error::other)
}

fn draw(rows: &[Row], setup: &Setup, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_loss = rows.iter().map(|r| r.loss).fold(0.1_f64, f64::max);
    let top = rows.iter().map(Row::per_operation).fold(2.0_f64, f64::max) * 1.15;
    let caption = format!(
        "Executions per add operation ({} operations, {} ms timeout, {:.0}% duplicates)",
        setup.operations,
        setup.timeout.as_millis(),
        setup.duplicate * 100.0
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_loss * 1.05, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("probability that a datagram is lost (each way)")
        .y_desc("executions per operation")
        .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let colours = [RGBColor(0xd6, 0x27, 0x28), RGBColor(0x1f, 0x77, 0xb4)];
    for (semantics, colour) in [Semantics::AtLeastOnce, Semantics::AtMostOnce]
        .into_iter()
        .zip(colours)
    {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.semantics == semantics)
            .map(|r| (r.loss, r.per_operation()))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(semantics_name(semantics))
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
    root.present().map_err(|e| e.to_string())
}
