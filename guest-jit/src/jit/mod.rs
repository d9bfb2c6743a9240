//! BPF → x86-64 JIT: a linked [`Program`] in, guest machine code, its
//! exception table and an instruction → offset table out.
//!
//! The model is the kernel's `arch/x86/net/bpf_jit_comp.c`: the same
//! register map ([`regs`]), helper and kfunc calls as one `call rel32` into
//! the guest runtime (except `bpf_tail_call`, inline as the kernel's, Note
//! [Tail calls] in [`tail_call`], and `bpf_get_smp_processor_id`, one
//! `gs:` load), every BPF memory access one x86 instruction with an
//! exception-table entry, RFC 9669 semantics for division, modulo and
//! shifts without ever raising a CPU exception. The semantics are exactly
//! the reference interpreter's ([`crate::interp`], the oracle of the
//! differential tests).
//!
//! [`Program`]: crate::insn::Program
//! [`regs`]: crate::jit::regs
//! [`tail_call`]: crate::jit::tail_call
//!
//! Every function (the entry at slot 0, and each subprogram a `call local`
//! or a `func` pseudo load names) gets the same SysV-conforming frame:
//!
//! ```text
//!   rbp + 8    return address
//!   rbp        caller's rbp                       <- push rbp; mov rbp, rsp
//!   rbp - 512  BPF stack, 512 bytes: [R10 - 512, R10), R10 = rbp
//!   rbp - 520  may_goto budget left in this frame (Note [may_goto])
//!   rbp - 528  padding, so that rsp stays 16-byte aligned
//!   rbp - 536  saved rbx (R6)                    <- push rbx
//!   rbp - 544  saved r13 (R7)
//!   rbp - 552  saved r14 (R8)
//!   rbp - 560  saved r15 (R9)                    <- rsp, 16-byte aligned
//! ```
//!
//! The caller's `call` leaves rsp 8 bytes past a multiple of 16; `push rbp`
//! realigns it, and the frame below is a multiple of 16, so every `call`
//! from JIT code (to a helper, whose Rust code may use aligned SSE moves,
//! or to a subprogram) happens with rsp 16-byte aligned. R6–R9 are saved
//! because a callee BPF function may write them and the caller must find
//! them unchanged; rbp because SysV says so; r12 is never written.
//!
//! The entry function also zeroes R0 and R3–R9 (r1 = ctx and r2 = len come
//! from the runtime's call) so that a program reading a register it never
//! wrote sees what the interpreter gives it, 0, rather than whatever the
//! runtime left there.
//!
//! Where JIT code and the interpreter may differ, only programs the kernel's
//! verifier would refuse can tell, and the kernel's JIT differs the same way:
//!
//! * a frame's stack is not zeroed (the interpreter gives every frame a
//!   fresh, zeroed one): reading stack never written sees old bytes;
//! * a helper call clobbers R1–R5 (the interpreter keeps them);
//! * the frames of nested calls are adjacent on one machine stack, below
//!   each other's saved registers and return addresses, so an access off
//!   the 512 bytes of a frame is not an error but reaches those (the
//!   interpreter has a guard page around each frame). The VM is the
//!   boundary such a program stays inside.

pub mod arena;
mod disasm;
mod emit;
pub mod regs;
pub mod tail_call;

use thiserror::Error;

use crate::insn::Program;

pub use disasm::{beyond_baseline, disassemble};

/// What the JIT needs to know about where the code runs.
pub struct JitConfig<'a> {
    /// Guest address where `code[0]` will live; the code is assembled for
    /// it (`dynasmrt::VecAssembler::new(code_addr)`), so helper calls are
    /// direct `call rel32`s.
    pub code_addr: u64,
    /// Helper id → guest address of an `extern "C"` (SysV) function in the
    /// guest runtime; `None` for a helper the runtime lacks. Some helpers
    /// are emitted inline, as the kernel's JIT does: `bpf_tail_call` (12)
    /// always, without an address (Note [Tail calls]),
    /// `bpf_get_smp_processor_id` (8) whenever this gives it an address,
    /// and `bpf_map_lookup_elem` (1) on arrays, falling back to the helper
    /// ([`JitConfig::map_headers`]).
    pub helper_addr: &'a dyn Fn(u32) -> Option<u64>,
    /// Kfunc index → guest address of the runtime function of that name;
    /// `None` for a kfunc the runtime lacks. The index is the `btf_id` of
    /// an `Op::CallKfunc`, which the loader makes an index into
    /// [`crate::elf::LinkedProgram::kfuncs`]. Called as helpers are.
    pub kfunc_addr: &'a dyn Fn(i32) -> Option<u64>,
    /// Slots of `ld_imm64` whose value is a `.percpu` address: the JIT
    /// follows them with `add dst, gs:[shm::percpu::THIS_CPU_OFF_OFFSET]`.
    pub percpu_loads: &'a [usize],
    /// The arena window's upper 32 bits (`user_vm_start >> 32`; 0 without
    /// an arena), which both directions of `addr_space_cast` put above a
    /// pointer's low half (Note [Arena pointers] in [`arena`]); the meaning
    /// of [`crate::interp::RunOptions::arena_upper`].
    pub arena_upper: u32,
    /// `may_goto` iterations each frame starts with; normally
    /// [`crate::interp::MAY_GOTO_BUDGET`].
    pub may_goto_budget: u64,
    /// Where map headers may lie (the maps region): a
    /// `bpf_map_lookup_elem` (1) on an `ARRAY` or `PERCPU_ARRAY` whose
    /// header lies here is done inline, as the kernel's verifier inlines
    /// array lookups (Note [Inline array lookups]). Empty: always call the
    /// helper.
    pub map_headers: std::ops::Range<u64>,
}

impl std::fmt::Debug for JitConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitConfig")
            .field("code_addr", &format_args!("{:#x}", self.code_addr))
            .field("percpu_loads", &self.percpu_loads)
            .field("arena_upper", &format_args!("{:#x}", self.arena_upper))
            .field("may_goto_budget", &self.may_goto_budget)
            .finish_non_exhaustive()
    }
}

/// Machine code and the tables that describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitOutput {
    /// Machine code; the program's entry is at offset 0. After the program
    /// code come, if the program has a `callx`, the table of helper
    /// addresses it indexes (8-byte aligned, Note [Helper table]), and
    /// `int3` (0xcc) padding to a multiple of 16 bytes.
    pub code: Vec<u8>,
    /// One entry per emitted load, store or atomic access of BPF memory,
    /// sorted by offset; offsets count from `code[0]` (the loader rebases
    /// them to wherever its exception table counts from).
    pub extable: Vec<shm::extable::ExTableEntry>,
    /// For every BPF slot, the offset of its first x86 byte (the second slot
    /// of an `ld_imm64` repeats the first's; a function's first instruction
    /// includes the prologue), then one final entry: the end of the program
    /// code, where the padding starts. Every instruction emits at least one
    /// byte, so only `ld_imm64` second slots share an offset.
    pub insn_offsets: Vec<u32>,
}

impl JitOutput {
    /// The slot of the instruction whose code contains `code_offset`, or
    /// `None` in the padding or past the end.
    pub fn insn_at(&self, code_offset: u32) -> Option<usize> {
        let (&end, starts) = self.insn_offsets.split_last()?;
        if code_offset >= end {
            return None;
        }
        // The last slot starting at or before the offset; step back over
        // the second slot of an ld_imm64, which repeats its first's offset.
        let mut slot = starts.partition_point(|&start| start <= code_offset);
        slot = slot.checked_sub(1)?;
        if slot > 0 && starts[slot - 1] == starts[slot] {
            slot -= 1;
        }
        Some(slot)
    }
}

/// Why a program could not be compiled.
#[derive(Debug, Error)]
pub enum JitError {
    /// The program has no instructions.
    #[error("Program has no instructions")]
    EmptyProgram,
    /// A helper the guest runtime does not provide.
    #[error("Instruction {pc} calls unknown helper {id}")]
    UnknownHelper {
        /// The call.
        pc: usize,
        /// The helper id.
        id: u32,
    },
    /// A helper too far from the code for a `call rel32`.
    #[error("Instruction {pc} calls helper {id} at {addr:#x}, out of reach of a rel32 call")]
    ReachHelper {
        /// The call.
        pc: usize,
        /// The helper id.
        id: u32,
        /// Where the helper is.
        addr: u64,
    },
    /// An `ld_imm64` of a map, variable or BTF id the loader did not
    /// rewrite into a plain value.
    #[error("Instruction {pc} loads an address that only a loader can resolve")]
    UnresolvedLdImm64 {
        /// The instruction.
        pc: usize,
    },
    /// A kfunc the guest runtime does not provide (or one of a kernel
    /// module's BTF, `module` nonzero, which no runtime has).
    #[error("Instruction {pc} calls unknown kfunc {index}{}", module_label(*.module))]
    UnknownKfunc {
        /// The call.
        pc: usize,
        /// The kfunc's index in the linked program's kfunc list.
        index: i32,
        /// The module BTF the call names; 0 for the kernel's own.
        module: i16,
    },
    /// A kfunc too far from the code for a `call rel32`.
    #[error("Instruction {pc} calls kfunc {index} at {addr:#x}, out of reach of a rel32 call")]
    ReachKfunc {
        /// The call.
        pc: usize,
        /// The kfunc's index.
        index: i32,
        /// Where the kfunc is.
        addr: u64,
    },
    /// A jump, local call or `func` load names a slot where no instruction
    /// starts.
    #[error("Instruction {pc} jumps to slot {target}, where no instruction starts")]
    JumpOutside {
        /// The instruction.
        pc: usize,
        /// The slot it names.
        target: i64,
    },
    /// [`JitConfig::percpu_loads`] names a slot that holds no `ld_imm64`.
    #[error("Slot {pc} is listed as a per-CPU load but holds no ld_imm64")]
    MarkPercpuLoad {
        /// The slot.
        pc: usize,
    },
    /// The code does not fit the 32-bit offsets of the tables.
    #[error("Program code exceeds 4 GiB")]
    ExceedCodeSize,
    /// The assembler could not resolve a label or relocation.
    #[error("Assembling the program failed")]
    Assemble(#[source] dynasmrt::DynasmError),
}

/// ` of module N` for a kfunc call that names a module's BTF.
fn module_label(module: i16) -> String {
    if module == 0 {
        String::new()
    } else {
        format!(" of module {module}")
    }
}

/// Compiles a linked program: slot 0 is the entry, subprograms follow in the
/// same slot space.
pub fn compile(program: &Program, config: &JitConfig) -> Result<JitOutput, JitError> {
    emit::compile(program, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;

    pub(crate) const CODE_ADDR: u64 = 0x60_0000;

    /// Helper `id` lives at `0x20_0000 + id * 0x10`, within rel32 reach of
    /// [`CODE_ADDR`]; ids above 100 are unknown.
    pub(crate) fn setup_helpers(id: u32) -> Option<u64> {
        (id <= 100).then(|| 0x20_0000 + u64::from(id) * 0x10)
    }

    /// Kfunc `index` lives at `0x30_0000 + index * 0x10` for indices 0 to
    /// 9; others are unknown.
    pub(crate) fn setup_kfuncs(index: i32) -> Option<u64> {
        let index = u64::try_from(index).ok().filter(|&i| i < 10)?;
        Some(0x30_0000 + index * 0x10)
    }

    pub(crate) fn setup_config<'a>(helpers: &'a dyn Fn(u32) -> Option<u64>) -> JitConfig<'a> {
        JitConfig {
            code_addr: CODE_ADDR,
            helper_addr: helpers,
            kfunc_addr: &setup_kfuncs,
            percpu_loads: &[],
            arena_upper: 0,
            may_goto_budget: crate::interp::MAY_GOTO_BUDGET,
            map_headers: 0..0,
        }
    }

    pub(crate) fn setup_program(src: &str) -> Program {
        Program::decode(&assemble(src).unwrap()).unwrap()
    }

    /// The decoded x86 code of slot `pc` of the program `src`.
    pub(crate) fn setup_slot_code(src: &str, pc: usize) -> Vec<iced_x86::Instruction> {
        let program = setup_program(src);
        let out = compile(&program, &setup_config(&setup_helpers)).unwrap();
        let start = out.insn_offsets[pc] as usize;
        let end = out.insn_offsets[pc + program.op(pc).unwrap().slots()] as usize;
        let ip = CODE_ADDR + start as u64;
        iced_x86::Decoder::with_ip(
            64,
            &out.code[start..end],
            ip,
            iced_x86::DecoderOptions::NONE,
        )
        .iter()
        .collect()
    }

    /// The code of one instruction, placed after a `mov %r0, 0` that
    /// carries the prologue.
    pub(crate) fn setup_insn_code(insn: &str) -> Vec<iced_x86::Instruction> {
        setup_slot_code(&format!("mov %r0, 0\n{insn}\nexit"), 1)
    }

    #[test]
    fn insn_at_maps_offsets_back_to_slots() {
        let program = setup_program("mov %r0, 1\nlddw %r1, 0x123456789\nadd %r0, %r1\nexit");
        let out = compile(&program, &setup_config(&setup_helpers)).unwrap();
        let offsets = &out.insn_offsets;
        assert_eq!(offsets.len(), program.len() + 1);
        assert_eq!(offsets[1], offsets[2], "second slot repeats the first");
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(out.insn_at(0), Some(0));
        assert_eq!(out.insn_at(offsets[1]), Some(1));
        assert_eq!(out.insn_at(offsets[3] - 1), Some(1));
        assert_eq!(out.insn_at(offsets[3]), Some(3));
        assert_eq!(out.insn_at(offsets[4] - 1), Some(3));
        assert_eq!(out.insn_at(offsets[4]), Some(4));
        assert_eq!(out.insn_at(offsets[5] - 1), Some(4));
        assert_eq!(out.insn_at(offsets[5]), None);
        assert_eq!(out.code.len() % 16, 0);
        assert!(out.code[offsets[5] as usize..].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn loop_heads_start_on_32_byte_boundaries_of_the_guest_address() {
        // Note [Loop alignment]: backward jump targets are aligned, forward
        // ones are not padded.
        let src = "mov %r0, 0\nmov %r1, 10\nja skip\nloop:\nadd %r0, 1\nsub %r1, 1\n\
                   skip:\njne %r1, 0, loop\nexit";
        let program = setup_program(src);
        for code_addr in [CODE_ADDR, CODE_ADDR + 0x10, CODE_ADDR + 0x28] {
            let config = JitConfig {
                code_addr,
                ..setup_config(&setup_helpers)
            };
            let out = compile(&program, &config).unwrap();
            let decoded: Vec<iced_x86::Instruction> = iced_x86::Decoder::with_ip(
                64,
                &out.code,
                code_addr,
                iced_x86::DecoderOptions::NONE,
            )
            .iter()
            .collect();
            let targets = |mnemonic| {
                decoded
                    .iter()
                    .filter(|i| i.mnemonic() == mnemonic)
                    .map(|i| i.near_branch_target())
                    .collect::<Vec<_>>()
            };
            let (jne, jmp) = (
                targets(iced_x86::Mnemonic::Jne),
                targets(iced_x86::Mnemonic::Jmp),
            );
            assert_eq!(jne.len(), 1, "{decoded:?}");
            assert_eq!(jne[0] % 32, 0, "loop head at {:#x}", jne[0]);
            // The padding is NOPs, and it belongs to the loop head's slot.
            let head = code_addr + u64::from(out.insn_offsets[3]);
            assert!(head <= jne[0] && jne[0] - head < 32);
            assert!(
                decoded
                    .iter()
                    .filter(|i| (head..jne[0]).contains(&i.ip()))
                    .all(|i| i.mnemonic() == iced_x86::Mnemonic::Nop)
            );
            // The forward jump lands where `skip` starts: no padding there.
            assert_eq!(jmp, [code_addr + u64::from(out.insn_offsets[5])]);
        }
    }

    #[test]
    fn jumps_within_a_byte_are_short_and_others_near() {
        // Note [Short jumps]: 40 movs of a 32-bit immediate put ~240
        // bytes between the far jump and its target.
        let filler = "mov %r1, 0x12345678\n".repeat(40);
        let src = format!(
            "mov %r0, 0\njeq %r0, 1, near\nja far\nnear:\n{filler}far:\nadd %r0, 1\n\
             jne %r0, 3, far\nexit"
        );
        let program = setup_program(&src);
        let out = compile(&program, &setup_config(&setup_helpers)).unwrap();
        let decoded: Vec<iced_x86::Instruction> =
            iced_x86::Decoder::with_ip(64, &out.code, CODE_ADDR, iced_x86::DecoderOptions::NONE)
                .iter()
                .collect();
        let branch_lens: Vec<usize> = decoded
            .iter()
            .filter(|i| i.is_jcc_short_or_near() || i.is_jmp_short_or_near())
            .map(|i| i.len())
            .collect();
        // je near (short), jmp far (near: rel32), jne far (short, back).
        assert_eq!(branch_lens, [2, 5, 2], "{decoded:?}");
        // And each lands where its slot's code starts.
        let slot_addr = |pc: usize| CODE_ADDR + u64::from(out.insn_offsets[pc]);
        let targets: Vec<u64> = decoded
            .iter()
            .filter(|i| i.is_jcc_short_or_near() || i.is_jmp_short_or_near())
            .map(|i| i.near_branch_target())
            .collect();
        let (near, far) = (3, 43);
        assert_eq!(targets[0], slot_addr(near));
        assert!(targets[1] >= slot_addr(far) && targets[1] < slot_addr(far + 1));
        assert_eq!(targets[1], targets[2]);
    }

    #[test]
    fn unsupported_instructions_are_errors() {
        let config = setup_config(&setup_helpers);
        let err = |src: &str| {
            compile(&setup_program(src), &config)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("mov %r0, 0\ncall 101\nexit"),
            "Instruction 1 calls unknown helper 101"
        );
        assert_eq!(
            err("lddw %r1, map_fd(3)\nexit"),
            "Instruction 0 loads an address that only a loader can resolve"
        );
        assert_eq!(
            err("call kfunc 12\nexit"),
            "Instruction 0 calls unknown kfunc 12"
        );
        assert_eq!(
            err("call kfunc -1\nexit"),
            "Instruction 0 calls unknown kfunc -1"
        );
        assert_eq!(
            err("call kfunc 1, 3\nexit"),
            "Instruction 0 calls unknown kfunc 1 of module 3"
        );
        assert_eq!(
            err("ja +5\nexit"),
            "Instruction 0 jumps to slot 6, where no instruction starts"
        );
        assert_eq!(
            err("ja +1\nlddw %r0, 1\nexit"),
            "Instruction 0 jumps to slot 2, where no instruction starts"
        );
        assert_eq!(
            compile(&Program::decode(&[]).unwrap(), &config)
                .unwrap_err()
                .to_string(),
            "Program has no instructions"
        );
        let percpu = JitConfig {
            percpu_loads: &[1],
            ..setup_config(&setup_helpers)
        };
        let program = setup_program("lddw %r1, 1\nexit");
        assert_eq!(
            compile(&program, &percpu).unwrap_err().to_string(),
            "Slot 1 is listed as a per-CPU load but holds no ld_imm64"
        );
    }

    #[test]
    fn helpers_out_of_rel32_reach_are_errors() {
        let far = |_| Some(0x7000_0000_0000);
        let err = compile(&setup_program("call 1\nexit"), &setup_config(&far)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 0 calls helper 1 at 0x700000000000, out of reach of a rel32 call"
        );
        let far_kfunc = |_| Some(0x7000_0000_0000);
        let config = JitConfig {
            kfunc_addr: &far_kfunc,
            ..setup_config(&setup_helpers)
        };
        let err = compile(&setup_program("mov %r0, 0\ncall kfunc 3\nexit"), &config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 1 calls kfunc 3 at 0x700000000000, out of reach of a rel32 call"
        );
    }

    #[test]
    fn kfuncs_are_called_at_the_address_of_their_index() {
        let code = setup_insn_code("call kfunc 2");
        assert_eq!(code.len(), 1);
        assert_eq!(code[0].mnemonic(), iced_x86::Mnemonic::Call);
        assert_eq!(Some(code[0].near_branch_target()), setup_kfuncs(2));
    }
}
