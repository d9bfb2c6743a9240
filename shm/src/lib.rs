//! Everything both sides of the VM boundary agree on.
//!
//! This crate is `no_std` and has no dependencies: the host (`vmm`), the JIT
//! (`guest-jit`) and the guest runtime (`images/guest-rt`) all link it, so an
//! address, a port number or a record layout is written exactly once.
#![cfg_attr(not(test), no_std)]

pub mod arena;
pub mod bits;
pub mod dynptr;
pub mod errno;
pub mod extable;
pub mod layout;
pub mod loops;
pub mod mailbox;
pub mod maps;
pub mod percpu;
pub mod pod;
pub mod ports;
pub mod random;
pub mod ringbuf;
pub mod strings;
pub mod time;
pub mod trace;
