//! Loading clang-built BPF objects (`clang --target=bpf -O2 -g -c`).
//!
//! ```text
//!  hello.bpf.o (ET_REL, EM_BPF)          Object::parse        Object::link(program)
//!  +-------------------+                 +--------------+     +--------------------------+
//!  | syscall    (AX)   |--- programs --->| ProgramSpec  |---->| slot 0: entry function   |
//!  | .text      (AX)   |--- subprograms  |              |     | then each .text function |
//!  | .relsyscall       |--- relocations  |              |     | it reaches, calls and    |
//!  | .rodata .data     |--- data ------->| DataSection  |     | ld_imm64 fixed up        |
//!  | .bss  .rodata.*   |                 |              |     | + LineTable, functions   |
//!  | .maps             |--- (maps: not yet)              |     +--------------------------+
//!  | .BTF  .BTF.ext    |--- line info                    |
//!  +-------------------+                 +--------------+
//! ```
//!
//! A *program* is a global function in an executable section other than
//! `.text` (libbpf's rule); `.text` holds the subprograms programs call.
//! Linking copies a program and every function it reaches (transitively,
//! each once) into one instruction array, rewrites local calls and function
//! addresses for the new layout, and turns `ld_imm64` of global data into
//! plain 64-bit constants: the guest address the caller places each data
//! section at, plus the offset. Nothing else is resolved here; maps and
//! extern symbols are refused with a message that says so.
//!
//! Parsing checks the whole file up front (header, sections, symbols, every
//! code relocation, BTF), so a malformed object fails at `parse` whatever
//! program is asked for later; `link` fails only for what a particular
//! program uses.

mod error;
mod link;
mod read;

use std::fmt::Write as _;

pub use error::LoadError;
pub use link::{FunctionSymbol, LinkedProgram};

/// A parsed BPF object file.
#[derive(Clone, Debug)]
pub struct Object {
    /// Every section, by ELF index.
    sections: Vec<read::Section>,
    /// The symbol table, by index.
    symbols: Vec<read::Symbol>,
    /// Executable sections.
    code: Vec<read::CodeSection>,
    programs: Vec<ProgramSpec>,
    data: Vec<DataSection>,
}

/// A program: an entry point that can be linked and run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Function name (`hello`).
    pub name: String,
    /// Section name (`syscall`, `xdp`, ...), which says the program type.
    pub section: String,
    /// Index into [`Object::code`].
    code: usize,
    /// Index into that section's functions.
    function: usize,
}

/// What a global data section holds, and so how it must be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// `.rodata`, `.rodata.*`: initialised, read-only to the program.
    ReadOnly,
    /// `.data`, `.data.*`: initialised, writable.
    ReadWrite,
    /// `.bss`, `.bss.*`: zero-initialised, writable.
    Zeroed,
    /// `.percpu` (or `.data..percpu`): one copy per CPU, initialised from
    /// these bytes. An
    /// `ld_imm64` of it gives the placement of the copy's image; the JIT
    /// adds the running CPU's offset (see [`LinkedProgram::percpu_loads`]).
    PerCpu,
}

/// A global data section, to be placed in guest memory before a program
/// that uses it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSection {
    /// Section name (`.rodata`, `.data.table`, `.bss`, ...).
    pub name: String,
    /// How it is mapped.
    pub kind: DataKind,
    /// Initial contents; as long as the section, zeros for `.bss`.
    pub bytes: Vec<u8>,
    /// Alignment the section asks for, at least 1.
    pub align: u64,
}

impl Object {
    /// Parses and checks an object; see the module documentation for what
    /// is checked.
    pub fn parse(bytes: &[u8]) -> Result<Object, LoadError> {
        read::parse(bytes)
    }

    /// Every program, in section order, then by offset.
    pub fn programs(&self) -> &[ProgramSpec] {
        &self.programs
    }

    /// The program whose function name, or else whose section name, is
    /// `name`; with `None`, the only program. Several matches or none are
    /// an error that lists the programs.
    pub fn find_program(&self, name: Option<&str>) -> Result<&ProgramSpec, LoadError> {
        let available = || self.describe_programs(self.programs.iter());
        if self.programs.is_empty() {
            return Err(LoadError::FindAnyProgram);
        }
        let Some(name) = name else {
            return match self.programs.as_slice() {
                [only] => Ok(only),
                _ => Err(LoadError::ChooseProgram {
                    what: format!("The object has {} programs", self.programs.len()),
                    available: available(),
                }),
            };
        };
        if let Some(program) = self.programs.iter().find(|p| p.name == name) {
            return Ok(program);
        }
        let in_section: Vec<&ProgramSpec> =
            self.programs.iter().filter(|p| p.section == name).collect();
        match in_section.as_slice() {
            [only] => Ok(only),
            [] => Err(LoadError::FindProgram {
                name: name.to_owned(),
                available: available(),
            }),
            several => Err(LoadError::ChooseProgram {
                what: format!("Section `{name}` has {} programs", several.len()),
                available: self.describe_programs(several.iter().copied()),
            }),
        }
    }

    fn describe_programs<'a>(&self, programs: impl Iterator<Item = &'a ProgramSpec>) -> String {
        let mut out = String::new();
        for (i, p) in programs.enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}{} ({})", p.name, p.section);
        }
        out
    }

    /// Global data sections: `.rodata*`, `.data*`, `.bss*` and `.percpu`,
    /// in section order. [`Object::link`]'s `placement` is indexed like
    /// this slice.
    pub fn data_sections(&self) -> &[DataSection] {
        &self.data
    }

    /// Links `program` into one instruction array; `placement(i)` is the
    /// guest address of `data_sections()[i]`. See [`LinkedProgram`].
    pub fn link(
        &self,
        program: &ProgramSpec,
        placement: &dyn Fn(usize) -> u64,
    ) -> Result<LinkedProgram, LoadError> {
        link::link(self, program, placement)
    }
}
