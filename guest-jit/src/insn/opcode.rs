//! Named values of the opcode byte and of the fields some opcodes give a
//! meaning to, as RFC 9669 (the BPF ISA) numbers them, plus the Linux
//! extensions clang `-mcpu=v4` emits (`may_goto`, `addr_space_cast`,
//! load-acquire / store-release, pseudo `ld_imm64` sources).
//!
//! ```text
//! opcode byte, ALU / JMP classes:   | op (4 bits) | source (1) | class (3) |
//! opcode byte, load / store:        | mode (3) | size (2)      | class (3) |
//! ```
//!
//! Only [`crate::insn::decode`] and [`crate::insn::Op::encode`] should need
//! these: everything else works on the typed [`crate::insn::Op`].

/// Mask of the class bits (RFC 9669 §3.3).
pub const CLASS_MASK: u8 = 0x07;
/// Non-standard load operations: only `ld_imm64` is valid here.
pub const CLASS_LD: u8 = 0x00;
/// Load into register.
pub const CLASS_LDX: u8 = 0x01;
/// Store immediate.
pub const CLASS_ST: u8 = 0x02;
/// Store register, and atomics.
pub const CLASS_STX: u8 = 0x03;
/// 32-bit arithmetic.
pub const CLASS_ALU: u8 = 0x04;
/// 64-bit jumps, calls, exit.
pub const CLASS_JMP: u8 = 0x05;
/// 32-bit jumps, and `gotol` (JA with a 32-bit offset in imm).
pub const CLASS_JMP32: u8 = 0x06;
/// 64-bit arithmetic.
pub const CLASS_ALU64: u8 = 0x07;

/// Mask of the source bit of ALU and jump opcodes (RFC 9669 §3.1).
pub const SOURCE_MASK: u8 = 0x08;
/// Source operand is the 32-bit immediate (`K`).
pub const SRC_K: u8 = 0x00;
/// Source operand is the source register (`X`).
pub const SRC_X: u8 = 0x08;
/// For `END` in the ALU class: convert to little-endian (same bit as `K`).
pub const END_TO_LE: u8 = 0x00;
/// For `END` in the ALU class: convert to big-endian (same bit as `X`).
pub const END_TO_BE: u8 = 0x08;

/// Mask of the operation bits of ALU and jump opcodes.
pub const OP_MASK: u8 = 0xf0;

/// ALU operations (RFC 9669 §4.1), already shifted into place.
pub const ALU_ADD: u8 = 0x00;
/// `dst -= src`.
pub const ALU_SUB: u8 = 0x10;
/// `dst *= src`.
pub const ALU_MUL: u8 = 0x20;
/// `dst /= src`; signed when the offset field is 1 (`sdiv`).
pub const ALU_DIV: u8 = 0x30;
/// `dst |= src`.
pub const ALU_OR: u8 = 0x40;
/// `dst &= src`.
pub const ALU_AND: u8 = 0x50;
/// `dst <<= src`.
pub const ALU_LSH: u8 = 0x60;
/// `dst >>= src`, logical.
pub const ALU_RSH: u8 = 0x70;
/// `dst = -dst`.
pub const ALU_NEG: u8 = 0x80;
/// `dst %= src`; signed when the offset field is 1 (`smod`).
pub const ALU_MOD: u8 = 0x90;
/// `dst ^= src`.
pub const ALU_XOR: u8 = 0xa0;
/// `dst = src`; `movsx` when the offset is 8/16/32, `addr_space_cast` when
/// it is 1 (ALU64, `X` only).
pub const ALU_MOV: u8 = 0xb0;
/// `dst >>= src`, arithmetic.
pub const ALU_ARSH: u8 = 0xc0;
/// Byte swap (RFC 9669 §4.2).
pub const ALU_END: u8 = 0xd0;

/// Offset field of `sdiv` and `smod`.
pub const OFF_SIGNED: i16 = 1;
/// Offset field of `addr_space_cast` (ALU64 MOV X).
pub const OFF_ADDR_SPACE_CAST: i16 = 1;

/// Jump operations (RFC 9669 §4.3), already shifted into place.
pub const JMP_JA: u8 = 0x00;
/// `==`.
pub const JMP_JEQ: u8 = 0x10;
/// Unsigned `>`.
pub const JMP_JGT: u8 = 0x20;
/// Unsigned `>=`.
pub const JMP_JGE: u8 = 0x30;
/// `dst & src != 0`.
pub const JMP_JSET: u8 = 0x40;
/// `!=`.
pub const JMP_JNE: u8 = 0x50;
/// Signed `>`.
pub const JMP_JSGT: u8 = 0x60;
/// Signed `>=`.
pub const JMP_JSGE: u8 = 0x70;
/// Function call (JMP class only).
pub const JMP_CALL: u8 = 0x80;
/// Return (JMP class only).
pub const JMP_EXIT: u8 = 0x90;
/// Unsigned `<`.
pub const JMP_JLT: u8 = 0xa0;
/// Unsigned `<=`.
pub const JMP_JLE: u8 = 0xb0;
/// Signed `<`.
pub const JMP_JSLT: u8 = 0xc0;
/// Signed `<=`.
pub const JMP_JSLE: u8 = 0xd0;
/// Linux `BPF_JCOND`: conditional pseudo-jumps; only `may_goto` exists.
pub const JMP_JCOND: u8 = 0xe0;

/// Source field of a `BPF_JCOND` jump that is `may_goto`.
pub const JCOND_MAY_GOTO: u8 = 0;

/// Source field of a call to a helper by id (RFC 9669 §4.3.1).
pub const CALL_HELPER: u8 = 0;
/// Source field of a program-local call, imm = offset (RFC 9669 §4.3.2).
pub const CALL_LOCAL: u8 = 1;
/// Source field of a call to a kernel function by BTF id (RFC 9669 §4.3.1).
pub const CALL_KFUNC: u8 = 2;

/// Mask of the size bits of load / store opcodes (RFC 9669 §5).
pub const SIZE_MASK: u8 = 0x18;
/// 4 bytes.
pub const SIZE_W: u8 = 0x00;
/// 2 bytes.
pub const SIZE_H: u8 = 0x08;
/// 1 byte.
pub const SIZE_B: u8 = 0x10;
/// 8 bytes.
pub const SIZE_DW: u8 = 0x18;

/// Mask of the mode bits of load / store opcodes (RFC 9669 §5).
pub const MODE_MASK: u8 = 0xe0;
/// 64-bit immediate (`ld_imm64`, RFC 9669 §5.4).
pub const MODE_IMM: u8 = 0x00;
/// Legacy packet access, absolute (RFC 9669 §5.5): not supported.
pub const MODE_ABS: u8 = 0x20;
/// Legacy packet access, indirect (RFC 9669 §5.5): not supported.
pub const MODE_IND: u8 = 0x40;
/// Regular load and store (RFC 9669 §5.1).
pub const MODE_MEM: u8 = 0x60;
/// Sign-extending load (RFC 9669 §5.2).
pub const MODE_MEMSX: u8 = 0x80;
/// Atomic operation (RFC 9669 §5.3).
pub const MODE_ATOMIC: u8 = 0xc0;

/// Atomic operations, in the imm field of an `ATOMIC` store (RFC 9669 §5.3).
pub const ATOMIC_ADD: i32 = 0x00;
/// Atomic or.
pub const ATOMIC_OR: i32 = 0x40;
/// Atomic and.
pub const ATOMIC_AND: i32 = 0x50;
/// Atomic xor.
pub const ATOMIC_XOR: i32 = 0xa0;
/// Modifier: the old value is written back to the source register.
pub const ATOMIC_FETCH: i32 = 0x01;
/// Atomic exchange; always fetches.
pub const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
/// Atomic compare-and-exchange against r0; always fetches into r0.
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;
/// Linux `BPF_LOAD_ACQ`: `dst = load_acquire(src + off)`.
pub const ATOMIC_LOAD_ACQ: i32 = 0x100;
/// Linux `BPF_STORE_REL`: `store_release(dst + off, src)`.
pub const ATOMIC_STORE_REL: i32 = 0x110;

/// Pseudo sources of `ld_imm64` (RFC 9669 §5.4): a plain 64-bit value.
pub const PSEUDO_IMM64: u8 = 0;
/// `map_by_fd(imm)`.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `map_val(map_by_fd(imm)) + next_imm`.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `var_addr(imm)`: a kernel variable by BTF id (next_imm: BTF object fd).
pub const PSEUDO_BTF_ID: u8 = 3;
/// `code_addr(imm)`: a subprogram, imm instructions after the next one.
pub const PSEUDO_FUNC: u8 = 4;
/// `map_by_idx(imm)`.
pub const PSEUDO_MAP_IDX: u8 = 5;
/// `map_val(map_by_idx(imm)) + next_imm`.
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// `ld_imm64`: LD | IMM | DW.
pub const LD_IMM64: u8 = CLASS_LD | MODE_IMM | SIZE_DW;
/// `call` with an immediate target (helper, local or kfunc).
pub const CALL: u8 = CLASS_JMP | JMP_CALL | SRC_K;
/// `callx`: call through a register (named in the dst field).
pub const CALLX: u8 = CLASS_JMP | JMP_CALL | SRC_X;
/// `exit`.
pub const EXIT: u8 = CLASS_JMP | JMP_EXIT | SRC_K;
/// `ja` with a 16-bit offset.
pub const JA: u8 = CLASS_JMP | JMP_JA | SRC_K;
/// `gotol` / `ja32`: JA in the JMP32 class, 32-bit offset in imm.
pub const GOTOL: u8 = CLASS_JMP32 | JMP_JA | SRC_K;
/// `may_goto`.
pub const MAY_GOTO: u8 = CLASS_JMP | JMP_JCOND | SRC_K;
