//! The code generator: one pass over the program, one dynamic label per
//! instruction, forward references resolved by `dynasmrt` at the end.
//!
//! Each submodule emits one family of instructions as methods of
//! [`Emitter`]; this file drives them and emits what every function shares:
//! its prologue and epilogue (the frame drawn in [`crate::jit`]).

// dynasm! converts every dynamic register operand with `.into()`, also the
// `u8`s this JIT passes.
#![allow(clippy::useless_conversion, reason = "dynasm! expansion")]

mod alu;
mod inline;
mod jump;
mod mem;

use dynasmrt::x64::X64Relocation;
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use shm::extable::ExTableEntry;

use super::regs::{CALLEE_SAVED, RAX, RBP, RCX, RDX, RSP, SCRATCH, x86};
use super::{JitConfig, JitError, JitOutput};
use crate::insn::{Imm64, Op, Program, Reg};

/// `dynasm!` for x86-64. Every instruction written through it carries a
/// trailing comment with the assembly it stands for.
macro_rules! x64 {
    ($ops:expr; $($t:tt)*) => {
        dynasmrt::dynasm!($ops
            ; .arch x64
            ; $($t)*
        )
    };
}
pub(super) use x64;

/// `x64!` with one BPF memory operand, written `MEM`, that stands for
/// `[base + off]`: the displacement takes one byte when it fits, as in the
/// kernel's JIT, four otherwise.
macro_rules! x64_mem {
    ($ops:expr, $base:expr, $off:expr; $($t:tt)*) => {
        $crate::jit::emit::x64_mem!(@munch $ops, $base, $off, [] $($t)*)
    };
    (@munch $ops:expr, $base:expr, $off:expr, [$($done:tt)*] MEM $($rest:tt)*) => {
        match i8::try_from($off) {
            Ok(off8) => $crate::jit::emit::x64!($ops; $($done)* [BYTE Rq($base) + off8] $($rest)*),
            Err(_) => $crate::jit::emit::x64!($ops; $($done)* [Rq($base) + $off] $($rest)*),
        }
    };
    (@munch $ops:expr, $base:expr, $off:expr, [$($done:tt)*] $next:tt $($rest:tt)*) => {
        $crate::jit::emit::x64_mem!(@munch $ops, $base, $off, [$($done)* $next] $($rest)*)
    };
}
pub(super) use x64_mem;

/// `x64!` with one immediate operand, written `IMM`, that stands for the
/// i32 `imm`: encoded in one byte (sign-extended by the CPU) when it fits,
/// as in the kernel's JIT, four otherwise. Only for instructions that have
/// both forms.
macro_rules! x64_imm {
    ($ops:expr, $imm:expr; $($t:tt)*) => {
        $crate::jit::emit::x64_imm!(@munch $ops, $imm, [] $($t)*)
    };
    (@munch $ops:expr, $imm:expr, [$($done:tt)*] IMM $($rest:tt)*) => {
        match i8::try_from($imm) {
            Ok(imm8) => $crate::jit::emit::x64!($ops; $($done)* BYTE imm8 $($rest)*),
            Err(_) => $crate::jit::emit::x64!($ops; $($done)* DWORD $imm $($rest)*),
        }
    };
    (@munch $ops:expr, $imm:expr, [$($done:tt)*] $next:tt $($rest:tt)*) => {
        $crate::jit::emit::x64_imm!(@munch $ops, $imm, [$($done)* $next] $($rest)*)
    };
}
pub(super) use x64_imm;

/// Bytes of BPF stack per frame (the kernel's `MAX_BPF_STACK`).
pub(crate) const BPF_STACK_SIZE: i32 = 512;
/// Distance below rbp of the frame's `may_goto` counter (Note [may_goto]).
pub(crate) const MAY_GOTO_SLOT: i32 = BPF_STACK_SIZE + 8;
/// Bytes `sub rsp` reserves below rbp: the BPF stack, the `may_goto` slot,
/// and padding that keeps rsp 16-byte aligned once R6–R9 are pushed.
pub(crate) const FRAME_SIZE: i32 = BPF_STACK_SIZE + 16;
const _: () = assert!((FRAME_SIZE + 8 * CALLEE_SAVED.len() as i32) % 16 == 0);

/// Alignment, and padding byte, of the code.
const CODE_ALIGN: usize = 16;
pub(super) const INT3: u8 = 0xcc;

/// The assembler type the emitters write to.
pub(super) type Ops = VecAssembler<X64Relocation>;

/// State of one compilation.
pub(super) struct Emitter<'a> {
    pub(super) ops: Ops,
    program: &'a Program,
    config: &'a JitConfig<'a>,
    /// Label of each slot's code, after any prologue (what jumps target).
    labels: Vec<DynamicLabel>,
    /// Label of each function's prologue, at its first slot (what calls and
    /// `func` loads target).
    functions: Vec<Option<DynamicLabel>>,
    extable: Vec<ExTableEntry>,
    /// Whether any `may_goto` exists, so that prologues set the counter.
    uses_may_goto: bool,
    /// Label of the helper table, once a `callx` needs it.
    helper_table: Option<DynamicLabel>,
    /// Slots whose jump is rel8 (Note [Short jumps]); empty: none.
    short: &'a [bool],
}

/// See [`super::compile`]: Note [Short jumps].
pub(super) fn compile(program: &Program, config: &JitConfig) -> Result<JitOutput, JitError> {
    let heads = loop_heads(program);
    let long = emit(program, config, &heads, &[])?;
    let short = short_jumps(program, &heads, &long.insn_offsets);
    if !short.contains(&true) {
        return Ok(long);
    }
    // The bound is conservative; should the assembler still find a rel8
    // out of reach, the all-rel32 code is as correct.
    match emit(program, config, &heads, &short) {
        Err(JitError::Assemble(_)) => Ok(long),
        other => other,
    }
}

// Note [Short jumps]
// ~~~~~~~~~~~~~~~~~~
// A jump within reach of a signed byte is encoded rel8 (2 bytes instead of
// 5 or 6), as the kernel's JIT does, which keeps loops small (a matrix
// product's inner loop: 55 bytes with rel32 jumps, 46 with rel8; 1.10x the
// kernel's time, then 1.05x). The code is emitted twice: all rel32 first,
// which gives every slot's offset; then with rel8 for each jump whose
// source and target slots both lie within 127 bytes of each other in that
// layout, counting the most that loop alignment (Note [Loop alignment])
// could add between them when code before a loop head shrinks. Code only
// shrinks otherwise, so each such jump still reaches; the assembler checks
// anyway, and the first layout stands if it does not. The second pass
// costs compile time (the JIT bench: 64 -> 155 µs per 1,000
// instructions), paid once per object: snapshots and pools reuse the
// code. Making only backward jumps short, whose targets one pass already
// knows, cost nothing but left the sieve and matrix rows 5-9% slower.

/// For each slot, whether its jump can be rel8 (Note [Short jumps]), from
/// the slot offsets of an all-rel32 layout.
fn short_jumps(program: &Program, heads: &[bool], offsets: &[u32]) -> Vec<bool> {
    let mut short = vec![false; program.len()];
    for (pc, op) in program.iter() {
        let Some(target) = jump_target(program, pc, op) else {
            continue;
        };
        let (first, last) = (pc.min(target), pc.max(target));
        let span = offsets[last + 1].saturating_sub(offsets[first]);
        // Every slot takes a byte at least: a span within reach covers
        // fewer than 128 slots, so counting their heads stays cheap.
        short[pc] = span <= 127 && {
            let padding = heads[first..=last].iter().filter(|&&h| h).count() as u32;
            span + padding * (LOOP_ALIGN - 1) <= 127
        };
    }
    short
}

/// Emits `program`, loop heads (`loop_heads`) aligned, jumps of slots
/// marked in `short` rel8.
fn emit(
    program: &Program,
    config: &JitConfig,
    loop_heads: &[bool],
    short: &[bool],
) -> Result<JitOutput, JitError> {
    if program.is_empty() {
        return Err(JitError::EmptyProgram);
    }
    // Code addresses are guest addresses and the host is 64-bit: no loss.
    let mut e = Emitter {
        // About 10 bytes of code per instruction; a label per slot and per
        // function; a reference per jump or call.
        ops: VecAssembler::new_with_capacity(
            config.code_addr as usize,
            program.len() * 12,
            0,
            0,
            program.len() * 2,
            0,
            program.len(),
        ),
        program,
        config,
        labels: Vec::with_capacity(program.len()),
        functions: vec![None; program.len()],
        extable: Vec::new(),
        uses_may_goto: program
            .iter()
            .any(|(_, op)| matches!(op, Op::MayGoto { .. })),
        helper_table: None,
        short,
    };
    for _ in 0..program.len() {
        let label = e.ops.new_dynamic_label();
        e.labels.push(label);
    }
    e.find_functions()?;
    let mut percpu = vec![false; program.len()];
    for &pc in config.percpu_loads {
        match program.op(pc) {
            Some(Op::LdImm64 { .. }) => percpu[pc] = true,
            _ => return Err(JitError::MarkPercpuLoad { pc }),
        }
    }

    let mut insn_offsets = vec![0u32; program.len() + 1];
    for (pc, op) in program.iter() {
        let start = e.offset()?;
        insn_offsets[pc] = start;
        if op.slots() == 2 {
            insn_offsets[pc + 1] = start;
        }
        if let Some(function) = e.functions[pc] {
            e.prologue(function, pc == 0);
        }
        if loop_heads[pc] {
            e.align_loop_head()?;
        }
        let label = e.labels[pc];
        x64!(e.ops; =>label);
        e.op(pc, *op)?;
        if percpu[pc] {
            e.percpu_offset(*op);
        }
        // Every instruction gets at least one byte, so that insn_at can
        // tell instructions apart (`le64`, `mod r1, 0`, `ja +0`).
        if e.offset()? == start {
            x64!(e.ops; nop); // nop
        }
    }
    let end = e.offset()?;
    insn_offsets[program.len()] = end;
    e.emit_helper_table();
    e.ops.align(CODE_ALIGN, INT3);
    let code = e.ops.finalize().map_err(JitError::Assemble)?;
    Ok(JitOutput {
        code,
        extable: e.extable,
        insn_offsets,
    })
}

/// Alignment of loop heads: Note [Loop alignment].
const LOOP_ALIGN: u32 = 32;

/// The recommended multi-byte NOPs (Intel SDM vol. 2B, `NOP`), by length.
const NOPS: [&[u8]; 9] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

// Note [Loop alignment]
// ~~~~~~~~~~~~~~~~~~~~~
// The target of every backward jump (a loop's head, as clang lays loops
// out) starts on a 32-byte boundary, padded with multi-byte NOPs. A small
// hot loop that straddles a 64-byte line of code runs at half speed on
// the AMD EPYC hosts we measure on (the prime sieve's marking loop: 6.1 µs
// inside one line, 11.9 µs across two, the same instructions), and where a
// loop lands is otherwise an accident of the code before it: the kernel's
// JIT, which does not align, is fast or slow on the same program depending
// on that accident. 32 bytes keeps every loop of up to 32 bytes inside one
// line; the padding runs once per entry into the loop (a few NOPs, decoded
// in a cycle or two), never per iteration. Compilers do the same (GCC and
// LLVM align loop heads to 16 or 32 bytes).

/// The slot the jump (`ja`, `gotol`, a conditional jump, `may_goto`) at
/// slot `pc` goes to, if `op` is one and lands in the program.
fn jump_target(program: &Program, pc: usize, op: &Op) -> Option<usize> {
    let is_jump = matches!(
        op,
        Op::Ja { .. } | Op::Jmp { .. } | Op::MayGoto { .. } | Op::Gotol { .. }
    );
    let off = op.branch_offset().filter(|_| is_jump)?;
    usize::try_from((pc as i64).saturating_add(1).saturating_add(off))
        .ok()
        .filter(|&t| t < program.len())
}

/// Whether each slot is the target of a backward jump.
fn loop_heads(program: &Program) -> Vec<bool> {
    let mut heads = vec![false; program.len()];
    for (pc, op) in program.iter() {
        if let Some(target) = jump_target(program, pc, op).filter(|&t| t <= pc) {
            heads[target] = true;
        }
    }
    heads
}

impl Emitter<'_> {
    /// Whether the jump of slot `pc` is rel8 (Note [Short jumps]).
    fn short_jump(&self, pc: usize) -> bool {
        self.short.get(pc).copied().unwrap_or(false)
    }

    /// Pads with NOPs to the next [`LOOP_ALIGN`] boundary of the guest
    /// address the code runs at.
    fn align_loop_head(&mut self) -> Result<(), JitError> {
        let addr = self
            .config
            .code_addr
            .wrapping_add(u64::from(self.offset()?));
        let misalign = (addr % u64::from(LOOP_ALIGN)) as u32;
        let mut pad = (LOOP_ALIGN - misalign) % LOOP_ALIGN;
        while pad > 0 {
            let nop = NOPS[(pad as usize).min(NOPS.len()) - 1];
            self.ops.extend(nop.iter().copied());
            pad -= nop.len() as u32;
        }
        Ok(())
    }

    /// Current code offset.
    fn offset(&self) -> Result<u32, JitError> {
        u32::try_from(self.ops.offset().0).map_err(|_| JitError::ExceedCodeSize)
    }

    /// The slot `off` after the one following `pc`, if an instruction starts
    /// there.
    fn target(&self, pc: usize, off: i64) -> Result<usize, JitError> {
        let target = (pc as i64).saturating_add(1).saturating_add(off);
        usize::try_from(target)
            .ok()
            .filter(|&t| self.program.op(t).is_some())
            .ok_or(JitError::JumpOutside { pc, target })
    }

    /// Label of the instruction `off` slots after the one following `pc`.
    fn jump_label(&self, pc: usize, off: i64) -> Result<DynamicLabel, JitError> {
        Ok(self.labels[self.target(pc, off)?])
    }

    /// Label of the function that starts `off` slots after `pc + 1`.
    fn function_label(&self, pc: usize, off: i64) -> Result<DynamicLabel, JitError> {
        let target = self.target(pc, off)?;
        // find_functions gave every call and func-load target a label.
        self.functions[target].ok_or(JitError::JumpOutside {
            pc,
            target: target as i64,
        })
    }

    /// Gives slot 0 and every target of a local call or `func` load a
    /// prologue label.
    fn find_functions(&mut self) -> Result<(), JitError> {
        let entry = self.ops.new_dynamic_label();
        self.functions[0] = Some(entry);
        for (pc, op) in self.program.iter() {
            let off = match *op {
                Op::CallLocal { off } => i64::from(off),
                Op::LdImm64 {
                    value: Imm64::Func { off },
                    ..
                } => i64::from(off),
                _ => continue,
            };
            let target = self.target(pc, off)?;
            if self.functions[target].is_none() {
                let label = self.ops.new_dynamic_label();
                self.functions[target] = Some(label);
            }
        }
        Ok(())
    }

    /// Emits the code of `op`, the instruction at slot `pc`.
    fn op(&mut self, pc: usize, op: Op) -> Result<(), JitError> {
        match op {
            Op::Alu {
                width,
                op,
                dst,
                src,
            } => self.alu(width, op, x86(dst), src),
            Op::Neg { width, dst } => self.neg(width, x86(dst)),
            Op::Movsx {
                width,
                dst,
                src,
                from,
            } => self.movsx(width, x86(dst), x86(src), from),
            Op::ByteSwap { dst, kind, bits } => self.byte_swap(x86(dst), kind, bits),
            Op::AddrSpaceCast { dst, src, kind } => {
                self.addr_space_cast(x86(dst), x86(src), kind);
            }
            Op::LdImm64 { dst, value } => self.ld_imm64(pc, x86(dst), value)?,
            Op::Load {
                size,
                dst,
                src,
                off,
            }
            | Op::LoadAcquire {
                size,
                dst,
                src,
                off,
            } => self.load(size, x86(dst), x86(src), off.into()),
            Op::LoadSx {
                size,
                dst,
                src,
                off,
            } => self.load_sx(size, x86(dst), x86(src), off.into()),
            Op::Store {
                size,
                dst,
                off,
                src,
            } => self.store(size, x86(dst), off.into(), src),
            Op::StoreRelease {
                size,
                dst,
                off,
                src,
            } => self.store(size, x86(dst), off.into(), crate::insn::Source::Reg(src)),
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => self.atomic(width, op, x86(dst), off.into(), x86(src)),
            Op::Ja { off } => self.ja(pc, off.into())?,
            Op::Gotol { off } => self.ja(pc, off.into())?,
            Op::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => self.jmp(pc, width, cond, x86(dst), src, off.into())?,
            Op::MayGoto { off } => self.may_goto(pc, off.into())?,
            Op::CallHelper {
                id: super::tail_call::HELPER_ID,
            } => self.tail_call(),
            Op::CallHelper {
                id: inline::SMP_PROCESSOR_ID_HELPER_ID,
            } if (self.config.helper_addr)(inline::SMP_PROCESSOR_ID_HELPER_ID).is_some() => {
                self.smp_processor_id();
            }
            Op::CallHelper {
                id: inline::MAP_LOOKUP_HELPER_ID,
            } if !self.config.map_headers.is_empty() => {
                let id = inline::MAP_LOOKUP_HELPER_ID;
                let addr =
                    (self.config.helper_addr)(id).ok_or(JitError::UnknownHelper { pc, id })?;
                self.map_lookup(addr)
                    .map_err(|()| JitError::ReachHelper { pc, id, addr })?;
            }
            Op::CallHelper { id } => self.call_helper(pc, id)?,
            Op::CallLocal { off } => self.call_local(pc, off.into())?,
            Op::CallKfunc { btf_id, module } => self.call_kfunc(pc, btf_id, module)?,
            Op::Callx { dst } => self.callx(x86(dst)),
            Op::Exit => self.epilogue(),
        }
        Ok(())
    }

    /// A function's entry: the frame drawn in [`crate::jit`].
    fn prologue(&mut self, function: DynamicLabel, is_entry: bool) {
        x64!(self.ops
            ; =>function
            ; push Rq(RBP) // push rbp
            ; mov Rq(RBP), Rq(RSP) // mov rbp, rsp
            ; sub Rq(RSP), FRAME_SIZE // sub rsp, FRAME_SIZE
        );
        for reg in CALLEE_SAVED {
            x64!(self.ops; push Rq(reg)); // push reg
        }
        if self.uses_may_goto {
            self.init_may_goto();
        }
        if is_entry {
            // R0, R3–R9: the interpreter starts them at 0. A 32-bit xor
            // clears the whole register.
            for reg in [0, 3, 4, 5, 6, 7, 8, 9].into_iter().filter_map(Reg::new) {
                let reg = x86(reg);
                x64!(self.ops; xor Rd(reg), Rd(reg)); // xor reg32, reg32
            }
        }
    }

    /// Note [may_goto]
    /// Each frame counts its own `may_goto` iterations, as the interpreter
    /// does: the prologue stores the budget in the frame's slot, every
    /// `may_goto` falls through while decrementing it and jumps once it is
    /// 0 (and stays 0). A slot in the frame, not a register, so nothing is
    /// reserved for a rare instruction and a callee's count cannot disturb
    /// its caller's.
    fn init_may_goto(&mut self) {
        let budget = self.config.may_goto_budget;
        match i32::try_from(budget) {
            Ok(budget) => {
                x64!(self.ops
                    ; mov QWORD [Rq(RBP) - MAY_GOTO_SLOT], budget // mov qword [rbp-520], budget
                );
            }
            Err(_) => {
                x64!(self.ops
                    ; mov Rq(SCRATCH), QWORD budget as i64 // movabs r11, budget
                    ; mov [Rq(RBP) - MAY_GOTO_SLOT], Rq(SCRATCH) // mov [rbp-520], r11
                );
            }
        }
    }

    /// `exit`: restore R6–R9 and the caller's frame, return r0 in rax.
    fn epilogue(&mut self) {
        self.unwind_frame();
        x64!(self.ops; ret); // ret
    }

    /// Undoes the prologue: R6–R9 and rbp as the caller had them, rsp on
    /// the return address. What `exit` and a tail call share.
    fn unwind_frame(&mut self) {
        for reg in CALLEE_SAVED.into_iter().rev() {
            x64!(self.ops; pop Rq(reg)); // pop reg
        }
        x64!(self.ops; leave); // leave (mov rsp, rbp; pop rbp)
    }

    /// Records an exception-table entry for the one instruction `emit`
    /// writes: a BPF memory access. `dst` is the register a load writes.
    fn access(&mut self, dst: Option<u8>, emit: impl FnOnce(&mut Ops)) {
        let start = self.ops.offset().0;
        emit(&mut self.ops);
        let end = self.ops.offset().0;
        // compile() checks the total size against u32 when it is done, and
        // an x86 instruction is at most 15 bytes: neither cast truncates
        // any offset that ends up in an output.
        self.extable.push(ExTableEntry {
            offset: start as u32,
            len: (end - start) as u8,
            dst: dst.unwrap_or(shm::extable::NO_DST),
            reserved: 0,
        });
    }
}

/// Registers the division sequence and variable shifts must keep, named
/// here so the emitters read as the x86 rules they follow.
pub(super) const DIVIDEND: u8 = RAX;
/// High half of the dividend; the remainder.
pub(super) const REMAINDER: u8 = RDX;
/// The register whose low byte `cl` is a variable shift's count.
pub(super) const SHIFT_COUNT: u8 = RCX;

#[cfg(test)]
mod tests {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

    use super::*;
    use crate::jit::tests::{
        CODE_ADDR, setup_config, setup_helpers, setup_program, setup_slot_code,
    };

    /// How far rsp is below its value at the function's entry (where it is
    /// 8 past a multiple of 16) after the prologue's pushes and `sub`.
    fn prologue_depth(code: &[iced_x86::Instruction]) -> i64 {
        let mut depth = 8; // the return address
        for insn in code {
            match insn.mnemonic() {
                Mnemonic::Push => depth += 8,
                Mnemonic::Sub if insn.op0_register() == Register::RSP => {
                    assert_eq!(insn.op1_kind(), OpKind::Immediate32to64);
                    depth += insn.immediate32to64();
                }
                _ => {}
            }
        }
        depth
    }

    #[test]
    fn every_function_keeps_calls_16_byte_aligned() {
        let src = "call local f\nexit\nf:\nmay_goto +0\ncall 1\nexit";
        for pc in [0, 2] {
            let code = setup_slot_code(src, pc);
            // Rust helpers may use aligned SSE moves on their frame.
            assert_eq!(prologue_depth(&code) % 16, 0, "slot {pc}");
            assert_eq!(code[0].mnemonic(), Mnemonic::Push);
            assert_eq!(code[0].op0_register(), Register::RBP);
        }
    }

    #[test]
    fn only_the_entry_clears_registers() {
        let zeroed = |code: &[iced_x86::Instruction]| {
            code.iter()
                .filter(|i| i.mnemonic() == Mnemonic::Xor && i.op0_register() == i.op1_register())
                .count()
        };
        let src = "call local f\nexit\nf:\nexit";
        // R0 and R3–R9 in the entry; a subprogram gets its caller's values.
        assert_eq!(zeroed(&setup_slot_code(src, 0)), 8);
        assert_eq!(zeroed(&setup_slot_code(src, 2)), 0);
    }

    #[test]
    fn may_goto_budget_is_set_in_every_frame_when_used() {
        let wide = u64::from(u32::MAX) + 1;
        let program = setup_program("call local f\nexit\nf:\nmay_goto +0\nexit");
        for budget in [8 * 1024 * 1024, wide] {
            let config = JitConfig {
                may_goto_budget: budget,
                map_headers: 0..0,
                ..setup_config(&setup_helpers)
            };
            let out = compile(&program, &config).unwrap();
            let code: Vec<_> = Decoder::with_ip(64, &out.code, CODE_ADDR, DecoderOptions::NONE)
                .iter()
                .collect();
            let slot_stores = code
                .iter()
                .filter(|i| {
                    i.mnemonic() == Mnemonic::Mov
                        && i.op0_kind() == OpKind::Memory
                        && i.memory_displacement64() as i64 == -i64::from(MAY_GOTO_SLOT)
                })
                .count();
            assert_eq!(slot_stores, 2, "budget {budget}");
            let wide_immediate = code.iter().any(|i| i.immediate64() == wide);
            assert_eq!(wide_immediate, budget == wide);
        }
        // No may_goto, no counter.
        let code = setup_slot_code("call local f\nexit\nf:\nexit", 0);
        assert!(
            code.iter()
                .all(|i| i.memory_displacement64() as i64 != -i64::from(MAY_GOTO_SLOT))
        );
    }
}
