//! The text level of the syntax: words, operand lists, numbers and
//! mnemonics, without meaning attached to operands yet.

use crate::disasm::{alu_name, jmp_name, size_suffix};
use crate::insn::{AluOp, AtomicOp, JmpCond, Size, SwapBits, SwapKind, Width};

/// A label name: a letter, `_` or `.`, then letters, digits, `_` or `.`.
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Instruction families by mnemonic.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mnemonic {
    Alu(AluOp, Width),
    Neg(Width),
    Movsx(Width, Size),
    Swap(SwapKind, SwapBits),
    AddrSpaceCast,
    Lddw,
    Ldx(Size),
    Ldxs(Size),
    LoadAcquire(Size),
    St(Size),
    Stx(Size),
    StoreRelease(Size),
    Ja,
    Gotol,
    MayGoto,
    Jmp(JmpCond, Width),
    Call,
    Callx,
    Exit,
}

const ALU_OPS: [AluOp; 14] = [
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
];

const JMP_CONDS: [JmpCond; 11] = [
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
];

const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];

pub(super) const ATOMIC_OPS: [(&str, AtomicOp); 10] = [
    ("add", AtomicOp::Add),
    ("or", AtomicOp::Or),
    ("and", AtomicOp::And),
    ("xor", AtomicOp::Xor),
    ("fetch add", AtomicOp::FetchAdd),
    ("fetch or", AtomicOp::FetchOr),
    ("fetch and", AtomicOp::FetchAnd),
    ("fetch xor", AtomicOp::FetchXor),
    ("xchg", AtomicOp::Xchg),
    ("cmpxchg", AtomicOp::Cmpxchg),
];

/// `name`, `name64` (both 64-bit) or `name32`.
fn with_width(m: &str, name: &str) -> Option<Width> {
    match m.strip_prefix(name)? {
        "" | "64" => Some(Width::W64),
        "32" => Some(Width::W32),
        _ => None,
    }
}

fn with_size(m: &str, prefix: &str) -> Option<Size> {
    let suffix = m.strip_prefix(prefix)?;
    SIZES.into_iter().find(|&s| size_suffix(s) == suffix)
}

pub(super) fn parse_mnemonic(m: &str) -> Option<Mnemonic> {
    if let Some(mn) = ALU_OPS
        .into_iter()
        .find_map(|op| with_width(m, alu_name(op)).map(|w| Mnemonic::Alu(op, w)))
    {
        return Some(mn);
    }
    if let Some(w) = with_width(m, "neg") {
        return Some(Mnemonic::Neg(w));
    }
    if let Some(cond) = JMP_CONDS.into_iter().find(|&c| m == jmp_name(c)) {
        return Some(Mnemonic::Jmp(cond, Width::W64));
    }
    if let Some(cond) = JMP_CONDS
        .into_iter()
        .find(|&c| m.strip_prefix(jmp_name(c)) == Some("32"))
    {
        return Some(Mnemonic::Jmp(cond, Width::W32));
    }
    for (prefix, kind) in [
        ("le", SwapKind::ToLe),
        ("be", SwapKind::ToBe),
        ("bswap", SwapKind::Bswap),
        // The suite also spells bswap this way.
        ("swap", SwapKind::Bswap),
    ] {
        let bits = match m.strip_prefix(prefix) {
            Some("16") => SwapBits::B16,
            Some("32") => SwapBits::B32,
            Some("64") => SwapBits::B64,
            _ => continue,
        };
        return Some(Mnemonic::Swap(kind, bits));
    }
    if let Some(size) = with_size(m, "ldxacq") {
        return Some(Mnemonic::LoadAcquire(size));
    }
    if let Some(size) = with_size(m, "ldxs").filter(|&s| s != Size::DW) {
        return Some(Mnemonic::Ldxs(size));
    }
    if let Some(size) = with_size(m, "ldx") {
        return Some(Mnemonic::Ldx(size));
    }
    if let Some(size) = with_size(m, "stxrel") {
        return Some(Mnemonic::StoreRelease(size));
    }
    if let Some(size) = with_size(m, "stx") {
        return Some(Mnemonic::Stx(size));
    }
    if let Some(size) = with_size(m, "st") {
        return Some(Mnemonic::St(size));
    }
    Some(match m {
        "movsx832" => Mnemonic::Movsx(Width::W32, Size::B),
        "movsx1632" => Mnemonic::Movsx(Width::W32, Size::H),
        "movsx864" => Mnemonic::Movsx(Width::W64, Size::B),
        "movsx1664" => Mnemonic::Movsx(Width::W64, Size::H),
        "movsx3264" => Mnemonic::Movsx(Width::W64, Size::W),
        "addr_space_cast" => Mnemonic::AddrSpaceCast,
        "lddw" => Mnemonic::Lddw,
        "ja" => Mnemonic::Ja,
        "ja32" | "gotol" => Mnemonic::Gotol,
        "may_goto" => Mnemonic::MayGoto,
        "call" => Mnemonic::Call,
        "callx" => Mnemonic::Callx,
        "exit" => Mnemonic::Exit,
        _ => return None,
    })
}

/// Splits operands at commas outside parentheses and brackets.
pub(super) fn split_operands(text: &str) -> Vec<&str> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out
}

/// Splits the first whitespace-separated word off `text`.
pub(super) fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    text.split_once(char::is_whitespace).unwrap_or((text, ""))
}

/// A signed decimal or `0x` hex integer, and whether it was hex.
pub(super) fn parse_int(text: &str) -> Option<(i128, bool)> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (16, hex),
        None => (10, digits),
    };
    // from_str_radix accepts a sign of its own; the sign was taken above.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i128::from_str_radix(digits, radix).ok()?;
    Some((if negative { -value } else { value }, radix == 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("42"), Some((42, false)));
        assert_eq!(parse_int("-0x10"), Some((-16, true)));
        assert_eq!(parse_int("+0XfF"), Some((255, true)));
        assert_eq!(parse_int("0x"), None);
        assert_eq!(parse_int("--1"), None);
        assert_eq!(parse_int("-+1"), None);
        assert_eq!(parse_int("1_000"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("٣"), None);
        // Too long for i128: refused, not wrapped.
        assert_eq!(parse_int(&"9".repeat(60)), None);
    }

    #[test]
    fn operands_split_outside_brackets() {
        assert_eq!(
            split_operands(" %r1, map_value(3, 16) "),
            ["%r1", "map_value(3, 16)"]
        );
        assert_eq!(split_operands("[%r1 + 2], %r2"), ["[%r1 + 2]", "%r2"]);
        assert_eq!(split_operands("  "), Vec::<&str>::new());
        assert_eq!(split_operands("a,"), ["a", ""]);
        assert_eq!(split_word("  local  f"), ("local", " f"));
    }

    #[test]
    fn mnemonics() {
        assert!(matches!(
            parse_mnemonic("add64"),
            Some(Mnemonic::Alu(AluOp::Add, Width::W64))
        ));
        assert!(matches!(
            parse_mnemonic("smod32"),
            Some(Mnemonic::Alu(AluOp::Smod, Width::W32))
        ));
        assert!(matches!(
            parse_mnemonic("jsle32"),
            Some(Mnemonic::Jmp(JmpCond::Sle, Width::W32))
        ));
        assert!(matches!(
            parse_mnemonic("swap16"),
            Some(Mnemonic::Swap(SwapKind::Bswap, SwapBits::B16))
        ));
        assert!(matches!(
            parse_mnemonic("ldxsw"),
            Some(Mnemonic::Ldxs(Size::W))
        ));
        for bad in ["ldxsdw", "movsx3232", "jeq64", "ja64", "le8", "mov16", ""] {
            assert!(parse_mnemonic(bad).is_none(), "{bad}");
        }
        assert!(is_identifier("L1") && is_identifier("_x.y") && !is_identifier("1L"));
    }
}
