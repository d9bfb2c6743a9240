//! The results of a run: the table printed on a terminal, the JSON kept
//! beside it and the chart drawn from it.

use crate::machine::Machine;
use crate::row::{COLUMNS, REFERENCE};
use crate::runner::{Options, Outcome, RowResult};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// A finished run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Where and when it ran.
    pub machine: Machine,
    /// How it measured.
    pub options: Options,
    /// The rows, in table order.
    pub rows: Vec<RowResult>,
}

/// `a / b`, when both exist.
pub fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    let (a, b) = (a?.as_secs_f64(), b?.as_secs_f64());
    (b > 0.0).then(|| a / b)
}

/// A duration in the unit that suits it, three significant digits or so.
pub fn human(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let digits = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.digits$}{unit}")
}

impl Report {
    /// The columns some row has a cell in, in table order.
    fn columns(&self) -> Vec<&'static str> {
        COLUMNS
            .iter()
            .copied()
            .filter(|c| {
                self.rows
                    .iter()
                    .any(|r| r.cells.iter().any(|(x, _)| x == c))
            })
            .collect()
    }

    /// Whether any cell failed (an engine error or a wrong checksum).
    pub fn has_failures(&self) -> bool {
        self.rows
            .iter()
            .flat_map(|r| &r.cells)
            .any(|(_, o)| matches!(o, Outcome::Failed(_)))
    }

    /// The table: time per run of each cell and its ratio to the kernel's,
    /// footnotes for cells without a figure, and what each row's run is.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bpfvisor bench, {}: {} ({} CPUs{}), kernel {}, load {}",
            m.date,
            m.cpu,
            m.cpus,
            if m.hypervisor {
                ", under a hypervisor"
            } else {
                ""
            },
            m.kernel,
            m.load
        );
        let _ = writeln!(
            out,
            "time per run, median of {} rounds of ~{} batches; (x) = time / kernel's time, lower is better\n",
            self.options.rounds,
            human(self.options.batch)
        );
        let columns = self.columns();
        let name_width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        let _ = write!(out, "{:<11}{:<name_width$}", "group", "row");
        for c in &columns {
            let _ = write!(out, "{c:>18}");
        }
        out.push('\n');
        let mut notes: Vec<String> = Vec::new();
        let mut note = |text: String| -> usize {
            match notes.iter().position(|n| *n == text) {
                Some(i) => i + 1,
                None => {
                    notes.push(text);
                    notes.len()
                }
            }
        };
        for row in &self.rows {
            let _ = write!(out, "{:<11}{:<name_width$}", row.group, row.name);
            let reference = row.median(REFERENCE);
            for column in &columns {
                let text = match row.cells.iter().find(|(c, _)| c == column) {
                    None => String::new(),
                    Some((_, Outcome::Measured(f))) => match ratio(Some(f.median), reference) {
                        Some(r) if *column != REFERENCE => format!("{} ({r:.2}x)", human(f.median)),
                        _ => human(f.median),
                    },
                    Some((_, Outcome::Unsupported(why))) => {
                        format!("-[{}]", note(format!("{column}: {why}")))
                    }
                    Some((_, Outcome::Failed(why))) => {
                        format!(
                            "FAILED[{}]",
                            note(format!("{column} FAILED on {}: {why}", row.name))
                        )
                    }
                };
                let _ = write!(out, "{text:>18}");
            }
            out.push('\n');
        }
        if !notes.is_empty() {
            out.push('\n');
            for (i, n) in notes.iter().enumerate() {
                let _ = writeln!(out, "[{}] {n}", i + 1);
            }
        }
        out.push_str("\none run is:\n");
        for row in &self.rows {
            let _ = writeln!(out, "  {:<name_width$}{}", row.name, row.what);
        }
        out
    }

    /// Everything, as JSON: the machine, the options and every cell.
    pub fn json(&self) -> Value {
        let m = &self.machine;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let reference = row.median(REFERENCE);
                let cells: serde_json::Map<String, Value> = row
                    .cells
                    .iter()
                    .map(|(column, outcome)| {
                        let cell = match outcome {
                            Outcome::Measured(f) => json!({
                                "median_ns": f.median.as_nanos() as u64,
                                "min_ns": f.min.as_nanos() as u64,
                                "max_ns": f.max.as_nanos() as u64,
                                "repeat": f.repeat,
                                "result": f.result,
                                "ratio_to_kernel": ratio(Some(f.median), reference),
                            }),
                            Outcome::Unsupported(why) => json!({ "unsupported": why }),
                            Outcome::Failed(why) => json!({ "failed": why }),
                        };
                        ((*column).to_owned(), cell)
                    })
                    .collect();
                json!({
                    "name": row.name,
                    "group": row.group,
                    "what": row.what,
                    "cells": cells,
                })
            })
            .collect();
        json!({
            "machine": {
                "cpu": m.cpu,
                "cpus": m.cpus,
                "kernel": m.kernel,
                "hypervisor": m.hypervisor,
                "load": m.load,
                "date": m.date,
            },
            "options": {
                "rounds": self.options.rounds,
                "batch_ms": self.options.batch.as_secs_f64() * 1e3,
            },
            "rows": rows,
        })
    }

    /// A bar chart: for each row, each column's time relative to the
    /// kernel's (the VM's where the kernel has no figure), on a log scale.
    pub fn svg(&self) -> String {
        crate::chart::draw(self, &self.columns())
    }
}
