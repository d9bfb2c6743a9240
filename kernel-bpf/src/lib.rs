//! The host kernel as a BPF engine: loads a clang-built object, parsed by
//! bpfvisor's own loader ([`guest_jit::elf::Object`]), into the running
//! kernel with raw `bpf()` calls (no libbpf), and runs its programs with
//! `BPF_PROG_TEST_RUN` — the reference bpfvisor's VM is measured against.
//!
//! * [`KernelObject::load`] creates the maps (and one `ARRAY` per global
//!   data section, as libbpf), links each program with our linker and
//!   rewrites what it placed into map fds, resolves kfuncs in the kernel's
//!   BTF, and loads the programs (the verifier's reason when it refuses).
//! * [`KernelProgram::test_run`] runs a program; [`KernelMap`] reads and
//!   writes a map; [`KernelObject::read_global`] reads a global variable;
//!   [`KernelObject::ring_buffer`] consumes a ring buffer with the same
//!   consumer that reads the VM's.
//!
//! Everything holding a kernel object (map, program, arena mapping) gives
//! it back when dropped. bpf() needs root (`CAP_BPF` and `CAP_PERFMON`);
//! without it every entry point fails with [`KernelError::Permission`].

mod arena;
mod btf;
mod error;
mod kfunc;
mod map;
mod object;
mod program;
mod sys;

pub use arena::ArenaMapping;
pub use error::KernelError;
pub use map::{KernelMap, UPDATE_ANY, possible_cpus};
pub use object::{KernelObject, LoadOptions};
pub use program::{KernelProgram, ProgramType, TestRunOutput};

/// Whether this process may use bpf(): creates (and closes) a one-entry
/// `ARRAY` map. `Err` says why not ([`KernelError::is_unavailable`]).
pub fn probe() -> Result<(), KernelError> {
    let spec = guest_jit::elf::MapSpec::new("probe", guest_jit::elf::MapType::Array, 4, 4, 1);
    KernelMap::create(&spec, None).map(drop)
}
