//! The bpfvisor guest runtime.
//!
//! A `no_std`, `no_main` program the host loads into every sandbox VM at
//! [`shm::layout::RUNTIME_START`]. It has no initialisation code of its own:
//! the host builds the page tables, descriptor tables and per-CPU blocks, and
//! starts every vCPU at [`entry`]'s `bpfvisor_dispatch_entry` with its GS
//! base on its per-CPU block. From there each vCPU serves requests from its
//! mailbox forever, leaving to the host only through [`shm::ports`].
#![no_std]
#![no_main]

mod dispatch;
mod entry;
mod helpers;
mod mem;
mod percpu;
mod port;
mod program;
mod trap;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // A panic in the runtime is a bug; `ud2` turns it into a trap the host
    // reports with the runtime's rip, which names the culprit.
    // SAFETY: `ud2` only raises #UD, handled by the trap path.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}
