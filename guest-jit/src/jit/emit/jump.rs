//! Jumps, `may_goto` and calls: to helpers, through a register, and to
//! subprograms.
//!
//! Every jump goes to the dynamic label of its target instruction;
//! `dynasmrt` resolves forward ones when the program is finished, with
//! rel32 displacements, so no jump is ever out of reach.

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi};

use super::{Emitter, INT3, JitError, MAY_GOTO_SLOT, x64};
use crate::insn::{JmpCond, Source, Width};
use crate::jit::regs::{RBP, SCRATCH, x86};

/// Entries of the helper table `callx` indexes: ids 0 to 255 (the kernel's
/// `enum bpf_func_id` ends near 210).
pub(crate) const HELPER_TABLE_LEN: u32 = 256;

impl Emitter<'_> {
    /// `ja` / `gotol`.
    pub(super) fn ja(&mut self, pc: usize, off: i64) -> Result<(), JitError> {
        let target = self.jump_label(pc, off)?;
        if self.short_jump(pc) {
            x64!(self.ops; jmp BYTE =>target); // jmp target (rel8)
        } else {
            x64!(self.ops; jmp =>target); // jmp target
        }
        Ok(())
    }

    /// `if dst cond src goto target`: `cmp` (or `test` for `jset`) at the
    /// width, then the matching `jcc`. An immediate is sign-extended to 64
    /// bits by both BPF and x86; JMP32 compares the low halves.
    pub(super) fn jmp(
        &mut self,
        pc: usize,
        width: Width,
        cond: JmpCond,
        d: u8,
        src: Source,
        off: i64,
    ) -> Result<(), JitError> {
        let target = self.jump_label(pc, off)?;
        let set = cond == JmpCond::Set;
        match (width, src, set) {
            (Width::W64, Source::Reg(s), false) => {
                let s = x86(s);
                x64!(self.ops; cmp Rq(d), Rq(s)); // cmp dst, src
            }
            (Width::W64, Source::Reg(s), true) => {
                let s = x86(s);
                x64!(self.ops; test Rq(d), Rq(s)); // test dst, src
            }
            (Width::W32, Source::Reg(s), false) => {
                let s = x86(s);
                x64!(self.ops; cmp Rd(d), Rd(s)); // cmp dst32, src32
            }
            (Width::W32, Source::Reg(s), true) => {
                let s = x86(s);
                x64!(self.ops; test Rd(d), Rd(s)); // test dst32, src32
            }
            // `test r, r` sets every flag a jcc reads as `cmp r, 0` does
            // (CF = OF = 0), in fewer bytes: the kernel's choice too.
            (Width::W64, Source::Imm(0), false) => x64!(self.ops; test Rq(d), Rq(d)), // test dst, dst
            (Width::W32, Source::Imm(0), false) => x64!(self.ops; test Rd(d), Rd(d)), // test dst32, dst32
            // The sign-extended imm8 form when the value fits, as the
            // kernel's JIT: 3 bytes fewer in loop conditions.
            (Width::W64, Source::Imm(imm), false) if i8::try_from(imm).is_ok() => {
                x64!(self.ops; cmp Rq(d), BYTE imm); // cmp dst, imm8
            }
            (Width::W32, Source::Imm(imm), false) if i8::try_from(imm).is_ok() => {
                x64!(self.ops; cmp Rd(d), BYTE imm); // cmp dst32, imm8
            }
            (Width::W64, Source::Imm(imm), false) => x64!(self.ops; cmp Rq(d), imm), // cmp dst, imm32
            (Width::W64, Source::Imm(imm), true) => x64!(self.ops; test Rq(d), imm), // test dst, imm32
            (Width::W32, Source::Imm(imm), false) => x64!(self.ops; cmp Rd(d), imm), // cmp dst32, imm32
            (Width::W32, Source::Imm(imm), true) => x64!(self.ops; test Rd(d), imm), // test dst32, imm32
        }
        self.jcc(cond, target, self.short_jump(pc));
        Ok(())
    }

    /// The conditional jump for `cond` to `target`; rel8 when `short`
    /// (Note [Short jumps]).
    fn jcc(&mut self, cond: JmpCond, target: DynamicLabel, short: bool) {
        macro_rules! jcc {
            ($jcc:ident) => {
                if short {
                    x64!(self.ops; $jcc BYTE =>target) // jcc target (rel8)
                } else {
                    x64!(self.ops; $jcc =>target) // jcc target
                }
            };
        }
        match cond {
            JmpCond::Eq => jcc!(je),
            JmpCond::Ne | JmpCond::Set => jcc!(jne),
            JmpCond::Gt => jcc!(ja), // unsigned >
            JmpCond::Ge => jcc!(jae),
            JmpCond::Lt => jcc!(jb),
            JmpCond::Le => jcc!(jbe),
            JmpCond::Sgt => jcc!(jg), // signed >
            JmpCond::Sge => jcc!(jge),
            JmpCond::Slt => jcc!(jl),
            JmpCond::Sle => jcc!(jle),
        }
    }

    /// `may_goto`: Note [may_goto].
    pub(super) fn may_goto(&mut self, pc: usize, off: i64) -> Result<(), JitError> {
        let target = self.jump_label(pc, off)?;
        x64!(self.ops; cmp QWORD [Rq(RBP) - MAY_GOTO_SLOT], 0); // cmp qword [rbp-520], 0
        // Budget spent: to the target.
        self.jcc(JmpCond::Eq, target, self.short_jump(pc));
        x64!(self.ops; sub QWORD [Rq(RBP) - MAY_GOTO_SLOT], 1); // sub qword [rbp-520], 1
        Ok(())
    }

    /// A helper: one `call rel32` into the guest runtime. R1–R5 are already
    /// the SysV argument registers and R0 the return register; R6–R9 and
    /// R10 are callee-saved, and rsp is 16-byte aligned here.
    pub(super) fn call_helper(&mut self, pc: usize, id: u32) -> Result<(), JitError> {
        let addr = (self.config.helper_addr)(id).ok_or(JitError::UnknownHelper { pc, id })?;
        self.call_runtime(addr)
            .map_err(|()| JitError::ReachHelper { pc, id, addr })
    }

    /// A kfunc: called exactly as a helper is, at the address the runtime
    /// gives its name.
    pub(super) fn call_kfunc(
        &mut self,
        pc: usize,
        index: i32,
        module: i16,
    ) -> Result<(), JitError> {
        let unknown = JitError::UnknownKfunc { pc, index, module };
        if module != 0 {
            return Err(unknown);
        }
        let addr = (self.config.kfunc_addr)(index).ok_or(unknown)?;
        self.call_runtime(addr)
            .map_err(|()| JitError::ReachKfunc { pc, index, addr })
    }

    /// `call rel32` to the runtime function at `addr`; `Err` when it is out
    /// of reach of a 32-bit displacement.
    pub(super) fn call_runtime(&mut self, addr: u64) -> Result<(), ()> {
        // The displacement counts from the end of the 5-byte call.
        let next = self.config.code_addr as i128 + self.ops.offset().0 as i128 + 5;
        if i32::try_from(addr as i128 - next).is_err() {
            return Err(());
        }
        let addr = addr as usize;
        x64!(self.ops; call extern addr); // call helper
        Ok(())
    }

    /// `callx dst`: calls the helper whose id is in dst, as the interpreter
    /// (and ubpf, whose conformance suite tests it) does. The id indexes
    /// the helper table after the code (Note [Helper table]); an id out of
    /// the table or of an unknown helper ends the program with `ud2`, a
    /// trap at this instruction.
    pub(super) fn callx(&mut self, d: u8) {
        let table = self.helper_table();
        x64!(self.ops
            ; cmp Rq(d), HELPER_TABLE_LEN as i32 // cmp dst, HELPER_TABLE_LEN
            ; jae BYTE >unknown // jae unknown (unsigned: negative ids too)
            ; lea Rq(SCRATCH), [=>table] // lea r11, [rip + helper_table]
            ; mov Rq(SCRATCH), QWORD [Rq(SCRATCH) + Rq(d) * 8] // mov r11, [r11 + dst*8]
            ; test Rq(SCRATCH), Rq(SCRATCH) // test r11, r11
            ; jz BYTE >unknown // jz unknown (no such helper)
            ; call Rq(SCRATCH) // call r11
            ; jmp BYTE >done // jmp done
            ; unknown:
            ; ud2 // ud2 (trap: not a helper id)
            ; done:
        );
    }

    /// Label of the helper table, created by the first `callx`.
    fn helper_table(&mut self) -> DynamicLabel {
        match self.helper_table {
            Some(label) => label,
            None => {
                let label = self.ops.new_dynamic_label();
                self.helper_table = Some(label);
                label
            }
        }
    }

    /// Note [Helper table]
    /// After the program's code (past the end `insn_offsets` records, so no
    /// trap maps into it), 8-byte aligned: the absolute guest address of
    /// helper `id` at entry `id`, 0 where `helper_addr` knows none, for ids
    /// below [`HELPER_TABLE_LEN`] — every id the kernel has named so far.
    /// Only programs with a `callx` get one. The code region is read-only
    /// in the guest, so the table cannot be redirected.
    pub(super) fn emit_helper_table(&mut self) {
        let Some(label) = self.helper_table else {
            return;
        };
        self.ops.align(8, INT3);
        x64!(self.ops; =>label);
        for id in 0..HELPER_TABLE_LEN {
            let addr = (self.config.helper_addr)(id).unwrap_or(0);
            self.ops.extend(addr.to_le_bytes());
        }
    }

    /// A bpf-to-bpf call: the callee's prologue builds its own frame.
    pub(super) fn call_local(&mut self, pc: usize, off: i64) -> Result<(), JitError> {
        let function = self.function_label(pc, off)?;
        x64!(self.ops; call =>function); // call function
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::jit::tests::{CODE_ADDR, setup_config, setup_program};
    use crate::jit::{JitError, compile};

    #[test]
    fn helper_reach_is_exactly_rel32() {
        // `call 1` is the first instruction after the entry prologue; its
        // displacement counts from the end of the 5-byte call.
        let program = setup_program("call 1\nexit");
        let near = |_| Some(0);
        let call_end = CODE_ADDR
            + u64::from(
                compile(&program, &setup_config(&near))
                    .unwrap()
                    .insn_offsets[1],
            );
        let at = |addr: u64| {
            let helper = move |_| Some(addr);
            compile(&program, &setup_config(&helper))
        };
        let farthest = call_end + i32::MAX as u64;
        assert!(at(farthest).is_ok());
        assert!(matches!(
            at(farthest + 1),
            Err(JitError::ReachHelper { pc: 0, id: 1, .. })
        ));
        let output = at(farthest).unwrap();
        let call = output.insn_offsets[1] as usize - 5;
        assert_eq!(output.code[call], 0xe8);
        assert_eq!(output.code[call + 1..call + 5], i32::MAX.to_le_bytes());
    }
}
