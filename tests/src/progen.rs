//! Random valid BPF programs for differential tests (JIT in a VM against the
//! reference interpreter).
//!
//! A program is generated as a tree of [`Step`]s by proptest (so failures
//! shrink), then lowered to instructions under rules that make its result
//! independent of where memory lives and of what an engine leaves undefined:
//!
//! * r9 holds the context pointer and r10 the frame pointer; they are only
//!   ever used as memory bases, never as data, so no address leaks into r0
//!   or into memory. r8 is the loop counter. r0–r7 hold data and are all
//!   initialised first.
//! * Memory accesses stay inside the 64-byte context or the lowest 64 bytes
//!   of the frame, which every function zeroes before use (the interpreter
//!   gives each frame a zeroed stack, the JIT does not). Atomics are
//!   naturally aligned.
//! * After any call, r1–r5 are set again: the kernel forbids reading them
//!   (a helper clobbers them in the JIT, the interpreter keeps them).
//! * Jumps go forward over a block, or back to the top of a counted loop, so
//!   every program terminates. Subprograms do not call further.
//! * Helper 5 is the conformance "unwind" helper: it returns its argument,
//!   or ends the whole program with 0 when the argument is 0.

use guest_jit::insn::{
    AluOp, AtomicOp, Insn, JmpCond, Op, Program, Reg, Size, Source, SwapBits, SwapKind, Width,
};
use proptest::prelude::*;

/// Bytes of context a generated program reads and writes.
pub const CTX_LEN: usize = 64;
/// Bytes below r10 a generated function uses.
const STACK_USED: i16 = 64;
/// Id of the conformance suite's unwind helper.
const UNWIND_HELPER: u32 = 5;
const CTX_BASE: Reg = Reg::R9;
const LOOP_COUNTER: Reg = Reg::R8;
const DATA_REGS: [Reg; 8] = [
    Reg::R0,
    Reg::R1,
    Reg::R2,
    Reg::R3,
    Reg::R4,
    Reg::R5,
    Reg::R6,
    Reg::R7,
];

/// Where a memory access goes.
#[derive(Clone, Copy, Debug)]
pub enum Base {
    /// The context, through r9.
    Ctx,
    /// The frame, through r10.
    Stack,
}

/// An operand: a data register (index into r0–r7) or an immediate.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    /// A data register.
    Reg(u8),
    /// An immediate.
    Imm(i32),
}

/// One generated construct.
#[derive(Clone, Debug)]
pub enum Step {
    /// An ALU operation.
    Alu(bool, u8, u8, Operand),
    /// Negation.
    Neg(bool, u8),
    /// Sign-extending move.
    Movsx(bool, u8, u8, u8),
    /// Byte swap.
    Swap(u8, u8, u8),
    /// 64-bit immediate load.
    LdImm64(u8, u64),
    /// Load, possibly sign-extending, possibly acquire.
    Load(u8, u8, u8, Base, u8),
    /// Store of a register or immediate, possibly release.
    Store(u8, u8, Base, u8, Operand),
    /// Atomic read-modify-write.
    Atomic(bool, u8, Base, u8, u8),
    /// `if !(cond) skip body` (a forward conditional jump).
    If(bool, u8, u8, Operand, Vec<Step>),
    /// `body` repeated `count` times (1..=8), counted in r8.
    Loop(u8, Vec<Step>),
    /// Helper 5 with this argument (0 ends the program).
    Unwind(u32),
    /// Call subprogram `n` (modulo the number of subprograms).
    Call(u8),
}

/// A whole generated program: the entry function and its subprograms.
#[derive(Clone, Debug)]
pub struct GenProgram {
    /// Initial values of r0–r7.
    pub init: [i64; 8],
    /// Entry function body.
    pub main: Vec<Step>,
    /// Subprogram bodies (no calls inside).
    pub subs: Vec<Vec<Step>>,
    /// Initial context bytes.
    pub ctx: Vec<u8>,
}

fn operand() -> impl Strategy<Value = Operand> + Clone {
    prop_oneof![
        (0u8..8).prop_map(Operand::Reg),
        any::<i32>().prop_map(Operand::Imm),
        (-4i32..70).prop_map(Operand::Imm),
    ]
}

fn base() -> impl Strategy<Value = Base> + Clone {
    prop_oneof![Just(Base::Ctx), Just(Base::Stack)]
}

fn leaf() -> impl Strategy<Value = Step> + Clone {
    prop_oneof![
        6 => (any::<bool>(), 0u8..14, 0u8..8, operand()).prop_map(|(w, o, d, s)| Step::Alu(w, o, d, s)),
        1 => (any::<bool>(), 0u8..8).prop_map(|(w, d)| Step::Neg(w, d)),
        1 => (any::<bool>(), 0u8..8, 0u8..8, 0u8..3).prop_map(|(w, d, s, f)| Step::Movsx(w, d, s, f)),
        1 => (0u8..8, 0u8..3, 0u8..3).prop_map(|(d, k, b)| Step::Swap(d, k, b)),
        1 => (0u8..8, any::<u64>()).prop_map(|(d, v)| Step::LdImm64(d, v)),
        3 => (0u8..4, 0u8..3, 0u8..8, base(), any::<u8>()).prop_map(|(s, k, d, b, o)| Step::Load(s, k, d, b, o)),
        3 => (0u8..4, 0u8..2, base(), any::<u8>(), operand()).prop_map(|(s, k, b, o, v)| Step::Store(s, k, b, o, v)),
        2 => (any::<bool>(), 0u8..10, base(), any::<u8>(), 0u8..8).prop_map(|(w, op, b, o, s)| Step::Atomic(w, op, b, o, s)),
    ]
}

/// Steps without calls, nested up to two levels of `If` and one `Loop`.
fn block(max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    let inner = prop::collection::vec(leaf(), 0..6);
    let nested = prop_oneof![
        6 => leaf(),
        1 => (any::<bool>(), 0u8..11, 0u8..8, operand(), inner.clone())
            .prop_map(|(w, c, d, s, b)| Step::If(w, c, d, s, b)),
        1 => (1u8..=8, inner).prop_map(|(n, b)| Step::Loop(n, b)),
    ];
    prop::collection::vec(nested, 1..max_len)
}

/// A generated program; `calls` allows local calls and the unwind helper.
pub fn program(calls: bool) -> impl Strategy<Value = GenProgram> {
    let call_steps = if calls {
        prop::collection::vec(
            prop_oneof![
                4 => any::<u8>().prop_map(Step::Call),
                2 => (1u32..1000).prop_map(Step::Unwind),
                1 => Just(Step::Unwind(0)),
            ],
            0..3,
        )
        .boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let subs = if calls { 1..3usize } else { 0..1usize };
    (
        any::<[i64; 8]>(),
        block(40),
        call_steps,
        prop::collection::vec(block(12), subs),
        prop::collection::vec(any::<u8>(), CTX_LEN),
        any::<u64>(),
    )
        .prop_map(|(init, mut main, calls, subs, ctx, seed)| {
            // Spread the calls through the body, at positions from the seed.
            for (i, call) in calls.into_iter().enumerate() {
                let at = (seed.rotate_left(i as u32 * 7) as usize) % (main.len() + 1);
                main.insert(at, call);
            }
            GenProgram {
                init,
                main,
                subs,
                ctx,
            }
        })
}

/// What lowering emits: an instruction, or a call to fix up later.
enum Item {
    Op(Op),
    CallSub(usize),
}

impl GenProgram {
    /// The program as decoded BPF, entry at slot 0.
    pub fn lower(&self) -> Program {
        let mut items = Vec::new();
        prologue(&mut items, &self.init, true);
        self.lower_block(&self.main, &mut items);
        items.push(Item::Op(Op::Exit));
        let mut starts = Vec::new();
        for (i, sub) in self.subs.iter().enumerate() {
            starts.push(slots(&items));
            let mut init = self.init;
            init[0] = i as i64;
            prologue(&mut items, &init, false);
            self.lower_block(sub, &mut items);
            items.push(Item::Op(Op::Exit));
        }
        let mut insns: Vec<Insn> = Vec::new();
        for item in &items {
            let op = match *item {
                Item::Op(op) => op,
                Item::CallSub(sub) => {
                    let pc = insns.len() as i64;
                    Op::CallLocal {
                        off: (starts[sub] as i64 - pc - 1) as i32,
                    }
                }
            };
            op.encode_into(&mut insns);
        }
        match Program::decode(&insns) {
            Ok(program) => program,
            Err(e) => panic!("generator made an undecodable program: {e}"),
        }
    }

    fn lower_block(&self, steps: &[Step], out: &mut Vec<Item>) {
        for step in steps {
            self.lower_step(step, out);
        }
    }

    fn lower_step(&self, step: &Step, out: &mut Vec<Item>) {
        let mut emit = |op| out.push(Item::Op(op));
        match step {
            Step::Alu(w64, op, dst, src) => emit(alu(*w64, *op, *dst, *src)),
            Step::Neg(w64, dst) => emit(Op::Neg {
                width: width(*w64),
                dst: data(*dst),
            }),
            Step::Movsx(w64, dst, src, from) => {
                let from = match (from, w64) {
                    (0, _) => Size::B,
                    (1, _) | (_, false) => Size::H,
                    _ => Size::W,
                };
                emit(Op::Movsx {
                    width: width(*w64),
                    dst: data(*dst),
                    src: data(*src),
                    from,
                });
            }
            Step::Swap(dst, kind, bits) => emit(Op::ByteSwap {
                dst: data(*dst),
                kind: SwapKind::ALL[usize::from(*kind) % SwapKind::ALL.len()],
                bits: SwapBits::ALL[usize::from(*bits) % SwapBits::ALL.len()],
            }),
            Step::LdImm64(dst, value) => emit(Op::LdImm64 {
                dst: data(*dst),
                value: guest_jit::insn::Imm64::Value(*value),
            }),
            Step::Load(size, kind, dst, base, off) => {
                let size = Size::ALL[usize::from(*size) % Size::ALL.len()];
                let (src, off) = address(*base, *off, size, false);
                let dst = data(*dst);
                emit(match kind {
                    1 if size != Size::DW => Op::LoadSx {
                        size,
                        dst,
                        src,
                        off,
                    },
                    2 => Op::LoadAcquire {
                        size,
                        dst,
                        src,
                        off,
                    },
                    _ => Op::Load {
                        size,
                        dst,
                        src,
                        off,
                    },
                });
            }
            Step::Store(size, kind, base, off, value) => {
                let size = Size::ALL[usize::from(*size) % Size::ALL.len()];
                let (dst, off) = address(*base, *off, size, false);
                emit(match (kind, value) {
                    (1, Operand::Reg(r)) => Op::StoreRelease {
                        size,
                        dst,
                        off,
                        src: data(*r),
                    },
                    (_, value) => Op::Store {
                        size,
                        dst,
                        off,
                        src: source(*value),
                    },
                });
            }
            Step::Atomic(w64, op, base, off, src) => {
                let size = if *w64 { Size::DW } else { Size::W };
                let (dst, off) = address(*base, *off, size, true);
                emit(Op::Atomic {
                    width: width(*w64),
                    op: AtomicOp::ALL[usize::from(*op) % AtomicOp::ALL.len()],
                    dst,
                    off,
                    src: data(*src),
                });
            }
            Step::If(w64, cond, dst, src, body) => {
                let mut inner = Vec::new();
                self.lower_block(body, &mut inner);
                out.push(Item::Op(Op::Jmp {
                    width: width(*w64),
                    cond: JmpCond::ALL[usize::from(*cond) % JmpCond::ALL.len()],
                    dst: data(*dst),
                    src: source(*src),
                    off: slots(&inner) as i16,
                }));
                out.extend(inner);
            }
            Step::Loop(count, body) => {
                out.push(Item::Op(Op::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: LOOP_COUNTER,
                    src: Source::Imm(i32::from(*count)),
                }));
                let mut inner = Vec::new();
                self.lower_block(body, &mut inner);
                let body_slots = slots(&inner) as i16;
                out.extend(inner);
                out.push(Item::Op(Op::Alu {
                    width: Width::W64,
                    op: AluOp::Sub,
                    dst: LOOP_COUNTER,
                    src: Source::Imm(1),
                }));
                out.push(Item::Op(Op::Jmp {
                    width: Width::W32,
                    cond: JmpCond::Ne,
                    dst: LOOP_COUNTER,
                    src: Source::Imm(0),
                    off: -(body_slots + 2),
                }));
            }
            Step::Unwind(arg) => {
                out.push(Item::Op(mov_imm(Reg::R1, *arg as i32)));
                out.push(Item::Op(Op::CallHelper { id: UNWIND_HELPER }));
                reinit_args(out);
            }
            Step::Call(n) => {
                if self.subs.is_empty() {
                    return;
                }
                out.push(Item::Op(mov_reg(Reg::R1, CTX_BASE)));
                out.push(Item::CallSub(usize::from(*n) % self.subs.len()));
                reinit_args(out);
            }
        }
    }
}

/// Sets r9 from r1 (the context), r0–r7 from `init`, zeroes the frame's
/// used stack, and for the entry function leaves r8 at 0.
fn prologue(out: &mut Vec<Item>, init: &[i64; 8], entry: bool) {
    out.push(Item::Op(mov_reg(CTX_BASE, Reg::R1)));
    for (reg, value) in DATA_REGS.iter().zip(init) {
        out.push(Item::Op(Op::LdImm64 {
            dst: *reg,
            value: guest_jit::insn::Imm64::Value(*value as u64),
        }));
    }
    for off in (1..=STACK_USED / 8).map(|i| -8 * i) {
        out.push(Item::Op(Op::Store {
            size: Size::DW,
            dst: Reg::R10,
            off,
            src: Source::Imm(0),
        }));
    }
    if entry {
        out.push(Item::Op(mov_imm(LOOP_COUNTER, 0)));
    }
}

fn reinit_args(out: &mut Vec<Item>) {
    for (i, reg) in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5]
        .into_iter()
        .enumerate()
    {
        out.push(Item::Op(mov_imm(reg, 0x1111 * (i as i32 + 1))));
    }
}

fn slots(items: &[Item]) -> usize {
    items
        .iter()
        .map(|item| match item {
            Item::Op(op) => op.slots(),
            Item::CallSub(_) => 1,
        })
        .sum()
}

fn data(n: u8) -> Reg {
    DATA_REGS[usize::from(n % 8)]
}

fn width(w64: bool) -> Width {
    if w64 { Width::W64 } else { Width::W32 }
}

fn source(operand: Operand) -> Source {
    match operand {
        Operand::Reg(r) => Source::Reg(data(r)),
        Operand::Imm(i) => Source::Imm(i),
    }
}

fn mov_imm(dst: Reg, imm: i32) -> Op {
    Op::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Source::Imm(imm),
    }
}

fn mov_reg(dst: Reg, src: Reg) -> Op {
    Op::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Source::Reg(src),
    }
}

/// Base register and offset of a `size`-byte access inside the context or
/// the used part of the frame.
fn address(base: Base, raw: u8, size: Size, aligned: bool) -> (Reg, i16) {
    let bytes = size.bytes() as i16;
    let span = (CTX_LEN as i16 - bytes + 1).max(1);
    let mut off = i16::from(raw) % span;
    if aligned {
        off -= off % bytes;
    }
    match base {
        Base::Ctx => (CTX_BASE, off),
        Base::Stack => (Reg::R10, off - STACK_USED),
    }
}

fn alu(w64: bool, op: u8, dst: u8, src: Operand) -> Op {
    let op = AluOp::ALL[usize::from(op) % AluOp::ALL.len()];
    let bits = if w64 { 64 } else { 32 };
    let src = match (op, src) {
        // Immediate shift counts out of range are refused by the kernel.
        (AluOp::Lsh | AluOp::Rsh | AluOp::Arsh, Operand::Imm(i)) => Source::Imm(i.rem_euclid(bits)),
        (_, src) => source(src),
    };
    Op::Alu {
        width: width(w64),
        op,
        dst: data(dst),
        src,
    }
}

/// Runs `program` in the reference interpreter with the generated context;
/// returns r0 and the context afterwards.
pub fn run_in_interpreter(
    program: &Program,
    ctx: &[u8],
) -> Result<(u64, Vec<u8>), guest_jit::interp::ExecError> {
    use guest_jit::conformance::ConformanceHelpers;
    use guest_jit::interp::{self, Memory, RegionKind, RunOptions, mem::CTX_START};
    let mut memory = Memory::with_context(ctx.to_vec());
    let exit = interp::run(
        program,
        &mut memory,
        &mut ConformanceHelpers,
        [CTX_START, ctx.len() as u64, 0, 0, 0],
        &RunOptions::default(),
    )?;
    let ctx_out = memory
        .region(RegionKind::Context)
        .map(|r| r.bytes().to_vec())
        .unwrap_or_default();
    Ok((exit.return_value, ctx_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Every generated program decodes and runs to completion in the
    /// interpreter: the generator's rules hold.
    #[test]
    fn generated_programs_run_in_the_interpreter() {
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            ..Config::default()
        });
        runner
            .run(&program(true), |generated| {
                let program = generated.lower();
                let result = run_in_interpreter(&program, &generated.ctx);
                prop_assert!(result.is_ok(), "{result:?}\n{generated:?}");
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
