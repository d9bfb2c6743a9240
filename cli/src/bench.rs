//! `bpfvisor bench`: the side-by-side benchmark suite (the `bench` crate)
//! from the command line: the table on standard output, JSON and an SVG
//! chart written beside it.

use crate::failure::{Failure, FailureKind};
use bench::runner::{Options, Progress};
use bench::session::{self, Selection};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `bpfvisor bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Counted rounds; each cell's figure is the median of its rounds.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Wall-clock length of one batch of runs of a cell (`50ms`, `1s`).
    #[arg(long, default_value = "50ms", value_parser = parse_batch)]
    batch: Duration,
    /// Only rows whose name contains, or whose group is, one of these
    /// (comma-separated: `hash,maps`).
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
    /// Only these columns (comma-separated: `vm,kernel`).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bench::row::COLUMNS))]
    engines: Vec<String>,
    /// Where to write bench.json and bench.svg.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn parse_batch(text: &str) -> Result<Duration, String> {
    let batch = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if batch < Duration::from_micros(100) || batch > Duration::from_secs(60) {
        return Err("a batch is between 100us and 60s".to_owned());
    }
    Ok(batch)
}

/// Runs the suite; fails if a cell failed (an engine error or a checksum
/// that differs from the VM's).
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    let selection = Selection {
        rows: args.rows.clone(),
        columns: args.engines.clone(),
    };
    let options = Options {
        rounds: args.rounds as usize,
        batch: args.batch,
    };
    let bar = progress_bar(options.rounds);
    let report = session::run(&selection, &options, &mut |progress| match progress {
        Progress::Calibrating(row) => bar.set_message(format!("calibrating {row}")),
        Progress::Round { n, of } => {
            bar.set_position(n as u64);
            bar.set_message(if n == 0 {
                "warm-up round".to_owned()
            } else {
                format!("round {n} of {of}")
            });
        }
    });
    bar.finish_and_clear();
    if report.rows.is_empty() {
        return Err(Failure::new(
            FailureKind::Host,
            format!("no row matches {}", args.rows.join(",")),
        ));
    }
    print!("{}", report.table());
    let (json, svg) = session::save(&report, &args.out).map_err(|e| {
        Failure::new(
            FailureKind::Host,
            format!("writing results to {}: {e}", args.out.display()),
        )
    })?;
    println!("\nwrote {} and {}", json.display(), svg.display());
    if report.has_failures() {
        return Err(Failure::new(
            FailureKind::BenchFailed,
            "some cells failed (see the notes above the legend)",
        ));
    }
    Ok(())
}

fn progress_bar(rounds: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rounds as u64);
    if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
