//! Loads, stores and atomics: each access of BPF memory is one x86
//! instruction with an exception-table entry ([`Emitter::access`]).
//!
//! Load-acquire and store-release are plain moves: x86-64 is TSO, loads
//! are not reordered with older loads nor stores with older stores, which
//! is what the kernel's x86 JIT relies on too.

use dynasmrt::{DynasmApi, DynasmLabelApi};

use super::{DIVIDEND, Emitter, x64, x64_mem};
use crate::insn::{AtomicOp, Size, Source, Width};
use crate::jit::regs::{SCRATCH, SCRATCH_AUX, x86};

impl Emitter<'_> {
    /// `dst = *(size *)(src + off)`, zero-extended.
    pub(super) fn load(&mut self, size: Size, d: u8, s: u8, off: i32) {
        self.access(Some(d), |ops| match size {
            Size::B => x64_mem!(ops, s, off; movzx Rd(d), BYTE MEM), // movzx dst32, byte [src+off]
            Size::H => x64_mem!(ops, s, off; movzx Rd(d), WORD MEM), // movzx dst32, word [src+off]
            Size::W => x64_mem!(ops, s, off; mov Rd(d), DWORD MEM),  // mov dst32, dword [src+off]
            Size::DW => x64_mem!(ops, s, off; mov Rq(d), QWORD MEM), // mov dst, qword [src+off]
        });
    }

    /// `dst = *(signed size *)(src + off)`, sign-extended to 64 bits.
    pub(super) fn load_sx(&mut self, size: Size, d: u8, s: u8, off: i32) {
        self.access(Some(d), |ops| match size {
            Size::B => x64_mem!(ops, s, off; movsx Rq(d), BYTE MEM), // movsx dst, byte [src+off]
            Size::H => x64_mem!(ops, s, off; movsx Rq(d), WORD MEM), // movsx dst, word [src+off]
            Size::W => x64_mem!(ops, s, off; movsxd Rq(d), DWORD MEM), // movsxd dst, dword [src+off]
            // The decoder refuses ldsxdw; 64 bits need no extension.
            Size::DW => x64_mem!(ops, s, off; mov Rq(d), QWORD MEM), // mov dst, qword [src+off]
        });
    }

    /// `*(size *)(dst + off) = src`; an immediate is sign-extended, then
    /// truncated to the size.
    pub(super) fn store(&mut self, size: Size, d: u8, off: i32, src: Source) {
        match src {
            Source::Reg(s) => {
                let s = x86(s);
                self.access(None, |ops| match size {
                    Size::B => x64_mem!(ops, d, off; mov BYTE MEM, Rb(s)), // mov byte [dst+off], src8
                    Size::H => x64_mem!(ops, d, off; mov WORD MEM, Rw(s)), // mov word [dst+off], src16
                    Size::W => x64_mem!(ops, d, off; mov DWORD MEM, Rd(s)), // mov dword [dst+off], src32
                    Size::DW => x64_mem!(ops, d, off; mov QWORD MEM, Rq(s)), // mov qword [dst+off], src
                });
            }
            Source::Imm(imm) => {
                self.access(None, |ops| match size {
                    Size::B => x64_mem!(ops, d, off; mov BYTE MEM, imm as i8), // mov byte [dst+off], imm8
                    Size::H => x64_mem!(ops, d, off; mov WORD MEM, imm as i16), // mov word [dst+off], imm16
                    Size::W => x64_mem!(ops, d, off; mov DWORD MEM, imm), // mov dword [dst+off], imm32
                    Size::DW => x64_mem!(ops, d, off; mov QWORD MEM, imm), // mov qword [dst+off], imm32 (sign-extended)
                });
            }
        }
    }

    /// Atomic read-modify-write of `*(dst + off)` with src (RFC 9669 §5.3).
    /// A 32-bit operation works on the low halves, and a fetched value
    /// is zero-extended, which 32-bit x86 register writes do by themselves.
    pub(super) fn atomic(&mut self, width: Width, op: AtomicOp, d: u8, off: i32, s: u8) {
        let w64 = width == Width::W64;
        match op {
            AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor => {
                self.access(None, |ops| match (op, w64) {
                    (AtomicOp::Add, true) => x64_mem!(ops, d, off; lock add QWORD MEM, Rq(s)), // lock add [dst+off], src
                    (AtomicOp::Or, true) => x64_mem!(ops, d, off; lock or QWORD MEM, Rq(s)), // lock or [dst+off], src
                    (AtomicOp::And, true) => x64_mem!(ops, d, off; lock and QWORD MEM, Rq(s)), // lock and [dst+off], src
                    (_, true) => x64_mem!(ops, d, off; lock xor QWORD MEM, Rq(s)), // lock xor [dst+off], src
                    (AtomicOp::Add, false) => x64_mem!(ops, d, off; lock add DWORD MEM, Rd(s)), // lock add [dst+off], src32
                    (AtomicOp::Or, false) => x64_mem!(ops, d, off; lock or DWORD MEM, Rd(s)), // lock or [dst+off], src32
                    (AtomicOp::And, false) => x64_mem!(ops, d, off; lock and DWORD MEM, Rd(s)), // lock and [dst+off], src32
                    (_, false) => x64_mem!(ops, d, off; lock xor DWORD MEM, Rd(s)), // lock xor [dst+off], src32
                });
            }
            // A fault fixed up in the arena: the old value reads as 0, as
            // the kernel's BPF_PROBE_ATOMIC (Note [Arena pointers]).
            AtomicOp::FetchAdd => self.access(Some(s), |ops| {
                if w64 {
                    x64_mem!(ops, d, off; lock xadd QWORD MEM, Rq(s)); // lock xadd [dst+off], src
                } else {
                    x64_mem!(ops, d, off; lock xadd DWORD MEM, Rd(s)); // lock xadd [dst+off], src32
                }
            }),
            // xchg with memory is locked without the prefix.
            AtomicOp::Xchg => self.access(Some(s), |ops| {
                if w64 {
                    x64_mem!(ops, d, off; xchg QWORD MEM, Rq(s)); // xchg [dst+off], src
                } else {
                    x64_mem!(ops, d, off; xchg DWORD MEM, Rd(s)); // xchg [dst+off], src32
                }
            }),
            AtomicOp::Cmpxchg => {
                self.access(None, |ops| {
                    if w64 {
                        x64_mem!(ops, d, off; lock cmpxchg QWORD MEM, Rq(s)); // lock cmpxchg [dst+off], src
                    } else {
                        x64_mem!(ops, d, off; lock cmpxchg DWORD MEM, Rd(s)); // lock cmpxchg [dst+off], src32
                    }
                });
                if !w64 {
                    // A successful 32-bit cmpxchg does not write eax, so
                    // nothing clears rax's upper half (the kernel's
                    // verifier adds this zero-extension for every JIT).
                    x64!(self.ops; mov Rd(DIVIDEND), Rd(DIVIDEND)); // mov eax, eax
                }
            }
            AtomicOp::FetchAnd | AtomicOp::FetchOr | AtomicOp::FetchXor => {
                self.fetch_op_loop(w64, op, d, off, s);
            }
        }
    }

    /// Fetch-and/or/xor have no x86 instruction: a `cmpxchg` loop, as the
    /// kernel emits, with R0 parked in r10 because `cmpxchg` compares rax.
    ///
    /// Note [Fetch-op loop under fixup]
    /// Both memory accesses have exception-table entries. If the address is
    /// in the arena and not mapped, the load is fixed up to give 0 and the
    /// `cmpxchg` is skipped; the `cmp` just before it sets ZF so that a
    /// skipped `cmpxchg` leaves the loop instead of spinning forever (an
    /// executed one sets ZF itself). The result is the kernel's arena rule:
    /// the old value reads as 0 and the write is dropped.
    fn fetch_op_loop(&mut self, w64: bool, op: AtomicOp, d: u8, off: i32, s: u8) {
        // Where dst and src are once rax is taken: r10 has R0's value.
        let base = if d == DIVIDEND { SCRATCH_AUX } else { d };
        let src = if s == DIVIDEND { SCRATCH_AUX } else { s };
        x64!(self.ops
            ; mov Rq(SCRATCH_AUX), Rq(DIVIDEND) // mov r10, rax
            ; retry:
        );
        if w64 {
            self.access(Some(DIVIDEND), |ops| {
                x64_mem!(ops, base, off; mov Rq(DIVIDEND), QWORD MEM); // mov rax, [dst+off]
            });
            x64!(self.ops; mov Rq(SCRATCH), Rq(DIVIDEND)); // mov r11, rax
            match op {
                AtomicOp::FetchAnd => x64!(self.ops; and Rq(SCRATCH), Rq(src)), // and r11, src
                AtomicOp::FetchOr => x64!(self.ops; or Rq(SCRATCH), Rq(src)),   // or r11, src
                _ => x64!(self.ops; xor Rq(SCRATCH), Rq(src)),                  // xor r11, src
            }
            x64!(self.ops; cmp Rq(SCRATCH), Rq(SCRATCH)); // cmp r11, r11 (ZF = 1, Note [Fetch-op loop under fixup])
            self.access(None, |ops| {
                x64_mem!(ops, base, off; lock cmpxchg QWORD MEM, Rq(SCRATCH)); // lock cmpxchg [dst+off], r11
            });
        } else {
            self.access(Some(DIVIDEND), |ops| {
                x64_mem!(ops, base, off; mov Rd(DIVIDEND), DWORD MEM); // mov eax, [dst+off]
            });
            x64!(self.ops; mov Rd(SCRATCH), Rd(DIVIDEND)); // mov r11d, eax
            match op {
                AtomicOp::FetchAnd => x64!(self.ops; and Rd(SCRATCH), Rd(src)), // and r11d, src32
                AtomicOp::FetchOr => x64!(self.ops; or Rd(SCRATCH), Rd(src)),   // or r11d, src32
                _ => x64!(self.ops; xor Rd(SCRATCH), Rd(src)),                  // xor r11d, src32
            }
            x64!(self.ops; cmp Rd(SCRATCH), Rd(SCRATCH)); // cmp r11d, r11d (ZF = 1, Note [Fetch-op loop under fixup])
            self.access(None, |ops| {
                x64_mem!(ops, base, off; lock cmpxchg DWORD MEM, Rd(SCRATCH)); // lock cmpxchg [dst+off], r11d
            });
        }
        // rax holds the old value, zero-extended for 32 bits (loaded by a
        // 32-bit mov, or written by a failed cmpxchg).
        x64!(self.ops
            ; jne BYTE <retry // jne retry
            ; mov Rq(src), Rq(DIVIDEND) // mov src, rax (old value)
            ; mov Rq(DIVIDEND), Rq(SCRATCH_AUX) // mov rax, r10 (R0, or the old value if src is R0)
        );
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::{Mnemonic, Register};

    use crate::jit::tests::setup_insn_code;

    #[test]
    fn cmpxchg32_zero_extends_r0() {
        let code = setup_insn_code("lock cmpxchg32 [%r1-8], %r2");
        let last = code.last().unwrap();
        assert_eq!(last.mnemonic(), Mnemonic::Mov);
        assert_eq!(
            (last.op0_register(), last.op1_register()),
            (Register::EAX, Register::EAX)
        );
        // 64 bits need nothing after the cmpxchg.
        let code = setup_insn_code("lock cmpxchg [%r1-8], %r2");
        assert_eq!(code.len(), 1);
        assert!(code[0].has_lock_prefix());
    }

    #[test]
    fn fetch_op_loop_sets_zf_just_before_its_cmpxchg() {
        // Note [Fetch-op loop under fixup].
        for op in ["and", "or32", "xor"] {
            let code = setup_insn_code(&format!("lock fetch {op} [%r1-8], %r2"));
            let cmpxchg = code
                .iter()
                .position(|i| i.mnemonic() == Mnemonic::Cmpxchg)
                .unwrap();
            let before = &code[cmpxchg - 1];
            assert_eq!(before.mnemonic(), Mnemonic::Cmp, "{op}");
            assert_eq!(before.op0_register(), before.op1_register(), "{op}");
            assert_eq!(code[cmpxchg + 1].mnemonic(), Mnemonic::Jne, "{op}");
        }
    }

    #[test]
    fn acquire_and_release_are_plain_moves() {
        // x86-64 is TSO: no fence, no lock.
        for insn in ["ldxacqdw %r0, [%r1+8]", "stxrelw [%r1+8], %r2"] {
            let code = setup_insn_code(insn);
            assert_eq!(code.len(), 1, "{insn}");
            assert_eq!(code[0].mnemonic(), Mnemonic::Mov, "{insn}");
            assert!(!code[0].has_lock_prefix(), "{insn}");
        }
    }
}
