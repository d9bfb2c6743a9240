//! The reference interpreter: RFC 9669 semantics, the oracle the JIT is
//! differentially tested against.
//!
//! Choices where the RFC leaves room or the kernel goes beyond it:
//!
//! * Memory is a set of bounds-checked regions at guest addresses
//!   ([`mem`]); an access outside them stops the program with
//!   [`ExecError::AccessMemory`], naming the instruction and the address.
//!   Alignment is not checked, as on x86-64.
//! * Local calls (RFC 9669 §4.3.2) give the callee a fresh, zeroed 512-byte
//!   stack in its own region, preserve r6–r9 and r10 across the call and
//!   pass r1–r5 and r0 through. At most [`MAX_CALL_FRAMES`] frames are live
//!   at once, the kernel's `MAX_CALL_FRAMES` (the entry frame included).
//! * Helper calls leave r1–r5 as they were; the kernel forbids reading them
//!   after a call, so no verified program can tell.
//! * `callx` calls the helper whose id is in the register, as ubpf does
//!   (the kernel has no `callx`).
//! * `call 12`, `bpf_tail_call`, is the interpreter's own, not a
//!   [`Helpers`] call: it reads the PROG_ARRAY header and slot from memory
//!   exactly as the JIT's inline sequence does and enters the program whose
//!   entry address the slot holds, among those [`run_with_programs`] was
//!   given (Note [Tail calls] in [`crate::jit::tail_call`]): at most
//!   [`shm::percpu::MAX_TAIL_CALLS`] per run, counted when taken; the
//!   target replaces the running frame with a fresh, zeroed stack, r1 and
//!   r2 kept and r0, r3–r9 zeroed as at any entry; a call that falls
//!   through changes no register.
//! * `may_goto` counts as the kernel's non-timed lowering does: each frame
//!   starts with [`MAY_GOTO_BUDGET`] (`BPF_MAX_LOOPS`) and every `may_goto`
//!   falls through while decrementing it, or jumps once it is 0. (Recent
//!   x86-64 kernels bound it by time instead; a count keeps the oracle
//!   deterministic.)
//! * `addr_space_cast` (Note [Arena pointers] in [`crate::jit::arena`]):
//!   both directions keep the low 32 bits and put
//!   [`RunOptions::arena_upper`] above them, the full address of the arena
//!   byte the kernel's `[src + r12 + off]` would reach; cast to as 1
//!   (`cast_user`) keeps NULL (low half 0) as NULL. With the default upper
//!   half 0 both keep the low 32 bits only.
//! * An `ld_imm64` that names a map, a variable or a function fails with
//!   [`ExecError::ResolveLdImm64`]: a loader must first rewrite it into a
//!   plain value, as the kernel does.
//! * Every executed instruction counts against [`RunOptions::step_limit`].
//!
//! [`mem`]: crate::interp::mem
//! [`Helpers`]: crate::interp::Helpers
//! [`run_with_programs`]: crate::interp::run_with_programs
//! [`ExecError::AccessMemory`]: crate::interp::ExecError::AccessMemory
//! [`ExecError::ResolveLdImm64`]: crate::interp::ExecError::ResolveLdImm64
//! [`MAX_CALL_FRAMES`]: crate::interp::MAX_CALL_FRAMES
//! [`MAY_GOTO_BUDGET`]: crate::interp::MAY_GOTO_BUDGET
//! [`RunOptions::arena_upper`]: crate::interp::RunOptions::arena_upper
//! [`RunOptions::step_limit`]: crate::interp::RunOptions::step_limit

pub mod alu;
pub mod helpers;
pub mod mem;
mod tail_call;

use thiserror::Error;

pub use helpers::{HelperError, Helpers, NoHelpers};
pub use mem::{Access, MemError, Memory, Region, RegionKind};

use crate::insn::{AtomicOp, CastKind, Imm64, Op, Program, Reg, Size, Source, Width};
use alu::imm64;
use mem::{stack_start, stack_top};

/// Most call frames live at once, the entry frame included (the kernel's
/// `MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;

/// Iterations of `may_goto` each frame gets before it starts jumping (the
/// kernel's `BPF_MAX_LOOPS`, 8M).
pub const MAY_GOTO_BUDGET: u64 = 8 * 1024 * 1024;

/// Default [`RunOptions::step_limit`].
pub const DEFAULT_STEP_LIMIT: u64 = 100_000_000;

/// Knobs of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Most instructions executed before the run stops with
    /// [`ExecError::ExceedStepLimit`].
    pub step_limit: u64,
    /// The arena window's upper 32 bits, which `addr_space_cast` puts on a
    /// pointer (Note [Arena pointers]); 0 without an arena.
    pub arena_upper: u32,
    /// `may_goto` iterations each frame starts with; the kernel's
    /// [`MAY_GOTO_BUDGET`] unless a test wants to reach the end sooner.
    pub may_goto_budget: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            step_limit: DEFAULT_STEP_LIMIT,
            arena_upper: 0,
            may_goto_budget: MAY_GOTO_BUDGET,
        }
    }
}

/// How a run ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// r0 at the final `exit`, or what a helper unwound with.
    pub return_value: u64,
    /// Instructions executed.
    pub steps: u64,
}

/// Why a run stopped without returning.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExecError {
    /// Control reached a slot where no instruction starts: past the end, or
    /// the second half of an `ld_imm64`.
    #[error("No instruction starts at slot {pc}")]
    FetchInstruction {
        /// The slot.
        pc: usize,
    },
    /// A jump or call targets a slot outside the program.
    #[error("Instruction {pc} jumps to slot {target}, outside the program")]
    JumpOutside {
        /// The jump.
        pc: usize,
        /// Where it goes.
        target: i64,
    },
    /// A load, store or atomic touched memory outside every region.
    #[error("Instruction {pc} accessed memory it may not")]
    AccessMemory {
        /// The instruction.
        pc: usize,
        /// Which access, at which address.
        #[source]
        source: MemError,
    },
    /// A local call would make more than [`MAX_CALL_FRAMES`] frames.
    #[error("Instruction {pc} exceeds the limit of {MAX_CALL_FRAMES} call frames")]
    ExceedCallDepth {
        /// The call.
        pc: usize,
    },
    /// A helper failed.
    #[error("Helper {id} called by instruction {pc} failed")]
    CallHelper {
        /// The call.
        pc: usize,
        /// The helper.
        id: u32,
        /// Why.
        #[source]
        source: HelperError,
    },
    /// `callx` through a value that is no helper id.
    #[error("Instruction {pc} calls through {value:#x}, which is not a helper id")]
    CallRegister {
        /// The call.
        pc: usize,
        /// The register's value.
        value: u64,
    },
    /// Kernel functions do not exist in the interpreter.
    #[error("Instruction {pc} calls kernel function {btf_id}, which the interpreter lacks")]
    CallKfunc {
        /// The call.
        pc: usize,
        /// BTF id of the function.
        btf_id: i32,
    },
    /// An `ld_imm64` of a map, variable or function address.
    #[error("Instruction {pc} loads an address that only a loader can resolve")]
    ResolveLdImm64 {
        /// The instruction.
        pc: usize,
    },
    /// The run executed [`RunOptions::step_limit`] instructions.
    #[error("Program exceeded its limit of {limit} instructions")]
    ExceedStepLimit {
        /// The limit.
        limit: u64,
    },
    /// A tail call found a program address in its PROG_ARRAY slot that is
    /// no known program's entry.
    #[error("Instruction {pc} tail-calls {entry:#x}, where no program starts")]
    FindTailCallTarget {
        /// The `bpf_tail_call`.
        pc: usize,
        /// The address the slot held.
        entry: u64,
    },
    /// The stack of a new frame overlaps memory the caller mapped.
    #[error("Stack of call frame {frame} overlaps mapped memory")]
    MapStack {
        /// Frame depth.
        frame: usize,
        /// The overlap.
        #[source]
        source: MemError,
    },
}

/// Runs `program` from slot 0 with r1–r5 = `args` and r10 at the top of a
/// fresh stack; r0 and r6–r9 start at 0.
///
/// Stacks are mapped into `memory` for the duration of the run and removed
/// before returning, so `memory` afterwards holds what the caller mapped,
/// as the program left it.
///
/// A `bpf_tail_call` that finds a program in its slot fails with
/// [`ExecError::FindTailCallTarget`]: [`run_with_programs`] says which
/// programs there are.
pub fn run(
    program: &Program,
    memory: &mut Memory,
    helpers: &mut dyn Helpers,
    args: [u64; 5],
    options: &RunOptions,
) -> Result<Exit, ExecError> {
    run_with_programs(program, memory, helpers, args, options, &[])
}

/// [`run`], where `bpf_tail_call` can enter `programs`: each is the guest
/// address a PROG_ARRAY slot holds for it (in the JIT, its code's entry)
/// and the program. The first program with the address wins.
pub fn run_with_programs(
    program: &Program,
    memory: &mut Memory,
    helpers: &mut dyn Helpers,
    args: [u64; 5],
    options: &RunOptions,
    programs: &[(u64, &Program)],
) -> Result<Exit, ExecError> {
    let mut regs = [0u64; Reg::COUNT];
    regs[1..6].copy_from_slice(&args);
    regs[Reg::R10.index()] = stack_top(0);
    let mut machine = Machine {
        program,
        programs,
        tail_calls: 0,
        memory,
        helpers,
        options,
        regs,
        frames: Vec::new(),
        pc: 0,
        steps: 0,
        may_goto_budget: options.may_goto_budget,
    };
    machine.push_stack(0)?;
    let result = machine.execute();
    for frame in 0..=machine.frames.len() {
        machine.memory.unmap(stack_start(frame));
    }
    result
}

/// What a local call saves, restored by the callee's `exit`.
#[derive(Clone, Copy, Debug)]
struct Frame<'a> {
    /// The caller's program: the callee may tail-call into another.
    program: &'a Program,
    return_pc: usize,
    callee_saved: [u64; 4],
    may_goto_budget: u64,
}

struct Machine<'a> {
    /// The program running in the current frame.
    program: &'a Program,
    /// What tail calls can enter, by entry address.
    programs: &'a [(u64, &'a Program)],
    /// Tail calls taken in this run.
    tail_calls: u64,
    memory: &'a mut Memory,
    helpers: &'a mut dyn Helpers,
    options: &'a RunOptions,
    regs: [u64; Reg::COUNT],
    /// Callers of the running frame; empty in the entry frame.
    frames: Vec<Frame<'a>>,
    pc: usize,
    steps: u64,
    may_goto_budget: u64,
}

impl Machine<'_> {
    fn reg(&self, r: Reg) -> u64 {
        self.regs[r.index()]
    }

    fn set(&mut self, r: Reg, value: u64) {
        self.regs[r.index()] = value;
    }

    /// The second operand as a 64-bit value (an immediate sign-extended).
    fn source(&self, src: Source) -> u64 {
        match src {
            Source::Reg(r) => self.reg(r),
            Source::Imm(imm) => imm64(imm),
        }
    }

    fn push_stack(&mut self, frame: usize) -> Result<(), ExecError> {
        self.memory
            .map(Region::stack(frame))
            .map_err(|source| ExecError::MapStack { frame, source })
    }

    /// The slot `off` after the one following `pc` (RFC 9669 §4.3: offsets
    /// count from the next instruction), if it is in the program.
    fn target(&self, pc: usize, off: i64) -> Result<usize, ExecError> {
        // Slot indices of a program in memory are far below i64::MAX.
        let target = (pc as i64).saturating_add(1).saturating_add(off);
        usize::try_from(target)
            .ok()
            .filter(|&t| t < self.program.len())
            .ok_or(ExecError::JumpOutside { pc, target })
    }

    fn address(&self, base: Reg, off: i16) -> u64 {
        self.reg(base).wrapping_add(off as i64 as u64)
    }

    fn load(&self, pc: usize, addr: u64, size: Size) -> Result<u64, ExecError> {
        self.memory
            .load(addr, size)
            .map_err(|source| ExecError::AccessMemory { pc, source })
    }

    fn store(&mut self, pc: usize, addr: u64, size: Size, value: u64) -> Result<(), ExecError> {
        self.memory
            .store(addr, size, value)
            .map_err(|source| ExecError::AccessMemory { pc, source })
    }

    fn execute(&mut self) -> Result<Exit, ExecError> {
        loop {
            if self.steps >= self.options.step_limit {
                return Err(ExecError::ExceedStepLimit {
                    limit: self.options.step_limit,
                });
            }
            self.steps += 1;
            let pc = self.pc;
            let op = *self
                .program
                .op(pc)
                .ok_or(ExecError::FetchInstruction { pc })?;
            self.pc = pc + op.slots();
            if let Some(return_value) = self.step(pc, op)? {
                return Ok(Exit {
                    return_value,
                    steps: self.steps,
                });
            }
        }
    }

    /// Executes `op` at `pc`; `Some(r0)` when the program has ended.
    fn step(&mut self, pc: usize, op: Op) -> Result<Option<u64>, ExecError> {
        match op {
            Op::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let value = alu::alu(width, op, self.reg(dst), self.source(src));
                self.set(dst, value);
            }
            Op::Neg { width, dst } => self.set(dst, alu::neg(width, self.reg(dst))),
            Op::Movsx {
                width,
                dst,
                src,
                from,
            } => self.set(dst, alu::movsx(width, from, self.reg(src))),
            Op::ByteSwap { dst, kind, bits } => {
                self.set(dst, alu::byte_swap(kind, bits, self.reg(dst)));
            }
            Op::AddrSpaceCast { dst, src, kind } => {
                let low = u64::from(self.reg(src) as u32);
                let value = match kind {
                    CastKind::ToUser if low == 0 => 0,
                    _ => u64::from(self.options.arena_upper) << 32 | low,
                };
                self.set(dst, value);
            }
            Op::LdImm64 { dst, value } => match value {
                Imm64::Value(v) => self.set(dst, v),
                _ => return Err(ExecError::ResolveLdImm64 { pc }),
            },
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
            } => {
                // Single-threaded: acquire ordering is a plain load here.
                let value = self.load(pc, self.address(src, off), size)?;
                self.set(dst, value);
            }
            Op::LoadSx {
                size,
                dst,
                src,
                off,
            } => {
                // RFC 9669 §5.2: sign-extend the loaded value to 64 bits.
                let value = self.load(pc, self.address(src, off), size)?;
                self.set(dst, alu::movsx(Width::W64, size, value));
            }
            Op::Store {
                size,
                dst,
                off,
                src,
            } => {
                // ST: the immediate sign-extended, then truncated to size.
                let value = self.source(src);
                self.store(pc, self.address(dst, off), size, value)?;
            }
            Op::StoreRelease {
                size,
                dst,
                off,
                src,
            } => {
                let value = self.reg(src);
                self.store(pc, self.address(dst, off), size, value)?;
            }
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => self.atomic(pc, width, op, self.address(dst, off), src)?,
            Op::Ja { off } => self.pc = self.target(pc, off.into())?,
            Op::Gotol { off } => self.pc = self.target(pc, off.into())?,
            Op::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                if alu::jmp_taken(width, cond, self.reg(dst), self.source(src)) {
                    self.pc = self.target(pc, off.into())?;
                }
            }
            Op::MayGoto { off } => match self.may_goto_budget.checked_sub(1) {
                Some(left) => self.may_goto_budget = left,
                None => self.pc = self.target(pc, off.into())?,
            },
            Op::CallHelper {
                id: crate::jit::tail_call::HELPER_ID,
            } => self.tail_call(pc)?,
            Op::CallHelper { id } => return self.call_helper(pc, id),
            Op::Callx { dst } => {
                let value = self.reg(dst);
                let id = u32::try_from(value).map_err(|_| ExecError::CallRegister { pc, value })?;
                return self.call_helper(pc, id);
            }
            Op::CallKfunc { btf_id, .. } => return Err(ExecError::CallKfunc { pc, btf_id }),
            Op::CallLocal { off } => self.call_local(pc, off)?,
            Op::Exit => return Ok(self.exit()),
        }
        Ok(None)
    }

    /// RFC 9669 §5.3. Single-threaded, so a read followed by a write is
    /// atomic; a 32-bit operation works on the low halves and a fetched old
    /// value is zero-extended.
    fn atomic(
        &mut self,
        pc: usize,
        width: Width,
        op: AtomicOp,
        addr: u64,
        src: Reg,
    ) -> Result<(), ExecError> {
        let (size, mask) = match width {
            Width::W32 => (Size::W, u64::from(u32::MAX)),
            Width::W64 => (Size::DW, u64::MAX),
        };
        let old = self.load(pc, addr, size)?;
        let operand = self.reg(src) & mask;
        let new = match op {
            AtomicOp::Add | AtomicOp::FetchAdd => old.wrapping_add(operand),
            AtomicOp::Or | AtomicOp::FetchOr => old | operand,
            AtomicOp::And | AtomicOp::FetchAnd => old & operand,
            AtomicOp::Xor | AtomicOp::FetchXor => old ^ operand,
            AtomicOp::Xchg => operand,
            // Compares with r0 (its low half for 32 bits); r0 gets the old
            // value whether or not the exchange happens.
            AtomicOp::Cmpxchg => {
                let expected = self.reg(Reg::R0) & mask;
                let new = if old == expected { operand } else { old };
                self.store(pc, addr, size, new)?;
                self.set(Reg::R0, old);
                return Ok(());
            }
        };
        self.store(pc, addr, size, new)?;
        if op.fetches() {
            self.set(src, old);
        }
        Ok(())
    }

    fn call_helper(&mut self, pc: usize, id: u32) -> Result<Option<u64>, ExecError> {
        let mut args = [0; 5];
        args.copy_from_slice(&self.regs[1..6]);
        match self.helpers.call(id, args, self.memory) {
            Ok(value) => {
                self.set(Reg::R0, value);
                Ok(None)
            }
            Err(HelperError::UnwindProgram { return_value }) => Ok(Some(return_value)),
            Err(source) => Err(ExecError::CallHelper { pc, id, source }),
        }
    }

    fn call_local(&mut self, pc: usize, off: i32) -> Result<(), ExecError> {
        let target = self.target(pc, off.into())?;
        let frame = self.frames.len() + 1;
        if frame >= MAX_CALL_FRAMES {
            return Err(ExecError::ExceedCallDepth { pc });
        }
        self.push_stack(frame)?;
        let mut callee_saved = [0; 4];
        callee_saved.copy_from_slice(&self.regs[6..10]);
        self.frames.push(Frame {
            program: self.program,
            return_pc: self.pc,
            callee_saved,
            may_goto_budget: self.may_goto_budget,
        });
        self.regs[Reg::R10.index()] = stack_top(frame);
        self.may_goto_budget = self.options.may_goto_budget;
        self.pc = target;
        Ok(())
    }

    /// Returns from the running frame; `Some(r0)` if it was the entry one.
    fn exit(&mut self) -> Option<u64> {
        let Some(frame) = self.frames.pop() else {
            return Some(self.reg(Reg::R0));
        };
        let depth = self.frames.len() + 1;
        self.memory.unmap(stack_start(depth));
        self.regs[6..10].copy_from_slice(&frame.callee_saved);
        self.regs[Reg::R10.index()] = stack_top(depth - 1);
        self.may_goto_budget = frame.may_goto_budget;
        self.program = frame.program;
        self.pc = frame.return_pc;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use mem::{CTX_START, STACK_SIZE};

    fn program(src: &str) -> Program {
        Program::decode(&assemble(src).unwrap()).unwrap()
    }

    /// Runs `src` with `ctx` as context (r1 = its address, r2 = its length).
    fn run_ctx(src: &str, ctx: &[u8], helpers: &mut dyn Helpers) -> Result<Exit, ExecError> {
        let mut memory = Memory::with_context(ctx.to_vec());
        let args = [CTX_START, ctx.len() as u64, 0, 0, 0];
        run(
            &program(src),
            &mut memory,
            helpers,
            args,
            &RunOptions::default(),
        )
    }

    fn ret(src: &str) -> u64 {
        run_ctx(src, &[], &mut NoHelpers).unwrap().return_value
    }

    #[test]
    fn entry_state() {
        let exit = run_ctx(
            "mov %r0, %r2\nadd %r0, %r6\nexit",
            &[1, 2, 3],
            &mut NoHelpers,
        );
        assert_eq!(
            exit,
            Ok(Exit {
                return_value: 3,
                steps: 3
            })
        );
        assert_eq!(ret("mov %r0, %r10\nexit"), stack_top(0));
        assert_eq!(ret("mov %r0, %r1\nexit"), CTX_START);
    }

    #[test]
    fn context_and_stack_accesses() {
        let src = "ldxw %r2, [%r1+4]\nstxdw [%r10-8], %r2\nldxh %r0, [%r10-8]\n\
                   stb [%r1], 0x7f\nexit";
        let mut memory = Memory::with_context(vec![0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
        let args = [CTX_START, 8, 0, 0, 0];
        let exit = run(
            &program(src),
            &mut memory,
            &mut NoHelpers,
            args,
            &RunOptions::default(),
        );
        assert_eq!(exit.map(|e| e.return_value), Ok(0x2211));
        // The context keeps the program's writes; the stack is gone.
        assert_eq!(memory.regions().len(), 1);
        assert_eq!(memory.regions()[0].bytes()[0], 0x7f);
        // Sign-extending loads and the stack's last byte.
        assert_eq!(
            ret("stb [%r10-1], 0x80\nldxsb %r0, [%r10-1]\nexit"),
            u64::MAX - 0x7f
        );
        assert_eq!(
            ret("mov %r1, -1\nstxw [%r10-512], %r1\nldxsw %r0, [%r10-512]\nexit"),
            u64::MAX
        );
    }

    #[test]
    fn out_of_bounds_accesses_name_instruction_and_address() {
        let err = run_ctx(
            "mov %r0, 0\nldxdw %r0, [%r1+4]\nexit",
            &[0; 8],
            &mut NoHelpers,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ExecError::AccessMemory {
                pc: 1,
                source: MemError::FindRegion {
                    addr: CTX_START + 4,
                    len: 8,
                    access: Access::Read,
                },
            }
        );
        assert_eq!(err.to_string(), "Instruction 1 accessed memory it may not");
        let stack_overflow = run_ctx("stb [%r10-513], 1\nexit", &[], &mut NoHelpers);
        assert!(matches!(
            stack_overflow,
            Err(ExecError::AccessMemory { pc: 0, .. })
        ));
        let above_top = run_ctx("ldxb %r0, [%r10]\nexit", &[], &mut NoHelpers);
        assert!(above_top.is_err());
        let null = run_ctx("mov %r1, 0\nldxb %r0, [%r1]\nexit", &[], &mut NoHelpers);
        assert!(null.is_err());
        let wrap = run_ctx(
            "lddw %r1, -1\nldxdw %r0, [%r1+2]\nexit",
            &[],
            &mut NoHelpers,
        );
        assert!(matches!(wrap, Err(ExecError::AccessMemory { pc: 2, .. })));
    }

    #[test]
    fn control_leaving_the_program() {
        let err = run_ctx("mov %r0, 1", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(err, ExecError::FetchInstruction { pc: 1 });
        assert_eq!(err.to_string(), "No instruction starts at slot 1");
        let err = run_ctx("ja +5\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 0 jumps to slot 6, outside the program"
        );
        let err = run_ctx("ja32 -2\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(err, ExecError::JumpOutside { pc: 0, target: -1 });
        // Into the second slot of an ld_imm64.
        let err = run_ctx("ja +1\nlddw %r0, 1\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(err, ExecError::FetchInstruction { pc: 2 });
    }

    #[test]
    fn step_limit_bounds_infinite_loops() {
        let options = RunOptions {
            step_limit: 1000,
            ..RunOptions::default()
        };
        let err = run(
            &program("ja -1"),
            &mut Memory::new(),
            &mut NoHelpers,
            [0; 5],
            &options,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Program exceeded its limit of 1000 instructions"
        );
        let ok = run(
            &program("exit"),
            &mut Memory::new(),
            &mut NoHelpers,
            [0; 5],
            &options,
        );
        assert_eq!(ok.map(|e| e.steps), Ok(1));
    }

    #[test]
    fn local_calls_get_their_own_stack_and_keep_callee_saved() {
        let src = "mov %r6, 6\nmov %r9, 9\nstdw [%r10-8], 1\nmov %r1, %r10\n\
                   call local f\n\
                   # r0 = callee's value + caller's slot, which the callee wrote\n\
                   ldxdw %r2, [%r10-8]\nadd %r0, %r2\n\
                   jne %r6, 6, bad\njne %r9, 9, bad\nexit\n\
                   bad:\nmov %r0, -1\nexit\n\
                   f:\nldxdw %r0, [%r10-8]\n\
                   # the callee's stack starts zeroed\n\
                   stdw [%r1-8], 100\nmov %r6, 0\nmov %r9, 0\nexit";
        assert_eq!(ret(src), 100);
    }

    #[test]
    fn call_depth_is_limited_to_eight_frames() {
        // r1 counts the calls made; each frame calls the next.
        let src = |depth: u32| {
            format!(
                "mov %r1, 0\ncall local f\nexit\nf:\nadd %r1, 1\nmov %r0, %r1\n\
                 jge %r1, {depth}, done\ncall local f\ndone:\nexit"
            )
        };
        assert_eq!(ret(&src(7)), 7);
        let err = run_ctx(&src(8), &[], &mut NoHelpers).unwrap_err();
        assert_eq!(err, ExecError::ExceedCallDepth { pc: 6 });
        assert_eq!(
            err.to_string(),
            "Instruction 6 exceeds the limit of 8 call frames"
        );
    }

    #[test]
    fn may_goto_budget_is_per_frame() {
        let options = RunOptions {
            may_goto_budget: 10,
            ..RunOptions::default()
        };
        // Counts loop iterations in r0, then adds a callee's count.
        let src = "mov %r0, 0\nloop:\nmay_goto done\nadd %r0, 1\nja loop\ndone:\n\
                   mov %r6, %r0\ncall local f\nadd %r0, %r6\nexit\n\
                   f:\nmov %r0, 0\nagain:\nmay_goto out\nadd %r0, 1\nja again\nout:\nexit";
        let exit = run(
            &program(src),
            &mut Memory::new(),
            &mut NoHelpers,
            [0; 5],
            &options,
        );
        assert_eq!(exit.map(|e| e.return_value), Ok(20));
    }

    #[test]
    fn may_goto_default_budget_is_the_kernels() {
        let src = "mov %r0, 0\nloop:\nmay_goto done\nadd %r0, 1\nja loop\ndone:\nexit";
        assert_eq!(ret(src), MAY_GOTO_BUDGET);
    }

    struct Recorder(Vec<(u32, [u64; 5])>);

    impl Helpers for Recorder {
        fn call(&mut self, id: u32, args: [u64; 5], mem: &mut Memory) -> Result<u64, HelperError> {
            self.0.push((id, args));
            match id {
                // Writes its second argument to the address in the first.
                1 => Ok(mem.store(args[0], Size::DW, args[1]).map(|()| 0)?),
                2 => Err(HelperError::UnwindProgram { return_value: 42 }),
                _ => Ok(u64::from(id) * 10),
            }
        }
    }

    #[test]
    fn helpers_see_arguments_and_memory() {
        let mut rec = Recorder(Vec::new());
        let src = "mov %r1, %r10\nadd %r1, -8\nmov %r2, 77\nmov %r3, 3\ncall 1\n\
                   ldxdw %r0, [%r10-8]\nexit";
        assert_eq!(run_ctx(src, &[], &mut rec).map(|e| e.return_value), Ok(77));
        assert_eq!(rec.0, [(1, [stack_top(0) - 8, 77, 3, 0, 0])]);
        // A helper's bad access is the helper's error, at the call.
        let err = run_ctx("mov %r1, 8\ncall 1\nexit", &[], &mut rec).unwrap_err();
        assert!(matches!(
            err,
            ExecError::CallHelper {
                pc: 1,
                id: 1,
                source: HelperError::AccessMemory(_),
            }
        ));
        assert_eq!(err.to_string(), "Helper 1 called by instruction 1 failed");
        // callx calls the helper whose id is in the register.
        assert_eq!(
            run_ctx("mov %r3, 7\ncall %r3\nexit", &[], &mut rec).map(|e| e.return_value),
            Ok(70)
        );
        let err = run_ctx("lddw %r3, 0x100000000\ncall %r3\nexit", &[], &mut rec).unwrap_err();
        assert_eq!(
            err,
            ExecError::CallRegister {
                pc: 2,
                value: 1 << 32
            }
        );
    }

    #[test]
    fn unwinding_ends_all_frames() {
        let mut rec = Recorder(Vec::new());
        let src = "call local f\nmov %r0, 1\nexit\nf:\ncall 2\nmov %r0, 2\nexit";
        assert_eq!(run_ctx(src, &[], &mut rec).map(|e| e.return_value), Ok(42));
        let err = run_ctx("call 9\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(
            err,
            ExecError::CallHelper {
                pc: 0,
                id: 9,
                source: HelperError::FindHelper { id: 9 },
            }
        );
    }

    #[test]
    fn atomics() {
        // 32-bit cmpxchg compares the low half of r0 and zero-extends.
        let src = "stw [%r10-4], 5\nlddw %r0, 0xffffffff00000005\nmov %r1, 9\n\
                   lock cmpxchg32 [%r10-4], %r1\nldxw %r1, [%r10-4]\nlsh %r1, 32\n\
                   or %r0, %r1\nexit";
        assert_eq!(ret(src), 0x9_0000_0005);
        // Failed exchange: memory unchanged, r0 = old.
        let src = "stdw [%r10-8], 5\nmov %r0, 4\nmov %r1, 9\n\
                   lock cmpxchg [%r10-8], %r1\nldxdw %r1, [%r10-8]\nlsh %r1, 8\n\
                   or %r0, %r1\nexit";
        assert_eq!(ret(src), 0x505);
        // Fetch returns the old value, zero-extended for 32 bits.
        let src = "stw [%r10-4], -1\nlddw %r1, 0xffffffff00000001\n\
                   lock fetch add32 [%r10-4], %r1\nmov %r0, %r1\nexit";
        assert_eq!(ret(src), 0xffff_ffff);
        let src = "stdw [%r10-8], 3\nmov %r1, 6\nlock xchg [%r10-8], %r1\n\
                   ldxdw %r0, [%r10-8]\nlsh %r0, 8\nor %r0, %r1\nexit";
        assert_eq!(ret(src), 0x603);
        let src = "stdw [%r10-8], 3\nmov %r1, 6\nlock and [%r10-8], %r1\n\
                   ldxdw %r0, [%r10-8]\nlsh %r0, 8\nor %r0, %r1\nexit";
        assert_eq!(ret(src), 0x206);
    }

    #[test]
    fn acquire_release() {
        let src = "mov %r2, 0x1ff\nstxrelb [%r10-1], %r2\nmov %r1, %r10\n\
                   ldxacqb %r0, [%r1-1]\nexit";
        assert_eq!(ret(src), 0xff);
    }

    #[test]
    fn addr_space_cast_puts_the_window_above_the_low_half() {
        let with_arena = |src: &str| {
            let options = RunOptions {
                arena_upper: 0x7f00,
                ..RunOptions::default()
            };
            let exit = run(
                &program(src),
                &mut Memory::new(),
                &mut NoHelpers,
                [0; 5],
                &options,
            );
            exit.map(|e| e.return_value)
        };
        let user = "lddw %r1, 0x1234500000010\naddr_space_cast %r0, %r1, 1, 0\nexit";
        let kern = "lddw %r1, 0x1234500000010\naddr_space_cast %r0, %r1, 0, 1\nexit";
        for src in [user, kern] {
            assert_eq!(with_arena(src), Ok(0x7f00_0000_0010), "{src}");
            assert_eq!(ret(src), 0x10, "{src}");
        }
        // cast_user keeps NULL; cast_kern makes it the window's start, the
        // kernel's kern_vm_start + 0.
        let null_user = "mov %r1, 0\naddr_space_cast %r0, %r1, 1, 0\nexit";
        let null_kern = "lddw %r1, 0x5500000000\naddr_space_cast %r0, %r1, 0, 1\nexit";
        assert_eq!(with_arena(null_user), Ok(0));
        assert_eq!(with_arena(null_kern), Ok(0x7f00_0000_0000));
        assert_eq!(ret(null_kern), 0);
    }

    #[test]
    fn unresolved_instructions_fail() {
        let err = run_ctx("lddw %r1, map_fd(3)\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(err, ExecError::ResolveLdImm64 { pc: 0 });
        let err = run_ctx("call kfunc 12\nexit", &[], &mut NoHelpers).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 0 calls kernel function 12, which the interpreter lacks"
        );
    }

    #[test]
    fn read_only_memory() {
        let mut memory = Memory::new();
        memory
            .map(Region::new(RegionKind::Other, 0x5000, vec![1; 8], false))
            .unwrap();
        let src = "lddw %r1, 0x5000\nldxb %r0, [%r1]\nstb [%r1], 2\nexit";
        let err = run(
            &program(src),
            &mut memory,
            &mut NoHelpers,
            [0; 5],
            &RunOptions::default(),
        );
        assert_eq!(
            err,
            Err(ExecError::AccessMemory {
                pc: 3,
                source: MemError::WriteReadOnly {
                    addr: 0x5000,
                    len: 1
                },
            })
        );
    }

    #[test]
    fn stack_overlapping_caller_memory_is_refused() {
        let mut memory = Memory::new();
        memory.map(Region::stack(0)).unwrap();
        let err = run(
            &program("exit"),
            &mut memory,
            &mut NoHelpers,
            [0; 5],
            &RunOptions::default(),
        );
        assert!(matches!(err, Err(ExecError::MapStack { frame: 0, .. })));
        // The caller's region is left alone.
        assert_eq!(memory.regions().len(), 1);
        assert_eq!(memory.regions()[0].bytes().len(), STACK_SIZE);
    }
}
