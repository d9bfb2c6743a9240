//! Arithmetic, moves, byte swaps, `addr_space_cast`, `ld_imm64`.
//!
//! A 32-bit x86 operation zero-extends its result into the 64-bit
//! register, which is exactly BPF's ALU32 rule, so ALU32 instructions are
//! their x86 32-bit forms and need no extra zero-extension. Immediates of
//! 64-bit operations are sign-extended imm32s on both sides.

use dynasmrt::{DynasmApi, DynasmLabelApi};

use super::{DIVIDEND, Emitter, JitError, REMAINDER, SHIFT_COUNT, x64, x64_imm};
use crate::insn::{AluOp, CastKind, Imm64, Size, Source, SwapBits, SwapKind, Width};
use crate::jit::regs::SCRATCH;

impl Emitter<'_> {
    /// `dst = dst op src`.
    pub(super) fn alu(&mut self, width: Width, op: AluOp, dst: u8, src: Source) {
        match op {
            AluOp::Mov => self.mov(width, dst, src),
            AluOp::Mul => self.mul(width, dst, src),
            AluOp::Div | AluOp::Sdiv | AluOp::Mod | AluOp::Smod => self.div(width, op, dst, src),
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => self.shift(width, op, dst, src),
            AluOp::Add | AluOp::Sub | AluOp::Or | AluOp::And | AluOp::Xor => {
                self.bitwise(width, op, dst, src);
            }
        }
    }

    /// Two-operand forms that x86 has as they are.
    fn bitwise(&mut self, width: Width, op: AluOp, d: u8, src: Source) {
        use AluOp::*;
        match (width, src) {
            (Width::W64, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                match op {
                    Add => x64!(self.ops; add Rq(d), Rq(s)), // add dst, src
                    Sub => x64!(self.ops; sub Rq(d), Rq(s)), // sub dst, src
                    Or => x64!(self.ops; or Rq(d), Rq(s)),   // or dst, src
                    And => x64!(self.ops; and Rq(d), Rq(s)), // and dst, src
                    _ => x64!(self.ops; xor Rq(d), Rq(s)),   // xor dst, src
                }
            }
            (Width::W32, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                match op {
                    Add => x64!(self.ops; add Rd(d), Rd(s)), // add dst32, src32
                    Sub => x64!(self.ops; sub Rd(d), Rd(s)), // sub dst32, src32
                    Or => x64!(self.ops; or Rd(d), Rd(s)),   // or dst32, src32
                    And => x64!(self.ops; and Rd(d), Rd(s)), // and dst32, src32
                    _ => x64!(self.ops; xor Rd(d), Rd(s)),   // xor dst32, src32
                }
            }
            (Width::W64, Source::Imm(imm)) => match op {
                Add => x64_imm!(self.ops, imm; add Rq(d), IMM), // add dst, imm32 (sign-extended)
                Sub => x64_imm!(self.ops, imm; sub Rq(d), IMM), // sub dst, imm32
                Or => x64_imm!(self.ops, imm; or Rq(d), IMM),   // or dst, imm32
                And => x64_imm!(self.ops, imm; and Rq(d), IMM), // and dst, imm32
                _ => x64_imm!(self.ops, imm; xor Rq(d), IMM),   // xor dst, imm32
            },
            (Width::W32, Source::Imm(imm)) => match op {
                Add => x64_imm!(self.ops, imm; add Rd(d), IMM), // add dst32, imm32
                Sub => x64_imm!(self.ops, imm; sub Rd(d), IMM), // sub dst32, imm32
                Or => x64_imm!(self.ops, imm; or Rd(d), IMM),   // or dst32, imm32
                And => x64_imm!(self.ops, imm; and Rd(d), IMM), // and dst32, imm32
                _ => x64_imm!(self.ops, imm; xor Rd(d), IMM),   // xor dst32, imm32
            },
        }
    }

    fn mov(&mut self, width: Width, d: u8, src: Source) {
        match (width, src) {
            (Width::W64, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                x64!(self.ops; mov Rq(d), Rq(s)); // mov dst, src
            }
            (Width::W32, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                x64!(self.ops; mov Rd(d), Rd(s)); // mov dst32, src32 (zero-extends, even to itself)
            }
            // No flags are live between BPF instructions, so 0 can be an
            // xor, the shortest form.
            (_, Source::Imm(0)) => x64!(self.ops; xor Rd(d), Rd(d)), // xor dst32, dst32
            // A non-negative imm32 is the same zero- or sign-extended, and
            // the 32-bit form is shorter.
            (Width::W64, Source::Imm(imm)) if imm < 0 => {
                x64!(self.ops; mov Rq(d), imm); // mov dst, imm32 (sign-extended)
            }
            (_, Source::Imm(imm)) => x64!(self.ops; mov Rd(d), imm), // mov dst32, imm32
        }
    }

    fn mul(&mut self, width: Width, d: u8, src: Source) {
        // The low half of a product is the same signed or unsigned.
        match (width, src) {
            (Width::W64, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                x64!(self.ops; imul Rq(d), Rq(s)); // imul dst, src
            }
            (Width::W32, Source::Reg(s)) => {
                let s = crate::jit::regs::x86(s);
                x64!(self.ops; imul Rd(d), Rd(s)); // imul dst32, src32
            }
            (Width::W64, Source::Imm(imm)) => {
                x64_imm!(self.ops, imm; imul Rq(d), Rq(d), IMM); // imul dst, dst, imm32
            }
            (Width::W32, Source::Imm(imm)) => {
                x64_imm!(self.ops, imm; imul Rd(d), Rd(d), IMM); // imul dst32, dst32, imm32
            }
        }
    }

    /// Division and modulo, RFC 9669 §4.1 without a CPU exception: by zero
    /// `div` gives 0 and `mod` leaves dst (truncated to the width);
    /// `INT_MIN / -1` gives `INT_MIN` and `INT_MIN % -1` gives 0, which is
    /// `neg` and 0 for every dividend — x86 `idiv` would raise #DE on both
    /// zero and that overflow, so neither divisor ever reaches it.
    fn div(&mut self, width: Width, op: AluOp, d: u8, src: Source) {
        let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
        let modulo = matches!(op, AluOp::Mod | AluOp::Smod);
        match src {
            Source::Imm(0) => self.div_by_zero(width, modulo, d),
            Source::Imm(-1) if signed => self.div_by_minus_one(width, modulo, d),
            Source::Imm(imm) => {
                // Sign-extended; a 32-bit division uses the low half, the
                // imm32 itself.
                x64!(self.ops; mov Rq(SCRATCH), imm); // mov r11, imm32
                self.divide(width, signed, modulo, d);
            }
            Source::Reg(s) => {
                let s = crate::jit::regs::x86(s);
                match width {
                    Width::W64 => x64!(self.ops; test Rq(s), Rq(s)), // test src, src
                    Width::W32 => x64!(self.ops; test Rd(s), Rd(s)), // test src32, src32
                }
                if modulo && width == Width::W64 {
                    // Modulo by zero leaves dst as it is: nothing to do.
                    x64!(self.ops; jz BYTE >done); // jz done
                } else {
                    x64!(self.ops; jnz BYTE >nonzero); // jnz nonzero
                    self.div_by_zero(width, modulo, d);
                    x64!(self.ops
                        ; jmp BYTE >done // jmp done
                        ; nonzero:
                    );
                }
                if signed {
                    match width {
                        Width::W64 => x64!(self.ops; cmp Rq(s), -1), // cmp src, -1
                        Width::W32 => x64!(self.ops; cmp Rd(s), -1), // cmp src32, -1
                    }
                    x64!(self.ops; jne BYTE >divide); // jne divide
                    self.div_by_minus_one(width, modulo, d);
                    x64!(self.ops
                        ; jmp BYTE >done // jmp done
                        ; divide:
                    );
                }
                // Before rax and rdx change: src may be one of them.
                x64!(self.ops; mov Rq(SCRATCH), Rq(s)); // mov r11, src
                self.divide(width, signed, modulo, d);
                x64!(self.ops; done:);
            }
        }
    }

    fn div_by_zero(&mut self, width: Width, modulo: bool, d: u8) {
        match (modulo, width) {
            (false, _) => x64!(self.ops; xor Rd(d), Rd(d)), // xor dst32, dst32 (dst = 0)
            // 64-bit modulo by zero leaves dst as it is.
            (true, Width::W64) => {}
            (true, Width::W32) => x64!(self.ops; mov Rd(d), Rd(d)), // mov dst32, dst32 (truncate)
        }
    }

    fn div_by_minus_one(&mut self, width: Width, modulo: bool, d: u8) {
        match (modulo, width) {
            (false, Width::W64) => x64!(self.ops; neg Rq(d)), // neg dst
            (false, Width::W32) => x64!(self.ops; neg Rd(d)), // neg dst32
            (true, _) => x64!(self.ops; xor Rd(d), Rd(d)),    // xor dst32, dst32 (dst = 0)
        }
    }

    /// `dst = dst / r11` or `dst % r11`, r11 neither 0 nor (signed) -1.
    /// `div` works on rdx:rax, so both are saved around it unless dst is
    /// one of them (the result then belongs there).
    fn divide(&mut self, width: Width, signed: bool, modulo: bool, d: u8) {
        let result = if modulo { REMAINDER } else { DIVIDEND };
        if d != DIVIDEND {
            x64!(self.ops; push Rq(DIVIDEND)); // push rax
        }
        if d != REMAINDER {
            x64!(self.ops; push Rq(REMAINDER)); // push rdx
        }
        match width {
            Width::W64 => {
                if d != DIVIDEND {
                    x64!(self.ops; mov Rq(DIVIDEND), Rq(d)); // mov rax, dst
                }
                if signed {
                    x64!(self.ops
                        ; cqo // cqo (rdx = sign of rax)
                        ; idiv Rq(SCRATCH) // idiv r11
                    );
                } else {
                    x64!(self.ops
                        ; xor Rd(REMAINDER), Rd(REMAINDER) // xor edx, edx
                        ; div Rq(SCRATCH) // div r11
                    );
                }
                if d != result {
                    x64!(self.ops; mov Rq(d), Rq(result)); // mov dst, rax/rdx
                }
            }
            Width::W32 => {
                if d != DIVIDEND {
                    x64!(self.ops; mov Rd(DIVIDEND), Rd(d)); // mov eax, dst32
                }
                if signed {
                    x64!(self.ops
                        ; cdq // cdq (edx = sign of eax)
                        ; idiv Rd(SCRATCH) // idiv r11d
                    );
                } else {
                    x64!(self.ops
                        ; xor Rd(REMAINDER), Rd(REMAINDER) // xor edx, edx
                        ; div Rd(SCRATCH) // div r11d
                    );
                }
                // div r32 writes eax and edx zero-extended: when dst is
                // the result register it is already right.
                if d != result {
                    x64!(self.ops; mov Rd(d), Rd(result)); // mov dst32, eax/edx
                }
            }
        }
        if d != REMAINDER {
            x64!(self.ops; pop Rq(REMAINDER)); // pop rdx
        }
        if d != DIVIDEND {
            x64!(self.ops; pop Rq(DIVIDEND)); // pop rax
        }
    }

    /// Shifts: x86 masks the count to 5 or 6 bits exactly as RFC 9669 does.
    /// A variable count must be in cl, which is R4: rcx is parked in r11
    /// while it holds the count, and when dst is R4 itself the shift is
    /// done on the parked copy.
    fn shift(&mut self, width: Width, op: AluOp, d: u8, src: Source) {
        let s = match src {
            Source::Imm(imm) => {
                let mask = match width {
                    Width::W64 => 63,
                    Width::W32 => 31,
                };
                let count = (imm & mask) as i8;
                if count == 0 {
                    // Shifting by 0 changes nothing but the ALU32
                    // zero-extension, which a mov does explicitly.
                    if width == Width::W32 {
                        x64!(self.ops; mov Rd(d), Rd(d)); // mov dst32, dst32
                    }
                    return;
                }
                self.shift_by(width, op, d, ShiftCount::Imm(count));
                return;
            }
            Source::Reg(s) => crate::jit::regs::x86(s),
        };
        if s == SHIFT_COUNT {
            self.shift_by(width, op, d, ShiftCount::Cl);
            return;
        }
        let target = if d == SHIFT_COUNT { SCRATCH } else { d };
        x64!(self.ops
            ; mov Rq(SCRATCH), Rq(SHIFT_COUNT) // mov r11, rcx
            ; mov Rq(SHIFT_COUNT), Rq(s) // mov rcx, src
        );
        self.shift_by(width, op, target, ShiftCount::Cl);
        x64!(self.ops; mov Rq(SHIFT_COUNT), Rq(SCRATCH)); // mov rcx, r11
    }

    fn shift_by(&mut self, width: Width, op: AluOp, d: u8, count: ShiftCount) {
        match (width, count) {
            (Width::W64, ShiftCount::Imm(n)) => match op {
                AluOp::Lsh => x64!(self.ops; shl Rq(d), n), // shl dst, imm8
                AluOp::Rsh => x64!(self.ops; shr Rq(d), n), // shr dst, imm8
                _ => x64!(self.ops; sar Rq(d), n),          // sar dst, imm8
            },
            (Width::W32, ShiftCount::Imm(n)) => match op {
                AluOp::Lsh => x64!(self.ops; shl Rd(d), n), // shl dst32, imm8
                AluOp::Rsh => x64!(self.ops; shr Rd(d), n), // shr dst32, imm8
                _ => x64!(self.ops; sar Rd(d), n),          // sar dst32, imm8
            },
            (Width::W64, ShiftCount::Cl) => match op {
                AluOp::Lsh => x64!(self.ops; shl Rq(d), cl), // shl dst, cl
                AluOp::Rsh => x64!(self.ops; shr Rq(d), cl), // shr dst, cl
                _ => x64!(self.ops; sar Rq(d), cl),          // sar dst, cl
            },
            (Width::W32, ShiftCount::Cl) => match op {
                AluOp::Lsh => x64!(self.ops; shl Rd(d), cl), // shl dst32, cl
                AluOp::Rsh => x64!(self.ops; shr Rd(d), cl), // shr dst32, cl
                _ => x64!(self.ops; sar Rd(d), cl),          // sar dst32, cl
            },
        }
    }

    /// `dst = -dst`, wrapping.
    pub(super) fn neg(&mut self, width: Width, d: u8) {
        match width {
            Width::W64 => x64!(self.ops; neg Rq(d)), // neg dst
            Width::W32 => x64!(self.ops; neg Rd(d)), // neg dst32
        }
    }

    /// MOVSX: sign-extend the low `from` bits of src.
    pub(super) fn movsx(&mut self, width: Width, d: u8, s: u8, from: Size) {
        match (width, from) {
            (Width::W64, Size::B) => x64!(self.ops; movsx Rq(d), Rb(s)), // movsx dst, src8
            (Width::W64, Size::H) => x64!(self.ops; movsx Rq(d), Rw(s)), // movsx dst, src16
            (Width::W64, Size::W) => x64!(self.ops; movsxd Rq(d), Rd(s)), // movsxd dst, src32
            (Width::W32, Size::B) => x64!(self.ops; movsx Rd(d), Rb(s)), // movsx dst32, src8
            (Width::W32, Size::H) => x64!(self.ops; movsx Rd(d), Rw(s)), // movsx dst32, src16
            // The decoder refuses these; the interpreter treats them as
            // plain moves, and so does the JIT.
            (Width::W64, Size::DW) => x64!(self.ops; mov Rq(d), Rq(s)), // mov dst, src
            (Width::W32, _) => x64!(self.ops; mov Rd(d), Rd(s)),        // mov dst32, src32
        }
    }

    /// `le`, `be`, `bswap` on a little-endian machine: `le` truncates,
    /// the others reverse the low bytes; 16 and 32 bits zero-extend.
    pub(super) fn byte_swap(&mut self, d: u8, kind: SwapKind, bits: SwapBits) {
        match (kind, bits) {
            (SwapKind::ToLe, SwapBits::B16) => x64!(self.ops; movzx Rd(d), Rw(d)), // movzx dst32, dst16
            (SwapKind::ToLe, SwapBits::B32) => x64!(self.ops; mov Rd(d), Rd(d)), // mov dst32, dst32
            // The identity; compile() emits a nop so the slot has code.
            (SwapKind::ToLe, SwapBits::B64) => {}
            (_, SwapBits::B16) => x64!(self.ops
                ; ror Rw(d), 8 // ror dst16, 8 (swap the two low bytes)
                ; movzx Rd(d), Rw(d) // movzx dst32, dst16
            ),
            (_, SwapBits::B32) => x64!(self.ops; bswap Rd(d)), // bswap dst32
            (_, SwapBits::B64) => x64!(self.ops; bswap Rq(d)), // bswap dst
        }
    }

    /// `addr_space_cast` (Note [Arena pointers]): the low 32 bits with the
    /// arena window's upper half above them; `cast_user` keeps NULL (low
    /// half 0) as NULL. Without an arena both keep the low half only.
    pub(super) fn addr_space_cast(&mut self, d: u8, s: u8, kind: CastKind) {
        x64!(self.ops; mov Rd(d), Rd(s)); // mov dst32, src32
        let upper = self.config.arena_upper;
        if upper == 0 {
            return;
        }
        let high = i64::from(upper) << 32;
        match kind {
            CastKind::ToKern => x64!(self.ops
                ; mov Rq(SCRATCH), QWORD high // movabs r11, arena_upper << 32
                ; or Rq(d), Rq(SCRATCH) // or dst, r11
            ),
            CastKind::ToUser => x64!(self.ops
                ; test Rd(d), Rd(d) // test dst32, dst32
                ; jz BYTE >null // jz null (NULL stays NULL)
                ; mov Rq(SCRATCH), QWORD high // movabs r11, arena_upper << 32
                ; or Rq(d), Rq(SCRATCH) // or dst, r11
                ; null:
            ),
        }
    }

    /// `dst = imm64`: plain values and subprogram addresses; a loader
    /// rewrites every other pseudo load into a value first.
    pub(super) fn ld_imm64(&mut self, pc: usize, d: u8, value: Imm64) -> Result<(), JitError> {
        match value {
            Imm64::Value(v) => {
                if v == 0 {
                    x64!(self.ops; xor Rd(d), Rd(d)); // xor dst32, dst32
                } else if let Ok(low) = u32::try_from(v) {
                    x64!(self.ops; mov Rd(d), low as i32); // mov dst32, imm32 (zero-extended)
                } else if let Ok(imm) = i32::try_from(v as i64) {
                    x64!(self.ops; mov Rq(d), imm); // mov dst, imm32 (sign-extended)
                } else {
                    x64!(self.ops; mov Rq(d), QWORD v as i64); // movabs dst, imm64
                }
            }
            Imm64::Func { off } => {
                let function = self.function_label(pc, off.into())?;
                x64!(self.ops; lea Rq(d), [=>function]); // lea dst, [rip + function]
            }
            _ => return Err(JitError::UnresolvedLdImm64 { pc }),
        }
        Ok(())
    }

    /// `dst += this CPU's per-CPU offset`, after an `ld_imm64` of a
    /// `.percpu` address.
    pub(super) fn percpu_offset(&mut self, op: crate::insn::Op) {
        if let crate::insn::Op::LdImm64 { dst, .. } = op {
            let d = crate::jit::regs::x86(dst);
            let this_cpu_off = shm::percpu::THIS_CPU_OFF_OFFSET as i32;
            x64!(self.ops; gs add Rq(d), [this_cpu_off]); // add dst, gs:[this_cpu_off]
        }
    }
}

/// Where a shift's count comes from.
#[derive(Clone, Copy)]
enum ShiftCount {
    Imm(i8),
    Cl,
}

#[cfg(test)]
mod tests {
    use iced_x86::{Instruction, Mnemonic};

    use crate::jit::tests::setup_insn_code;

    fn divides(code: &[Instruction]) -> bool {
        code.iter()
            .any(|i| matches!(i.mnemonic(), Mnemonic::Div | Mnemonic::Idiv))
    }

    #[test]
    fn divisors_that_trap_on_x86_never_reach_a_divide() {
        for op in [
            "div", "mod", "sdiv", "smod", "div32", "mod32", "sdiv32", "smod32",
        ] {
            assert!(
                !divides(&setup_insn_code(&format!("{op} %r1, 0"))),
                "{op} by 0"
            );
            assert!(
                divides(&setup_insn_code(&format!("{op} %r1, 7"))),
                "{op} by 7"
            );
        }
        for op in ["sdiv", "smod", "sdiv32", "smod32"] {
            assert!(
                !divides(&setup_insn_code(&format!("{op} %r1, -1"))),
                "{op} by -1"
            );
        }
        // Unsigned division by -1 is by 2^64 - 1 (or 2^32 - 1): no trap.
        assert!(divides(&setup_insn_code("div %r1, -1")));
    }

    #[test]
    fn register_divisors_are_checked_before_dividing() {
        for op in ["div", "mod32", "sdiv", "smod32"] {
            for (dst, src) in [(1, 2), (0, 3), (3, 0), (3, 3)] {
                let code = setup_insn_code(&format!("{op} %r{dst}, %r{src}"));
                let at = |m: Mnemonic| code.iter().position(|i| i.mnemonic() == m);
                let divide = at(Mnemonic::Div).or(at(Mnemonic::Idiv)).unwrap();
                assert!(at(Mnemonic::Test).unwrap() < divide, "{op} r{dst}, r{src}");
                if op.starts_with('s') {
                    assert!(at(Mnemonic::Cmp).unwrap() < divide, "{op} r{dst}, r{src}");
                }
            }
        }
    }

    #[test]
    fn immediate_shifts_are_masked_like_bpf() {
        // 64 & 63 = 0: nothing to shift; 33 & 31 = 1 for 32 bits.
        assert_eq!(setup_insn_code("lsh %r1, 64")[0].mnemonic(), Mnemonic::Nop);
        let shl = setup_insn_code("lsh32 %r1, 33");
        assert_eq!(shl[0].mnemonic(), Mnemonic::Shl);
        assert_eq!(shl[0].immediate8(), 1);
        // A 32-bit shift by 0 still zero-extends.
        assert_eq!(
            setup_insn_code("rsh32 %r1, 32")[0].mnemonic(),
            Mnemonic::Mov
        );
    }
}
