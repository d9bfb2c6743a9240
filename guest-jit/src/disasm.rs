//! Disassembly to the text syntax of the bpf_conformance suite, which
//! [`crate::asm`] reads back: `assemble(disassemble(p)) == p`.
//!
//! ```text
//! mov %r0, 1            mov32 %r0, -1          ldxdw %r0, [%r1+8]
//! stxw [%r10-4], %r1    stb [%r10-1], 0x80     lddw %r0, 0x123456789
//! jeq %r1, 2, +3        ja +1                  ja32 -2
//! lock fetch add [%r10-8], %r1                 lock cmpxchg32 [%r10-8], %r1
//! call 5                call local +3          call %r2          exit
//! be16 %r0              bswap64 %r0            movsx1664 %r1, %r2
//! ```
//!
//! Forms the suite has no syntax for are spelled so that they read like
//! their neighbours: `ldxs{b,h,w}` (sign-extending loads, as the suite's
//! newer files), `ldxacq{b,h,w,dw}` / `stxrel{b,h,w,dw}` (load-acquire /
//! store-release), `may_goto +off`, `call kfunc ID[, MODULE]`,
//! `addr_space_cast %rD, %rS, DST_AS, SRC_AS` (clang's argument order) and
//! `lddw %rD, map_fd(FD)`-style pseudo loads (see [`crate::insn::Imm64`]).

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::insn::{AluOp, AtomicOp, Imm64, JmpCond, Op, Program, Reg, Size, Source};
use crate::insn::{SwapKind, Width};

impl fmt::Display for Op {
    /// One instruction, jump targets as relative offsets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_op(f, self, &|off| Target::Relative(off))
    }
}

/// The program, one instruction per line, jump targets as relative offsets.
pub fn disassemble(program: &Program) -> String {
    let mut out = String::new();
    for (_, op) in program.iter() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{op}");
    }
    out
}

/// The program with a label `L<slot>:` before every instruction that a jump,
/// local call or `func` pseudo load targets, and those targets named by
/// label. Targets outside the program stay relative offsets.
pub fn disassemble_labeled(program: &Program) -> String {
    let targets: BTreeSet<usize> = program
        .iter()
        .filter_map(|(pc, op)| target_of(program, pc, op))
        .collect();
    let mut out = String::new();
    for (pc, op) in program.iter() {
        if targets.contains(&pc) {
            let _ = writeln!(out, "L{pc}:");
        }
        let name = |off: i64| match target_of(program, pc, op) {
            Some(t) => Target::Label(t),
            None => Target::Relative(off),
        };
        let _ = writeln!(out, "{}", Labeled(op, &name));
    }
    out
}

/// The slot a control-transfer `op` at `pc` names, if it is the start of an
/// instruction of `program`.
fn target_of(program: &Program, pc: usize, op: &Op) -> Option<usize> {
    let off = op.branch_offset()?;
    let target = i64::try_from(pc).ok()?.checked_add(1)?.checked_add(off)?;
    let target = usize::try_from(target).ok()?;
    program.op(target).map(|_| target)
}

/// How a jump target is written.
enum Target {
    Relative(i64),
    Label(usize),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Relative(off) => write!(f, "{off:+}"),
            Target::Label(slot) => write!(f, "L{slot}"),
        }
    }
}

struct Labeled<'a>(&'a Op, &'a dyn Fn(i64) -> Target);

impl fmt::Display for Labeled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_op(f, self.0, self.1)
    }
}

/// `%rN`.
struct R(Reg);

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%r{}", self.0.num())
    }
}

/// A 32-bit immediate: small and negative values in decimal, others in hex.
pub(crate) struct Imm(pub i32);

impl fmt::Display for Imm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (-9..=9).contains(&self.0) || self.0 < 0 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// `[%rN+off]`, `[%rN-off]` or `[%rN]`.
struct Mem(Reg, i16);

impl fmt::Display for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            0 => write!(f, "[{}]", R(self.0)),
            off => write!(f, "[{}{off:+}]", R(self.0)),
        }
    }
}

struct Src(Source);

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::Reg(r) => R(r).fmt(f),
            Source::Imm(imm) => Imm(imm).fmt(f),
        }
    }
}

pub(crate) const fn size_suffix(size: Size) -> &'static str {
    match size {
        Size::B => "b",
        Size::H => "h",
        Size::W => "w",
        Size::DW => "dw",
    }
}

const fn width_suffix(width: Width) -> &'static str {
    match width {
        Width::W32 => "32",
        Width::W64 => "",
    }
}

pub(crate) const fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Mul => "mul",
        AluOp::Div => "div",
        AluOp::Sdiv => "sdiv",
        AluOp::Or => "or",
        AluOp::And => "and",
        AluOp::Lsh => "lsh",
        AluOp::Rsh => "rsh",
        AluOp::Mod => "mod",
        AluOp::Smod => "smod",
        AluOp::Xor => "xor",
        AluOp::Mov => "mov",
        AluOp::Arsh => "arsh",
    }
}

pub(crate) const fn jmp_name(cond: JmpCond) -> &'static str {
    match cond {
        JmpCond::Eq => "jeq",
        JmpCond::Gt => "jgt",
        JmpCond::Ge => "jge",
        JmpCond::Set => "jset",
        JmpCond::Ne => "jne",
        JmpCond::Sgt => "jsgt",
        JmpCond::Sge => "jsge",
        JmpCond::Lt => "jlt",
        JmpCond::Le => "jle",
        JmpCond::Slt => "jslt",
        JmpCond::Sle => "jsle",
    }
}

pub(crate) const fn atomic_name(op: AtomicOp) -> &'static str {
    match op {
        AtomicOp::Add => "add",
        AtomicOp::Or => "or",
        AtomicOp::And => "and",
        AtomicOp::Xor => "xor",
        AtomicOp::FetchAdd => "fetch add",
        AtomicOp::FetchOr => "fetch or",
        AtomicOp::FetchAnd => "fetch and",
        AtomicOp::FetchXor => "fetch xor",
        AtomicOp::Xchg => "xchg",
        AtomicOp::Cmpxchg => "cmpxchg",
    }
}

fn write_op(f: &mut fmt::Formatter<'_>, op: &Op, target: &dyn Fn(i64) -> Target) -> fmt::Result {
    match *op {
        Op::Alu {
            width,
            op,
            dst,
            src,
        } => write!(
            f,
            "{}{} {}, {}",
            alu_name(op),
            width_suffix(width),
            R(dst),
            Src(src)
        ),
        Op::Neg { width, dst } => write!(f, "neg{} {}", width_suffix(width), R(dst)),
        Op::Movsx {
            width,
            dst,
            src,
            from,
        } => {
            let to = match width {
                Width::W32 => 32,
                Width::W64 => 64,
            };
            write!(f, "movsx{}{to} {}, {}", from.bits(), R(dst), R(src))
        }
        Op::ByteSwap { dst, kind, bits } => {
            let name = match kind {
                SwapKind::ToLe => "le",
                SwapKind::ToBe => "be",
                SwapKind::Bswap => "bswap",
            };
            write!(f, "{name}{} {}", bits.bits(), R(dst))
        }
        Op::AddrSpaceCast { dst, src, kind } => write!(
            f,
            "addr_space_cast {}, {}, {}, {}",
            R(dst),
            R(src),
            kind.dst_as(),
            kind.src_as()
        ),
        Op::LdImm64 { dst, value } => {
            write!(f, "lddw {}, ", R(dst))?;
            match value {
                Imm64::Value(v) if v <= 9 => write!(f, "{v}"),
                Imm64::Value(v) => write!(f, "{v:#x}"),
                Imm64::MapFd { fd } => write!(f, "map_fd({fd})"),
                Imm64::MapValue { fd, off } => write!(f, "map_value({fd}, {off})"),
                Imm64::BtfId { id, btf_fd } => write!(f, "btf_id({id}, {btf_fd})"),
                Imm64::Func { off } => write!(f, "func({})", target(off.into())),
                Imm64::MapIdx { idx } => write!(f, "map_idx({idx})"),
                Imm64::MapIdxValue { idx, off } => write!(f, "map_idx_value({idx}, {off})"),
            }
        }
        Op::Load {
            size,
            dst,
            src,
            off,
        } => write!(f, "ldx{} {}, {}", size_suffix(size), R(dst), Mem(src, off)),
        Op::LoadSx {
            size,
            dst,
            src,
            off,
        } => write!(f, "ldxs{} {}, {}", size_suffix(size), R(dst), Mem(src, off)),
        Op::Store {
            size,
            dst,
            off,
            src: Source::Imm(imm),
        } => write!(f, "st{} {}, {}", size_suffix(size), Mem(dst, off), Imm(imm)),
        Op::Store {
            size,
            dst,
            off,
            src: Source::Reg(src),
        } => write!(f, "stx{} {}, {}", size_suffix(size), Mem(dst, off), R(src)),
        Op::Atomic {
            width,
            op,
            dst,
            off,
            src,
        } => write!(
            f,
            "lock {}{} {}, {}",
            atomic_name(op),
            width_suffix(width),
            Mem(dst, off),
            R(src)
        ),
        Op::LoadAcquire {
            size,
            dst,
            src,
            off,
        } => write!(
            f,
            "ldxacq{} {}, {}",
            size_suffix(size),
            R(dst),
            Mem(src, off)
        ),
        Op::StoreRelease {
            size,
            dst,
            off,
            src,
        } => write!(
            f,
            "stxrel{} {}, {}",
            size_suffix(size),
            Mem(dst, off),
            R(src)
        ),
        Op::Ja { off } => write!(f, "ja {}", target(off.into())),
        Op::Gotol { off } => write!(f, "ja32 {}", target(off.into())),
        Op::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => write!(
            f,
            "{}{} {}, {}, {}",
            jmp_name(cond),
            width_suffix(width),
            R(dst),
            Src(src),
            target(off.into())
        ),
        Op::MayGoto { off } => write!(f, "may_goto {}", target(off.into())),
        Op::CallHelper { id } => write!(f, "call {id}"),
        Op::CallLocal { off } => write!(f, "call local {}", target(off.into())),
        Op::CallKfunc { btf_id, module: 0 } => write!(f, "call kfunc {btf_id}"),
        Op::CallKfunc { btf_id, module } => write!(f, "call kfunc {btf_id}, {module}"),
        Op::Callx { dst } => write!(f, "call {}", R(dst)),
        Op::Exit => f.write_str("exit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{CastKind, Insn, SwapBits};

    fn text(op: Op) -> String {
        op.to_string()
    }

    #[test]
    fn suite_syntax() {
        let r = |n| Reg::new(n).unwrap();
        let cases = [
            (
                Op::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: r(0),
                    src: Source::Imm(1),
                },
                "mov %r0, 1",
            ),
            (
                Op::Alu {
                    width: Width::W32,
                    op: AluOp::Mov,
                    dst: r(0),
                    src: Source::Imm(-1),
                },
                "mov32 %r0, -1",
            ),
            (
                Op::Alu {
                    width: Width::W32,
                    op: AluOp::Smod,
                    dst: r(0),
                    src: Source::Reg(r(1)),
                },
                "smod32 %r0, %r1",
            ),
            (
                Op::Load {
                    size: Size::DW,
                    dst: r(0),
                    src: r(1),
                    off: 8,
                },
                "ldxdw %r0, [%r1+8]",
            ),
            (
                Op::Store {
                    size: Size::W,
                    dst: r(10),
                    off: -4,
                    src: Source::Reg(r(1)),
                },
                "stxw [%r10-4], %r1",
            ),
            (
                Op::Store {
                    size: Size::B,
                    dst: r(10),
                    off: 0,
                    src: Source::Imm(0x80),
                },
                "stb [%r10], 0x80",
            ),
            (
                Op::LdImm64 {
                    dst: r(0),
                    value: Imm64::Value(0x123456789),
                },
                "lddw %r0, 0x123456789",
            ),
            (
                Op::Atomic {
                    width: Width::W64,
                    op: AtomicOp::FetchAdd,
                    dst: r(10),
                    off: -8,
                    src: r(1),
                },
                "lock fetch add [%r10-8], %r1",
            ),
            (
                Op::Atomic {
                    width: Width::W32,
                    op: AtomicOp::Cmpxchg,
                    dst: r(10),
                    off: -8,
                    src: r(1),
                },
                "lock cmpxchg32 [%r10-8], %r1",
            ),
            (
                Op::Jmp {
                    width: Width::W64,
                    cond: JmpCond::Eq,
                    dst: r(1),
                    src: Source::Imm(2),
                    off: 3,
                },
                "jeq %r1, 2, +3",
            ),
            (
                Op::Jmp {
                    width: Width::W32,
                    cond: JmpCond::Sle,
                    dst: r(1),
                    src: Source::Reg(r(2)),
                    off: -1,
                },
                "jsle32 %r1, %r2, -1",
            ),
            (Op::Ja { off: 1 }, "ja +1"),
            (Op::Gotol { off: 0 }, "ja32 +0"),
            (Op::CallHelper { id: 5 }, "call 5"),
            (Op::CallLocal { off: 3 }, "call local +3"),
            (Op::Callx { dst: r(2) }, "call %r2"),
            (
                Op::ByteSwap {
                    dst: r(0),
                    kind: SwapKind::ToBe,
                    bits: SwapBits::B16,
                },
                "be16 %r0",
            ),
            (
                Op::ByteSwap {
                    dst: r(0),
                    kind: SwapKind::Bswap,
                    bits: SwapBits::B64,
                },
                "bswap64 %r0",
            ),
            (
                Op::Movsx {
                    width: Width::W32,
                    dst: r(2),
                    src: r(1),
                    from: Size::B,
                },
                "movsx832 %r2, %r1",
            ),
            (
                Op::LoadSx {
                    size: Size::H,
                    dst: r(0),
                    src: r(10),
                    off: -2,
                },
                "ldxsh %r0, [%r10-2]",
            ),
            (Op::Exit, "exit"),
        ];
        for (op, expected) in cases {
            assert_eq!(text(op), expected);
        }
    }

    #[test]
    fn extension_syntax() {
        let r = |n| Reg::new(n).unwrap();
        assert_eq!(
            text(Op::AddrSpaceCast {
                dst: r(1),
                src: r(2),
                kind: CastKind::ToUser,
            }),
            "addr_space_cast %r1, %r2, 1, 0"
        );
        assert_eq!(text(Op::MayGoto { off: -4 }), "may_goto -4");
        assert_eq!(
            text(Op::CallKfunc {
                btf_id: 77,
                module: 0
            }),
            "call kfunc 77"
        );
        assert_eq!(
            text(Op::CallKfunc {
                btf_id: 77,
                module: 2
            }),
            "call kfunc 77, 2"
        );
        assert_eq!(
            text(Op::LoadAcquire {
                size: Size::W,
                dst: r(0),
                src: r(1),
                off: 4,
            }),
            "ldxacqw %r0, [%r1+4]"
        );
        assert_eq!(
            text(Op::StoreRelease {
                size: Size::DW,
                dst: r(1),
                off: 0,
                src: r(2),
            }),
            "stxreldw [%r1], %r2"
        );
        assert_eq!(
            text(Op::LdImm64 {
                dst: r(1),
                value: Imm64::MapValue { fd: 3, off: 16 },
            }),
            "lddw %r1, map_value(3, 16)"
        );
        assert_eq!(
            text(Op::LdImm64 {
                dst: r(1),
                value: Imm64::Func { off: -7 },
            }),
            "lddw %r1, func(-7)"
        );
    }

    #[test]
    fn labeled_names_targets() {
        // 0: ja +1; 1: exit; 2: jeq %r1, 0, -2; 3: call local -4; 4: exit;
        // 5: ja +100 (outside)
        let insns = [
            Insn::new(0x05, 0, 0, 1, 0),
            Insn::new(0x95, 0, 0, 0, 0),
            Insn::new(0x15, 1, 0, -2, 0),
            Insn::new(0x85, 0, 1, 0, -4),
            Insn::new(0x95, 0, 0, 0, 0),
            Insn::new(0x05, 0, 0, 100, 0),
        ];
        let program = Program::decode(&insns).unwrap();
        assert_eq!(
            disassemble_labeled(&program),
            "L0:\nja L2\nL1:\nexit\nL2:\njeq %r1, 0, L1\ncall local L0\nexit\nja +100\n"
        );
        assert_eq!(
            disassemble(&program),
            "ja +1\nexit\njeq %r1, 0, -2\ncall local -4\nexit\nja +100\n"
        );
    }
}
