//! Parsing one instruction line into an [`Op`].

use super::lexer::{ATOMIC_OPS, Mnemonic, is_identifier, parse_int, parse_mnemonic};
use super::lexer::{split_operands, split_word};
use super::{AsmError, NumberKind, set_offset};
use crate::insn::{CastKind, Imm64, Op, Reg, Source, Width};

/// One line being parsed, with its number for errors.
pub(super) struct Line<'a> {
    pub(super) line: usize,
    pub(super) text: &'a str,
}

/// An instruction, and the label its offset must be set to.
pub(super) type Parsed = (Op, Option<String>);

impl Line<'_> {
    fn count(&self, mnemonic: &str, ops: &[&str], expected: usize) -> Result<(), AsmError> {
        if ops.len() == expected {
            Ok(())
        } else {
            Err(AsmError::CountOperands {
                line: self.line,
                mnemonic: mnemonic.to_owned(),
                expected,
                found: ops.len(),
            })
        }
    }

    fn number_error(&self, kind: NumberKind, text: &str) -> AsmError {
        AsmError::ParseNumber {
            line: self.line,
            kind,
            text: text.to_owned(),
        }
    }

    fn operand_error(&self, text: &str) -> AsmError {
        AsmError::ParseOperand {
            line: self.line,
            text: text.to_owned(),
        }
    }

    fn reg(&self, text: &str) -> Result<Reg, AsmError> {
        text.strip_prefix("%r")
            .filter(|n| n.len() == 1 || !n.starts_with('0'))
            .and_then(|n| n.parse::<u8>().ok())
            .and_then(Reg::new)
            .ok_or_else(|| AsmError::ParseRegister {
                line: self.line,
                text: text.to_owned(),
            })
    }

    fn imm32(&self, text: &str) -> Result<i32, AsmError> {
        let value = parse_int(text).and_then(|(v, hex)| {
            if hex && v >= 0 {
                u32::try_from(v).ok().map(|u| u as i32)
            } else {
                i32::try_from(v).ok()
            }
        });
        value.ok_or_else(|| self.number_error(NumberKind::Imm32, text))
    }

    fn imm64(&self, text: &str) -> Result<u64, AsmError> {
        let value = parse_int(text).and_then(|(v, _)| {
            if v < 0 {
                i64::try_from(v).ok().map(|i| i as u64)
            } else {
                u64::try_from(v).ok()
            }
        });
        value.ok_or_else(|| self.number_error(NumberKind::Imm64, text))
    }

    /// A register or a 32-bit immediate.
    fn source(&self, text: &str) -> Result<Source, AsmError> {
        if text.starts_with('%') {
            Ok(Source::Reg(self.reg(text)?))
        } else {
            Ok(Source::Imm(self.imm32(text)?))
        }
    }

    /// `[%rN]`, `[%rN+off]` or `[%rN-off]`, spaces allowed inside.
    fn mem(&self, text: &str) -> Result<(Reg, i16), AsmError> {
        let error = || AsmError::ParseMemory {
            line: self.line,
            text: text.to_owned(),
        };
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(error)?;
        let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
        let (reg, off) = match inner.find(['+', '-']) {
            Some(i) => inner.split_at(i),
            None => (inner.as_str(), "+0"),
        };
        let reg = self.reg(reg)?;
        let off = parse_int(off)
            .and_then(|(v, _)| i16::try_from(v).ok())
            .ok_or_else(|| self.number_error(NumberKind::Offset, off))?;
        Ok((reg, off))
    }

    /// A relative offset (`+3`, `-1`) or a label; the offset is returned
    /// when there is no label to resolve later.
    fn target(&self, text: &str) -> Result<(i64, Option<String>), AsmError> {
        if text.starts_with(['+', '-']) {
            let off = parse_int(text)
                .and_then(|(v, _)| i64::try_from(v).ok())
                .ok_or_else(|| self.number_error(NumberKind::JumpTarget, text))?;
            Ok((off, None))
        } else if is_identifier(text) {
            Ok((0, Some(text.to_owned())))
        } else {
            Err(self.number_error(NumberKind::JumpTarget, text))
        }
    }

    /// A control transfer to `text`: the offset is set now or after labels
    /// are known.
    fn jump(&self, mut op: Op, text: &str) -> Result<Parsed, AsmError> {
        let (off, label) = self.target(text)?;
        if label.is_none() && set_offset(&mut op, off).is_none() {
            return Err(self.number_error(NumberKind::JumpTarget, text));
        }
        Ok((op, label))
    }

    pub(super) fn parse(&self) -> Result<Parsed, AsmError> {
        let (word, rest) = split_word(self.text);
        if word == "lock" {
            return self.lock(rest);
        }
        let mnemonic = parse_mnemonic(word).ok_or_else(|| AsmError::ParseMnemonic {
            line: self.line,
            mnemonic: word.to_owned(),
        })?;
        let ops = split_operands(rest);
        let count = |n| self.count(word, &ops, n);
        let plain = |op| Ok((op, None));
        match mnemonic {
            Mnemonic::Alu(op, width) => {
                count(2)?;
                plain(Op::Alu {
                    width,
                    op,
                    dst: self.reg(ops[0])?,
                    src: self.source(ops[1])?,
                })
            }
            Mnemonic::Neg(width) => {
                count(1)?;
                plain(Op::Neg {
                    width,
                    dst: self.reg(ops[0])?,
                })
            }
            Mnemonic::Movsx(width, from) => {
                count(2)?;
                plain(Op::Movsx {
                    width,
                    dst: self.reg(ops[0])?,
                    src: self.reg(ops[1])?,
                    from,
                })
            }
            Mnemonic::Swap(kind, bits) => {
                count(1)?;
                plain(Op::ByteSwap {
                    dst: self.reg(ops[0])?,
                    kind,
                    bits,
                })
            }
            Mnemonic::AddrSpaceCast => {
                count(4)?;
                let space = |text: &str| {
                    parse_int(text)
                        .and_then(|(v, _)| u16::try_from(v).ok())
                        .ok_or_else(|| self.number_error(NumberKind::AddressSpace, text))
                };
                let kind = match (space(ops[2])?, space(ops[3])?) {
                    (0, 1) => CastKind::ToKern,
                    (1, 0) => CastKind::ToUser,
                    _ => return Err(self.number_error(NumberKind::AddressSpace, ops[2])),
                };
                plain(Op::AddrSpaceCast {
                    dst: self.reg(ops[0])?,
                    src: self.reg(ops[1])?,
                    kind,
                })
            }
            Mnemonic::Lddw => {
                count(2)?;
                self.lddw(self.reg(ops[0])?, ops[1])
            }
            Mnemonic::Ldx(size) | Mnemonic::Ldxs(size) | Mnemonic::LoadAcquire(size) => {
                count(2)?;
                let dst = self.reg(ops[0])?;
                let (src, off) = self.mem(ops[1])?;
                plain(match mnemonic {
                    Mnemonic::Ldx(_) => Op::Load {
                        size,
                        dst,
                        src,
                        off,
                    },
                    Mnemonic::Ldxs(_) => Op::LoadSx {
                        size,
                        dst,
                        src,
                        off,
                    },
                    _ => Op::LoadAcquire {
                        size,
                        dst,
                        src,
                        off,
                    },
                })
            }
            Mnemonic::St(size) => {
                count(2)?;
                let (dst, off) = self.mem(ops[0])?;
                plain(Op::Store {
                    size,
                    dst,
                    off,
                    src: Source::Imm(self.imm32(ops[1])?),
                })
            }
            Mnemonic::Stx(size) | Mnemonic::StoreRelease(size) => {
                count(2)?;
                let (dst, off) = self.mem(ops[0])?;
                let src = self.reg(ops[1])?;
                plain(match mnemonic {
                    Mnemonic::Stx(_) => Op::Store {
                        size,
                        dst,
                        off,
                        src: Source::Reg(src),
                    },
                    _ => Op::StoreRelease {
                        size,
                        dst,
                        off,
                        src,
                    },
                })
            }
            Mnemonic::Ja | Mnemonic::Gotol | Mnemonic::MayGoto => {
                count(1)?;
                let op = match mnemonic {
                    Mnemonic::Ja => Op::Ja { off: 0 },
                    Mnemonic::Gotol => Op::Gotol { off: 0 },
                    _ => Op::MayGoto { off: 0 },
                };
                self.jump(op, ops[0])
            }
            Mnemonic::Jmp(cond, width) => {
                count(3)?;
                let op = Op::Jmp {
                    width,
                    cond,
                    dst: self.reg(ops[0])?,
                    src: self.source(ops[1])?,
                    off: 0,
                };
                self.jump(op, ops[2])
            }
            Mnemonic::Callx => {
                count(1)?;
                plain(Op::Callx {
                    dst: self.reg(ops[0])?,
                })
            }
            Mnemonic::Exit => {
                count(0)?;
                plain(Op::Exit)
            }
            Mnemonic::Call => self.call(rest),
        }
    }

    /// `lddw %rD, VALUE` or `lddw %rD, kind(args)` (see [`crate::disasm`]).
    fn lddw(&self, dst: Reg, text: &str) -> Result<Parsed, AsmError> {
        let Some((kind, args)) = text.strip_suffix(')').and_then(|t| t.split_once('(')) else {
            let value = Imm64::Value(self.imm64(text)?);
            return Ok((Op::LdImm64 { dst, value }, None));
        };
        let args = split_operands(args);
        let expected = match kind {
            "map_fd" | "func" | "map_idx" => 1,
            "map_value" | "btf_id" | "map_idx_value" => 2,
            _ => return Err(self.operand_error(text)),
        };
        self.count(kind, &args, expected)?;
        if kind == "func" {
            let op = Op::LdImm64 {
                dst,
                value: Imm64::Func { off: 0 },
            };
            return self.jump(op, args[0]);
        }
        let first = self.imm32(args[0])?;
        let second = args.get(1).map(|a| self.imm32(a)).transpose()?;
        let second = second.unwrap_or_default();
        let value = match kind {
            "map_fd" => Imm64::MapFd { fd: first },
            "map_value" => Imm64::MapValue {
                fd: first,
                off: second,
            },
            "btf_id" => Imm64::BtfId {
                id: first,
                btf_fd: second,
            },
            "map_idx" => Imm64::MapIdx { idx: first },
            _ => Imm64::MapIdxValue {
                idx: first,
                off: second,
            },
        };
        Ok((Op::LdImm64 { dst, value }, None))
    }

    /// `lock [fetch] OP[32] [%rD+off], %rS`.
    fn lock(&self, rest: &str) -> Result<Parsed, AsmError> {
        let (first, after) = split_word(rest);
        let (name, after) = if first == "fetch" {
            let (op, after) = split_word(after);
            (format!("fetch {op}"), after)
        } else {
            (first.to_owned(), after)
        };
        if name.is_empty() {
            return Err(AsmError::CountOperands {
                line: self.line,
                mnemonic: "lock".to_owned(),
                expected: 3,
                found: 0,
            });
        }
        let (base, width) = match name.strip_suffix("32") {
            Some(base) => (base, Width::W32),
            None => (name.as_str(), Width::W64),
        };
        let op = ATOMIC_OPS
            .into_iter()
            .find(|(n, _)| *n == base)
            .map(|(_, op)| op)
            .ok_or_else(|| AsmError::ParseMnemonic {
                line: self.line,
                mnemonic: format!("lock {name}"),
            })?;
        let ops = split_operands(after);
        self.count(&format!("lock {name}"), &ops, 2)?;
        let (dst, off) = self.mem(ops[0])?;
        let src = self.reg(ops[1])?;
        Ok((
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            },
            None,
        ))
    }

    /// `call ID`, `call helper ID`, `call %rN` (callx), `call local T`,
    /// `call kfunc ID[, MODULE]` (`runtime` is the suite's older name).
    fn call(&self, rest: &str) -> Result<Parsed, AsmError> {
        let (mode, after) = split_word(rest);
        let (mode, ops) = match mode {
            "local" | "kfunc" | "runtime" | "helper" => (mode, split_operands(after)),
            _ => ("helper", split_operands(rest)),
        };
        match mode {
            "local" => {
                self.count("call local", &ops, 1)?;
                self.jump(Op::CallLocal { off: 0 }, ops[0])
            }
            "kfunc" | "runtime" => {
                if ops.len() != 1 && ops.len() != 2 {
                    self.count("call kfunc", &ops, 2)?;
                }
                let btf_id = self.imm32(ops[0])?;
                let module = match ops.get(1) {
                    Some(m) => parse_int(m)
                        .and_then(|(v, _)| i16::try_from(v).ok())
                        .ok_or_else(|| self.number_error(NumberKind::Offset, m))?,
                    None => 0,
                };
                Ok((Op::CallKfunc { btf_id, module }, None))
            }
            _ => {
                self.count("call", &ops, 1)?;
                if ops[0].starts_with('%') {
                    return Ok((
                        Op::Callx {
                            dst: self.reg(ops[0])?,
                        },
                        None,
                    ));
                }
                let id = parse_int(ops[0])
                    .and_then(|(v, _)| u32::try_from(v).ok())
                    .filter(|&id| i32::try_from(id).is_ok())
                    .ok_or_else(|| self.number_error(NumberKind::HelperId, ops[0]))?;
                Ok((Op::CallHelper { id }, None))
            }
        }
    }
}
