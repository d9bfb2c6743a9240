//! The `rbpf` column: the `rbpf` crate's x86-64 JIT, run on the host.
//!
//! The program is linked with each global data section placed at the
//! host address of a buffer of ours, so its `ld_imm64`s load pointers
//! rbpf's code can use as they are. rbpf has no maps, helpers of the
//! kernel's or arena: rows that need them are unsupported, as is any
//! instruction its verifier or JIT refuses.
//!
//! rbpf's JIT checks no memory access. Before compiling, the program runs
//! once in rbpf's interpreter, which checks every access against its
//! stack and the data buffers: the benchmark programs take no input, so
//! the JIT-compiled runs make the same accesses.

use super::{check_returned, failed};
use crate::engine::{BenchError, Engine, Prepared, Sample, Unsupported};
use crate::object::WorkloadObject;
use crate::suite::Workload;
use guest_jit::elf::Placed;
use guest_jit::insn::Insn;
use std::cell::Cell;
use std::time::Instant;

/// Bytes after each data buffer that no access may start in but an
/// access of up to 8 bytes may reach (rbpf's interpreter checks where an
/// access starts only).
const BUFFER_PADDING: usize = 8;

/// Runs workloads with rbpf's JIT.
#[derive(Clone, Copy, Debug, Default)]
pub struct RbpfEngine;

/// rbpf's virtual machine over program bytes it borrows.
type RbpfVm<'a> = rbpf::EbpfVmNoData<'a>;

self_cell::self_cell!(
    /// The program's bytes and the rbpf VM that compiled them.
    struct CompiledProgram {
        owner: Vec<u8>,
        #[covariant]
        dependent: RbpfVm,
    }
);

/// A global data section in host memory. Cells, because the JIT-compiled
/// program writes to it behind Rust's back.
struct DataBuffer {
    words: Box<[Cell<u64>]>,
    /// The section's length, without padding.
    len: usize,
}

impl DataBuffer {
    fn new(bytes: &[u8]) -> DataBuffer {
        let words = (bytes.len() + BUFFER_PADDING).div_ceil(8);
        let words: Box<[Cell<u64>]> = (0..words)
            .map(|w| {
                let mut word = [0u8; 8];
                let chunk = bytes.get(w * 8..).unwrap_or_default();
                let n = chunk.len().min(8);
                word[..n].copy_from_slice(&chunk[..n]);
                Cell::new(u64::from_le_bytes(word))
            })
            .collect();
        DataBuffer {
            words,
            len: bytes.len(),
        }
    }

    fn address(&self) -> u64 {
        self.words.as_ptr() as u64
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self
            .words
            .iter()
            .flat_map(|w| w.get().to_le_bytes())
            .collect();
        bytes.truncate(self.len);
        bytes
    }
}

impl Engine for RbpfEngine {
    fn name(&self) -> &'static str {
        "rbpf"
    }

    fn prepare(&self, workload: &Workload) -> Result<Box<dyn Prepared>, BenchError> {
        let parsed = WorkloadObject::parse(workload)?;
        if let Some(need) = parsed.needs_runtime() {
            return Err(Unsupported(format!("{need}: rbpf has no BPF runtime")).into());
        }
        let buffers: Vec<DataBuffer> = parsed
            .object
            .data_sections()
            .iter()
            .map(|s| DataBuffer::new(&s.bytes))
            .collect();
        let linked = parsed
            .object
            .link(&parsed.program, &|what| match what {
                Placed::Data(i) => buffers.get(i).map(DataBuffer::address),
                Placed::Map(_) => None,
            })
            .map_err(|e| failed(&format!("Failed to link {}", workload.name), &e))?;
        if let Some(call) = WorkloadObject::first_call(&linked) {
            return Err(Unsupported(format!("{call}: rbpf has none of the kernel's")).into());
        }
        let bytes = Insn::slice_to_bytes(linked.program.insns());
        let mut program = CompiledProgram::try_new(bytes, |bytes| compile(bytes, &buffers))?;
        // Its first run, in the interpreter, left the data as a run does.
        let probe = program.borrow_dependent().execute_program().map_err(|e| {
            failed(
                &format!("{} failed in rbpf's interpreter", workload.name),
                &e,
            )
        })?;
        check_returned(workload.name, probe)?;
        program
            .with_dependent_mut(|_, vm| vm.jit_compile())
            .map_err(|e| Unsupported(format!("rbpf's JIT refuses it: {e}")))?;
        Ok(Box::new(RbpfPrepared {
            name: workload.name,
            program,
            buffers,
            parsed,
        }))
    }
}

/// Checks `bytes` with rbpf's verifier and lets its interpreter reach the
/// data buffers.
fn compile<'a>(bytes: &'a [u8], buffers: &[DataBuffer]) -> Result<RbpfVm<'a>, BenchError> {
    let mut vm = RbpfVm::new(Some(bytes))
        .map_err(|e| Unsupported(format!("rbpf's verifier refuses it: {e}")))?;
    for buffer in buffers {
        let start = buffer.address();
        vm.register_allowed_memory(start..start + buffer.len as u64);
    }
    Ok(vm)
}

/// A compiled program and the data it works on.
struct RbpfPrepared {
    name: &'static str,
    program: CompiledProgram,
    /// Kept alive (and read) here: the compiled code holds their
    /// addresses.
    buffers: Vec<DataBuffer>,
    parsed: WorkloadObject,
}

impl Prepared for RbpfPrepared {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let repeat = repeat.max(1);
        let vm = self.program.borrow_dependent();
        let mut last = 0;
        let start = Instant::now();
        for _ in 0..repeat {
            // SAFETY: the program touches only its stack and the data
            // buffers, which `self` owns and keeps alive: its ld_imm64s
            // were linked to their addresses, and the same input-free run
            // in rbpf's interpreter (in `prepare`) checked every access
            // against them. Cells let it write them while `self` holds
            // shared references.
            last = unsafe { vm.execute_program_jit() }
                .map_err(|e| failed(&format!("{} failed in rbpf", self.name), &e))?;
        }
        let elapsed = start.elapsed();
        check_returned(self.name, last)?;
        let section = self
            .buffers
            .get(self.parsed.result.data)
            .map(DataBuffer::bytes)
            .unwrap_or_default();
        Ok(Sample {
            per_run: elapsed / repeat,
            result: self.parsed.read_result(&section)?,
        })
    }
}
