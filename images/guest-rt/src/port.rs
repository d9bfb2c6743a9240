//! Leaving to the host: one `out` to a named port is one VM exit.

/// Exits to the host through `port`; returns when the host resumes the vCPU.
#[inline(always)]
pub fn exit_to_host(port: u16) {
    // SAFETY: `out` to our own ports only exits to the host; the compiler
    // must assume memory was read and written by the host meanwhile, which
    // the absence of `nomem` tells it.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") 0u8, options(nostack)) }
}
