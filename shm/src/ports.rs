//! The I/O ports through which the guest leaves to the host.
//!
//! The guest never exits any other way on purpose: every `out` to one of
//! these ports is one VM exit, named here and decoded by the host's pure exit
//! decoder. The byte written carries nothing the host relies on; details are
//! in the vCPU's mailbox.

/// The requested call returned; the response is in the mailbox.
pub const RUN_DONE_PORT: u16 = 0xb9f0;
/// The program hit a CPU exception; the trap record is in the mailbox.
pub const TRAP_PORT: u16 = 0xb9f1;
/// The runtime's abort entry ran after the host stopped a program.
pub const ABORTED_PORT: u16 = 0xb9f2;
/// The CPL 0 exception stub itself faulted: the guest machine is broken and
/// must be reset. Nothing is in the mailbox.
pub const KERNEL_FAULT_PORT: u16 = 0xb9f3;
