//! Measuring rows: calibrate each cell's batch, then interleaved rounds,
//! then the median per cell.
//!
//! Every cell of every row runs once per round, rows and columns in turn,
//! so that the noise of a shared machine (another tenant, a frequency
//! change) lands on every figure alike instead of on whichever cell ran
//! at the wrong moment. Round 0 warms caches and is not counted.

use crate::engine::Sample;
use crate::row::{CellState, Row};
use std::time::{Duration, Instant};

/// How to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Counted rounds (the median is over these).
    pub rounds: usize,
    /// Wall-clock time one batch of runs should take: each cell's `repeat`
    /// is sized to it, so fast and slow engines get batches of about the
    /// same length.
    pub batch: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rounds: 11,
            batch: Duration::from_millis(50),
        }
    }
}

/// A cell after measuring.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Measured: time per run over the rounds.
    Measured(Figures),
    /// The engine cannot run the row; why.
    Unsupported(String),
    /// It failed (or computed a different checksum); why.
    Failed(String),
}

/// A measured cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Median time per run.
    pub median: Duration,
    /// Fastest and slowest round.
    pub min: Duration,
    /// Slowest round.
    pub max: Duration,
    /// Runs per batch.
    pub repeat: u32,
    /// The checksum of the last batch.
    pub result: u64,
}

/// A measured row.
#[derive(Clone, Debug)]
pub struct RowResult {
    /// Row name.
    pub name: String,
    /// Group name.
    pub group: String,
    /// What one run does.
    pub what: String,
    /// Column name and outcome, in column order.
    pub cells: Vec<(&'static str, Outcome)>,
}

impl RowResult {
    /// The median of `column`, when it was measured.
    pub fn median(&self, column: &str) -> Option<Duration> {
        self.cells.iter().find_map(|(c, outcome)| match outcome {
            Outcome::Measured(figures) if *c == column => Some(figures.median),
            _ => None,
        })
    }
}

/// What the runner tells its caller as it goes.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// Calibrating the cells of a row.
    Calibrating(&'a str),
    /// Round `n` of `of` (0 is the warm-up).
    Round {
        /// This round.
        n: usize,
        /// Counted rounds.
        of: usize,
    },
}

/// A cell being measured.
struct Live {
    repeat: u32,
    samples: Vec<Duration>,
    result: u64,
    failed: Option<String>,
}

/// Measures `rows`; see the module documentation.
pub fn measure(
    mut rows: Vec<Row>,
    options: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Vec<RowResult> {
    let mut live: Vec<Vec<Option<Live>>> = Vec::with_capacity(rows.len());
    for row in &mut rows {
        progress(Progress::Calibrating(&row.name));
        let _pinned = pin(row.pin);
        let cells = row
            .cells
            .iter_mut()
            .map(|cell| match &mut cell.state {
                CellState::Ready(prepared) => Some(calibrate(prepared.as_mut(), options.batch)),
                _ => None,
            })
            .collect();
        live.push(cells);
    }
    for round in 0..=options.rounds {
        progress(Progress::Round {
            n: round,
            of: options.rounds,
        });
        for (row, cells) in rows.iter_mut().zip(&mut live) {
            let _pinned = pin(row.pin);
            for (cell, live) in row.cells.iter_mut().zip(cells.iter_mut()) {
                let (CellState::Ready(prepared), Some(live)) = (&mut cell.state, live) else {
                    continue;
                };
                if live.failed.is_some() {
                    continue;
                }
                match prepared.run(live.repeat) {
                    Ok(sample) => {
                        live.result = sample.result;
                        if round > 0 {
                            live.samples.push(sample.per_run);
                        }
                    }
                    Err(e) => live.failed = Some(e.to_string()),
                }
            }
        }
    }
    rows.into_iter()
        .zip(live)
        .map(|(row, live)| finish(row, live))
        .collect()
}

/// Pins the calling thread to `cpu` until the guard is dropped; best
/// effort (unpinned, the figures are only noisier).
fn pin(cpu: Option<usize>) -> Option<vmm::affinity::Pinned> {
    vmm::affinity::Pinned::to(&vmm::CpuSet::of([cpu?])).ok()
}

/// Finds how many runs make a batch of about `batch`, from a first run of
/// one, growing it while batches are short.
fn calibrate(prepared: &mut dyn crate::engine::Prepared, batch: Duration) -> Live {
    const MAX_REPEAT: u32 = 1 << 24;
    let mut live = Live {
        repeat: 1,
        samples: Vec::new(),
        result: 0,
        failed: None,
    };
    loop {
        let start = Instant::now();
        let sample: Sample = match prepared.run(live.repeat) {
            Ok(sample) => sample,
            Err(e) => {
                live.failed = Some(e.to_string());
                return live;
            }
        };
        let took = start.elapsed();
        live.result = sample.result;
        if took >= batch / 2 || live.repeat >= MAX_REPEAT {
            return live;
        }
        // Aim at the batch from what this one took, at most 100x at a
        // time (a first run can be slow for reasons of its own).
        let per_run = took.as_secs_f64() / f64::from(live.repeat);
        let wanted = (batch.as_secs_f64() / per_run.max(1e-9)).ceil();
        let next = wanted
            .min(f64::from(live.repeat) * 100.0)
            .max(2.0 * f64::from(live.repeat));
        live.repeat = (next as u32).min(MAX_REPEAT);
    }
}

fn finish(row: Row, live: Vec<Option<Live>>) -> RowResult {
    let mut cells: Vec<(&'static str, Outcome)> = row
        .cells
        .into_iter()
        .zip(live)
        .map(|(cell, live)| {
            let outcome = match (cell.state, live) {
                (CellState::Unsupported(why), _) => Outcome::Unsupported(why),
                (CellState::Failed(why), _) => Outcome::Failed(why),
                (
                    CellState::Ready(_),
                    Some(Live {
                        failed: Some(why), ..
                    }),
                ) => Outcome::Failed(why),
                (CellState::Ready(_), Some(live)) => figures(live),
                (CellState::Ready(_), None) => Outcome::Failed("not measured".to_owned()),
            };
            (cell.column, outcome)
        })
        .collect();
    if row.checked {
        check_results(&mut cells);
    }
    RowResult {
        name: row.name,
        group: row.group.name().to_owned(),
        what: row.what,
        cells,
    }
}

fn figures(mut live: Live) -> Outcome {
    live.samples.sort();
    let (Some(&min), Some(&max)) = (live.samples.first(), live.samples.last()) else {
        return Outcome::Failed("no rounds".to_owned());
    };
    Outcome::Measured(Figures {
        median: live.samples[live.samples.len() / 2],
        min,
        max,
        repeat: live.repeat,
        result: live.result,
    })
}

/// Every measured cell must have computed what the first one did (the
/// VM's, in column order): a fast column that computed something else
/// is a failure, not a figure.
fn check_results(cells: &mut [(&'static str, Outcome)]) {
    let reference = cells.iter().find_map(|(column, outcome)| match outcome {
        Outcome::Measured(f) => Some((*column, f.result)),
        _ => None,
    });
    let Some((reference_column, expected)) = reference else {
        return;
    };
    for (_, outcome) in cells.iter_mut() {
        if let Outcome::Measured(f) = outcome
            && f.result != expected
        {
            *outcome = Outcome::Failed(format!(
                "computed {:#x}, {reference_column} computed {expected:#x}",
                f.result
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::engine::{BenchError, Prepared};
    use crate::row::Cell;
    use crate::suite::Group;

    /// A cell that sleeps `per_run` per run and answers `result`, or fails
    /// on its `fail_on`-th call.
    struct Fake {
        per_run: Duration,
        result: u64,
        calls: u32,
        fail_on: Option<u32>,
    }

    impl Prepared for Fake {
        fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
            self.calls += 1;
            if self.fail_on == Some(self.calls) {
                return Err(BenchError::Failed("fake failure".to_owned()));
            }
            std::thread::sleep(self.per_run * repeat);
            Ok(Sample {
                per_run: self.per_run,
                result: self.result,
            })
        }
    }

    fn cell(column: &'static str, per_run_us: u64, result: u64, fail_on: Option<u32>) -> Cell {
        Cell {
            column,
            state: CellState::Ready(Box::new(Fake {
                per_run: Duration::from_micros(per_run_us),
                result,
                calls: 0,
                fail_on,
            })),
        }
    }

    fn row(checked: bool, cells: Vec<Cell>) -> Row {
        Row {
            name: "fake".to_owned(),
            group: Group::Compute,
            what: "sleeps".to_owned(),
            checked,
            cells,
            pin: Some(0),
        }
    }

    fn options() -> Options {
        Options {
            rounds: 3,
            batch: Duration::from_millis(2),
        }
    }

    #[test]
    fn cells_are_calibrated_to_the_batch_and_measured_every_round() {
        let rows = vec![row(
            true,
            vec![cell("vm", 100, 7, None), cell("kernel", 1000, 7, None)],
        )];
        let mut rounds = Vec::new();
        let results = measure(rows, &options(), &mut |p| {
            if let Progress::Round { n, .. } = p {
                rounds.push(n);
            }
        });
        assert_eq!(rounds, [0, 1, 2, 3]);
        let [(_, Outcome::Measured(vm)), (_, Outcome::Measured(kernel))] = &results[0].cells[..]
        else {
            panic!("{:?}", results[0].cells);
        };
        assert_eq!((vm.median, vm.result), (Duration::from_micros(100), 7));
        // 2 ms batches: the faster cell runs more times per batch.
        assert!(vm.repeat >= 10 && kernel.repeat >= 1 && vm.repeat > kernel.repeat);
        assert_eq!(
            results[0].median("kernel"),
            Some(Duration::from_micros(1000))
        );
    }

    #[test]
    fn a_cell_that_computes_something_else_fails() {
        let rows = vec![row(
            true,
            vec![cell("vm", 10, 7, None), cell("rbpf", 10, 8, None)],
        )];
        let results = measure(rows, &options(), &mut |_| {});
        assert!(matches!(results[0].cells[0].1, Outcome::Measured(_)));
        let Outcome::Failed(why) = &results[0].cells[1].1 else {
            panic!("{:?}", results[0].cells[1]);
        };
        assert_eq!(why, "computed 0x8, vm computed 0x7");
    }

    #[test]
    fn unchecked_rows_may_differ() {
        let rows = vec![row(
            false,
            vec![cell("vm", 10, 7, None), cell("kernel", 10, 8, None)],
        )];
        let results = measure(rows, &options(), &mut |_| {});
        assert!(
            results[0]
                .cells
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Measured(_)))
        );
    }

    #[test]
    fn failures_and_unsupported_cells_keep_their_reasons() {
        let rows = vec![row(
            true,
            vec![
                cell("vm", 10, 7, Some(4)),
                Cell {
                    column: "kernel",
                    state: CellState::Unsupported("needs root".to_owned()),
                },
                Cell {
                    column: "rbpf",
                    state: CellState::Failed("broken".to_owned()),
                },
            ],
        )];
        let results = measure(rows, &options(), &mut |_| {});
        let outcomes: Vec<&Outcome> = results[0].cells.iter().map(|(_, o)| o).collect();
        assert_eq!(
            outcomes,
            [
                &Outcome::Failed("fake failure".to_owned()),
                &Outcome::Unsupported("needs root".to_owned()),
                &Outcome::Failed("broken".to_owned()),
            ]
        );
    }
}
