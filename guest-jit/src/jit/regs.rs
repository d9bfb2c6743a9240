//! Which x86-64 register holds each BPF register, and the roles of the
//! registers BPF does not name.
//!
//! The map is the kernel's (`arch/x86/net/bpf_jit_comp.c`, `reg2hex`): R1–R5
//! are the SysV argument registers, so a helper call needs no moves; R6–R9
//! are SysV callee-saved, so they survive helper calls for free; R0 is the
//! SysV return register. Numbers are x86 register encodings (0 = rax …
//! 15 = r15), the form `dynasm!`'s `Rq(…)` operands and the exception
//! table's `dst` take.
//!
//! ```text
//!  BPF   x86   role
//!  R0    rax   return value (SysV return register)
//!  R1    rdi   argument 1 / context pointer at entry
//!  R2    rsi   argument 2 / context length at entry
//!  R3    rdx   argument 3 (also the high half of div/mod)
//!  R4    rcx   argument 4 (also the shift count register cl)
//!  R5    r8    argument 5
//!  R6    rbx   callee-saved
//!  R7    r13   callee-saved
//!  R8    r14   callee-saved
//!  R9    r15   callee-saved
//!  R10   rbp   frame pointer (read-only)
//!  -     r12   reserved (the kernel's arena base); never touched
//!  -     r10   scratch: R0 saved across a fetch-op loop
//!  -     r11   scratch: divisors, shift counts, wide immediates
//! ```

use crate::insn::Reg;

/// rax.
pub const RAX: u8 = 0;
/// rcx: holds R4, and is the only register a variable shift count can be in.
pub const RCX: u8 = 1;
/// rdx: holds R3, and is the high half of the dividend and the remainder.
pub const RDX: u8 = 2;
/// rbx.
pub const RBX: u8 = 3;
/// rsp.
pub const RSP: u8 = 4;
/// rbp: the BPF frame pointer R10.
pub const RBP: u8 = 5;
/// rsi.
pub const RSI: u8 = 6;
/// rdi.
pub const RDI: u8 = 7;
/// r8.
pub const R8: u8 = 8;
/// r13.
pub const R13: u8 = 13;
/// r14.
pub const R14: u8 = 14;
/// r15.
pub const R15: u8 = 15;

/// Scratch: holds R0 while a fetch-and/or/xor loop uses rax for `cmpxchg`
/// (the kernel's `BPF_REG_AX`). Caller-saved in SysV, so helpers may clobber
/// it, and BPF never sees it.
pub const SCRATCH_AUX: u8 = 10;
/// Scratch: divisor of div/mod, saved rcx around a variable shift, wide
/// immediates, the new value of a fetch-op loop. Caller-saved in SysV.
pub const SCRATCH: u8 = 11;
/// Reserved for an arena base (DESIGN.md "The JIT"; the kernel's JIT keeps
/// `kern_vm_start` here). SysV callee-saved and neither read nor written by
/// JIT code: `addr_space_cast` puts the arena window into pointers as an
/// immediate instead (Note [Arena pointers] in [`crate::jit::arena`]).
pub const ARENA_BASE: u8 = 12;

/// x86 register holding BPF register `reg`.
pub const fn x86(reg: Reg) -> u8 {
    match reg.num() {
        0 => RAX,
        1 => RDI,
        2 => RSI,
        3 => RDX,
        4 => RCX,
        5 => R8,
        6 => RBX,
        7 => R13,
        8 => R14,
        9 => R15,
        // `Reg` is always 0..=10.
        _ => RBP,
    }
}

/// Registers the JIT's prologue saves because a BPF function may write them
/// (R6–R9), in push order; the epilogue pops them in reverse.
pub const CALLEE_SAVED: [u8; 4] = [RBX, R13, R14, R15];

/// Name of an x86 register number, for comments and error messages.
pub const fn name(reg: u8) -> &'static str {
    match reg {
        0 => "rax",
        1 => "rcx",
        2 => "rdx",
        3 => "rbx",
        4 => "rsp",
        5 => "rbp",
        6 => "rsi",
        7 => "rdi",
        8 => "r8",
        9 => "r9",
        10 => "r10",
        11 => "r11",
        12 => "r12",
        13 => "r13",
        14 => "r14",
        15 => "r15",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_is_the_kernels_and_avoids_reserved_registers() {
        let names: Vec<&str> = (0..=10)
            .filter_map(Reg::new)
            .map(|r| name(x86(r)))
            .collect();
        assert_eq!(
            names,
            [
                "rax", "rdi", "rsi", "rdx", "rcx", "r8", "rbx", "r13", "r14", "r15", "rbp"
            ]
        );
        for reg in (0..=10).filter_map(Reg::new) {
            let x = x86(reg);
            assert!(
                ![SCRATCH, SCRATCH_AUX, ARENA_BASE, RSP].contains(&x),
                "{reg}"
            );
        }
    }
}
