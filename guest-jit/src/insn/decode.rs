//! Decoding slots into [`Op`]s, refusing what the kernel refuses
//! structurally: unknown opcodes, out-of-range registers, writes to r10,
//! invalid values in fields that select an operation, and nonzero fields an
//! instruction does not use (the conformance suite's "unused field" tests).
//!
//! Decoding looks at one instruction (two slots for `ld_imm64`) at a time;
//! whether jumps land inside the program is for the verifier and the
//! interpreter, which know the whole control flow.

use std::fmt;

use thiserror::Error;

use super::op::jmp_code;
use super::opcode::*;
use super::{AluOp, AtomicOp, CastKind, Imm64, Insn, JmpCond, Op, Reg, Size, Source};
use super::{SwapBits, SwapKind, Width};

/// A field of an instruction slot, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnField {
    /// Destination register.
    Dst,
    /// Source register.
    Src,
    /// Offset.
    Off,
    /// Immediate.
    Imm,
    /// Opcode of the second slot of `ld_imm64`.
    NextCode,
    /// Destination register of the second slot of `ld_imm64`.
    NextDst,
    /// Source register of the second slot of `ld_imm64`.
    NextSrc,
    /// Offset of the second slot of `ld_imm64`.
    NextOff,
    /// Immediate of the second slot of `ld_imm64`.
    NextImm,
}

impl fmt::Display for InsnField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InsnField::Dst => "dst",
            InsnField::Src => "src",
            InsnField::Off => "off",
            InsnField::Imm => "imm",
            InsnField::NextCode => "second slot opcode",
            InsnField::NextDst => "second slot dst",
            InsnField::NextSrc => "second slot src",
            InsnField::NextOff => "second slot off",
            InsnField::NextImm => "second slot imm",
        })
    }
}

/// Why a byte string or instruction is not a valid program.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The byte string does not split into 8-byte slots.
    #[error("Program of {len} bytes is not a whole number of 8-byte instructions")]
    SplitBytes {
        /// Length of the byte string.
        len: usize,
    },
    /// No instruction has this opcode.
    #[error("Invalid opcode {code:#04x} at instruction {index}")]
    DecodeOpcode {
        /// Slot index.
        index: usize,
        /// Opcode byte.
        code: u8,
    },
    /// A field the instruction does not use is not zero.
    #[error("Nonzero unused field {field} ({value}) in instruction {index} (opcode {code:#04x})")]
    CheckUnusedField {
        /// Slot index of the instruction.
        index: usize,
        /// Opcode byte.
        code: u8,
        /// The field.
        field: InsnField,
        /// Its value.
        value: i64,
    },
    /// A field that selects the operation has a value no operation has.
    #[error("Invalid {field} ({value}) in instruction {index} (opcode {code:#04x})")]
    DecodeField {
        /// Slot index of the instruction.
        index: usize,
        /// Opcode byte.
        code: u8,
        /// The field.
        field: InsnField,
        /// Its value.
        value: i64,
    },
    /// A register field names no register (r11 to r15).
    #[error("Invalid register r{reg} in instruction {index}")]
    DecodeRegister {
        /// Slot index.
        index: usize,
        /// The register number.
        reg: u8,
    },
    /// The instruction would write the read-only frame pointer.
    #[error("Instruction {index} writes the read-only frame pointer r10")]
    WriteFramePointer {
        /// Slot index.
        index: usize,
    },
    /// The index is past the end of the program.
    #[error("No instruction at index {index}")]
    ReadInstruction {
        /// Slot index.
        index: usize,
    },
    /// An `ld_imm64` is the last slot.
    #[error("Instruction {index} is an ld_imm64 without its second slot")]
    ReadSecondSlot {
        /// Slot index.
        index: usize,
    },
}

/// Decodes the instruction starting at slot `index` of `insns`.
///
/// An `ld_imm64` also reads slot `index + 1`; see [`Op::slots`].
pub fn decode(insns: &[Insn], index: usize) -> Result<Op, DecodeError> {
    let Some(&insn) = insns.get(index) else {
        return Err(DecodeError::ReadInstruction { index });
    };
    let d = Decoder { insn, index };
    let next = insns.get(index + 1).copied();
    match insn.code & CLASS_MASK {
        CLASS_ALU | CLASS_ALU64 => d.alu(),
        CLASS_JMP | CLASS_JMP32 => d.jmp(),
        CLASS_LD => d.ld_imm64(next),
        CLASS_LDX => d.ldx(),
        CLASS_ST => d.st(),
        _ => d.stx(),
    }
}

/// One instruction being decoded, with the context errors need.
struct Decoder {
    insn: Insn,
    index: usize,
}

impl Decoder {
    fn bad_opcode(&self) -> DecodeError {
        DecodeError::DecodeOpcode {
            index: self.index,
            code: self.insn.code,
        }
    }

    fn bad_field(&self, field: InsnField, value: i64) -> DecodeError {
        DecodeError::DecodeField {
            index: self.index,
            code: self.insn.code,
            field,
            value,
        }
    }

    fn unused(&self, field: InsnField, value: i64) -> Result<(), DecodeError> {
        if value == 0 {
            Ok(())
        } else {
            Err(DecodeError::CheckUnusedField {
                index: self.index,
                code: self.insn.code,
                field,
                value,
            })
        }
    }

    fn unused_src(&self) -> Result<(), DecodeError> {
        self.unused(InsnField::Src, self.insn.src().into())
    }

    fn unused_dst(&self) -> Result<(), DecodeError> {
        self.unused(InsnField::Dst, self.insn.dst().into())
    }

    fn unused_off(&self) -> Result<(), DecodeError> {
        self.unused(InsnField::Off, self.insn.off.into())
    }

    fn unused_imm(&self) -> Result<(), DecodeError> {
        self.unused(InsnField::Imm, self.insn.imm.into())
    }

    fn reg(&self, n: u8) -> Result<Reg, DecodeError> {
        Reg::new(n).ok_or(DecodeError::DecodeRegister {
            index: self.index,
            reg: n,
        })
    }

    /// The register `n` as the target of a write.
    fn written(&self, n: u8) -> Result<Reg, DecodeError> {
        let reg = self.reg(n)?;
        if reg == Reg::R10 {
            return Err(DecodeError::WriteFramePointer { index: self.index });
        }
        Ok(reg)
    }

    fn dst_read(&self) -> Result<Reg, DecodeError> {
        self.reg(self.insn.dst())
    }

    fn dst_written(&self) -> Result<Reg, DecodeError> {
        self.written(self.insn.dst())
    }

    fn src_read(&self) -> Result<Reg, DecodeError> {
        self.reg(self.insn.src())
    }

    /// The second operand: the source register (imm must be zero) or the
    /// immediate (src must be zero).
    fn source(&self) -> Result<Source, DecodeError> {
        if self.insn.code & SOURCE_MASK == SRC_X {
            self.unused_imm()?;
            Ok(Source::Reg(self.src_read()?))
        } else {
            self.unused_src()?;
            Ok(Source::Imm(self.insn.imm))
        }
    }

    /// ALU and ALU64 classes (RFC 9669 §4.1, §4.2).
    fn alu(&self) -> Result<Op, DecodeError> {
        let insn = self.insn;
        let width = if insn.code & CLASS_MASK == CLASS_ALU64 {
            Width::W64
        } else {
            Width::W32
        };
        let is_x = insn.code & SOURCE_MASK == SRC_X;
        let op = match insn.code & OP_MASK {
            ALU_ADD => AluOp::Add,
            ALU_SUB => AluOp::Sub,
            ALU_MUL => AluOp::Mul,
            ALU_OR => AluOp::Or,
            ALU_AND => AluOp::And,
            ALU_LSH => AluOp::Lsh,
            ALU_RSH => AluOp::Rsh,
            ALU_XOR => AluOp::Xor,
            ALU_ARSH => AluOp::Arsh,
            // The offset field selects signedness (RFC 9669 §4.1, Table 5).
            ALU_DIV | ALU_MOD => {
                let signed = match insn.off {
                    0 => false,
                    OFF_SIGNED => true,
                    off => return Err(self.bad_field(InsnField::Off, off.into())),
                };
                let dst = self.dst_written()?;
                let src = self.source()?;
                let op = match (insn.code & OP_MASK == ALU_DIV, signed) {
                    (true, false) => AluOp::Div,
                    (true, true) => AluOp::Sdiv,
                    (false, false) => AluOp::Mod,
                    (false, true) => AluOp::Smod,
                };
                return Ok(Op::Alu {
                    width,
                    op,
                    dst,
                    src,
                });
            }
            ALU_NEG => {
                // NEG has no source operand: only the K form exists.
                if is_x {
                    return Err(self.bad_opcode());
                }
                self.unused_src()?;
                self.unused_off()?;
                self.unused_imm()?;
                return Ok(Op::Neg {
                    width,
                    dst: self.dst_written()?,
                });
            }
            ALU_MOV if is_x && insn.off != 0 => return self.mov_x_with_offset(width),
            ALU_MOV => AluOp::Mov,
            ALU_END => return self.byte_swap(width),
            _ => return Err(self.bad_opcode()),
        };
        self.unused_off()?;
        let dst = self.dst_written()?;
        let src = self.source()?;
        Ok(Op::Alu {
            width,
            op,
            dst,
            src,
        })
    }

    /// MOV X with a nonzero offset: MOVSX (RFC 9669 §4.1) or, in ALU64 with
    /// offset 1, Linux `addr_space_cast`.
    fn mov_x_with_offset(&self, width: Width) -> Result<Op, DecodeError> {
        let insn = self.insn;
        if width == Width::W64 && insn.off == OFF_ADDR_SPACE_CAST {
            let kind = match insn.imm {
                1 => CastKind::ToKern,
                0x1_0000 => CastKind::ToUser,
                imm => return Err(self.bad_field(InsnField::Imm, imm.into())),
            };
            return Ok(Op::AddrSpaceCast {
                dst: self.dst_written()?,
                src: self.src_read()?,
                kind,
            });
        }
        let from = match (width, insn.off) {
            (_, 8) => Size::B,
            (_, 16) => Size::H,
            // Sign-extending 32 bits into 32 bits is not an instruction.
            (Width::W64, 32) => Size::W,
            (_, off) => return Err(self.bad_field(InsnField::Off, off.into())),
        };
        self.unused_imm()?;
        Ok(Op::Movsx {
            width,
            dst: self.dst_written()?,
            src: self.src_read()?,
            from,
        })
    }

    /// END (RFC 9669 §4.2): the source bit picks le/be in the ALU class; in
    /// ALU64 only the "to LE" encoding exists and means bswap.
    fn byte_swap(&self, width: Width) -> Result<Op, DecodeError> {
        let insn = self.insn;
        let kind = match (width, insn.code & SOURCE_MASK) {
            (Width::W32, END_TO_LE) => SwapKind::ToLe,
            (Width::W32, _) => SwapKind::ToBe,
            (Width::W64, END_TO_LE) => SwapKind::Bswap,
            (Width::W64, _) => return Err(self.bad_opcode()),
        };
        self.unused_src()?;
        self.unused_off()?;
        let bits = match insn.imm {
            16 => SwapBits::B16,
            32 => SwapBits::B32,
            64 => SwapBits::B64,
            imm => return Err(self.bad_field(InsnField::Imm, imm.into())),
        };
        Ok(Op::ByteSwap {
            dst: self.dst_written()?,
            kind,
            bits,
        })
    }

    /// JMP and JMP32 classes (RFC 9669 §4.3).
    fn jmp(&self) -> Result<Op, DecodeError> {
        let insn = self.insn;
        let jmp32 = insn.code & CLASS_MASK == CLASS_JMP32;
        let is_x = insn.code & SOURCE_MASK == SRC_X;
        let op = insn.code & OP_MASK;
        match op {
            JMP_JA => {
                if is_x {
                    return Err(self.bad_opcode());
                }
                self.unused_dst()?;
                self.unused_src()?;
                if jmp32 {
                    // gotol: the 32-bit offset lives in imm.
                    self.unused_off()?;
                    Ok(Op::Gotol { off: insn.imm })
                } else {
                    self.unused_imm()?;
                    Ok(Op::Ja { off: insn.off })
                }
            }
            JMP_CALL if !jmp32 => self.call(is_x),
            JMP_EXIT if !jmp32 && !is_x => {
                self.unused_dst()?;
                self.unused_src()?;
                self.unused_off()?;
                self.unused_imm()?;
                Ok(Op::Exit)
            }
            JMP_JCOND if !jmp32 && !is_x => {
                if insn.src() != JCOND_MAY_GOTO {
                    return Err(self.bad_field(InsnField::Src, insn.src().into()));
                }
                self.unused_dst()?;
                self.unused_imm()?;
                Ok(Op::MayGoto { off: insn.off })
            }
            _ => {
                let cond = [
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
                ]
                .into_iter()
                .find(|&c| jmp_code(c) == op)
                .ok_or_else(|| self.bad_opcode())?;
                let dst = self.dst_read()?;
                let src = self.source()?;
                Ok(Op::Jmp {
                    width: if jmp32 { Width::W32 } else { Width::W64 },
                    cond,
                    dst,
                    src,
                    off: insn.off,
                })
            }
        }
    }

    /// CALL (RFC 9669 §4.3.1, §4.3.2) and callx.
    fn call(&self, is_x: bool) -> Result<Op, DecodeError> {
        let insn = self.insn;
        if is_x {
            // callx names its target register in dst, as the kernel and
            // clang >= 17 encode it.
            self.unused_src()?;
            self.unused_off()?;
            self.unused_imm()?;
            return Ok(Op::Callx {
                dst: self.dst_read()?,
            });
        }
        self.unused_dst()?;
        match insn.src() {
            CALL_HELPER => {
                self.unused_off()?;
                let id = u32::try_from(insn.imm)
                    .map_err(|_| self.bad_field(InsnField::Imm, insn.imm.into()))?;
                Ok(Op::CallHelper { id })
            }
            CALL_LOCAL => {
                self.unused_off()?;
                Ok(Op::CallLocal { off: insn.imm })
            }
            // The offset of a kfunc call indexes the module BTF fd array.
            CALL_KFUNC => Ok(Op::CallKfunc {
                btf_id: insn.imm,
                module: insn.off,
            }),
            src => Err(self.bad_field(InsnField::Src, src.into())),
        }
    }

    /// LD class: only `ld_imm64` (RFC 9669 §5.4); the legacy packet access
    /// modes ABS and IND (§5.5) are not supported.
    fn ld_imm64(&self, next: Option<Insn>) -> Result<Op, DecodeError> {
        let insn = self.insn;
        if insn.code != LD_IMM64 {
            return Err(self.bad_opcode());
        }
        self.unused_off()?;
        let dst = self.dst_written()?;
        let Some(next) = next else {
            return Err(DecodeError::ReadSecondSlot { index: self.index });
        };
        self.unused(InsnField::NextCode, next.code.into())?;
        self.unused(InsnField::NextDst, next.dst().into())?;
        self.unused(InsnField::NextSrc, next.src().into())?;
        self.unused(InsnField::NextOff, next.off.into())?;
        let (imm, next_imm) = (insn.imm, next.imm);
        let value = match insn.src() {
            PSEUDO_IMM64 => {
                Imm64::Value(u64::from(imm as u32) | (u64::from(next_imm as u32) << 32))
            }
            PSEUDO_MAP_FD => {
                self.unused(InsnField::NextImm, next_imm.into())?;
                Imm64::MapFd { fd: imm }
            }
            PSEUDO_MAP_VALUE => Imm64::MapValue {
                fd: imm,
                off: next_imm,
            },
            PSEUDO_BTF_ID => Imm64::BtfId {
                id: imm,
                btf_fd: next_imm,
            },
            PSEUDO_FUNC => {
                self.unused(InsnField::NextImm, next_imm.into())?;
                Imm64::Func { off: imm }
            }
            PSEUDO_MAP_IDX => {
                self.unused(InsnField::NextImm, next_imm.into())?;
                Imm64::MapIdx { idx: imm }
            }
            PSEUDO_MAP_IDX_VALUE => Imm64::MapIdxValue {
                idx: imm,
                off: next_imm,
            },
            src => return Err(self.bad_field(InsnField::Src, src.into())),
        };
        Ok(Op::LdImm64 { dst, value })
    }

    /// LDX class: MEM (RFC 9669 §5.1) and MEMSX (§5.2).
    fn ldx(&self) -> Result<Op, DecodeError> {
        let insn = self.insn;
        let size = Size::from_code(insn.code);
        let signed = match insn.code & MODE_MASK {
            MODE_MEM => false,
            MODE_MEMSX if size != Size::DW => true,
            _ => return Err(self.bad_opcode()),
        };
        self.unused_imm()?;
        let (dst, src, off) = (self.dst_written()?, self.src_read()?, insn.off);
        Ok(if signed {
            Op::LoadSx {
                size,
                dst,
                src,
                off,
            }
        } else {
            Op::Load {
                size,
                dst,
                src,
                off,
            }
        })
    }

    /// ST class: MEM only (RFC 9669 §5.1).
    fn st(&self) -> Result<Op, DecodeError> {
        let insn = self.insn;
        if insn.code & MODE_MASK != MODE_MEM {
            return Err(self.bad_opcode());
        }
        self.unused_src()?;
        Ok(Op::Store {
            size: Size::from_code(insn.code),
            dst: self.dst_read()?,
            off: insn.off,
            src: Source::Imm(insn.imm),
        })
    }

    /// STX class: MEM (RFC 9669 §5.1) and ATOMIC (§5.3, plus Linux
    /// load-acquire / store-release, which also exist for B and H).
    fn stx(&self) -> Result<Op, DecodeError> {
        let insn = self.insn;
        let size = Size::from_code(insn.code);
        let (dst, off) = (self.dst_read()?, insn.off);
        match insn.code & MODE_MASK {
            MODE_MEM => {
                self.unused_imm()?;
                Ok(Op::Store {
                    size,
                    dst,
                    off,
                    src: Source::Reg(self.src_read()?),
                })
            }
            MODE_ATOMIC => match insn.imm {
                // Load-acquire reads through src into dst: here dst is the
                // written register, not a base address.
                ATOMIC_LOAD_ACQ => Ok(Op::LoadAcquire {
                    size,
                    dst: self.dst_written()?,
                    src: self.src_read()?,
                    off,
                }),
                ATOMIC_STORE_REL => Ok(Op::StoreRelease {
                    size,
                    dst,
                    off,
                    src: self.src_read()?,
                }),
                imm => {
                    let width = match size {
                        Size::W => Width::W32,
                        Size::DW => Width::W64,
                        Size::B | Size::H => return Err(self.bad_opcode()),
                    };
                    let op = AtomicOp::from_imm(imm)
                        .ok_or_else(|| self.bad_field(InsnField::Imm, imm.into()))?;
                    let src = match op {
                        // cmpxchg writes r0, not src.
                        AtomicOp::Cmpxchg => self.src_read()?,
                        op if op.fetches() => self.written(insn.src())?,
                        _ => self.src_read()?,
                    };
                    Ok(Op::Atomic {
                        width,
                        op,
                        dst,
                        off,
                        src,
                    })
                }
            },
            _ => Err(self.bad_opcode()),
        }
    }
}

/// A decoded program: one entry per slot, `None` for the second slot of an
/// `ld_imm64`, so that a program counter indexes it directly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    ops: Vec<Option<Op>>,
}

impl Program {
    /// Decodes every instruction of `insns`.
    pub fn decode(insns: &[Insn]) -> Result<Program, DecodeError> {
        let mut ops = Vec::with_capacity(insns.len());
        while ops.len() < insns.len() {
            let op = decode(insns, ops.len())?;
            ops.push(Some(op));
            if op.slots() == 2 {
                ops.push(None);
            }
        }
        Ok(Program {
            insns: insns.to_vec(),
            ops,
        })
    }

    /// Splits `bytes` into slots and decodes them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, DecodeError> {
        Program::decode(&Insn::slice_from_bytes(bytes)?)
    }

    /// The instruction starting at slot `pc`, if one does.
    pub fn op(&self, pc: usize) -> Option<&Op> {
        self.ops.get(pc).and_then(Option::as_ref)
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the program has no instructions.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The raw slots.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The instructions with their slot indices.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Op)> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(pc, op)| op.as_ref().map(|op| (pc, op)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: [u8; 8]) -> Result<Op, DecodeError> {
        decode(&[Insn::from_bytes(bytes)], 0)
    }

    #[test]
    fn decodes_common_forms() {
        assert_eq!(
            one([0x07, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Ok(Op::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: Reg::R1,
                src: Source::Imm(-1),
            })
        );
        assert_eq!(
            one([0x91, 0xa0, 0xff, 0xff, 0, 0, 0, 0]),
            Ok(Op::LoadSx {
                size: Size::B,
                dst: Reg::R0,
                src: Reg::R10,
                off: -1,
            })
        );
        assert_eq!(
            one([0xc3, 0x1a, 0xfc, 0xff, 0xa1, 0, 0, 0]),
            Ok(Op::Atomic {
                width: Width::W32,
                op: AtomicOp::FetchXor,
                dst: Reg::R10,
                off: -4,
                src: Reg::R1,
            })
        );
        assert_eq!(
            one([0xdc, 0x00, 0, 0, 16, 0, 0, 0]),
            Ok(Op::ByteSwap {
                dst: Reg::R0,
                kind: SwapKind::ToBe,
                bits: SwapBits::B16,
            })
        );
        assert_eq!(
            one([0xdb, 0x21, 0, 0, 0x10, 0x01, 0, 0]),
            Ok(Op::StoreRelease {
                size: Size::DW,
                dst: Reg::R1,
                off: 0,
                src: Reg::R2,
            })
        );
    }

    #[test]
    fn every_decoded_instruction_encodes_back() {
        // All opcodes, with fields that most of them accept or refuse.
        let fields = [
            (0x00, 0, 0),
            (0x21, 0, 0),
            (0x21, 1, 0),
            (0x21, 0, 1),
            (0x21, 8, 0),
            (0x21, 32, 0),
            (0x11, 1, 1),
            (0x11, 1, 0x10000),
            (0x10, 0, 16),
            (0x00, 0, 0x100),
            (0x00, 0, 0x110),
            (0x21, -3, 0xf1),
            (0x20, 5, 7),
        ];
        let mut decoded = 0;
        for code in 0..=255u8 {
            for (regs, off, imm) in fields {
                let insn = Insn {
                    code,
                    regs,
                    off,
                    imm,
                };
                let insns = [insn, Insn::default()];
                if let Ok(op) = decode(&insns, 0) {
                    decoded += 1;
                    let mut out = Vec::new();
                    op.encode_into(&mut out);
                    assert_eq!(out, insns[..op.slots()], "{op:?}");
                }
            }
        }
        assert!(decoded > 300, "only {decoded} decoded");
    }

    #[test]
    fn unused_fields_are_refused() {
        // From the conformance suite's negative/unused-*.data.
        let err = one([0x07, 0x00, 0x01, 0x00, 0x01, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Nonzero unused field off (1) in instruction 0 (opcode 0x07)"
        );
        let err = one([0x95, 0x10, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::CheckUnusedField {
                index: 0,
                code: 0x95,
                field: InsnField::Src,
                value: 1,
            }
        );
        assert!(one([0x7a, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]).is_err());
        assert!(one([0x61, 0xa0, 0xfc, 0xff, 1, 0, 0, 0]).is_err());
        assert!(one([0x85, 0x01, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn invalid_encodings_are_refused() {
        let err = one([0x8c, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.to_string(), "Invalid opcode 0x8c at instruction 0");
        let err = one([0xd4, 0, 0, 0, 8, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid imm (8) in instruction 0 (opcode 0xd4)"
        );
        let err = one([0xb7, 0x0b, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.to_string(), "Invalid register r11 in instruction 0");
        let err = one([0xb7, 0x0a, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 0 writes the read-only frame pointer r10"
        );
        // movsx32 from 32 bits, 64-bit sign-extending load, sdiv offset 2,
        // legacy packet access, kernel-internal percpu mov, JMP32 exit.
        for bytes in [
            [0xbc, 0x10, 32, 0, 0, 0, 0, 0],
            [0x99, 0x10, 0, 0, 0, 0, 0, 0],
            [0x3f, 0x10, 2, 0, 0, 0, 0, 0],
            [0x20, 0, 0, 0, 0, 0, 0, 0],
            [0xbf, 0x10, 0xff, 0xff, 0, 0, 0, 0],
            [0x96, 0, 0, 0, 0, 0, 0, 0],
            [0xdf, 0, 0, 0, 16, 0, 0, 0],
            [0xd3, 0x10, 0, 0, 0, 0, 0, 0],
            [0x85, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            [0xe5, 0x10, 1, 0, 0, 0, 0, 0],
            [0xbf, 0x10, 1, 0, 2, 0, 0, 0],
        ] {
            assert!(one(bytes).is_err(), "{bytes:02x?}");
        }
        // A fetching atomic would write its old value into r10.
        let err = one([0xdb, 0xa1, 0, 0, 0x01, 0, 0, 0]).unwrap_err();
        assert_eq!(err, DecodeError::WriteFramePointer { index: 0 });
    }

    #[test]
    fn ld_imm64_needs_a_clean_second_slot() {
        let first = Insn::new(LD_IMM64, 1, 0, 0, 5);
        let err = decode(&[first], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Instruction 0 is an ld_imm64 without its second slot"
        );
        let err = decode(&[first, Insn::new(0, 1, 0, 0, 0)], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Nonzero unused field second slot dst (1) in instruction 0 (opcode 0x18)"
        );
        let map_fd = Insn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, 3);
        assert!(decode(&[map_fd, Insn::new(0, 0, 0, 0, 1)], 0).is_err());
        assert_eq!(
            decode(&[map_fd, Insn::default()], 0),
            Ok(Op::LdImm64 {
                dst: Reg::R1,
                value: Imm64::MapFd { fd: 3 },
            })
        );
        let bad_src = Insn::new(LD_IMM64, 1, 7, 0, 3);
        assert!(decode(&[bad_src, Insn::default()], 0).is_err());
    }

    #[test]
    fn program_indexes_slots() {
        let bytes = [
            [0x18, 0x01, 0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 2, 0, 0, 0],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let program = Program::from_bytes(&bytes).unwrap();
        assert_eq!(program.len(), 3);
        assert_eq!(
            program.op(0),
            Some(&Op::LdImm64 {
                dst: Reg::R1,
                value: Imm64::Value(0x2_0000_0001),
            })
        );
        assert_eq!(program.op(1), None);
        assert_eq!(program.op(2), Some(&Op::Exit));
        assert_eq!(program.iter().count(), 2);
        assert_eq!(program.insns().len(), 3);
    }

    #[test]
    fn index_past_end_is_an_error() {
        let err = decode(&[], 0).unwrap_err();
        assert_eq!(err.to_string(), "No instruction at index 0");
    }
}
