//! Arithmetic, byte swaps and jump conditions as pure functions: the exact
//! RFC 9669 semantics the JIT is tested against, one subtle point at a time.
//!
//! Conventions (RFC 9669 §4): a 64-bit operation sees an immediate
//! sign-extended to 64 bits and then as an unsigned value ([`imm64`]); a
//! 32-bit operation sees the low 32 bits of its operands and its result is
//! zero-extended into the destination ([`alu32`] returns `u32` for that
//! reason). Nothing here can panic: every operation that could overflow or
//! trap on hardware is spelled with a wrapping or checked method.

use crate::insn::{AluOp, JmpCond, Size, SwapBits, SwapKind, Width};

/// An immediate as a 64-bit operand: sign-extended, then unsigned
/// (RFC 9669 §4.1: "imm is first sign extended from 32 to 64 bits, and then
/// interpreted as a 64-bit unsigned value").
pub const fn imm64(imm: i32) -> u64 {
    imm as i64 as u64
}

/// `dst op src` on 64 bits (RFC 9669 §4.1).
pub fn alu64(op: AluOp, dst: u64, src: u64) -> u64 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        // §4.1: "If execution would result in division by zero, the
        // destination register is instead set to zero."
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        // §4.1: "If execution would result in modulo by zero, for ALU64 the
        // value of the destination register is unchanged".
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        // Signed division truncates toward zero. By zero gives 0 as for
        // DIV; LLONG_MIN / -1 overflows and gives LLONG_MIN, what the
        // kernel's JITs and interpreter produce (wrapping_div).
        AluOp::Sdiv => match src {
            0 => 0,
            _ => (dst as i64).wrapping_div(src as i64) as u64,
        },
        // The remainder takes the sign of the dividend (truncated
        // division). By zero leaves dst as for MOD; LLONG_MIN % -1 is 0.
        AluOp::Smod => match src {
            0 => dst,
            _ => (dst as i64).wrapping_rem(src as i64) as u64,
        },
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Xor => dst ^ src,
        AluOp::Mov => src,
        // §4.1: "Shift operations use a mask of 0x3F (63) for 64-bit
        // operations".
        AluOp::Lsh => dst << (src & 63),
        AluOp::Rsh => dst >> (src & 63),
        AluOp::Arsh => ((dst as i64) >> (src & 63)) as u64,
    }
}

/// `dst op src` on 32 bits (RFC 9669 §4.1); the caller zero-extends.
pub fn alu32(op: AluOp, dst: u32, src: u32) -> u32 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        // §4.1: modulo by zero "for ALU the upper 32 bits of the destination
        // register are zeroed": the low half is kept, and the caller's zero
        // extension zeroes the rest.
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        // INT_MIN / -1 gives INT_MIN, INT_MIN % -1 gives 0, as for 64 bits.
        AluOp::Sdiv => match src {
            0 => 0,
            _ => (dst as i32).wrapping_div(src as i32) as u32,
        },
        AluOp::Smod => match src {
            0 => dst,
            _ => (dst as i32).wrapping_rem(src as i32) as u32,
        },
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Xor => dst ^ src,
        AluOp::Mov => src,
        // §4.1: "... and 0x1F (31) for 32-bit operations".
        AluOp::Lsh => dst << (src & 31),
        AluOp::Rsh => dst >> (src & 31),
        AluOp::Arsh => ((dst as i32) >> (src & 31)) as u32,
    }
}

/// `dst op src` at `width`: the full new value of the destination register.
/// `src` is the register value or [`imm64`] of the immediate; a 32-bit
/// operation uses only its low half.
pub fn alu(width: Width, op: AluOp, dst: u64, src: u64) -> u64 {
    match width {
        Width::W64 => alu64(op, dst, src),
        Width::W32 => u64::from(alu32(op, dst as u32, src as u32)),
    }
}

/// `-dst` at `width`, wrapping (so `-INT_MIN == INT_MIN`), zero-extended
/// for 32 bits.
pub fn neg(width: Width, dst: u64) -> u64 {
    match width {
        Width::W64 => dst.wrapping_neg(),
        Width::W32 => u64::from((dst as u32).wrapping_neg()),
    }
}

/// MOVSX (RFC 9669 §4.1): sign-extends the low `from` bits of `src` to
/// `width`; a 32-bit result is zero-extended into the register.
pub fn movsx(width: Width, from: Size, src: u64) -> u64 {
    let extended: i64 = match from {
        Size::B => i64::from(src as i8),
        Size::H => i64::from(src as i16),
        Size::W => i64::from(src as i32),
        Size::DW => src as i64,
    };
    match width {
        Width::W64 => extended as u64,
        Width::W32 => u64::from(extended as u32),
    }
}

/// Byte swap instructions (RFC 9669 §4.2), on a little-endian machine:
/// `le` only truncates to the width, `be` and `bswap` reverse the bytes of
/// the low `bits`; both zero-extend 16- and 32-bit results.
pub fn byte_swap(kind: SwapKind, bits: SwapBits, dst: u64) -> u64 {
    match (kind, bits) {
        (SwapKind::ToLe, SwapBits::B16) => u64::from(dst as u16),
        (SwapKind::ToLe, SwapBits::B32) => u64::from(dst as u32),
        (SwapKind::ToLe, SwapBits::B64) => dst,
        (SwapKind::ToBe | SwapKind::Bswap, SwapBits::B16) => u64::from((dst as u16).swap_bytes()),
        (SwapKind::ToBe | SwapKind::Bswap, SwapBits::B32) => u64::from((dst as u32).swap_bytes()),
        (SwapKind::ToBe | SwapKind::Bswap, SwapBits::B64) => dst.swap_bytes(),
    }
}

/// Whether a conditional jump is taken (RFC 9669 §4.3). `src` is the
/// register value or [`imm64`] of the immediate; JMP32 compares the low 32
/// bits of both, as unsigned or signed 32-bit values.
pub fn jmp_taken(width: Width, cond: JmpCond, dst: u64, src: u64) -> bool {
    match width {
        Width::W64 => compare(cond, dst, src, dst as i64, src as i64),
        Width::W32 => compare(
            cond,
            u64::from(dst as u32),
            u64::from(src as u32),
            i64::from(dst as i32),
            i64::from(src as i32),
        ),
    }
}

/// `cond` on operands given as unsigned (`u`) and signed (`s`) values.
fn compare(cond: JmpCond, ud: u64, us: u64, sd: i64, ss: i64) -> bool {
    match cond {
        JmpCond::Eq => ud == us,
        JmpCond::Ne => ud != us,
        JmpCond::Set => ud & us != 0,
        JmpCond::Gt => ud > us,
        JmpCond::Ge => ud >= us,
        JmpCond::Lt => ud < us,
        JmpCond::Le => ud <= us,
        JmpCond::Sgt => sd > ss,
        JmpCond::Sge => sd >= ss,
        JmpCond::Slt => sd < ss,
        JmpCond::Sle => sd <= ss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INT64_MIN: u64 = 1 << 63;
    const INT32_MIN: u32 = 1 << 31;

    #[test]
    fn division_by_zero() {
        assert_eq!(alu64(AluOp::Div, 7, 0), 0);
        assert_eq!(alu64(AluOp::Sdiv, 7, 0), 0);
        assert_eq!(alu64(AluOp::Mod, 7, 0), 7);
        assert_eq!(alu64(AluOp::Smod, u64::MAX, 0), u64::MAX);
        // 32-bit modulo by zero keeps the low half, zeroes the high half.
        assert_eq!(alu(Width::W32, AluOp::Mod, 0x1_0000_0007, 0), 7);
        assert_eq!(
            alu(Width::W32, AluOp::Smod, 0xffff_ffff_ffff_fff9, 0),
            0xffff_fff9
        );
        assert_eq!(alu(Width::W32, AluOp::Div, 0x1_0000_0007, 0), 0);
    }

    #[test]
    fn signed_overflow() {
        assert_eq!(alu64(AluOp::Sdiv, INT64_MIN, u64::MAX), INT64_MIN);
        assert_eq!(alu64(AluOp::Smod, INT64_MIN, u64::MAX), 0);
        assert_eq!(alu32(AluOp::Sdiv, INT32_MIN, u32::MAX), INT32_MIN);
        assert_eq!(alu32(AluOp::Smod, INT32_MIN, u32::MAX), 0);
        assert_eq!(neg(Width::W64, INT64_MIN), INT64_MIN);
        assert_eq!(neg(Width::W32, u64::from(INT32_MIN)), u64::from(INT32_MIN));
    }

    #[test]
    fn signed_division_truncates() {
        let m = |v: i64| v as u64;
        assert_eq!(alu64(AluOp::Sdiv, m(-7), 2), m(-3));
        assert_eq!(alu64(AluOp::Smod, m(-7), 2), m(-1));
        assert_eq!(alu64(AluOp::Smod, 7, m(-2)), 1);
        assert_eq!(alu32(AluOp::Smod, -7i32 as u32, -2i32 as u32), -1i32 as u32);
        // Unsigned division by a sign-extended negative immediate.
        assert_eq!(alu64(AluOp::Div, 12, imm64(-1)), 0);
        assert_eq!(alu64(AluOp::Div, u64::MAX, imm64(-1)), 1);
    }

    #[test]
    fn shifts_are_masked() {
        assert_eq!(alu64(AluOp::Lsh, 1, 65), 2);
        assert_eq!(alu32(AluOp::Lsh, 1, 33), 2);
        assert_eq!(alu64(AluOp::Rsh, 4, 64 + 2), 1);
        assert_eq!(alu64(AluOp::Arsh, INT64_MIN, 63), u64::MAX);
        assert_eq!(alu32(AluOp::Arsh, INT32_MIN, 31 + 32), u32::MAX);
        assert_eq!(alu(Width::W32, AluOp::Arsh, u64::MAX, 4), 0xffff_ffff);
    }

    #[test]
    fn thirty_two_bit_results_are_zero_extended() {
        assert_eq!(alu(Width::W32, AluOp::Add, 0xffff_ffff, 1), 0);
        assert_eq!(alu(Width::W32, AluOp::Mov, 0, imm64(-1)), 0xffff_ffff);
        assert_eq!(alu(Width::W64, AluOp::Mov, 0, imm64(-1)), u64::MAX);
        assert_eq!(alu(Width::W32, AluOp::Or, 0xdead_0000_0000_0000, 1), 1);
    }

    #[test]
    fn movsx_widths() {
        assert_eq!(movsx(Width::W64, Size::B, 0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(movsx(Width::W32, Size::B, 0x80), 0xffff_ff80);
        assert_eq!(movsx(Width::W32, Size::H, 0x1_8001), 0xffff_8001);
        assert_eq!(
            movsx(Width::W64, Size::W, 0x8000_0001),
            0xffff_ffff_8000_0001
        );
        assert_eq!(movsx(Width::W64, Size::H, 0x7fff), 0x7fff);
    }

    #[test]
    fn byte_swaps() {
        let v = 0x8877_6655_4433_2211;
        assert_eq!(byte_swap(SwapKind::ToLe, SwapBits::B16, v), 0x2211);
        assert_eq!(byte_swap(SwapKind::ToLe, SwapBits::B32, v), 0x4433_2211);
        assert_eq!(byte_swap(SwapKind::ToLe, SwapBits::B64, v), v);
        assert_eq!(byte_swap(SwapKind::ToBe, SwapBits::B16, v), 0x1122);
        assert_eq!(byte_swap(SwapKind::ToBe, SwapBits::B32, v), 0x1122_3344);
        assert_eq!(
            byte_swap(SwapKind::Bswap, SwapBits::B64, v),
            0x1122_3344_5566_7788
        );
    }

    #[test]
    fn jump_conditions() {
        let minus_one = u64::MAX;
        assert!(jmp_taken(Width::W64, JmpCond::Gt, minus_one, 1));
        assert!(!jmp_taken(Width::W64, JmpCond::Sgt, minus_one, 1));
        assert!(jmp_taken(Width::W64, JmpCond::Slt, minus_one, 1));
        assert!(jmp_taken(Width::W32, JmpCond::Eq, 0x1_0000_0005, 5));
        assert!(!jmp_taken(Width::W64, JmpCond::Eq, 0x1_0000_0005, 5));
        assert!(jmp_taken(Width::W32, JmpCond::Slt, 0xffff_ffff, 0));
        assert!(jmp_taken(Width::W32, JmpCond::Sle, 0x8000_0000, imm64(-1)));
        assert!(jmp_taken(Width::W64, JmpCond::Set, 6, 2));
        assert!(!jmp_taken(
            Width::W32,
            JmpCond::Set,
            0x1_0000_0000,
            0x1_0000_0000
        ));
        assert!(jmp_taken(Width::W64, JmpCond::Ge, 3, 3));
        assert!(jmp_taken(Width::W64, JmpCond::Le, 3, 3));
        assert!(jmp_taken(Width::W64, JmpCond::Lt, 2, 3));
        assert!(jmp_taken(Width::W64, JmpCond::Sge, 3, minus_one));
        assert!(jmp_taken(Width::W64, JmpCond::Ne, 3, minus_one));
    }
}
