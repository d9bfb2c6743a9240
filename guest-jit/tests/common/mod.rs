//! Proptest strategies shared by the integration tests.

// Each test binary uses only some of them.
#![allow(dead_code)]

use guest_jit::insn::{
    AluOp, AtomicOp, CastKind, Imm64, Insn, JmpCond, Op, Reg, Size, Source, SwapBits, SwapKind,
    Width, decode,
};
use proptest::prelude::*;
use proptest::sample::select;

pub fn reg() -> impl Strategy<Value = Reg> {
    (0u8..=10).prop_map(|n| Reg::new(n).expect("in range"))
}

/// A register an instruction may write: not r10.
pub fn wreg() -> impl Strategy<Value = Reg> {
    (0u8..=9).prop_map(|n| Reg::new(n).expect("in range"))
}

pub fn width() -> impl Strategy<Value = Width> {
    select(Width::ALL.to_vec())
}

pub fn size() -> impl Strategy<Value = Size> {
    select(Size::ALL.to_vec())
}

/// Immediates, with the values that change how they are printed or parsed
/// well represented.
pub fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        any::<i32>(),
        -12i32..12,
        select(vec![i32::MIN, i32::MAX, -1, 0x80, 0xffff]),
    ]
}

pub fn off() -> impl Strategy<Value = i16> {
    prop_oneof![any::<i16>(), -4i16..4, select(vec![i16::MIN, i16::MAX])]
}

pub fn source() -> impl Strategy<Value = Source> {
    prop_oneof![reg().prop_map(Source::Reg), imm().prop_map(Source::Imm)]
}

pub fn alu_op() -> impl Strategy<Value = AluOp> {
    select(AluOp::ALL.to_vec())
}

pub fn jmp_cond() -> impl Strategy<Value = JmpCond> {
    select(JmpCond::ALL.to_vec())
}

pub fn atomic_op() -> impl Strategy<Value = AtomicOp> {
    select(AtomicOp::ALL.to_vec())
}

pub fn imm64() -> impl Strategy<Value = Imm64> {
    prop_oneof![
        any::<u64>().prop_map(Imm64::Value),
        (0u64..12).prop_map(Imm64::Value),
        imm().prop_map(|fd| Imm64::MapFd { fd }),
        (imm(), imm()).prop_map(|(fd, off)| Imm64::MapValue { fd, off }),
        (imm(), imm()).prop_map(|(id, btf_fd)| Imm64::BtfId { id, btf_fd }),
        imm().prop_map(|off| Imm64::Func { off }),
        imm().prop_map(|idx| Imm64::MapIdx { idx }),
        (imm(), imm()).prop_map(|(idx, off)| Imm64::MapIdxValue { idx, off }),
    ]
}

/// Every instruction the decoder accepts, and nothing else.
pub fn op() -> impl Strategy<Value = Op> {
    let movsx = select(vec![
        (Width::W32, Size::B),
        (Width::W32, Size::H),
        (Width::W64, Size::B),
        (Width::W64, Size::H),
        (Width::W64, Size::W),
    ]);
    let swap = (
        select(SwapKind::ALL.to_vec()),
        select(SwapBits::ALL.to_vec()),
    );
    prop_oneof![
        (width(), alu_op(), wreg(), source()).prop_map(|(width, op, dst, src)| Op::Alu {
            width,
            op,
            dst,
            src
        }),
        (width(), wreg()).prop_map(|(width, dst)| Op::Neg { width, dst }),
        (movsx, wreg(), reg()).prop_map(|((width, from), dst, src)| Op::Movsx {
            width,
            dst,
            src,
            from
        }),
        (swap, wreg()).prop_map(|((kind, bits), dst)| Op::ByteSwap { dst, kind, bits }),
        (
            wreg(),
            reg(),
            select(vec![CastKind::ToKern, CastKind::ToUser])
        )
            .prop_map(|(dst, src, kind)| Op::AddrSpaceCast { dst, src, kind }),
        (wreg(), imm64()).prop_map(|(dst, value)| Op::LdImm64 { dst, value }),
        (size(), wreg(), reg(), off()).prop_map(|(size, dst, src, off)| Op::Load {
            size,
            dst,
            src,
            off
        }),
        (
            select(vec![Size::B, Size::H, Size::W]),
            wreg(),
            reg(),
            off()
        )
            .prop_map(|(size, dst, src, off)| Op::LoadSx {
                size,
                dst,
                src,
                off
            }),
        (size(), reg(), off(), source()).prop_map(|(size, dst, off, src)| Op::Store {
            size,
            dst,
            off,
            src
        }),
        (width(), atomic_op(), reg(), off(), reg()).prop_map(|(width, op, dst, off, src)| {
            // A fetch into r10 is not an instruction; use r9 instead.
            let src = if op.fetches() && op != AtomicOp::Cmpxchg && src == Reg::R10 {
                Reg::R9
            } else {
                src
            };
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            }
        }),
        (size(), wreg(), reg(), off()).prop_map(|(size, dst, src, off)| Op::LoadAcquire {
            size,
            dst,
            src,
            off
        }),
        (size(), reg(), off(), reg()).prop_map(|(size, dst, off, src)| Op::StoreRelease {
            size,
            dst,
            off,
            src
        }),
        off().prop_map(|off| Op::Ja { off }),
        imm().prop_map(|off| Op::Gotol { off }),
        (width(), jmp_cond(), reg(), source(), off()).prop_map(|(width, cond, dst, src, off)| {
            Op::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            }
        }),
        off().prop_map(|off| Op::MayGoto { off }),
        (0u32..=i32::MAX as u32).prop_map(|id| Op::CallHelper { id }),
        imm().prop_map(|off| Op::CallLocal { off }),
        (imm(), off()).prop_map(|(btf_id, module)| Op::CallKfunc { btf_id, module }),
        reg().prop_map(|dst| Op::Callx { dst }),
        Just(Op::Exit),
    ]
}

pub fn encode(ops: &[Op]) -> Vec<Insn> {
    let mut out = Vec::new();
    for op in ops {
        op.encode_into(&mut out);
    }
    out
}

/// Opcodes that decode with some choice of the other fields.
pub fn valid_codes() -> Vec<u8> {
    let fields = [
        (0, 0, 0, 0),
        (1, 2, 0, 0),
        (1, 0, 0, 16),
        (1, 2, 1, 1),
        (1, 2, 8, 0x100),
    ];
    (0..=255u8)
        .filter(|&code| {
            fields.iter().any(|&(dst, src, off, imm)| {
                decode(&[Insn::new(code, dst, src, off, imm), Insn::default()], 0).is_ok()
            })
        })
        .collect()
}

/// Instruction slots biased towards valid ones: opcodes that exist or any
/// byte, registers in and out of range, fields often zero (unused fields
/// must be) or holding the values that select operations.
pub fn raw_insn() -> impl Strategy<Value = Insn> {
    let code = prop_oneof![any::<u8>(), select(valid_codes())];
    let reg = prop_oneof![Just(0u8), 0u8..=11];
    let field_off = prop_oneof![Just(0i16), off(), select(vec![1i16, 8, 16, 32])];
    let field_imm = prop_oneof![
        Just(0),
        imm(),
        select(vec![
            16, 32, 64, 0x100, 0x110, 0x1_0000, 1, 0xe1, 0xf1, 0x41
        ])
    ];
    (code, reg.clone(), reg, field_off, field_imm)
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}
