//! Random programs that the JIT must accept: every instruction class, jumps
//! that land on instructions of their own function, calls to subprograms
//! and to helpers 1 to 10. They are valid for compiling, not meant to run
//! (loops need not end, pointers are whatever registers hold). Shared with
//! the benchmark through `#[path]`, so it depends on nothing but the crate.

use guest_jit::insn::{
    AluOp, AtomicOp, CastKind, Imm64, Insn, JmpCond, Op, Program, Reg, Size, Source, SwapBits,
    SwapKind, Width,
};

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn reg(&mut self) -> Reg {
        Reg::new(self.below(11) as u8).unwrap_or(Reg::R0)
    }

    fn imm(&mut self) -> i32 {
        match self.below(4) {
            0 => self.pick(&[0, 1, -1, i32::MIN, i32::MAX, 31, 32, 63, 64]),
            1 => self.below(256) as i32 - 128,
            _ => self.next() as i32,
        }
    }

    fn source(&mut self) -> Source {
        if self.below(2) == 0 {
            Source::Reg(self.reg())
        } else {
            Source::Imm(self.imm())
        }
    }
}

/// A random program of about `len` slots in `functions` functions (the
/// first is the entry), each ending with `exit`.
pub fn program(rng: &mut Rng, len: usize, functions: usize) -> Program {
    let functions = functions.max(1);
    let per_function = (len / functions).max(2);
    // First the instructions with placeholder branch offsets, to learn
    // where every function and instruction starts.
    let mut bodies: Vec<Vec<Op>> = Vec::new();
    for _ in 0..functions {
        let mut body: Vec<Op> = Vec::new();
        let mut slots = 0;
        while slots + 1 < per_function {
            let op = random_op(rng);
            slots += op.slots();
            body.push(op);
        }
        body.push(Op::Exit);
        bodies.push(body);
    }
    let mut function_starts = Vec::new();
    let mut starts: Vec<Vec<usize>> = Vec::new();
    let mut slot = 0;
    for body in &bodies {
        function_starts.push(slot);
        let mut body_starts = Vec::new();
        for op in body {
            body_starts.push(slot);
            slot += op.slots();
        }
        starts.push(body_starts);
    }
    let mut insns: Vec<Insn> = Vec::new();
    for (f, body) in bodies.iter().enumerate() {
        for (i, op) in body.iter().enumerate() {
            let pc = starts[f][i];
            let next = pc as i64 + 1;
            let local = starts[f][rng.below(starts[f].len())] as i64 - next;
            let callee = function_starts[rng.below(function_starts.len())] as i64 - next;
            let short = i16::try_from(local).unwrap_or(0);
            let op = match *op {
                Op::Ja { .. } => Op::Ja { off: short },
                Op::Gotol { .. } => Op::Gotol { off: local as i32 },
                Op::MayGoto { .. } => Op::MayGoto { off: short },
                Op::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                } => Op::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    off: short,
                },
                Op::CallLocal { .. } => Op::CallLocal { off: callee as i32 },
                other => other,
            };
            op.encode_into(&mut insns);
        }
    }
    match Program::decode(&insns) {
        Ok(program) => program,
        Err(err) => panic!("random program does not decode: {err}"),
    }
}

/// One instruction that decodes as it is, branch offsets left at 0.
pub fn random_op(rng: &mut Rng) -> Op {
    loop {
        let op = candidate(rng);
        let mut insns = Vec::new();
        op.encode_into(&mut insns);
        if Program::decode(&insns).is_ok_and(|p| p.op(0) == Some(&op)) {
            return op;
        }
    }
}

fn candidate(rng: &mut Rng) -> Op {
    let width = rng.pick(&[Width::W32, Width::W64]);
    let size = rng.pick(&[Size::B, Size::H, Size::W, Size::DW]);
    let (dst, src) = (rng.reg(), rng.reg());
    let off = rng.below(64) as i16 * 8 - 256;
    match rng.below(20) {
        0..=6 => Op::Alu {
            width,
            op: rng.pick(&[
                AluOp::Add,
                AluOp::Sub,
                AluOp::Mul,
                AluOp::Div,
                AluOp::Sdiv,
                AluOp::Or,
                AluOp::And,
                AluOp::Lsh,
                AluOp::Rsh,
                AluOp::Mod,
                AluOp::Smod,
                AluOp::Xor,
                AluOp::Mov,
                AluOp::Arsh,
            ]),
            dst,
            src: rng.source(),
        },
        7 => match rng.below(4) {
            0 => Op::Neg { width, dst },
            1 => Op::Movsx {
                width,
                dst,
                src,
                from: rng.pick(&[Size::B, Size::H, Size::W]),
            },
            2 => Op::ByteSwap {
                dst,
                kind: rng.pick(&[SwapKind::ToLe, SwapKind::ToBe, SwapKind::Bswap]),
                bits: rng.pick(&[SwapBits::B16, SwapBits::B32, SwapBits::B64]),
            },
            _ => Op::AddrSpaceCast {
                dst,
                src,
                kind: rng.pick(&[CastKind::ToKern, CastKind::ToUser]),
            },
        },
        8 => Op::LdImm64 {
            dst,
            value: Imm64::Value(rng.next() >> rng.below(64)),
        },
        9 | 10 => Op::Load {
            size,
            dst,
            src,
            off,
        },
        11 => Op::LoadSx {
            size,
            dst,
            src,
            off,
        },
        12 | 13 => Op::Store {
            size,
            dst,
            off,
            src: rng.source(),
        },
        14 => match rng.below(3) {
            0 => Op::LoadAcquire {
                size,
                dst,
                src,
                off,
            },
            1 => Op::StoreRelease {
                size,
                dst,
                off,
                src,
            },
            _ => Op::Atomic {
                width,
                op: rng.pick(&[
                    AtomicOp::Add,
                    AtomicOp::Or,
                    AtomicOp::And,
                    AtomicOp::Xor,
                    AtomicOp::FetchAdd,
                    AtomicOp::FetchOr,
                    AtomicOp::FetchAnd,
                    AtomicOp::FetchXor,
                    AtomicOp::Xchg,
                    AtomicOp::Cmpxchg,
                ]),
                dst,
                off,
                src,
            },
        },
        15 | 16 => Op::Jmp {
            width,
            cond: rng.pick(&[
                JmpCond::Eq,
                JmpCond::Gt,
                JmpCond::Ge,
                JmpCond::Set,
                JmpCond::Ne,
                JmpCond::Sgt,
                JmpCond::Sge,
                JmpCond::Lt,
                JmpCond::Le,
                JmpCond::Slt,
                JmpCond::Sle,
            ]),
            dst,
            src: rng.source(),
            off: 0,
        },
        17 => match rng.below(3) {
            0 => Op::Ja { off: 0 },
            1 => Op::Gotol { off: 0 },
            _ => Op::MayGoto { off: 0 },
        },
        18 => match rng.below(4) {
            0 => Op::Callx { dst },
            _ => Op::CallHelper {
                // 8 and 12 are emitted inline.
                id: rng.below(12) as u32 + 1,
            },
        },
        _ => Op::CallLocal { off: 0 },
    }
}
