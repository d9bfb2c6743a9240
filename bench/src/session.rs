//! One whole run of the suite, as `bpfvisor bench` and `cargo bench` do
//! it: every row, measured, reported and saved.

use crate::engine::Engine;
use crate::machine::Machine;
use crate::report::Report;
use crate::row::{Row, program_row};
use crate::runner::{self, Options, Progress};
use std::path::{Path, PathBuf};

/// Which rows and columns to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only rows whose name or group contains one of these (all when
    /// empty).
    pub rows: Vec<String>,
    /// Only these columns (all when empty).
    pub columns: Vec<String>,
}

impl Selection {
    fn wants_row(&self, name: &str, group: &str) -> bool {
        self.rows.is_empty()
            || self
                .rows
                .iter()
                .any(|f| name.contains(f.as_str()) || group == f)
    }

    fn wants_column(&self, column: &str) -> bool {
        self.columns.is_empty() || self.columns.iter().any(|c| c == column)
    }
}

/// Every engine, in column order.
pub fn engines() -> Vec<Box<dyn Engine>> {
    use crate::engines::{
        interp::InterpEngine, kernel::KernelEngine, native::NativeEngine, rbpf::RbpfEngine,
        vm::VmEngine,
    };
    vec![
        Box::new(VmEngine),
        Box::new(InterpEngine),
        Box::new(KernelEngine),
        Box::new(RbpfEngine),
        Box::new(NativeEngine),
    ]
}

/// The selected rows, prepared.
pub fn rows(selection: &Selection) -> Vec<Row> {
    let engines: Vec<Box<dyn Engine>> = engines()
        .into_iter()
        .filter(|e| selection.wants_column(e.name()))
        .collect();
    let mut rows: Vec<Row> = crate::workloads()
        .iter()
        .filter(|w| selection.wants_row(w.name, w.group.name()))
        .map(|w| program_row(w, &engines))
        .collect();
    rows.extend(
        crate::system::rows()
            .into_iter()
            .filter(|r| selection.wants_row(&r.name, r.group.name())),
    );
    for row in &mut rows {
        row.cells.retain(|c| selection.wants_column(c.column));
    }
    rows
}

/// Measures the selected rows.
pub fn run(
    selection: &Selection,
    options: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Report {
    let machine = Machine::read();
    let rows = rows(selection);
    Report {
        machine,
        options: options.clone(),
        rows: runner::measure(rows, options, progress),
    }
}

/// Writes `report` as `bench.json` and `bench.svg` in `dir` (made if
/// missing); returns their paths.
pub fn save(report: &Report, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("bench.json");
    let svg = dir.join("bench.svg");
    let text = serde_json::to_string_pretty(&report.json()).map_err(std::io::Error::other)?;
    std::fs::write(&json, text + "\n")?;
    std::fs::write(&svg, report.svg())?;
    Ok((json, svg))
}
