//! A row of the table as the runner sees it: a name and one cell per
//! column, each ready to run or saying why it cannot.

use crate::engine::{BenchError, Engine, Prepared};
use crate::suite::{Group, Workload};

/// The table's columns, in order.
pub const COLUMNS: [&str; 5] = ["vm", "interp", "kernel", "rbpf", "native"];

/// The column every ratio is taken against.
pub const REFERENCE: &str = "kernel";

/// The host CPU every column of a program row runs on (Note [One CPU for
/// program rows]).
pub const PROGRAM_CPU: usize = 0;

// Note [One CPU for program rows]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// On a shared host one CPU of this machine can be much slower than the
// other for a while (a busy hyperthread sibling, another tenant). A VM
// cell whose vCPU thread ran on one CPU and a kernel cell whose
// BPF_PROG_TEST_RUN ran on the other then gave ratios anywhere from 0.6
// to 1.3 for the same code, run after run. So every column of a program
// row runs on PROGRAM_CPU: the runner pins its own thread there while it
// runs the row (the kernel, interpreter, rbpf and native columns run on
// it) and the VM engine pins its vCPU there (`SandboxConfig::
// vcpu_affinity`). System rows choose their own CPUs.

/// One row to measure.
#[derive(Debug)]
pub struct Row {
    /// Row name (`hash`, `ringbuf 1 producer`, ...).
    pub name: String,
    /// Its group.
    pub group: Group,
    /// What one run does (the unit of the row's times).
    pub what: String,
    /// Whether the cells must agree on their checksum: true for program
    /// rows, whose checksum is the program's `result`.
    pub checked: bool,
    /// One cell per column that has something to say.
    pub cells: Vec<Cell>,
    /// The host CPU the runner's thread runs the cells on, if pinned.
    pub pin: Option<usize>,
}

/// One column's way of running a row.
#[derive(Debug)]
pub struct Cell {
    /// Column name, one of [`COLUMNS`].
    pub column: &'static str,
    /// Ready, or why not.
    pub state: CellState,
}

/// A cell before measuring.
pub enum CellState {
    /// Prepared: run it.
    Ready(Box<dyn Prepared>),
    /// The engine cannot run this row (a `-` with a footnote).
    Unsupported(String),
    /// Preparing failed where it should not have.
    Failed(String),
}

impl CellState {
    /// The cell for what `prepare` returned.
    pub fn from_prepared(prepared: Result<Box<dyn Prepared>, BenchError>) -> CellState {
        match prepared {
            Ok(prepared) => CellState::Ready(prepared),
            Err(BenchError::Unsupported(why)) => CellState::Unsupported(why.0),
            Err(BenchError::Failed(why)) => CellState::Failed(why),
        }
    }
}

impl std::fmt::Debug for CellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellState::Ready(_) => write!(f, "ready"),
            CellState::Unsupported(why) => write!(f, "unsupported: {why}"),
            CellState::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The row of a program workload: each engine prepares it.
pub fn program_row(workload: &Workload, engines: &[Box<dyn Engine>]) -> Row {
    let cells = engines
        .iter()
        .map(|engine| Cell {
            column: engine.name(),
            state: CellState::from_prepared(engine.prepare(workload)),
        })
        .collect();
    Row {
        name: workload.name.to_owned(),
        group: workload.group,
        what: workload.what.to_owned(),
        checked: true,
        cells,
        pin: Some(PROGRAM_CPU),
    }
}
