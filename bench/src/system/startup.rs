//! Making a sandbox ready to run an object: fresh (a new VM, the object
//! loaded: maps created, programs verified and compiled) and cloned from
//! a snapshot of one that is.

use super::{failed, timed};
use crate::engine::{BenchError, Prepared, Sample};
use crate::row::{Cell, CellState, Row};
use crate::suite::Group;
use guest_jit::elf::Object;
use vmm::{HelperSet, Sandbox, SandboxConfig, Snapshot};

/// The object every start row loads: one both engines can load (the
/// kernel's verifier refuses most of the samples'), with a HASH map,
/// read-only inputs, a result global and an XDP program.
pub(crate) const OBJECT: &[u8] = include_bytes!("../../../images/progs/bench/hash_map.bpf.o");
pub(crate) const OBJECT_NAME: &str = "bench/hash_map.bpf.o";

pub(super) fn rows() -> Vec<Row> {
    let row = |name: &str, what: String, cells: Vec<Cell>| Row {
        name: name.to_owned(),
        group: Group::Startup,
        what,
        checked: false,
        pin: None,
        cells,
    };
    let vm = |state| Cell {
        column: "vm",
        state,
    };
    vec![
        row(
            "start, fresh",
            format!(
                "a sandbox ready to run {OBJECT_NAME}: a new VM with one vCPU, the object loaded \
                 (kernel: its maps created and programs loaded with bpf())"
            ),
            vec![
                vm(CellState::from_prepared(Fresh::prepare())),
                Cell {
                    column: "kernel",
                    state: CellState::from_prepared(super::kernel::Load::prepare()),
                },
            ],
        ),
        row(
            "start, clone",
            format!("a sandbox ready to run {OBJECT_NAME}, cloned from a snapshot of one"),
            vec![
                vm(CellState::from_prepared(Clone::prepare())),
                Cell {
                    column: "kernel",
                    state: CellState::Unsupported(
                        "the kernel has no snapshots of loaded programs".to_owned(),
                    ),
                },
            ],
        ),
    ]
}

/// The config `bpfvisor run` would use: sized for the object, as a
/// smaller guest memory is a cheaper memslot.
fn config(object: &Object) -> SandboxConfig {
    SandboxConfig {
        maps_size: vmm::maps::maps_size_needed(object, 1).max(0x1000),
        ..SandboxConfig::default()
    }
}

fn fresh(object: &Object) -> Result<Sandbox, BenchError> {
    let mut sandbox = Sandbox::new(config(object)).map_err(|e| failed(&e))?;
    sandbox
        .load_object(object, HelperSet::Standard)
        .map_err(|e| failed(&e))?;
    Ok(sandbox)
}

struct Fresh {
    object: Object,
}

impl Fresh {
    fn prepare() -> Result<Box<dyn Prepared>, BenchError> {
        crate::engines::vm::kvm_usable()?;
        let object = Object::parse(OBJECT).map_err(|e| failed(&e))?;
        fresh(&object)?;
        Ok(Box::new(Fresh { object }))
    }
}

impl Prepared for Fresh {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        timed(repeat, || fresh(&self.object).map(|_| 0))
    }
}

struct Clone {
    snapshot: Snapshot,
}

impl Clone {
    fn prepare() -> Result<Box<dyn Prepared>, BenchError> {
        crate::engines::vm::kvm_usable()?;
        let object = Object::parse(OBJECT).map_err(|e| failed(&e))?;
        let snapshot = fresh(&object)?.snapshot().map_err(|e| failed(&e))?;
        Ok(Box::new(Clone { snapshot }))
    }
}

impl Prepared for Clone {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        timed(repeat, || {
            self.snapshot.sandbox().map(|_| 0).map_err(|e| failed(&e))
        })
    }
}
