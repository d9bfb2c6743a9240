//! x86-64 machine state the host builds for the guest.

pub mod gdt;
pub mod paging;
pub mod regs;
