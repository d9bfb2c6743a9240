//! `bpfvisor jobs`: runs a JSON-lines file of jobs, each in a sandbox of
//! its own, several at once on worker threads, and writes one JSON result
//! line per job (docs/cli.md).
//!
//! The main thread reads lines and hands them to the workers through a
//! bounded queue (so a file of millions of jobs is never all in memory);
//! each worker parses its line, runs the job and sends the result line to
//! the writer thread, which prints results in input order (holding back
//! those that finish before an earlier one), or as they come with
//! `--unordered`, and keeps the counts and the progress bar.

mod exec;
mod spec;

use crate::failure::{Failure, FailureKind};
use clap::Args;
use crossbeam_channel::{Receiver, Sender};
use exec::{Finished, Line, ObjectCache, Status};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lines queued per worker: enough that no worker waits for the reader.
const QUEUE_PER_WORKER: usize = 4;

/// Arguments of `bpfvisor jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// JSON-lines file of jobs, one object a line (`-`: standard input).
    file: PathBuf,
    /// Jobs run at once, each in a sandbox of its own, on its own worker thread
    /// (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    parallel: Option<u16>,
    /// Print each result when its job ends instead of in input order.
    #[arg(long)]
    unordered: bool,
    /// Build a fresh sandbox and load the object for every job instead of
    /// cloning a snapshot from a pool (slower; the same results).
    #[arg(long)]
    no_pool: bool,
    /// Most ring buffer records kept per ring and job; the others are
    /// consumed and counted.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_records: u64,
}

/// Why `bpfvisor jobs` could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum JobsCommandError {
    /// The jobs file could not be opened or read.
    #[error("Cannot read {}", .0.display())]
    ReadJobs(PathBuf, #[source] std::io::Error),
    /// The results could not be written.
    #[error("Cannot write the results")]
    WriteResults(#[source] std::io::Error),
    /// The thread printing the results panicked (a bug of bpfvisor).
    #[error("The thread writing the results stopped")]
    Writer,
    /// KVM cannot be used: no job could run.
    #[error("Cannot use KVM")]
    Kvm(#[source] vmm::kvm::KvmError),
}

/// Jobs per status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts([u64; Status::ALL.len()]);

impl Counts {
    fn add(&mut self, status: Status) {
        self.0[status as usize] += 1;
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn failed(&self) -> u64 {
        self.total() - self.0[Status::Ok as usize]
    }

    /// "700 ok, 100 trap, 50 deadline, 150 error".
    fn describe(&self) -> String {
        Status::ALL
            .iter()
            .map(|&status| format!("{} {}", self.0[status as usize], status.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the jobs and prints their results.
pub fn run(args: &JobsArgs) -> Result<(), Failure> {
    let host = |e: JobsCommandError| Failure::new(FailureKind::Host, e);
    // The host's problem, not the jobs': said once, before any is read.
    vmm::kvm::kvm().map_err(|e| host(JobsCommandError::Kvm(e)))?;
    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| host(JobsCommandError::ReadJobs(args.file.clone(), e)))?;
        Box::new(BufReader::new(file))
    };
    let workers = args.parallel.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let bar = progress_bar(&args.file);
    let cache = ObjectCache::new(if args.no_pool { 0 } else { workers });
    let started = Instant::now();
    let (lines, queue) = crossbeam_channel::bounded::<Line>(workers * QUEUE_PER_WORKER);
    let (results, done) = crossbeam_channel::unbounded::<Finished>();
    let (read, written) = std::thread::scope(|scope| {
        for _ in 0..workers {
            let (queue, results, cache) = (queue.clone(), results.clone(), &cache);
            scope.spawn(move || work(&queue, &results, cache, args.max_records));
        }
        drop((queue, results));
        let writer = scope.spawn(|| write_results(&done, !args.unordered, &bar));
        let read = read_lines(input, &lines);
        // Workers end when the queue is empty and closed, the writer when
        // every worker has.
        drop(lines);
        (read, writer.join())
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    // The writer only prints and counts: nothing a job does can panic it.
    let (counts, written) = written.map_err(|_| host(JobsCommandError::Writer))?;
    eprintln!("{}", summary(&counts, elapsed, cache.parsed()));
    read.map_err(|e| host(JobsCommandError::ReadJobs(args.file.clone(), e)))?;
    written.map_err(|e| host(JobsCommandError::WriteResults(e)))?;
    if counts.failed() > 0 {
        return Err(Failure::reported(FailureKind::JobsFailed));
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal, a hidden one
/// otherwise. The bar's length is the jobs in `file`, counted first; from
/// standard input, which can be read only once, it is a count of jobs
/// done.
fn progress_bar(file: &Path) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total = if file.as_os_str() == "-" {
        None
    } else {
        // Not being able to count is not an error: reading will say why.
        count_jobs(file).ok()
    };
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{elapsed_precise} [{wide_bar}] {pos}/{len} jobs, {rate}, ETA {eta} {msg}",
        ),
        None => (
            ProgressBar::no_length(),
            "{elapsed_precise} {pos} jobs, {rate} {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        let style = style
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The non-blank lines of `file`.
fn count_jobs(file: &Path) -> Result<u64, std::io::Error> {
    let mut input = BufReader::new(std::fs::File::open(file)?);
    let mut line = Vec::new();
    let mut count = 0;
    while input.read_until(b'\n', &mut line)? > 0 {
        if !line.iter().all(u8::is_ascii_whitespace) {
            count += 1;
        }
        line.clear();
    }
    Ok(count)
}

/// Sends every non-blank line to the workers, numbered.
fn read_lines(mut input: Box<dyn BufRead>, lines: &Sender<Line>) -> Result<(), std::io::Error> {
    let mut seq = 0;
    let mut number = 0;
    loop {
        let mut bytes = Vec::new();
        if input.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(());
        }
        number += 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if lines.send(Line { seq, number, bytes }).is_err() {
            // No worker is left (none can end early but by a bug): the
            // jobs not sent have no result either way.
            return Ok(());
        }
        seq += 1;
    }
}

/// A worker: runs jobs until the queue is closed and empty.
fn work(queue: &Receiver<Line>, results: &Sender<Finished>, cache: &ObjectCache, max: u64) {
    for line in queue {
        if results.send(exec::run_line(&line, cache, max)).is_err() {
            return;
        }
    }
}

/// Prints the results, in input order unless `ordered` is false, and
/// counts them. Output is flushed whenever no other result is waiting, so
/// a reader sees each one soon after its job (and those before it) ended.
fn write_results(
    done: &Receiver<Finished>,
    ordered: bool,
    bar: &ProgressBar,
) -> (Counts, Result<(), std::io::Error>) {
    let mut counts = Counts::default();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut written = Ok(());
    let mut held = BTreeMap::new();
    let mut next = 0;
    for finished in done {
        counts.add(finished.status);
        bar.inc(1);
        if finished.status != Status::Ok {
            bar.set_message(format!("{} failed", counts.failed()));
        }
        // After a write error, jobs still run and are counted.
        let mut write = |json: &str| {
            if written.is_ok() {
                written = writeln!(out, "{json}");
            }
        };
        if ordered {
            held.insert(finished.seq, finished.json);
            while let Some(json) = held.remove(&next) {
                write(&json);
                next += 1;
            }
        } else {
            write(&finished.json);
        }
        if done.is_empty() && written.is_ok() {
            written = out.flush();
        }
    }
    if written.is_ok() {
        written = out.flush();
    }
    (counts, written)
}

/// The line printed at the end: counts, time, rate.
fn summary(counts: &Counts, elapsed: Duration, parsed: u64) -> String {
    let total = counts.total();
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        total as f64 / seconds
    } else {
        0.0
    };
    let objects = if parsed == 1 { "object" } else { "objects" };
    format!(
        "jobs: {total} in {seconds:.2}s ({rate:.1} jobs/s): {}; {parsed} {objects} parsed",
        counts.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_every_status() {
        let mut counts = Counts::default();
        for status in [Status::Ok, Status::Ok, Status::Trap, Status::Error] {
            counts.add(status);
        }
        assert_eq!(counts.failed(), 2);
        assert_eq!(
            summary(&counts, Duration::from_millis(500), 1),
            "jobs: 4 in 0.50s (8.0 jobs/s): 2 ok, 1 trap, 0 deadline, 1 error; 1 object parsed"
        );
    }
}
