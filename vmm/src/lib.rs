//! The KVM side of bpfvisor: VM, guest memory, page tables, vCPU threads,
//! exits, deadlines, and the public [`Sandbox`] API.
//!
//! # Embedding bpfvisor
//!
//! A [`Sandbox`] is one KVM micro-VM: vCPUs booted straight into 64-bit
//! mode with no guest OS, running JIT-compiled BPF programs. A program can
//! loop, fault or scribble over the memory it shares with the host; the
//! host reports it and carries on. The host never trusts what a program
//! wrote: lengths and pointers read from guest memory are checked, and a
//! hostile value is an error, not a panic.
//!
//! ```no_run
//! use guest_jit::elf::Object;
//! use std::time::Duration;
//! use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A clang-built BPF object (`clang -target bpf -g -O2 -c hello.bpf.c`).
//! let object = Object::parse(&std::fs::read("hello.bpf.o")?)?;
//! let mut sandbox = Sandbox::new(SandboxConfig::default())?;
//! sandbox.load_object(&object, HelperSet::Standard)?;
//!
//! let hello = sandbox.find_program("hello").ok_or("no program `hello`")?;
//! let input = ProgramInput {
//!     data: b"request bytes", // copied into the context: r1, length in r2
//!     repeat: 1,
//!     timeout: Some(Duration::from_millis(100)),
//! };
//! let run = sandbox.run_program(hello, 0, &input)?;
//! match run.report.outcome {
//!     Outcome::Returned(r0) => println!("returned {r0}, context now {:?}", run.data_out),
//!     Outcome::Trapped(trap) => println!("trapped: {trap} at {:?}", run.trap_site),
//!     Outcome::DeadlineExceeded(_) => sandbox.reset()?, // poisoned until reset
//! }
//! for line in &run.trace {
//!     println!("bpf_printk: {line}");
//! }
//! # fn send_sync<T: Send + Sync>() {}
//! # send_sync::<Sandbox>();
//! # send_sync::<vmm::RingBufConsumer>();
//! # send_sync::<vmm::SandboxPool>();
//! # Ok(())
//! # }
//! ```
//!
//! The pieces, and the example in `vmm/examples/` that shows each end to
//! end (run one with `cargo run -p vmm --example run_program`):
//!
//! * **Build and load** (`run_program.rs`): [`Sandbox::new`] with a
//!   [`SandboxConfig`] (vCPUs, region sizes, [`Limits`]);
//!   [`guest_jit::elf::Object::parse`] for the object bytes, whose `const
//!   volatile` globals can be set first
//!   ([`Object::set_variable`](guest_jit::elf::Object::set_variable));
//!   [`Sandbox::load_object`] creates its maps and verifies, compiles and
//!   places every program ([`LoadError`] says why not, with the C source
//!   line). Several objects may share a sandbox.
//! * **Run** (`run_program.rs`): [`Sandbox::find_program`] and
//!   [`Sandbox::run_program`] with a [`ProgramInput`]; the [`ProgramRun`]
//!   holds the [`RunReport`] (the [`Outcome`], runs, guest cycles, VM
//!   exits, arena pages, ring buffer drops), the context buffer after the
//!   run, the trace lines and, for a trap, its [`TrapSite`].
//!   [`Sandbox::run_program_on`] runs on several vCPUs at once. A trap
//!   leaves the sandbox usable; a run stopped at its deadline poisons it
//!   until [`Sandbox::reset`].
//! * **Maps** (`snapshot_clone.rs`, `per_cpu.rs`): [`Sandbox::find_map`]
//!   gives a [`MapHandle`] to look up, update, delete and list elements as
//!   `bpf(2)` would. Global data sections (`.data`, `.bss`, `.rodata`) are
//!   array maps of one value, named after the section; a global's offset
//!   in it is in [`guest_jit::elf::Object::variables`].
//! * **Ring buffers** (`ring_buffer.rs`): [`Sandbox::ring_buffer`] gives the
//!   [`RingBufConsumer`] of a `RINGBUF` (`Send`: consume on another thread;
//!   records are read in place, see [`Record`]); a [`RingBufPoller`] polls
//!   several with a callback each; [`Sandbox::user_ring_buffer`] gives the
//!   [`UserRingBufProducer`] of a `USER_RINGBUF`.
//! * **Arena** (`arena.rs`): [`Sandbox::arena`] gives the
//!   [`arena::ArenaHandle`]: the arena is mapped at the same address in the
//!   host and the guest (a clone's host view is a fixed offset away), so
//!   pointers programs store in it can be followed with checked
//!   [`read`](arena::ArenaHandle::read)s or, under the rules of
//!   [`as_ptr`](arena::ArenaHandle::as_ptr), plain dereferences of
//!   [`host_ptr`](arena::ArenaHandle::host_ptr)s.
//! * **Per-CPU data** (`per_cpu.rs`): each vCPU has its own copy of every
//!   per-CPU map value and `.percpu` global; [`MapHandle::lookup_percpu`]
//!   and [`MapHandle::update_percpu`] read and write each CPU's copy.
//! * **Snapshots, clones, pools and limits** (`snapshot_clone.rs`):
//!   [`Sandbox::snapshot`] freezes a loaded and initialised sandbox;
//!   [`Snapshot::sandbox`] makes copy-on-write clones of it; a
//!   [`SandboxPool`] keeps warm clones and resets each one given back
//!   ([`Reuse`]). [`Limits`] bound run time, guest memory, arena pages and
//!   map sizes; clones keep their snapshot's.
//!
//! A [`Sandbox`] is `Send` and `Sync`: several threads may run programs in
//! one sandbox, each on its own vCPU (a call waits for a busy vCPU).
//! Without `/dev/kvm`, [`Sandbox::new`] fails with [`SandboxError::Kvm`];
//! [`kvm::is_available`] asks first.
//!
//! The other modules are the machinery behind these types (guest memory,
//! page tables, vCPU threads, exits); most users need only the types
//! re-exported here, [`guest_jit::elf::Object`] and, for their own record
//! types, [`shm::pod::Pod`].
#![warn(missing_docs)]

pub mod affinity;
pub mod arch;
pub mod arena;
pub mod clock;
pub mod conformance;
pub mod exit;
pub mod helpers;
pub mod kick;
pub mod kvm;
pub mod machine;
pub mod map_api;
pub mod maps;
pub mod memory;
pub mod poll;
pub mod pool;
pub mod program;
pub mod ringbuf;
pub mod runtime;
pub mod sandbox;
pub mod snapshot;
pub mod trap;
pub mod vcpu;
pub mod vcpu_threads;

pub use affinity::CpuSet;
pub use helpers::HelperSet;
pub use map_api::{Entry, MapHandle, Slot};
pub use maps::{MapId, MapInfo};
pub use memory::GuestMemory;
pub use pool::{PoolStats, PooledSandbox, Refiller, Reuse, SandboxPool};
pub use program::{
    LoadError, LoadedProgram, ProgramId, ProgramInput, ProgramRun, SourceLine, TrapSite,
};
pub use ringbuf::{
    Record, RingBufConsumer, RingBufError, RingBufPoller, UserRingBufProducer, UserSample,
};
pub use sandbox::{
    Call, Limits, Outcome, RunError, RunReport, Sandbox, SandboxConfig, SandboxError,
};
pub use snapshot::{Snapshot, SnapshotError};
pub use trap::{PageFaultAccess, Trap, TrapKind};
