//! The BPF instruction: raw 8-byte encoding ([`crate::insn::Insn`]), named opcode values
//! ([`crate::insn::opcode`]), and the decoded, typed view ([`crate::insn::Op`]) that the verifier, the
//! JIT and the interpreter work on so that none of them re-decodes bit fields.
//!
//! ```text
//!  byte:  0        1          2..4      4..8
//!        +--------+----+----+---------+-----------------+
//!        | opcode |src |dst | off i16 | imm i32         |   little-endian
//!        +--------+----+----+---------+-----------------+
//!                  hi 4  lo 4
//! ```
//!
//! (RFC 9669 §3.1: on a little-endian host `dst_reg` is the low nibble of the
//! second byte.) `ld_imm64` is the one two-slot instruction (§3.2).

mod decode;
mod op;
pub mod opcode;

use std::fmt;

pub use decode::{DecodeError, InsnField, Program, decode};
pub use op::{
    AluOp, AtomicOp, CastKind, Imm64, JmpCond, Op, Size, Source, SwapBits, SwapKind, Width,
};

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;

/// One raw instruction slot, laid out like the kernel's `struct bpf_insn`.
///
/// The register nibbles are packed in `regs` so that the struct is exactly 8
/// bytes; use [`Insn::dst`] and [`Insn::src`] to read them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Opcode byte.
    pub code: u8,
    /// `src << 4 | dst`.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == INSN_SIZE);

impl Insn {
    /// Builds an instruction; `dst` and `src` keep only their low 4 bits.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// Destination register field (4 bits).
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// Source register field (4 bits).
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// The little-endian encoding (RFC 9669 §3.1).
    pub const fn to_bytes(&self) -> [u8; INSN_SIZE] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }

    /// Decodes the little-endian encoding; every byte pattern is an `Insn`.
    pub const fn from_bytes(bytes: [u8; INSN_SIZE]) -> Self {
        Self {
            code: bytes[0],
            regs: bytes[1],
            off: i16::from_le_bytes([bytes[2], bytes[3]]),
            imm: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    /// The instruction as the 64-bit word whose little-endian bytes it is
    /// (the form `-- raw` sections of the conformance suite use).
    pub const fn to_u64(&self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }

    /// Inverse of [`Insn::to_u64`].
    pub const fn from_u64(word: u64) -> Self {
        Self::from_bytes(word.to_le_bytes())
    }

    /// Splits a byte string into instructions.
    pub fn slice_from_bytes(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        let (chunks, rest) = bytes.as_chunks::<INSN_SIZE>();
        if !rest.is_empty() {
            return Err(DecodeError::SplitBytes { len: bytes.len() });
        }
        Ok(chunks.iter().map(|c| Insn::from_bytes(*c)).collect())
    }

    /// Concatenates the encodings of `insns`.
    pub fn slice_to_bytes(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(Insn::to_bytes).collect()
    }
}

/// A BPF register, r0 to r10 (RFC 9669 §2.4).
///
/// Only the decoder and the assembler build registers from numbers, so a
/// `Reg` is always in range and indexes a 11-entry register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(u8);

impl Reg {
    /// Return value.
    pub const R0: Reg = Reg(0);
    /// First argument; the context pointer at program entry.
    pub const R1: Reg = Reg(1);
    /// Second argument.
    pub const R2: Reg = Reg(2);
    /// Third argument.
    pub const R3: Reg = Reg(3);
    /// Fourth argument.
    pub const R4: Reg = Reg(4);
    /// Fifth argument.
    pub const R5: Reg = Reg(5);
    /// Callee-saved.
    pub const R6: Reg = Reg(6);
    /// Callee-saved.
    pub const R7: Reg = Reg(7);
    /// Callee-saved.
    pub const R8: Reg = Reg(8);
    /// Callee-saved.
    pub const R9: Reg = Reg(9);
    /// Read-only frame pointer.
    pub const R10: Reg = Reg(10);
    /// Alias of [`Reg::R10`].
    pub const FP: Reg = Reg(10);
    /// Number of registers.
    pub const COUNT: usize = 11;

    /// The register numbered `n`, if there is one.
    pub const fn new(n: u8) -> Option<Reg> {
        if n <= 10 { Some(Reg(n)) } else { None }
    }

    /// The register number, 0 to 10.
    pub const fn num(self) -> u8 {
        self.0
    }

    /// The register number as an index into a register file.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_match_kernel_layout() {
        // `stxdw [%r10-8], %r1` as the kernel and clang lay it out.
        let insn = Insn::new(0x7b, 10, 1, -8, 0);
        assert_eq!(insn.to_bytes(), [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]);
        assert_eq!(Insn::from_bytes(insn.to_bytes()), insn);
        assert_eq!((insn.dst(), insn.src()), (10, 1));
    }

    #[test]
    fn word_form_matches_conformance_raw() {
        // From lddw.data: `0x5566778800000018` is `lddw %r0, ...` low half.
        let insn = Insn::from_u64(0x5566778800000018);
        assert_eq!(insn, Insn::new(0x18, 0, 0, 0, 0x55667788));
        assert_eq!(insn.to_u64(), 0x5566778800000018);
    }

    #[test]
    fn new_masks_register_nibbles() {
        let insn = Insn::new(0xbf, 0x1f, 0x2e, 0, 0);
        assert_eq!((insn.dst(), insn.src()), (0xf, 0xe));
    }

    #[test]
    fn slice_from_bytes_rejects_partial_instruction() {
        let err = Insn::slice_from_bytes(&[0x95, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Program of 9 bytes is not a whole number of 8-byte instructions"
        );
        let insns = Insn::slice_from_bytes(&[0x95, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(insns, vec![Insn::new(0x95, 0, 0, 0, 0)]);
        assert_eq!(Insn::slice_to_bytes(&insns), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn reg_range() {
        assert_eq!(Reg::new(10), Some(Reg::R10));
        assert_eq!(Reg::new(11), None);
        assert_eq!(Reg::R7.to_string(), "r7");
    }
}
