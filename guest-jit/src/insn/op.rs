//! The typed view of an instruction and its encoding back to slots.
//!
//! Every value [`crate::insn::decode`] returns encodes back to exactly the
//! slots it came from: the decoder refuses any field this view cannot
//! represent, so nothing is lost between bytes and [`Op`].

use super::opcode::*;
use super::{Insn, Reg};

/// Operand width of arithmetic, jumps and atomics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit: operands are the low halves, ALU results are zero-extended.
    W32,
    /// 64-bit.
    W64,
}

/// Second operand of an arithmetic operation, jump or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A register (`X`).
    Reg(Reg),
    /// The immediate (`K`); sign-extended to 64 bits where 64 are used.
    Imm(i32),
}

/// Binary arithmetic operations (RFC 9669 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Wrapping multiplication.
    Mul,
    /// Unsigned division; by zero gives 0.
    Div,
    /// Signed division (offset 1); by zero gives 0.
    Sdiv,
    /// Bitwise or.
    Or,
    /// Bitwise and.
    And,
    /// Left shift, count masked to the width.
    Lsh,
    /// Logical right shift, count masked to the width.
    Rsh,
    /// Unsigned modulo; by zero leaves dst (truncated to the width).
    Mod,
    /// Signed modulo (offset 1); by zero leaves dst.
    Smod,
    /// Bitwise exclusive or.
    Xor,
    /// Move.
    Mov,
    /// Arithmetic right shift, count masked to the width.
    Arsh,
}

/// Conditions of conditional jumps (RFC 9669 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `==`.
    Eq,
    /// Unsigned `>`.
    Gt,
    /// Unsigned `>=`.
    Ge,
    /// `dst & src != 0`.
    Set,
    /// `!=`.
    Ne,
    /// Signed `>`.
    Sgt,
    /// Signed `>=`.
    Sge,
    /// Unsigned `<`.
    Lt,
    /// Unsigned `<=`.
    Le,
    /// Signed `<`.
    Slt,
    /// Signed `<=`.
    Sle,
}

/// Memory access size (RFC 9669 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    /// Number of bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// Number of bits.
    pub const fn bits(self) -> u32 {
        self.bytes() as u32 * 8
    }

    pub(crate) const fn code(self) -> u8 {
        match self {
            Size::B => SIZE_B,
            Size::H => SIZE_H,
            Size::W => SIZE_W,
            Size::DW => SIZE_DW,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Size {
        match code & SIZE_MASK {
            SIZE_B => Size::B,
            SIZE_H => Size::H,
            SIZE_W => Size::W,
            _ => Size::DW,
        }
    }
}

/// What a byte-swap instruction does (RFC 9669 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwapKind {
    /// `le16/32/64`: convert to little-endian, a truncation on this host.
    ToLe,
    /// `be16/32/64`: convert to big-endian, a swap on this host.
    ToBe,
    /// `bswap16/32/64` (ALU64 class): unconditional swap.
    Bswap,
}

/// Width of a byte swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwapBits {
    /// Low 16 bits, result zero-extended.
    B16,
    /// Low 32 bits, result zero-extended.
    B32,
    /// All 64 bits.
    B64,
}

impl SwapBits {
    /// The width in bits, as the imm field holds it.
    pub const fn bits(self) -> u32 {
        match self {
            SwapBits::B16 => 16,
            SwapBits::B32 => 32,
            SwapBits::B64 => 64,
        }
    }
}

/// Atomic read-modify-write operations (RFC 9669 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `*p += src`.
    Add,
    /// `*p |= src`.
    Or,
    /// `*p &= src`.
    And,
    /// `*p ^= src`.
    Xor,
    /// `src = fetch_add(p, src)`.
    FetchAdd,
    /// `src = fetch_or(p, src)`.
    FetchOr,
    /// `src = fetch_and(p, src)`.
    FetchAnd,
    /// `src = fetch_xor(p, src)`.
    FetchXor,
    /// `src = xchg(p, src)`.
    Xchg,
    /// `r0 = cmpxchg(p, r0, src)`.
    Cmpxchg,
}

impl AtomicOp {
    pub(crate) const fn imm(self) -> i32 {
        match self {
            AtomicOp::Add => ATOMIC_ADD,
            AtomicOp::Or => ATOMIC_OR,
            AtomicOp::And => ATOMIC_AND,
            AtomicOp::Xor => ATOMIC_XOR,
            AtomicOp::FetchAdd => ATOMIC_ADD | ATOMIC_FETCH,
            AtomicOp::FetchOr => ATOMIC_OR | ATOMIC_FETCH,
            AtomicOp::FetchAnd => ATOMIC_AND | ATOMIC_FETCH,
            AtomicOp::FetchXor => ATOMIC_XOR | ATOMIC_FETCH,
            AtomicOp::Xchg => ATOMIC_XCHG,
            AtomicOp::Cmpxchg => ATOMIC_CMPXCHG,
        }
    }

    pub(crate) const fn from_imm(imm: i32) -> Option<AtomicOp> {
        Some(match imm {
            ATOMIC_ADD => AtomicOp::Add,
            ATOMIC_OR => AtomicOp::Or,
            ATOMIC_AND => AtomicOp::And,
            ATOMIC_XOR => AtomicOp::Xor,
            0x01 => AtomicOp::FetchAdd,
            0x41 => AtomicOp::FetchOr,
            0x51 => AtomicOp::FetchAnd,
            0xa1 => AtomicOp::FetchXor,
            ATOMIC_XCHG => AtomicOp::Xchg,
            ATOMIC_CMPXCHG => AtomicOp::Cmpxchg,
            _ => return None,
        })
    }

    /// Whether the old value is written back to a register (the source
    /// register, or r0 for [`AtomicOp::Cmpxchg`]).
    pub const fn fetches(self) -> bool {
        !matches!(
            self,
            AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor
        )
    }
}

/// Direction of an `addr_space_cast` between address space 0 (kernel /
/// generic pointers) and 1 (the arena). Clang encodes
/// `addr_space_cast(src, dst_as, src_as)` as imm = `dst_as << 16 | src_as`;
/// the kernel accepts only these two casts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CastKind {
    /// `cast_kern`, as 1 → as 0 (imm = 1).
    ToKern,
    /// `cast_user`, as 0 → as 1 (imm = 1 << 16).
    ToUser,
}

impl CastKind {
    /// Address space cast to.
    pub const fn dst_as(self) -> u16 {
        match self {
            CastKind::ToKern => 0,
            CastKind::ToUser => 1,
        }
    }

    /// Address space cast from.
    pub const fn src_as(self) -> u16 {
        match self {
            CastKind::ToKern => 1,
            CastKind::ToUser => 0,
        }
    }

    pub(crate) const fn imm(self) -> i32 {
        ((self.dst_as() as i32) << 16) | self.src_as() as i32
    }
}

/// What an `ld_imm64` loads (RFC 9669 §5.4, by its source field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Imm64 {
    /// Source 0: the 64-bit value itself.
    Value(u64),
    /// Source 1: the map whose file descriptor is `fd`.
    MapFd {
        /// Map file descriptor.
        fd: i32,
    },
    /// Source 2: address of byte `off` of the value of map `fd`.
    MapValue {
        /// Map file descriptor.
        fd: i32,
        /// Offset into the map value (second slot's imm).
        off: i32,
    },
    /// Source 3: address of the kernel variable with BTF id `id`.
    BtfId {
        /// BTF type id.
        id: i32,
        /// File descriptor of the module BTF object, 0 for vmlinux.
        btf_fd: i32,
    },
    /// Source 4: address of the subprogram `off` instructions after the
    /// next slot, as for a local call.
    Func {
        /// Relative offset of the subprogram.
        off: i32,
    },
    /// Source 5: the map with index `idx` in the program's map table.
    MapIdx {
        /// Map index.
        idx: i32,
    },
    /// Source 6: address of byte `off` of the value of map index `idx`.
    MapIdxValue {
        /// Map index.
        idx: i32,
        /// Offset into the map value (second slot's imm).
        off: i32,
    },
}

impl Imm64 {
    /// The source field, first imm and second imm of the encoding.
    pub(crate) const fn fields(self) -> (u8, i32, i32) {
        match self {
            Imm64::Value(v) => (PSEUDO_IMM64, v as i32, (v >> 32) as i32),
            Imm64::MapFd { fd } => (PSEUDO_MAP_FD, fd, 0),
            Imm64::MapValue { fd, off } => (PSEUDO_MAP_VALUE, fd, off),
            Imm64::BtfId { id, btf_fd } => (PSEUDO_BTF_ID, id, btf_fd),
            Imm64::Func { off } => (PSEUDO_FUNC, off, 0),
            Imm64::MapIdx { idx } => (PSEUDO_MAP_IDX, idx, 0),
            Imm64::MapIdxValue { idx, off } => (PSEUDO_MAP_IDX_VALUE, idx, off),
        }
    }
}

impl Width {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [Width; 2] = [Width::W32, Width::W64];
}

impl AluOp {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [AluOp; 14] = [
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
}

impl JmpCond {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [JmpCond; 11] = [
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
}

impl Size {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
}

impl SwapKind {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [SwapKind; 3] = [SwapKind::ToLe, SwapKind::ToBe, SwapKind::Bswap];
}

impl SwapBits {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [SwapBits; 3] = [SwapBits::B16, SwapBits::B32, SwapBits::B64];
}

impl AtomicOp {
    /// Every variant, in declaration order: for tests and generators that
    /// cover them all.
    pub const ALL: [AtomicOp; 10] = [
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
    ];
}

/// A decoded instruction.
///
/// Registers written by an instruction are never r10: the decoder refuses
/// such programs, as the kernel does ("frame pointer is read only").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `dst = dst op src` (RFC 9669 §4.1).
    Alu {
        /// 32 or 64 bits.
        width: Width,
        /// Operation.
        op: AluOp,
        /// Destination and first operand.
        dst: Reg,
        /// Second operand.
        src: Source,
    },
    /// `dst = -dst`.
    Neg {
        /// 32 or 64 bits.
        width: Width,
        /// Operand and destination.
        dst: Reg,
    },
    /// `dst = (sign-extended from) src`: MOVSX (RFC 9669 §4.1). `from` is
    /// B or H for 32 bits, B, H or W for 64 bits.
    Movsx {
        /// 32 (upper half then zeroed) or 64 bits.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Source.
        src: Reg,
        /// Width of the value sign-extended.
        from: Size,
    },
    /// Byte swap or endianness conversion of `dst` (RFC 9669 §4.2).
    ByteSwap {
        /// Operand and destination.
        dst: Reg,
        /// le, be or bswap.
        kind: SwapKind,
        /// Width.
        bits: SwapBits,
    },
    /// `dst = addr_space_cast(src)` (ALU64 MOV X, offset 1).
    AddrSpaceCast {
        /// Destination.
        dst: Reg,
        /// Source.
        src: Reg,
        /// Direction.
        kind: CastKind,
    },
    /// `dst = imm64` (two slots, RFC 9669 §5.4).
    LdImm64 {
        /// Destination.
        dst: Reg,
        /// What is loaded.
        value: Imm64,
    },
    /// `dst = *(size *)(src + off)`, zero-extended (RFC 9669 §5.1).
    Load {
        /// Access size.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Signed offset.
        off: i16,
    },
    /// `dst = *(signed size *)(src + off)`, sign-extended (RFC 9669 §5.2);
    /// `size` is never DW.
    LoadSx {
        /// Access size: B, H or W.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Signed offset.
        off: i16,
    },
    /// `*(size *)(dst + off) = src` (ST with an immediate, STX with a
    /// register; RFC 9669 §5.1). A DW immediate is sign-extended.
    Store {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Signed offset.
        off: i16,
        /// Value stored.
        src: Source,
    },
    /// Atomic read-modify-write of `*(dst + off)` (RFC 9669 §5.3).
    Atomic {
        /// W32 or W64 (the only sizes atomics exist in).
        width: Width,
        /// Operation.
        op: AtomicOp,
        /// Base address register.
        dst: Reg,
        /// Signed offset.
        off: i16,
        /// Operand, and fetch destination.
        src: Reg,
    },
    /// `dst = load_acquire((size *)(src + off))`, zero-extended.
    LoadAcquire {
        /// Access size.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Signed offset.
        off: i16,
    },
    /// `store_release((size *)(dst + off), src)`.
    StoreRelease {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Signed offset.
        off: i16,
        /// Value stored.
        src: Reg,
    },
    /// `goto +off` (JMP class JA).
    Ja {
        /// Offset from the next instruction.
        off: i16,
    },
    /// `gotol +off` (JMP32 class JA, offset in imm; RFC 9669 §4.3).
    Gotol {
        /// Offset from the next instruction.
        off: i32,
    },
    /// `if dst cond src goto +off`.
    Jmp {
        /// 32 (low halves compared) or 64 bits.
        width: Width,
        /// Condition.
        cond: JmpCond,
        /// First operand.
        dst: Reg,
        /// Second operand.
        src: Source,
        /// Offset from the next instruction.
        off: i16,
    },
    /// `may_goto +off`: falls through while the loop budget lasts, then
    /// jumps (Linux `BPF_JCOND`).
    MayGoto {
        /// Offset from the next instruction.
        off: i16,
    },
    /// Call helper function `id` (RFC 9669 §4.3.1).
    CallHelper {
        /// Helper id; the decoder refuses negative ids.
        id: u32,
    },
    /// Call the subprogram `off` instructions after this one's successor
    /// (RFC 9669 §4.3.2).
    CallLocal {
        /// Offset from the next instruction.
        off: i32,
    },
    /// Call a kernel function by BTF id (RFC 9669 §4.3.1).
    CallKfunc {
        /// BTF id of the function.
        btf_id: i32,
        /// Index of the module BTF in the fd array, 0 for vmlinux.
        module: i16,
    },
    /// `callx dst`: call through a register.
    Callx {
        /// Register holding the target.
        dst: Reg,
    },
    /// Return from the current function (RFC 9669 §4.3).
    Exit,
}

impl Op {
    /// Number of instruction slots the encoding takes: 2 for `ld_imm64`.
    pub const fn slots(&self) -> usize {
        match self {
            Op::LdImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// The offset, counted from the next slot, that a jump, local call or
    /// `func` pseudo load names (RFC 9669 §4.3: "the offset is relative to
    /// the next instruction"; the kernel counts `func` loads the same way,
    /// from the slot after the first one).
    pub fn branch_offset(&self) -> Option<i64> {
        match *self {
            Op::Ja { off } | Op::Jmp { off, .. } | Op::MayGoto { off } => Some(off.into()),
            Op::Gotol { off } | Op::CallLocal { off } => Some(off.into()),
            Op::LdImm64 {
                value: Imm64::Func { off },
                ..
            } => Some(off.into()),
            _ => None,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<Insn>) {
        let (first, second) = self.encode();
        out.push(first);
        out.extend(second);
    }

    /// The encoding: one slot, and a second one for `ld_imm64`.
    pub fn encode(&self) -> (Insn, Option<Insn>) {
        let one = |code: u8, dst: Reg, src: u8, off: i16, imm: i32| {
            (Insn::new(code, dst.num(), src, off, imm), None)
        };
        let r0 = Reg::R0;
        match *self {
            Op::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let (code, off) = alu_code(op);
                let (source, src_reg, imm) = source_fields(src);
                one(alu_class(width) | code | source, dst, src_reg, off, imm)
            }
            Op::Neg { width, dst } => one(alu_class(width) | ALU_NEG, dst, 0, 0, 0),
            Op::Movsx {
                width,
                dst,
                src,
                from,
            } => one(
                alu_class(width) | ALU_MOV | SRC_X,
                dst,
                src.num(),
                from.bits() as i16,
                0,
            ),
            Op::ByteSwap { dst, kind, bits } => {
                let code = match kind {
                    SwapKind::ToLe => CLASS_ALU | ALU_END | END_TO_LE,
                    SwapKind::ToBe => CLASS_ALU | ALU_END | END_TO_BE,
                    SwapKind::Bswap => CLASS_ALU64 | ALU_END | END_TO_LE,
                };
                one(code, dst, 0, 0, bits.bits() as i32)
            }
            Op::AddrSpaceCast { dst, src, kind } => one(
                CLASS_ALU64 | ALU_MOV | SRC_X,
                dst,
                src.num(),
                OFF_ADDR_SPACE_CAST,
                kind.imm(),
            ),
            Op::LdImm64 { dst, value } => {
                let (pseudo, imm, next_imm) = value.fields();
                (
                    Insn::new(LD_IMM64, dst.num(), pseudo, 0, imm),
                    Some(Insn::new(0, 0, 0, 0, next_imm)),
                )
            }
            Op::Load {
                size,
                dst,
                src,
                off,
            } => one(CLASS_LDX | MODE_MEM | size.code(), dst, src.num(), off, 0),
            Op::LoadSx {
                size,
                dst,
                src,
                off,
            } => one(CLASS_LDX | MODE_MEMSX | size.code(), dst, src.num(), off, 0),
            Op::Store {
                size,
                dst,
                off,
                src: Source::Imm(imm),
            } => one(CLASS_ST | MODE_MEM | size.code(), dst, 0, off, imm),
            Op::Store {
                size,
                dst,
                off,
                src: Source::Reg(src),
            } => one(CLASS_STX | MODE_MEM | size.code(), dst, src.num(), off, 0),
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => {
                let size = match width {
                    Width::W32 => SIZE_W,
                    Width::W64 => SIZE_DW,
                };
                one(
                    CLASS_STX | MODE_ATOMIC | size,
                    dst,
                    src.num(),
                    off,
                    op.imm(),
                )
            }
            Op::LoadAcquire {
                size,
                dst,
                src,
                off,
            } => one(
                CLASS_STX | MODE_ATOMIC | size.code(),
                dst,
                src.num(),
                off,
                ATOMIC_LOAD_ACQ,
            ),
            Op::StoreRelease {
                size,
                dst,
                off,
                src,
            } => one(
                CLASS_STX | MODE_ATOMIC | size.code(),
                dst,
                src.num(),
                off,
                ATOMIC_STORE_REL,
            ),
            Op::Ja { off } => one(JA, r0, 0, off, 0),
            Op::Gotol { off } => one(GOTOL, r0, 0, 0, off),
            Op::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                let class = match width {
                    Width::W32 => CLASS_JMP32,
                    Width::W64 => CLASS_JMP,
                };
                let (source, src_reg, imm) = source_fields(src);
                one(class | jmp_code(cond) | source, dst, src_reg, off, imm)
            }
            Op::MayGoto { off } => one(MAY_GOTO, r0, JCOND_MAY_GOTO, off, 0),
            Op::CallHelper { id } => one(CALL, r0, CALL_HELPER, 0, id as i32),
            Op::CallLocal { off } => one(CALL, r0, CALL_LOCAL, 0, off),
            Op::CallKfunc { btf_id, module } => one(CALL, r0, CALL_KFUNC, module, btf_id),
            Op::Callx { dst } => one(CALLX, dst, 0, 0, 0),
            Op::Exit => one(EXIT, r0, 0, 0, 0),
        }
    }
}

const fn alu_class(width: Width) -> u8 {
    match width {
        Width::W32 => CLASS_ALU,
        Width::W64 => CLASS_ALU64,
    }
}

/// Operation bits and offset field of a binary ALU operation.
const fn alu_code(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (ALU_ADD, 0),
        AluOp::Sub => (ALU_SUB, 0),
        AluOp::Mul => (ALU_MUL, 0),
        AluOp::Div => (ALU_DIV, 0),
        AluOp::Sdiv => (ALU_DIV, OFF_SIGNED),
        AluOp::Or => (ALU_OR, 0),
        AluOp::And => (ALU_AND, 0),
        AluOp::Lsh => (ALU_LSH, 0),
        AluOp::Rsh => (ALU_RSH, 0),
        AluOp::Mod => (ALU_MOD, 0),
        AluOp::Smod => (ALU_MOD, OFF_SIGNED),
        AluOp::Xor => (ALU_XOR, 0),
        AluOp::Mov => (ALU_MOV, 0),
        AluOp::Arsh => (ALU_ARSH, 0),
    }
}

pub(crate) const fn jmp_code(cond: JmpCond) -> u8 {
    match cond {
        JmpCond::Eq => JMP_JEQ,
        JmpCond::Gt => JMP_JGT,
        JmpCond::Ge => JMP_JGE,
        JmpCond::Set => JMP_JSET,
        JmpCond::Ne => JMP_JNE,
        JmpCond::Sgt => JMP_JSGT,
        JmpCond::Sge => JMP_JSGE,
        JmpCond::Lt => JMP_JLT,
        JmpCond::Le => JMP_JLE,
        JmpCond::Slt => JMP_JSLT,
        JmpCond::Sle => JMP_JSLE,
    }
}

/// Source bit, source register field and imm field of an operand.
const fn source_fields(src: Source) -> (u8, u8, i32) {
    match src {
        Source::Reg(r) => (SRC_X, r.num(), 0),
        Source::Imm(imm) => (SRC_K, 0, imm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_clang() {
        // Byte patterns as clang -mcpu=v4 / the kernel's filter.h macros
        // produce them.
        let cases: &[(Op, [u8; 8])] = &[
            (
                Op::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: Reg::R0,
                    src: Source::Imm(1),
                },
                [0xb7, 0x00, 0, 0, 1, 0, 0, 0],
            ),
            (
                Op::Alu {
                    width: Width::W32,
                    op: AluOp::Sdiv,
                    dst: Reg::R1,
                    src: Source::Reg(Reg::R2),
                },
                [0x3c, 0x21, 1, 0, 0, 0, 0, 0],
            ),
            (
                Op::Movsx {
                    width: Width::W64,
                    dst: Reg::R1,
                    src: Reg::R2,
                    from: Size::W,
                },
                [0xbf, 0x21, 32, 0, 0, 0, 0, 0],
            ),
            (
                Op::ByteSwap {
                    dst: Reg::R3,
                    kind: SwapKind::Bswap,
                    bits: SwapBits::B16,
                },
                [0xd7, 0x03, 0, 0, 16, 0, 0, 0],
            ),
            (
                Op::AddrSpaceCast {
                    dst: Reg::R1,
                    src: Reg::R1,
                    kind: CastKind::ToUser,
                },
                [0xbf, 0x11, 1, 0, 0, 0, 1, 0],
            ),
            (
                Op::Atomic {
                    width: Width::W64,
                    op: AtomicOp::Cmpxchg,
                    dst: Reg::R10,
                    off: -8,
                    src: Reg::R1,
                },
                [0xdb, 0x1a, 0xf8, 0xff, 0xf1, 0, 0, 0],
            ),
            (
                Op::LoadAcquire {
                    size: Size::B,
                    dst: Reg::R0,
                    src: Reg::R1,
                    off: 0,
                },
                [0xd3, 0x10, 0, 0, 0, 1, 0, 0],
            ),
            (
                Op::Gotol { off: -2 },
                [0x06, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff],
            ),
            (Op::MayGoto { off: 3 }, [0xe5, 0, 3, 0, 0, 0, 0, 0]),
            (Op::CallLocal { off: 5 }, [0x85, 0x10, 0, 0, 5, 0, 0, 0]),
            (
                Op::CallKfunc {
                    btf_id: 77,
                    module: 2,
                },
                [0x85, 0x20, 2, 0, 77, 0, 0, 0],
            ),
            (Op::Callx { dst: Reg::R2 }, [0x8d, 0x02, 0, 0, 0, 0, 0, 0]),
            (Op::Exit, [0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (op, bytes) in cases {
            let (first, second) = op.encode();
            assert_eq!(first.to_bytes(), *bytes, "{op:?}");
            assert_eq!(second, None);
        }
    }

    #[test]
    fn ld_imm64_uses_two_slots() {
        let op = Op::LdImm64 {
            dst: Reg::R1,
            value: Imm64::MapValue { fd: 3, off: 16 },
        };
        let mut out = Vec::new();
        op.encode_into(&mut out);
        assert_eq!(op.slots(), 2);
        assert_eq!(
            out,
            [Insn::new(0x18, 1, 2, 0, 3), Insn::new(0, 0, 0, 0, 16)]
        );
        let value = Op::LdImm64 {
            dst: Reg::R0,
            value: Imm64::Value(0x1122334455667788),
        };
        let (first, second) = value.encode();
        assert_eq!(first.imm, 0x55667788);
        assert_eq!(second.map(|s| s.imm), Some(0x11223344));
    }

    #[test]
    fn branch_offsets() {
        assert_eq!(Op::Ja { off: -3 }.branch_offset(), Some(-3));
        assert_eq!(Op::Gotol { off: 1 << 20 }.branch_offset(), Some(1 << 20));
        assert_eq!(
            Op::LdImm64 {
                dst: Reg::R1,
                value: Imm64::Func { off: 4 },
            }
            .branch_offset(),
            Some(4)
        );
        assert_eq!(Op::CallHelper { id: 1 }.branch_offset(), None);
        assert_eq!(Op::Exit.branch_offset(), None);
    }

    #[test]
    fn fetch_flags() {
        assert!(!AtomicOp::Add.fetches());
        assert!(AtomicOp::FetchXor.fetches());
        assert!(AtomicOp::Cmpxchg.fetches());
        for op in [
            AtomicOp::Add,
            AtomicOp::FetchAnd,
            AtomicOp::Xchg,
            AtomicOp::Cmpxchg,
        ] {
            assert_eq!(AtomicOp::from_imm(op.imm()), Some(op));
        }
        assert_eq!(AtomicOp::from_imm(0x11), None);
    }
}
