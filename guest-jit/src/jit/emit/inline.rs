//! Helpers emitted inline, where the kernel's JIT (or its verifier, by
//! rewriting the call) inlines them too: `bpf_tail_call`, which no called
//! function could do because it replaces the caller's frame, and
//! `bpf_get_smp_processor_id`, one load from the per-CPU block.

use dynasmrt::{DynasmApi, DynasmLabelApi};

use super::{Emitter, x64, x64_mem};
use crate::insn::Reg;
use crate::jit::regs::{RAX, SCRATCH, SCRATCH_AUX, x86};
use crate::jit::tail_call::{DATA_OFFSET, MAX_ENTRIES_OFFSET};

/// [`shm::percpu::MAX_TAIL_CALLS`] as the immediate of the count's `cmp`.
const TAIL_CALL_LIMIT: i32 = shm::percpu::MAX_TAIL_CALLS as i32;
const _: () = assert!(TAIL_CALL_LIMIT as u64 == shm::percpu::MAX_TAIL_CALLS);

/// `BPF_FUNC_get_smp_processor_id`.
pub(super) const SMP_PROCESSOR_ID_HELPER_ID: u32 = 8;

/// Where the tail-call sequence finds its operands and keeps its values,
/// named for their roles.
const PROG_ARRAY: u8 = x86(Reg::R2);
/// BPF's r3: the slot index (its low 32 bits).
const INDEX_ARG: u8 = x86(Reg::R3);
/// The index zero-extended, in a scratch register so that r3 keeps its
/// value when the call falls through (the kernel's JIT truncates r3 in
/// place; its verifier makes r3 unreadable after the call, ours does not).
const INDEX: u8 = SCRATCH;
/// The storage address, then the target's entry.
const TARGET: u8 = SCRATCH_AUX;

impl Emitter<'_> {
    /// `bpf_tail_call(r1 = ctx, r2 = PROG_ARRAY header, r3 = index)`: Note
    /// [Tail calls]. Every jump to `out` is short: the sequence is a few
    /// dozen bytes.
    pub(super) fn tail_call(&mut self) {
        let count = shm::percpu::TAIL_CALL_CNT_OFFSET as i32;
        x64!(self.ops; mov Rd(INDEX), Rd(INDEX_ARG)); // mov r11d, edx (index: u32)
        x64_mem!(self.ops, PROG_ARRAY, MAX_ENTRIES_OFFSET;
            cmp DWORD MEM, Rd(INDEX) // cmp dword [rsi+max_entries], r11d
        );
        x64!(self.ops
            ; jbe BYTE >out // jbe out (index >= max_entries)
            ; gs cmp QWORD [count], TAIL_CALL_LIMIT // cmp qword gs:[tail_call_cnt], MAX_TAIL_CALLS
            ; jae BYTE >out // jae out (budget spent)
        );
        x64_mem!(self.ops, PROG_ARRAY, DATA_OFFSET;
            mov Rq(TARGET), QWORD MEM // mov r10, [rsi+data]
        );
        x64!(self.ops
            ; mov Rq(TARGET), QWORD [Rq(TARGET) + Rq(INDEX) * 8] // mov r10, [r10+r11*8]
            ; test Rq(TARGET), Rq(TARGET) // test r10, r10
            ; jz BYTE >out // jz out (empty slot)
            ; gs add QWORD [count], 1 // add qword gs:[tail_call_cnt], 1
        );
        self.unwind_frame();
        x64!(self.ops
            ; jmp Rq(TARGET) // jmp r10 (the target's prologue)
            ; out:
        );
    }

    /// `bpf_get_smp_processor_id()`: the low half of the per-CPU block's
    /// `cpu_id`, zero-extended (a u32 in the kernel), as the kernel inlines
    /// it from its per-CPU `cpu_number`. R1–R5 keep their values.
    pub(super) fn smp_processor_id(&mut self) {
        let cpu_id = shm::percpu::CPU_ID_OFFSET as i32;
        x64!(self.ops; gs mov Rd(RAX), [cpu_id]); // mov eax, gs:[cpu_id]
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::{Mnemonic, OpKind, Register};

    use crate::jit::compile;
    use crate::jit::regs::{CALLEE_SAVED, name};
    use crate::jit::tests::{setup_config, setup_insn_code, setup_program};

    #[test]
    fn tail_call_unwinds_the_frame_as_exit_does_then_jumps() {
        let code = setup_insn_code("call 12");
        let exit = setup_insn_code("exit");
        // exit: pops, leave, ret. The tail call: the same pops and leave,
        // then an indirect jmp instead of the ret.
        let jmp = code
            .iter()
            .position(|i| i.mnemonic() == Mnemonic::Jmp)
            .unwrap();
        let teardown: Vec<_> = code[jmp - exit.len() + 1..jmp]
            .iter()
            .map(|i| (i.mnemonic(), i.op0_register()))
            .collect();
        let unwound: Vec<_> = exit[..exit.len() - 1]
            .iter()
            .map(|i| (i.mnemonic(), i.op0_register()))
            .collect();
        assert_eq!(teardown, unwound);
        assert_eq!(exit.len() - 2, CALLEE_SAVED.len());
        assert_eq!(code[jmp].op0_register(), Register::R10);
        assert_eq!(jmp, code.len() - 1, "the jmp ends the sequence");
        // Every conditional branch goes to the end of the sequence, where
        // execution falls through to the next instruction.
        let end = code[jmp].next_ip();
        let branches: Vec<_> = code
            .iter()
            .filter(|i| i.is_jcc_short_or_near())
            .map(|i| (i.mnemonic(), i.near_branch_target()))
            .collect();
        assert_eq!(
            branches,
            [
                (Mnemonic::Jbe, end),
                (Mnemonic::Jae, end),
                (Mnemonic::Je, end)
            ]
        );
    }

    #[test]
    fn tail_call_counts_only_calls_it_takes() {
        let code = setup_insn_code("call 12");
        let count = shm::percpu::TAIL_CALL_CNT_OFFSET as u64;
        let gs: Vec<_> = code
            .iter()
            .filter(|i| i.segment_prefix() == Register::GS)
            .collect();
        assert_eq!(gs.len(), 2);
        assert!(gs.iter().all(|i| i.memory_displacement64() == count));
        assert_eq!(gs[0].mnemonic(), Mnemonic::Cmp);
        assert_eq!(gs[0].immediate(1), shm::percpu::MAX_TAIL_CALLS);
        // The increment comes after the last check (the empty slot's).
        let add = code
            .iter()
            .position(|i| i.mnemonic() == Mnemonic::Add)
            .unwrap();
        let last_check = code.iter().rposition(|i| i.is_jcc_short_or_near()).unwrap();
        assert!(add > last_check);
        assert_eq!(code[add].immediate(1), 1);
    }

    #[test]
    fn tail_call_reads_the_header_and_keeps_bpf_registers() {
        let code = setup_insn_code("call 12");
        // r3 is read, never written; only scratch registers are.
        let writes: Vec<&str> = code
            .iter()
            .filter(|i| {
                i.op_count() > 0
                    && i.op0_kind() == OpKind::Register
                    && matches!(i.mnemonic(), Mnemonic::Mov)
            })
            .map(|i| name(i.op0_register().full_register().number() as u8))
            .collect();
        assert_eq!(writes, ["r11", "r10", "r10"]);
        let header: Vec<(Register, u64)> = code
            .iter()
            .filter(|i| i.memory_base() == Register::RSI)
            .map(|i| (i.memory_base(), i.memory_displacement64()))
            .collect();
        assert_eq!(
            header,
            [
                (Register::RSI, super::MAX_ENTRIES_OFFSET as u64),
                (Register::RSI, super::DATA_OFFSET as u64)
            ]
        );
    }

    #[test]
    fn smp_processor_id_is_inlined_only_when_the_helper_exists() {
        let inline = setup_insn_code("call 8");
        assert_eq!(inline.len(), 1);
        assert_eq!(inline[0].segment_prefix(), Register::GS);
        assert_eq!(inline[0].op0_register(), Register::EAX);
        assert_eq!(
            inline[0].memory_displacement64(),
            shm::percpu::CPU_ID_OFFSET as u64
        );
        let none = |id| (id != 8).then_some(0x20_0000);
        let err = compile(&setup_program("call 8\nexit"), &setup_config(&none)).unwrap_err();
        assert_eq!(err.to_string(), "Instruction 0 calls unknown helper 8");
    }

    #[test]
    fn tail_call_needs_no_helper_address() {
        let none = |_| None;
        let program = setup_program("call 12\nexit");
        assert!(compile(&program, &setup_config(&none)).is_ok());
    }
}
