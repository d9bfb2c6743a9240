//! The KVM side of bpfvisor: VM, guest memory, page tables, vCPU threads,
//! exits, deadlines, and the public [`Sandbox`] API.

pub mod arch;
pub mod exit;
pub mod kick;
pub mod kvm;
pub mod machine;
pub mod memory;
pub mod runtime;
pub mod sandbox;
pub mod trap;
pub mod vcpu;

pub use memory::GuestMemory;
pub use sandbox::{Call, Outcome, RunError, RunReport, Sandbox, SandboxConfig, SandboxError};
pub use trap::{PageFaultAccess, Trap, TrapKind};
