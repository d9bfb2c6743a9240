//! The KVM side of bpfvisor: VM, guest memory, page tables, vCPU threads,
//! exits, deadlines, and the public [`Sandbox`] API.

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

pub use helpers::HelperSet;
pub use map_api::{Entry, MapHandle, Slot};
pub use maps::{MapId, MapInfo};
pub use memory::GuestMemory;
pub use pool::{PoolStats, PooledSandbox, Reuse, SandboxPool};
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
