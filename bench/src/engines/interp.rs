//! The `interp` column: bpfvisor's reference interpreter
//! ([`guest_jit::interp`]) over the linked program, with the object's
//! global data in host buffers at addresses of the interpreter's own
//! address space. It has no maps, helpers or arena: rows that need them
//! are unsupported.

use super::{check_returned, failed};
use crate::engine::{BenchError, Engine, Prepared, Sample, Unsupported};
use crate::object::WorkloadObject;
use crate::suite::Workload;
use guest_jit::elf::{DataKind, Placed};
use guest_jit::insn::Program;
use guest_jit::interp::{self, Memory, NoHelpers, Region, RegionKind, RunOptions, mem::CTX_START};
use std::time::Instant;

/// Where the first data section goes in the interpreter's address space
/// (above its context and stacks, see [`guest_jit::interp::mem`]).
const DATA_START: u64 = 0x4000_0000;
/// Data sections are placed on page boundaries with a page between them,
/// so an access that runs off one does not land in the next.
const DATA_ALIGN: u64 = 0x1000;
/// Bytes of context: an XDP `struct xdp_md`, which the programs ignore.
const CTX_SIZE: usize = 24;

/// Runs workloads in the reference interpreter.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpEngine;

impl Engine for InterpEngine {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError> {
        let parsed = WorkloadObject::parse(workload)?;
        if let Some(need) = parsed.needs_runtime() {
            return Err(Unsupported(format!("{need}: the interpreter has no BPF runtime")).into());
        }
        let mut addresses = Vec::new();
        let mut next = DATA_START;
        for section in parsed.object.data_sections() {
            addresses.push(next);
            let len = (section.bytes.len() as u64).next_multiple_of(DATA_ALIGN);
            next = next.saturating_add(len).saturating_add(DATA_ALIGN);
        }
        let linked = parsed
            .object
            .link(&parsed.program, &|what| match what {
                Placed::Data(i) => addresses.get(i).copied(),
                Placed::Map(_) => None,
            })
            .map_err(|e| failed(&format!("Failed to link {}", workload.name), &e))?;
        if let Some(call) = WorkloadObject::first_call(&linked) {
            return Err(Unsupported(format!("{call}: the interpreter has no helpers")).into());
        }
        let mut memory = Memory::with_context(vec![0; CTX_SIZE]);
        for (section, &start) in parsed.object.data_sections().iter().zip(&addresses) {
            let writable = section.kind != DataKind::ReadOnly;
            let region = Region::new(RegionKind::Other, start, section.bytes.clone(), writable);
            memory
                .map(region)
                .map_err(|e| failed(&format!("Failed to map {}", section.name), &e))?;
        }
        let result_start = addresses.get(parsed.result.data).copied().unwrap_or(0);
        Ok(Box::new(InterpPrepared {
            name: workload.name,
            program: linked.program,
            memory,
            parsed,
            result_start,
        }))
    }
}

/// A linked program and the memory it runs over.
#[derive(Debug)]
struct InterpPrepared {
    name: &'static str,
    program: Program,
    memory: Memory,
    parsed: WorkloadObject,
    /// Address of the data section holding `result`.
    result_start: u64,
}

impl Prepared for InterpPrepared {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let repeat = repeat.max(1);
        let args = [CTX_START, CTX_SIZE as u64, 0, 0, 0];
        let options = RunOptions {
            step_limit: u64::MAX,
            ..RunOptions::default()
        };
        let start = Instant::now();
        for _ in 0..repeat {
            let exit = interp::run(
                &self.program,
                &mut self.memory,
                &mut NoHelpers,
                args,
                &options,
            )
            .map_err(|e| failed(&format!("{} stopped", self.name), &e))?;
            check_returned(self.name, exit.return_value)?;
        }
        let elapsed = start.elapsed();
        let section = self
            .memory
            .regions()
            .iter()
            .find(|r| r.start() == self.result_start)
            .ok_or_else(|| BenchError::Failed("The result's data section is gone".into()))?;
        Ok(Sample {
            per_run: elapsed / repeat,
            result: self.parsed.read_result(section.bytes())?,
        })
    }
}
