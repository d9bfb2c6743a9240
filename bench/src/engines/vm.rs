//! The `vm` column: bpfvisor itself. The object is loaded into a
//! [`Sandbox`] (verified, JIT-compiled, maps and data placed) and a batch
//! is one call that runs the program `repeat` times inside the guest,
//! timed there with the TSC: one VM exit per batch, not per run.

use super::{check_returned, failed};
use crate::engine::{BenchError, Engine, Prepared, Sample};
use crate::object::WorkloadObject;
use crate::suite::Workload;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramId, ProgramInput, Sandbox, SandboxConfig};

/// Longest a batch may take before the call is stopped.
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs workloads in a bpfvisor sandbox, one vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmEngine;

impl Engine for VmEngine {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError> {
        kvm_usable()?;
        let parsed = WorkloadObject::parse(workload)?;
        // Note [One CPU for program rows].
        let mut sandbox = Sandbox::new(SandboxConfig {
            vcpu_affinity: Some(vmm::CpuSet::of([crate::row::PROGRAM_CPU])),
            ..SandboxConfig::default()
        })
        .map_err(|e| failed("Failed to make a sandbox", &e))?;
        let id = sandbox
            .load_object_program(&parsed.object, Some(workload.program), HelperSet::Standard)
            .map_err(|e| failed(&format!("Failed to load {}", workload.name), &e))?;
        Ok(Box::new(VmPrepared {
            name: workload.name,
            parsed,
            sandbox,
            id,
        }))
    }
}

/// A workload loaded into its own sandbox.
#[derive(Debug)]
struct VmPrepared {
    name: &'static str,
    parsed: WorkloadObject,
    sandbox: Sandbox,
    id: ProgramId,
}

impl VmPrepared {
    /// `result`, read through the internal map of its data section.
    fn read_result(&self) -> Result<u64, BenchError> {
        let section = self
            .parsed
            .result_section()
            .map(|s| s.map_name())
            .unwrap_or_default();
        let map = self.sandbox.find_map(section).ok_or_else(|| {
            BenchError::Failed(format!("The sandbox has no map for section {section}"))
        })?;
        let value = map
            .lookup(&0u32.to_le_bytes())
            .map_err(|e| failed(&format!("Failed to read map {section}"), &e))?
            .ok_or_else(|| BenchError::Failed(format!("Map {section} has no value")))?;
        self.parsed.read_result(&value)
    }
}

impl Prepared for VmPrepared {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let repeat = repeat.max(1);
        let input = ProgramInput {
            data: &[],
            repeat: u64::from(repeat),
            timeout: Some(BATCH_TIMEOUT),
        };
        let run = self
            .sandbox
            .run_program(self.id, 0, &input)
            .map_err(|e| failed(&format!("Failed to run {}", self.name), &e))?;
        let report = run.report;
        match report.outcome {
            Outcome::Returned(value) => check_returned(self.name, value)?,
            outcome => {
                return Err(BenchError::Failed(format!(
                    "{} did not return: {outcome:?}",
                    self.name
                )));
            }
        }
        if report.runs != u64::from(repeat) {
            return Err(BenchError::Failed(format!(
                "{} ran {} times of {repeat}",
                self.name, report.runs
            )));
        }
        Ok(Sample {
            per_run: report.duration / repeat,
            result: self.read_result()?,
        })
    }
}

/// Whether this machine can run sandboxes; without KVM the VM column is
/// a `-` with the reason, not a failure.
pub(crate) fn kvm_usable() -> Result<(), BenchError> {
    match vmm::kvm::kvm() {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::Unsupported(format!("/dev/kvm is not usable: {e}")).into()),
    }
}
