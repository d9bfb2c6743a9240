//! Verifier errors, rendered like a compiler's diagnostics:
//!
//! ```text
//! error: instruction 12 jumps to slot 40, outside the program (36 instructions)
//!   12: ja +27
//!   --> hello.bpf.c:10:5
//!    |  return *p;
//! ```
//!
//! The first line says what is wrong; then the instruction, disassembled,
//! and the C line it came from when line info is there. A decode error's
//! own message is the first line (it is not repeated as a `source()`, so
//! that printing the error chain does not say it twice).

use std::fmt;

use thiserror::Error;

use super::VerifyContext;
use crate::btf::SourceLine;
use crate::insn::{DecodeError, Insn, Program};
use crate::interp::MAX_CALL_FRAMES;

/// Where an error is: the instruction and its source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Slot of the instruction.
    pub slot: usize,
    /// The instruction, disassembled (or its bytes, if it does not decode).
    pub insn: String,
    /// Its source line, if known.
    pub line: Option<SourceLine>,
}

impl Location {
    /// The location of slot `slot` of a decoded program.
    pub(super) fn of(program: &Program, slot: usize, ctx: &VerifyContext) -> Box<Location> {
        let insn = match program.op(slot) {
            Some(op) => op.to_string(),
            None => raw(program.insns().get(slot)),
        };
        Box::new(Location {
            slot,
            insn,
            line: ctx.lines.and_then(|l| l.get(slot)).cloned(),
        })
    }
}

/// An instruction as its bytes, for one that does not decode.
fn raw(insn: Option<&Insn>) -> String {
    match insn {
        Some(insn) => {
            let bytes: Vec<String> = insn.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            format!("{} (raw bytes)", bytes.join(" "))
        }
        None => "(past the end)".to_owned(),
    }
}

impl fmt::Display for Location {
    /// The lines after the message, each starting with a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n  {}: {}", self.slot, self.insn)?;
        if let Some(line) = &self.line {
            write!(f, "\n  --> {line}\n   |  {}", line.text.trim())?;
        }
        Ok(())
    }
}

/// Why a program does not verify.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A slot does not decode.
    #[error("error: {}{at}", lower_first(&.error.to_string()))]
    DecodeInstruction {
        /// The decoder's verdict.
        error: DecodeError,
        /// Where.
        at: Box<Location>,
    },
    /// There are no instructions.
    #[error("error: the program has no instructions")]
    CheckEmpty,
    /// A jump lands outside the program.
    #[error("error: instruction {} jumps to slot {target}, outside the program ({len} instructions){at}", at.slot)]
    JumpOutside {
        /// Target slot.
        target: i64,
        /// Program length in slots.
        len: usize,
        /// Where.
        at: Box<Location>,
    },
    /// A jump lands on the second slot of an `ld_imm64`.
    #[error("error: instruction {} jumps to slot {target}, the second half of the ld_imm64 at slot {}{at}", at.slot, target - 1)]
    JumpIntoLdImm64 {
        /// Target slot.
        target: usize,
        /// Where.
        at: Box<Location>,
    },
    /// A jump leaves its function.
    #[error("error: instruction {} jumps to slot {target}, out of {from} into {to}; jumps stay inside their function{at}", at.slot)]
    JumpAcrossFunctions {
        /// Target slot.
        target: usize,
        /// The function jumped from.
        from: String,
        /// The function jumped into.
        to: String,
        /// Where.
        at: Box<Location>,
    },
    /// A local call or function address lands outside the program.
    #[error("error: instruction {} calls slot {target}, outside the program ({len} instructions){at}", at.slot)]
    CallOutside {
        /// Target slot.
        target: i64,
        /// Program length in slots.
        len: usize,
        /// Where.
        at: Box<Location>,
    },
    /// A local call or function address lands on the second slot of an
    /// `ld_imm64`.
    #[error("error: instruction {} calls slot {target}, the second half of the ld_imm64 at slot {}{at}", at.slot, target - 1)]
    CallIntoLdImm64 {
        /// Target slot.
        target: usize,
        /// Where.
        at: Box<Location>,
    },
    /// A function's last instruction lets execution continue past its end.
    #[error("error: {function} can run past its end: its last instruction, {}, is neither exit nor ja{at}", at.slot)]
    FallThrough {
        /// The function.
        function: String,
        /// Where (its last instruction).
        at: Box<Location>,
    },
    /// A helper bpfvisor does not provide.
    #[error("error: helper {id}{} is not available in bpfvisor{at}", helper_label(*.id))]
    FindHelper {
        /// Helper id.
        id: u32,
        /// Where.
        at: Box<Location>,
    },
    /// A kfunc bpfvisor does not provide.
    #[error("error: kfunc {} is not available in bpfvisor{at}", kfunc_label(*.index, *.module, .name.as_deref()))]
    FindKfunc {
        /// Its index in the program's kfunc list (the call's `btf_id`).
        index: i32,
        /// The module BTF the call names; 0 for the kernel's own.
        module: i16,
        /// Its name, when the context knows it.
        name: Option<String>,
        /// Where.
        at: Box<Location>,
    },
    /// An `ld_imm64` the loader should have resolved (a map, a kernel
    /// variable, a map value).
    #[error("error: instruction {} loads a map or kernel object that the loader has not resolved{at}", at.slot)]
    ResolveLdImm64 {
        /// Where.
        at: Box<Location>,
    },
    /// The call graph has a cycle.
    #[error("error: recursive call: {cycle}; recursion is not allowed{at}")]
    CallRecursively {
        /// The cycle, `f -> g -> f`.
        cycle: String,
        /// Where (the call that closes the cycle).
        at: Box<Location>,
    },
    /// A call chain is deeper than [`crate::interp::MAX_CALL_FRAMES`].
    #[error(
        "error: call chain {chain} needs {frames} frames; at most {} are allowed{at}",
        MAX_CALL_FRAMES
    )]
    NestCalls {
        /// The chain, `main -> f -> g ...`.
        chain: String,
        /// Frames it needs.
        frames: usize,
        /// Where (the call that goes one frame too deep).
        at: Box<Location>,
    },
    /// A direct stack access outside the frame.
    #[error("error: instruction {} accesses {size} bytes at r10{off:+}, outside the {}-byte stack frame [r10-{}, r10){at}", at.slot, super::STACK_FRAME_SIZE, super::STACK_FRAME_SIZE)]
    AccessStack {
        /// Offset from r10.
        off: i16,
        /// Access size in bytes.
        size: usize,
        /// Where.
        at: Box<Location>,
    },
}

impl VerifyError {
    /// Where the error is, if it is at an instruction.
    pub fn location(&self) -> Option<&Location> {
        use VerifyError::*;
        match self {
            CheckEmpty => None,
            DecodeInstruction { at, .. }
            | JumpOutside { at, .. }
            | JumpIntoLdImm64 { at, .. }
            | JumpAcrossFunctions { at, .. }
            | CallOutside { at, .. }
            | CallIntoLdImm64 { at, .. }
            | FallThrough { at, .. }
            | FindHelper { at, .. }
            | FindKfunc { at, .. }
            | ResolveLdImm64 { at }
            | CallRecursively { at, .. }
            | NestCalls { at, .. }
            | AccessStack { at, .. } => Some(at),
        }
    }
}

/// ` (bpf_tail_call)` for a helper the kernel names, nothing otherwise.
fn helper_label(id: u32) -> String {
    crate::helpers::helper_name(id).map_or_else(String::new, |name| format!(" ({name})"))
}

/// `bpf_iter_num_new` by name, else `3` or `3 of module 1` by index.
fn kfunc_label(index: i32, module: i16, name: Option<&str>) -> String {
    match (name, module) {
        (Some(name), _) => name.to_owned(),
        (None, 0) => index.to_string(),
        (None, module) => format!("{index} of module {module}"),
    }
}

/// The decoder's messages start a sentence; after `error: ` they continue
/// one.
fn lower_first(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The slot a decode error names.
fn decode_error_slot(error: &DecodeError) -> usize {
    match *error {
        DecodeError::SplitBytes { .. } => 0,
        DecodeError::DecodeOpcode { index, .. }
        | DecodeError::CheckUnusedField { index, .. }
        | DecodeError::DecodeField { index, .. }
        | DecodeError::DecodeRegister { index, .. }
        | DecodeError::WriteFramePointer { index }
        | DecodeError::ReadInstruction { index }
        | DecodeError::ReadSecondSlot { index } => index,
    }
}

/// A decode error of `insns`, at its instruction.
pub(super) fn decode_error(insns: &[Insn], error: DecodeError, ctx: &VerifyContext) -> VerifyError {
    let slot = decode_error_slot(&error);
    VerifyError::DecodeInstruction {
        error,
        at: Box::new(Location {
            slot,
            insn: raw(insns.get(slot)),
            line: ctx.lines.and_then(|l| l.get(slot)).cloned(),
        }),
    }
}
