//! A workload's object, parsed once per engine, and where its checksum
//! lives: the global `__u64 result`, found by name through BTF like any
//! other variable.

use crate::engine::BenchError;
use crate::suite::Workload;
use guest_jit::elf::{DataKind, LinkedProgram, Object, ProgramSpec, Variable};
use guest_jit::insn::Op;

/// The name of the checksum variable every benchmark program writes.
pub const RESULT_VARIABLE: &str = "result";

/// A workload's object with its program and checksum located.
#[derive(Clone, Debug)]
pub struct WorkloadObject {
    /// The parsed object.
    pub object: Object,
    /// The program to run.
    pub program: ProgramSpec,
    /// The `result` variable.
    pub result: Variable,
}

impl WorkloadObject {
    /// Parses `workload`'s object and finds its program and `result`.
    pub fn parse(workload: &Workload) -> Result<WorkloadObject, BenchError> {
        let failed = |what: String| BenchError::Failed(format!("{}: {what}", workload.name));
        let object = Object::parse(workload.object)
            .map_err(|e| failed(format!("Failed to parse the object: {e}")))?;
        let program = object
            .find_program(Some(workload.program))
            .map_err(|e| failed(e.to_string()))?
            .clone();
        let result = object
            .variables()
            .iter()
            .find(|v| v.name == RESULT_VARIABLE)
            .cloned()
            .ok_or_else(|| failed(format!("The object has no global `{RESULT_VARIABLE}`")))?;
        if result.size != 8 {
            return Err(failed(format!(
                "`{RESULT_VARIABLE}` is {} bytes, not a __u64",
                result.size
            )));
        }
        Ok(WorkloadObject {
            object,
            program,
            result,
        })
    }

    /// What the program needs beyond instructions and plain global data,
    /// which engines without a BPF runtime (the interpreter, rbpf) lack:
    /// maps, per-CPU data or an arena. `None` when it needs none of them.
    pub fn needs_runtime(&self) -> Option<String> {
        let maps: Vec<&str> = self.object.maps().iter().map(|m| m.name.as_str()).collect();
        if !maps.is_empty() {
            return Some(format!("uses maps ({})", maps.join(", ")));
        }
        let section = |kind| {
            self.object
                .data_sections()
                .iter()
                .find(|s| s.kind == kind)
                .map(|s| s.name.clone())
        };
        if let Some(name) = section(DataKind::PerCpu) {
            return Some(format!("uses per-CPU data ({name})"));
        }
        if let Some(name) = section(DataKind::Arena) {
            return Some(format!("uses arena globals ({name})"));
        }
        None
    }

    /// The first helper or kernel function `linked` calls, described.
    pub fn first_call(linked: &LinkedProgram) -> Option<String> {
        linked.program.iter().find_map(|(pc, op)| match *op {
            Op::CallHelper { id } => Some(format!("calls helper {id} at instruction {pc}")),
            Op::CallKfunc { .. } | Op::Callx { .. } => {
                Some(format!("calls a kernel function at instruction {pc}"))
            }
            _ => None,
        })
    }

    /// Reads `result` out of the bytes of its data section as a run left
    /// them.
    pub fn read_result(&self, section: &[u8]) -> Result<u64, BenchError> {
        let at = usize::try_from(self.result.offset).unwrap_or(usize::MAX);
        let bytes = at
            .checked_add(8)
            .and_then(|end| section.get(at..end))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| {
                BenchError::Failed(format!(
                    "`{RESULT_VARIABLE}` at offset {at} lies outside its section of {} bytes",
                    section.len()
                ))
            })?;
        Ok(u64::from_le_bytes(bytes))
    }
}
