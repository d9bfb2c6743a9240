//! The `vm` column: bpfvisor itself. The object is loaded into a
//! [`Sandbox`] (verified, JIT-compiled, maps and data placed) and a batch
//! is one call that runs the program `repeat` times inside the guest,
//! timed there with the TSC: one VM exit per batch, not per run.

use super::{check_returned, failed};
use crate::engine::{BenchError, Engine, Prepared, Sample};
use crate::object::{RESULT_VARIABLE, WorkloadObject};
use crate::suite::Workload;
use guest_jit::elf::Object;
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
            result: global_u64(&self.sandbox, &self.parsed.object, RESULT_VARIABLE)
                .map_err(BenchError::Failed)?,
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

/// The global `__u64` variable `name` of `object` as loaded in `sandbox`,
/// read through its data section's internal map.
pub(crate) fn global_u64(sandbox: &Sandbox, object: &Object, name: &str) -> Result<u64, String> {
    let var = object
        .variables()
        .iter()
        .find(|v| v.name == name && v.size == 8)
        .ok_or_else(|| format!("no global __u64 `{name}`"))?;
    let map = sandbox
        .find_map(&var.section)
        .ok_or_else(|| format!("no map for section {}", var.section))?;
    let value = map
        .lookup(&0u32.to_le_bytes())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no value", var.section))?;
    usize::try_from(var.offset)
        .ok()
        .and_then(|at| value.get(at..at.checked_add(8)?))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("`{name}` lies outside {}", var.section))
}
