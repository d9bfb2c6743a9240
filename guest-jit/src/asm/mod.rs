//! Assembler for the text syntax of the bpf_conformance suite, the inverse
//! of [`crate::disasm`].
//!
//! One instruction per line; `#` starts a comment; `name:` defines a label
//! (also in front of an instruction on the same line). Jump targets and
//! `call local` targets are labels or signed offsets (`+3`, `-1`) counted
//! from the next slot. As in the suite's own assembler, the label `exit`
//! names the first `exit` instruction unless the program defines it.
//!
//! Numbers are decimal or `0x` hex, optionally negative. A 32-bit immediate
//! written in decimal must fit `i32`; in hex it may be any 32-bit pattern
//! (`0xffffffff` is -1). `lddw` takes any 64-bit value the same way. Offsets
//! must fit `i16`. Every instruction is checked by the decoder as it is
//! assembled, so the output always decodes.

mod lexer;
mod line;

use std::collections::HashMap;
use std::fmt;

use thiserror::Error;

use crate::insn::{DecodeError, Imm64, Insn, Op, decode};
use lexer::is_identifier;
use line::Line;

/// What kind of number an operand should have been.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberKind {
    /// A 32-bit immediate.
    Imm32,
    /// A 64-bit immediate (`lddw`).
    Imm64,
    /// A 16-bit memory offset.
    Offset,
    /// A jump offset or label.
    JumpTarget,
    /// A helper id (0 to `i32::MAX`).
    HelperId,
    /// An address space number (0 or 1).
    AddressSpace,
}

impl fmt::Display for NumberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumberKind::Imm32 => "32-bit immediate",
            NumberKind::Imm64 => "64-bit immediate",
            NumberKind::Offset => "16-bit offset",
            NumberKind::JumpTarget => "jump target",
            NumberKind::HelperId => "helper id",
            NumberKind::AddressSpace => "address space",
        })
    }
}

/// Why a source text does not assemble. Every variant names its line
/// (1-based).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AsmError {
    /// No instruction has this name.
    #[error("Invalid mnemonic `{mnemonic}` on line {line}")]
    ParseMnemonic {
        /// Line number.
        line: usize,
        /// The mnemonic as written.
        mnemonic: String,
    },
    /// Too many or too few operands.
    #[error(
        "Invalid number of operands for {mnemonic} on line {line}: expected {expected}, found {found}"
    )]
    CountOperands {
        /// Line number.
        line: usize,
        /// The mnemonic.
        mnemonic: String,
        /// How many it takes.
        expected: usize,
        /// How many there are.
        found: usize,
    },
    /// Not `%r0` to `%r10`.
    #[error("Invalid register `{text}` on line {line}")]
    ParseRegister {
        /// Line number.
        line: usize,
        /// The operand.
        text: String,
    },
    /// Not a number, or out of range for its field.
    #[error("Invalid {kind} `{text}` on line {line}")]
    ParseNumber {
        /// Line number.
        line: usize,
        /// What was expected.
        kind: NumberKind,
        /// The operand.
        text: String,
    },
    /// Not `[%rN]`, `[%rN+off]` or `[%rN-off]`.
    #[error("Invalid memory operand `{text}` on line {line}, expected [%rN+off]")]
    ParseMemory {
        /// Line number.
        line: usize,
        /// The operand.
        text: String,
    },
    /// An operand that is none of the forms its instruction takes.
    #[error("Invalid operand `{text}` on line {line}")]
    ParseOperand {
        /// Line number.
        line: usize,
        /// The operand.
        text: String,
    },
    /// The label is defined twice.
    #[error("Duplicate label `{label}` on line {line}")]
    DefineLabel {
        /// Line number of the second definition.
        line: usize,
        /// The label.
        label: String,
    },
    /// A jump names a label that is not defined.
    #[error("Invalid label `{label}` on line {line}")]
    ResolveLabel {
        /// Line number of the jump.
        line: usize,
        /// The label.
        label: String,
    },
    /// The label is further than the offset field reaches.
    #[error("Jump target `{label}` on line {line} is {off} slots away, out of range")]
    EncodeOffset {
        /// Line number of the jump.
        line: usize,
        /// The label.
        label: String,
        /// The offset it would need.
        off: i64,
    },
    /// The instruction is well-formed text but not a valid instruction
    /// (for example, it writes r10).
    #[error("Instruction on line {line} is not valid")]
    EncodeInstruction {
        /// Line number.
        line: usize,
        /// What the decoder found wrong.
        #[source]
        source: DecodeError,
    },
}

impl AsmError {
    /// The line the error is on, 1-based.
    pub fn line(&self) -> usize {
        match self {
            AsmError::ParseMnemonic { line, .. }
            | AsmError::CountOperands { line, .. }
            | AsmError::ParseRegister { line, .. }
            | AsmError::ParseNumber { line, .. }
            | AsmError::ParseMemory { line, .. }
            | AsmError::ParseOperand { line, .. }
            | AsmError::DefineLabel { line, .. }
            | AsmError::ResolveLabel { line, .. }
            | AsmError::EncodeOffset { line, .. }
            | AsmError::EncodeInstruction { line, .. } => *line,
        }
    }
}

/// Assembles `source` into instruction slots.
pub fn assemble(source: &str) -> Result<Vec<Insn>, AsmError> {
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut first_exit = None;
    let mut pending = Vec::new();
    let mut slot = 0;
    for (i, raw) in source.lines().enumerate() {
        let line = i + 1;
        let mut text = raw.split('#').next().unwrap_or_default().trim();
        while let Some((label, rest)) = split_label(text) {
            if labels.insert(label.to_owned(), slot).is_some() {
                return Err(AsmError::DefineLabel {
                    line,
                    label: label.to_owned(),
                });
            }
            text = rest.trim_start();
        }
        if text.is_empty() {
            continue;
        }
        let (op, target) = Line { line, text }.parse()?;
        if op == Op::Exit && first_exit.is_none() {
            first_exit = Some(slot);
        }
        pending.push((line, slot, op, target));
        slot += op.slots();
    }
    if let Some(exit) = first_exit {
        labels.entry("exit".to_owned()).or_insert(exit);
    }
    let mut out = Vec::with_capacity(slot);
    for (line, slot, mut op, target) in pending {
        if let Some(label) = target {
            let Some(&to) = labels.get(&label) else {
                return Err(AsmError::ResolveLabel { line, label });
            };
            // Both are slot indices of a program held in memory: far below
            // i64::MAX.
            let off = to as i64 - (slot as i64 + 1);
            if set_offset(&mut op, off).is_none() {
                return Err(AsmError::EncodeOffset { line, label, off });
            }
        }
        let start = out.len();
        op.encode_into(&mut out);
        decode(&out, start).map_err(|source| AsmError::EncodeInstruction { line, source })?;
    }
    Ok(out)
}

/// Splits `label: rest` off the front of a line.
fn split_label(text: &str) -> Option<(&str, &str)> {
    let (label, rest) = text.split_once(':')?;
    is_identifier(label).then_some((label, rest))
}

/// Points a control transfer at `off` slots after the next one.
fn set_offset(op: &mut Op, off: i64) -> Option<()> {
    match op {
        Op::Ja { off: o } | Op::Jmp { off: o, .. } | Op::MayGoto { off: o } => {
            *o = i16::try_from(off).ok()?;
        }
        Op::Gotol { off: o }
        | Op::CallLocal { off: o }
        | Op::LdImm64 {
            value: Imm64::Func { off: o },
            ..
        } => *o = i32::try_from(off).ok()?,
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{Program, Reg};

    fn one(text: &str) -> Op {
        let insns = assemble(text).unwrap();
        decode(&insns, 0).unwrap()
    }

    fn err(text: &str) -> String {
        assemble(text).unwrap_err().to_string()
    }

    #[test]
    fn assembles_suite_forms() {
        let insns = assemble(
            "mov %r0, 1\nmov32 %r1, 0xffffffff\nldxdw %r0, [%r1+8]\nstxw [%r10-4], %r1\n\
             lddw %r0, 0x123456789\nlock fetch add32 [%r10-8], %r1\njeq %r1, 2, +3\n\
             ja +1\ncall local +2\nbe16 %r0\nswap32 %r0\ncall 5\ncall %r2\nexit\n",
        )
        .unwrap();
        let words: Vec<u64> = insns.iter().map(Insn::to_u64).collect();
        assert_eq!(
            words,
            [
                0x0000_0001_0000_00b7,
                0xffff_ffff_0000_01b4,
                0x0000_0000_0008_1079,
                0x0000_0000_fffc_1a63,
                0x2345_6789_0000_0018,
                0x0000_0001_0000_0000,
                0x0000_0001_fff8_1ac3,
                0x0000_0002_0003_0115,
                0x0000_0000_0001_0005,
                0x0000_0002_0000_1085,
                0x0000_0010_0000_00dc,
                0x0000_0020_0000_00d7,
                0x0000_0005_0000_0085,
                0x0000_0000_0000_028d,
                0x0000_0000_0000_0095,
            ]
        );
    }

    #[test]
    fn labels_resolve_both_ways() {
        let src = "start:\n  ja end # forward\nmov %r0, 1\nend: jne %r0, 0, start\n\
                   call local f\nexit\nf:\nlddw %r1, func(f)\nexit\n";
        let insns = assemble(src).unwrap();
        let program = Program::decode(&insns).unwrap();
        assert_eq!(program.op(0), Some(&Op::Ja { off: 1 }));
        assert!(matches!(program.op(2), Some(Op::Jmp { off: -3, .. })));
        assert_eq!(program.op(3), Some(&Op::CallLocal { off: 1 }));
        assert_eq!(
            program.op(5),
            Some(&Op::LdImm64 {
                dst: Reg::R1,
                value: Imm64::Func { off: -1 },
            })
        );
    }

    #[test]
    fn implicit_exit_label() {
        let insns = assemble("jeq %r1, 0, exit\nmov %r0, 1\nexit\nexit\n").unwrap();
        assert_eq!(insns[0].off, 1);
        let insns = assemble("ja exit\nexit:\nmov %r0, 1\nexit\n").unwrap();
        assert_eq!(insns[0].off, 0);
    }

    #[test]
    fn numbers() {
        assert_eq!(one("mov32 %r0, -2147483648"), one("mov32 %r0, 0x80000000"));
        assert_eq!(one("add %r0, -0x10"), one("add %r0, -16"));
        assert_eq!(
            one("lddw %r0, -1"),
            Op::LdImm64 {
                dst: Reg::R0,
                value: Imm64::Value(u64::MAX),
            }
        );
        assert_eq!(
            one("lddw %r0, 18446744073709551615"),
            one("lddw %r0, 0xFFFFFFFFFFFFFFFF")
        );
        assert_eq!(one("ldxb %r0, [ %r1 + 0x10 ]"), one("ldxb %r0, [%r1+16]"));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err("mov %r0, 0\nor %r0, %r50\n"),
            "Invalid register `%r50` on line 2"
        );
        assert_eq!(
            err("mov32 %r0, 2147483648"),
            "Invalid 32-bit immediate `2147483648` on line 1"
        );
        assert_eq!(
            err("mov32 %r0, 0x100000000"),
            "Invalid 32-bit immediate `0x100000000` on line 1"
        );
        assert_eq!(err("ldxq %r0, %r1"), "Invalid mnemonic `ldxq` on line 1");
        assert_eq!(
            err("ldxb %r0, %r1"),
            "Invalid memory operand `%r1` on line 1, expected [%rN+off]"
        );
        assert_eq!(
            err("ldxb %r0, [%r1+0x10000]"),
            "Invalid 16-bit offset `+0x10000` on line 1"
        );
        assert_eq!(
            err("lddw %r0"),
            "Invalid number of operands for lddw on line 1: expected 2, found 1"
        );
        assert_eq!(
            err("lock or [%r10-8]"),
            "Invalid number of operands for lock or on line 1: expected 2, found 1"
        );
        assert_eq!(
            err("lock"),
            "Invalid number of operands for lock on line 1: expected 3, found 0"
        );
        assert_eq!(
            err("lock nand [%r1], %r2"),
            "Invalid mnemonic `lock nand` on line 1"
        );
        assert_eq!(
            err("ja NOT_A_LABEL\nexit"),
            "Invalid label `NOT_A_LABEL` on line 1"
        );
        assert_eq!(err("a:\na:\nexit"), "Duplicate label `a` on line 2");
        assert_eq!(err("ja 3"), "Invalid jump target `3` on line 1");
        assert_eq!(err("ja +40000"), "Invalid jump target `+40000` on line 1");
        assert_eq!(err("call -1"), "Invalid helper id `-1` on line 1");
        assert_eq!(
            err("lddw %r1, map_thing(1)"),
            "Invalid operand `map_thing(1)` on line 1"
        );
        let e = assemble("mov %r10, 1").unwrap_err();
        assert_eq!(e.to_string(), "Instruction on line 1 is not valid");
        assert_eq!(
            std::error::Error::source(&e).map(|s| s.to_string()),
            Some("Instruction 0 writes the read-only frame pointer r10".to_owned())
        );
        assert_eq!(e.line(), 1);
    }

    #[test]
    fn far_label_is_out_of_range() {
        let mut src = String::from("ja far\n");
        for _ in 0..40000 {
            src.push_str("mov %r0, 0\n");
        }
        src.push_str("far:\nexit\n");
        assert_eq!(
            assemble(&src).unwrap_err(),
            AsmError::EncodeOffset {
                line: 1,
                label: "far".to_owned(),
                off: 40000,
            }
        );
        // gotol reaches it.
        assert!(assemble(&src.replacen("ja far", "ja32 far", 1)).is_ok());
    }

    #[test]
    fn comments_and_blank_lines() {
        assert_eq!(
            assemble("# header\n\n  exit   # done\n").unwrap(),
            [Insn::new(0x95, 0, 0, 0, 0)]
        );
        assert_eq!(assemble("").unwrap(), []);
    }
}
