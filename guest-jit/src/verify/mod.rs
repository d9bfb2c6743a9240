//! The structural verifier.
//!
//! The kernel's verifier proves a program safe by simulating every path;
//! bpfvisor does not need to, because the program runs inside a VM that is
//! the sandbox (a wild pointer faults in the guest, a loop meets the
//! deadline). What must hold is what the JIT and the interpreter rely on to
//! translate the program at all:
//!
//! * every slot decodes ([`crate::insn::decode`]: opcodes, registers,
//!   unused fields, no write to r10), `ld_imm64` pairs intact;
//! * jumps land on an instruction start inside their own function;
//! * no function can run past its end: each ends in `exit` or `ja`;
//! * calls name a known helper, a known kfunc, or a local function;
//!   `ld_imm64` has been resolved by the loader. `callx` is allowed: it
//!   calls the helper whose id is in the register, as in the interpreter
//!   and ubpf, and the JIT traps when the value is no helper id;
//! * the call graph has no cycle, and no chain is deeper than
//!   [`crate::interp::MAX_CALL_FRAMES`] frames;
//! * direct stack accesses (`r10 + off`) stay in the 512-byte frame.
//!
//! Errors read like a compiler's: what is wrong, the instruction, and the
//! C source line when line info is there (see [`VerifyError`]).
//!
//! [`VerifyError`]: crate::verify::VerifyError

mod check;
mod error;

pub use error::{Location, VerifyError};

use crate::btf::LineTable;
use crate::elf::FunctionSymbol;
use crate::insn::{Insn, Program};

/// Size of one frame's stack, reachable from `r10` downwards.
pub const STACK_FRAME_SIZE: u32 = 512;

/// What the verifier needs to know besides the instructions.
#[derive(Clone, Copy)]
pub struct VerifyContext<'a> {
    /// Whether bpfvisor provides helper `id`.
    pub helper_known: &'a dyn Fn(u32) -> bool,
    /// Whether bpfvisor provides kfunc `index`: the `btf_id` of a kfunc
    /// call, which the loader makes an index into
    /// [`crate::elf::LinkedProgram::kfuncs`]. Calls naming a module's BTF
    /// (`module` nonzero) are refused whatever this says.
    pub kfunc_known: &'a dyn Fn(i32) -> bool,
    /// The kfuncs' names by index, to name a missing one in errors
    /// (`LinkedProgram::kfuncs`); may be empty.
    pub kfuncs: &'a [String],
    /// Source lines, to show in errors.
    pub lines: Option<&'a LineTable>,
    /// Names and starts of the program's functions (from the loader). Calls
    /// also make their targets functions; these only add names and
    /// boundaries.
    pub functions: &'a [FunctionSymbol],
}

impl std::fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyContext")
            .field("lines", &self.lines)
            .field("functions", &self.functions)
            .field("kfuncs", &self.kfuncs)
            .finish_non_exhaustive()
    }
}

impl<'a> VerifyContext<'a> {
    /// A context with helper availability only: no kfuncs, no lines, no
    /// names.
    pub fn new(helper_known: &'a dyn Fn(u32) -> bool) -> Self {
        VerifyContext {
            helper_known,
            kfunc_known: &|_| false,
            kfuncs: &[],
            lines: None,
            functions: &[],
        }
    }
}

/// What verification found out about a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyInfo {
    /// Every function, by start slot; the entry is first.
    pub functions: Vec<FunctionInfo>,
    /// Frames the deepest call chain from the entry needs, the entry's own
    /// included (at most [`crate::interp::MAX_CALL_FRAMES`]).
    pub max_frames: usize,
}

/// One function of a verified program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Name, when the context gave one.
    pub name: Option<String>,
    /// First slot.
    pub start: usize,
    /// Slot after the last.
    pub end: usize,
    /// Bytes below `r10` the function accesses directly (`r10 - off`);
    /// at most [`STACK_FRAME_SIZE`].
    pub stack_depth: u32,
    /// Frames the deepest chain of calls from this function needs, its own
    /// included.
    pub frames: usize,
}

/// Checks `program`; see the module documentation for what holds after.
pub fn verify(program: &Program, ctx: &VerifyContext) -> Result<VerifyInfo, VerifyError> {
    check::verify(program, ctx)
}

/// Decodes raw slots as [`Program::decode`] does, with errors rendered like
/// the verifier's (instruction, source line).
pub fn decode(insns: &[Insn], ctx: &VerifyContext) -> Result<Program, VerifyError> {
    Program::decode(insns).map_err(|error| error::decode_error(insns, error, ctx))
}

/// [`decode`], then [`verify`].
pub fn decode_and_verify(
    insns: &[Insn],
    ctx: &VerifyContext,
) -> Result<(Program, VerifyInfo), VerifyError> {
    let program = decode(insns, ctx)?;
    let info = verify(&program, ctx)?;
    Ok((program, info))
}
