//! Helpers emitted inline, where the kernel's JIT (or its verifier, by
//! rewriting the call) inlines them too: `bpf_tail_call`, which no called
//! function could do because it replaces the caller's frame,
//! `bpf_get_smp_processor_id`, one load from the per-CPU block, and
//! `bpf_map_lookup_elem` on arrays (Note [Inline array lookups]).

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

/// `BPF_FUNC_map_lookup_elem`.
pub(super) const MAP_LOOKUP_HELPER_ID: u32 = 1;

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

    /// Note [Inline array lookups]
    /// The kernel's verifier replaces `bpf_map_lookup_elem` on an array
    /// map with the address arithmetic (`array_map_gen_lookup`), since it
    /// knows which map r1 holds. The JIT does not, so it checks at run
    /// time, from the header r1 points at (r2 points at the key):
    ///
    /// ```text
    ///   if r1 - map_headers.start > len - 64         goto helper
    ///   if header.map_type == ARRAY                  cpu_off = 0
    ///   elif header.map_type == PERCPU_ARRAY         cpu_off = cpu_id * header.percpu_block
    ///   else                                         goto helper
    ///   index = *(u32 *)r2
    ///   if index >= header.max_entries               r0 = NULL, done
    ///   r0 = header.data + cpu_off + index * header.value_stride
    /// helper:
    ///   call bpf_map_lookup_elem                      (hashes, wild r1, ...)
    /// ```
    ///
    /// A dozen instructions instead of a call that checks the header
    /// against its per-vCPU cache and reads the key through fault-safe
    /// loads (about 15 ns; `docs/benchmarks.md`). The result is the helper's (`shm::maps::array::lookup`),
    /// with two differences, both only for programs the kernel's verifier
    /// would refuse: a key pointer that faults is a trap here, not NULL,
    /// and the header is trusted as the JIT's tail calls trust it (a
    /// program that scribbled over it gets the wrong address, inside
    /// guest memory). Only r0, r10 and r11 change; the helper ABI lets
    /// R1–R5 be clobbered, so callers cannot tell.
    pub(super) fn map_lookup(&mut self, helper: u64) -> Result<(), ()> {
        use shm::maps::def::{
            MAP_HEADER_SIZE, MAP_TYPE_OFFSET, PERCPU_BLOCK_OFFSET, VALUE_STRIDE_OFFSET,
        };
        let headers = self.config.map_headers.clone();
        let span = headers.end.saturating_sub(headers.start);
        let Ok(last) = i32::try_from(span.saturating_sub(MAP_HEADER_SIZE as u64)) else {
            return Err(());
        };
        let map_type = MAP_TYPE_OFFSET as i32;
        let max_entries = MAX_ENTRIES_OFFSET;
        let stride = VALUE_STRIDE_OFFSET as i32;
        let block = PERCPU_BLOCK_OFFSET as i32;
        let data = DATA_OFFSET;
        let cpu_id = shm::percpu::CPU_ID_OFFSET as i32;
        let array = shm::maps::MapType::Array as i32;
        let percpu_array = shm::maps::MapType::PercpuArray as i32;
        let header = x86(Reg::R1);
        let key = x86(Reg::R2);
        // r10 = r1 - map_headers.start
        match i32::try_from(headers.start) {
            Ok(start) => {
                x64!(self.ops; lea Rq(SCRATCH_AUX), [Rq(header) - start]); // lea r10, [rdi-start]
            }
            Err(_) => x64!(self.ops
                ; mov Rq(SCRATCH_AUX), Rq(header) // mov r10, rdi
                ; mov Rq(SCRATCH), QWORD headers.start as i64 // mov r11, start
                ; sub Rq(SCRATCH_AUX), Rq(SCRATCH) // sub r10, r11
            ),
        }
        // Every jump is short: the sequence is about 70 bytes.
        x64!(self.ops
            ; cmp Rq(SCRATCH_AUX), DWORD last // cmp r10, len - 64
            ; ja BYTE >call // ja call (not in the maps region)
            ; xor Rd(SCRATCH_AUX), Rd(SCRATCH_AUX) // xor r10d, r10d (cpu_off)
        );
        x64_mem!(self.ops, header, map_type;
            cmp DWORD MEM, BYTE array // cmp dword [rdi+4], ARRAY
        );
        x64!(self.ops; je BYTE >index);
        x64_mem!(self.ops, header, map_type;
            cmp DWORD MEM, BYTE percpu_array // cmp dword [rdi+4], PERCPU_ARRAY
        );
        x64!(self.ops
            ; jne BYTE >call
            ; gs mov Rd(SCRATCH_AUX), [cpu_id] // mov r10d, gs:[cpu_id]
        );
        x64_mem!(self.ops, header, block;
            imul Rd(SCRATCH_AUX), DWORD MEM // imul r10d, [rdi+percpu_block]
        );
        x64!(self.ops
            ; index:
            ; mov Rd(RAX), DWORD [Rq(key)] // mov eax, [rsi] (index)
        );
        x64_mem!(self.ops, header, max_entries;
            cmp Rd(RAX), DWORD MEM // cmp eax, [rdi+max_entries]
        );
        x64!(self.ops; jae BYTE >null);
        x64_mem!(self.ops, header, stride;
            mov Rd(SCRATCH), DWORD MEM // mov r11d, [rdi+value_stride]
        );
        x64!(self.ops
            ; imul Rq(RAX), Rq(SCRATCH) // imul rax, r11
            ; add Rq(RAX), Rq(SCRATCH_AUX) // add rax, r10
        );
        x64_mem!(self.ops, header, data;
            add Rq(RAX), QWORD MEM // add rax, [rdi+data]
        );
        x64!(self.ops
            ; jmp BYTE >done
            ; null:
            ; xor Rd(RAX), Rd(RAX) // xor eax, eax
            ; jmp BYTE >done
            ; call:
        );
        self.call_runtime(helper)?;
        x64!(self.ops; done:);
        Ok(())
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

    /// The x86 code of `call 1` compiled with map headers in `headers`.
    fn lookup_code(headers: std::ops::Range<u64>) -> Vec<iced_x86::Instruction> {
        use crate::jit::tests::{CODE_ADDR, setup_helpers};
        let program = setup_program("mov %r0, 0\ncall 1\nexit");
        let config = crate::jit::JitConfig {
            map_headers: headers,
            ..setup_config(&setup_helpers)
        };
        let out = compile(&program, &config).unwrap();
        let (start, end) = (out.insn_offsets[1] as usize, out.insn_offsets[2] as usize);
        iced_x86::Decoder::with_ip(
            64,
            &out.code[start..end],
            CODE_ADDR + start as u64,
            iced_x86::DecoderOptions::NONE,
        )
        .iter()
        .collect()
    }

    #[test]
    fn array_lookups_are_inline_with_the_helper_as_fallback() {
        let helper = crate::jit::tests::setup_helpers(1).unwrap();
        let code = lookup_code(0x94_0000..0x194_0000);
        assert_eq!(code[0].mnemonic(), Mnemonic::Lea);
        assert_eq!(code[0].memory_displacement64(), 0x94_0000u64.wrapping_neg());
        assert_eq!(code[1].immediate(1), 0x100_0000 - 64);
        // One call, the helper, last; every branch stays in the sequence.
        let calls: Vec<_> = code.iter().filter(|i| i.is_call_near()).collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].near_branch_target(), helper);
        let last = code.last().unwrap();
        assert!(last.is_call_near());
        let (first_ip, end) = (code[0].ip(), last.next_ip());
        for branch in code
            .iter()
            .filter(|i| i.is_jcc_short_or_near() || i.is_jmp_short_or_near())
        {
            let target = branch.near_branch_target();
            assert!((first_ip..=end).contains(&target), "{branch}");
        }
        // Only rax and the scratch registers are written.
        for i in &code {
            if i.op_count() > 0 && i.op0_kind() == OpKind::Register && !i.is_call_near() {
                let reg = i.op0_register().full_register();
                assert!(
                    matches!(reg, Register::RAX | Register::R10 | Register::R11),
                    "{i} writes {reg:?}"
                );
            }
        }
        // Regions above 2 GiB are subtracted with a 64-bit immediate.
        let far = lookup_code(0x1_0000_0000..0x1_0100_0000);
        assert_eq!(far[1].mnemonic(), Mnemonic::Mov);
        assert_eq!(far[1].immediate(1), 0x1_0000_0000);
        // No region: the plain helper call.
        let plain = lookup_code(0..0);
        assert_eq!(plain.len(), 1);
        assert!(plain[0].is_call_near());
    }

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
