//! Why an object cannot be loaded or a program linked.

use thiserror::Error;

use super::maps::MapDefError;
use crate::btf::BtfError;
use crate::verify::VerifyError;

/// Why [`crate::elf::Object::parse`] or [`crate::elf::Object::link`] failed.
///
/// Messages name the section, symbol and relocation offset involved, so
/// that a user can find them with `llvm-readelf -r -s`.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The bytes do not start with the ELF magic.
    #[error("Not an ELF file (the first bytes are not \\x7fELF)")]
    CheckMagic,
    /// The file ends inside the ELF header.
    #[error("ELF file of {len} bytes is shorter than the 64-byte ELF header")]
    ReadHeader {
        /// File length.
        len: usize,
    },
    /// `EI_CLASS` is not `ELFCLASS64`.
    #[error("ELF class {class} is not 64-bit (BPF objects are ELFCLASS64)")]
    CheckClass {
        /// The `EI_CLASS` byte.
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB`.
    #[error("ELF data encoding {data} is not little-endian (build with --target=bpfel or bpf)")]
    CheckEndian {
        /// The `EI_DATA` byte.
        data: u8,
    },
    /// `e_type` is not `ET_REL`.
    #[error("ELF type {e_type} is not a relocatable object (ET_REL, what clang -c writes)")]
    CheckType {
        /// `e_type`.
        e_type: u16,
    },
    /// `e_machine` is not `EM_BPF`.
    #[error("ELF machine {machine} is not BPF (EM_BPF, 247)")]
    CheckMachine {
        /// `e_machine`.
        machine: u16,
    },
    /// The `object` crate refused a structure of the file.
    #[error("Malformed ELF {what}")]
    ParseElf {
        /// What was being read.
        what: &'static str,
        /// The reader's complaint.
        #[source]
        source: object::read::Error,
    },
    /// A section's contents cannot be read.
    #[error("Cannot read the contents of section `{section}`")]
    ReadSection {
        /// Section name.
        section: String,
        /// The reader's complaint.
        #[source]
        source: object::read::Error,
    },
    /// A code section does not split into instructions.
    #[error("Code section `{section}` is {size} bytes, not a whole number of 8-byte instructions")]
    SplitCode {
        /// Section name.
        section: String,
        /// Its size.
        size: u64,
    },
    /// A symbol names a section that does not exist.
    #[error("Symbol `{symbol}` is in section {index}, but the object has {count} sections")]
    ResolveSymbolSection {
        /// Symbol name.
        symbol: String,
        /// Claimed section index.
        index: usize,
        /// Number of sections.
        count: usize,
    },
    /// A function symbol does not cover whole instructions inside its
    /// section.
    #[error(
        "Function `{symbol}` at offset {value:#x} (size {size:#x}) is not whole instructions inside section `{section}` ({section_size:#x} bytes)"
    )]
    CheckFunction {
        /// Symbol name.
        symbol: String,
        /// Section name.
        section: String,
        /// `st_value`.
        value: u64,
        /// `st_size`.
        size: u64,
        /// Section size.
        section_size: u64,
    },
    /// Relocations come in a form BPF objects do not use.
    #[error("Relocation section `{section}` for code section `{target}` {problem}")]
    CheckRelocationSection {
        /// Relocation section name.
        section: String,
        /// The section it applies to.
        target: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A relocation in a code section has a type code cannot have.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` has type {r_type}; code takes only R_BPF_64_64 (1) and R_BPF_64_32 (10)"
    )]
    CheckRelocationType {
        /// Code section name.
        section: String,
        /// Byte offset in the section.
        offset: u64,
        /// `ELF64_R_TYPE`.
        r_type: u32,
    },
    /// A relocation lies outside its section, or not at an instruction.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` is not at the start of an instruction ({reason})"
    )]
    CheckRelocationOffset {
        /// Code section name.
        section: String,
        /// Byte offset in the section.
        offset: u64,
        /// What is wrong with the offset.
        reason: String,
    },
    /// A relocation names a symbol the symbol table does not have.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` names symbol {index}, but the symbol table has {count}"
    )]
    ResolveRelocationSymbol {
        /// Code section name.
        section: String,
        /// Byte offset.
        offset: u64,
        /// Symbol index.
        index: u32,
        /// Symbols in the table.
        count: usize,
    },
    /// A relocation's type does not match the instruction it is on.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` is {r_type}, which applies to {expected}, but the instruction there has opcode {code:#04x}"
    )]
    MatchRelocation {
        /// Code section name.
        section: String,
        /// Byte offset.
        offset: u64,
        /// Relocation type name.
        r_type: &'static str,
        /// What it applies to.
        expected: &'static str,
        /// Opcode found.
        code: u8,
    },
    /// Two relocations apply to the same instruction.
    #[error(
        "Two relocations apply to the instruction at offset {offset:#x} in section `{section}`"
    )]
    DuplicateRelocation {
        /// Code section name.
        section: String,
        /// Byte offset.
        offset: u64,
    },
    /// Global data holds a relocated pointer, which bpfvisor cannot place.
    #[error(
        "Data section `{section}` holds a pointer to `{symbol}` (relocation at offset {offset:#x}); pointers in initialised global data are not supported"
    )]
    RelocateData {
        /// Data section name.
        section: String,
        /// Byte offset.
        offset: u64,
        /// Symbol pointed to.
        symbol: String,
    },
    /// The global data sections are larger than bpfvisor will place.
    #[error(
        "Global data section `{section}` brings the data to {total} bytes; at most {max} are allowed"
    )]
    SizeData {
        /// The section that went over.
        section: String,
        /// Total bytes with it.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// Two maps of the object are arenas (the kernel ties a program to one
    /// arena, and libbpf supports one per object).
    #[error("Maps `{first}` and `{second}` are both ARENA maps; an object may have only one")]
    CountArenas {
        /// The first arena map.
        first: String,
        /// The second.
        second: String,
    },
    /// `__arena` globals without an arena map to put them in.
    #[error(
        "Section `{section}` holds __arena globals ({size} bytes), but the object declares no ARENA map in .maps"
    )]
    FindArena {
        /// `.addr_space.1`.
        section: String,
        /// Its size.
        size: u64,
    },
    /// `__arena` globals larger than their arena (libbpf's `E2BIG`).
    #[error(
        "Section `{section}` holds {size} bytes of __arena globals, more than the {pages} pages of ARENA map `{map}`"
    )]
    FitArena {
        /// `.addr_space.1`.
        section: String,
        /// Its size.
        size: u64,
        /// The arena map.
        map: String,
        /// Its `max_entries`.
        pages: u32,
    },
    /// `.BTF` or `.BTF.ext` is malformed.
    #[error("Cannot parse the object's BTF")]
    ParseBtf(#[source] BtfError),
    /// A line info record names an instruction past its section's end.
    #[error(
        "Line info for section `{section}` names instruction {slot}, but the section has {len} instructions"
    )]
    CheckLineInfo {
        /// Code section name.
        section: String,
        /// Slot named.
        slot: usize,
        /// Instructions in the section.
        len: usize,
    },
    /// The object has no programs.
    #[error(
        "The object has no programs (a program is a global function in a section other than .text, e.g. SEC(\"syscall\"))"
    )]
    FindAnyProgram,
    /// No program has the requested function or section name.
    #[error("No program or section is named `{name}`; the object has: {available}")]
    FindProgram {
        /// Requested name.
        name: String,
        /// The programs there are, `name (section)`.
        available: String,
    },
    /// The request names several programs.
    #[error("{what}; choose one by function name: {available}")]
    ChooseProgram {
        /// Why there is a choice.
        what: String,
        /// The candidates, `name (section)`.
        available: String,
    },
    /// A [`crate::elf::ProgramSpec`] from another object.
    #[error("Program `{name}` is not one of this object's programs")]
    ResolveProgram {
        /// The program's name.
        name: String,
    },
    /// A call or function reference does not land on a function.
    #[error(
        "{what} at offset {offset:#x} in section `{section}` targets instruction {target} of section `{target_section}`, which is not the start of a function"
    )]
    ResolveCall {
        /// "Call" or "Function address".
        what: &'static str,
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
        /// Section targeted.
        target_section: String,
        /// Slot targeted (may be negative or past the end).
        target: i64,
    },
    /// A map definition is refused.
    #[error("Map `{map}` in section `{section}` cannot be created")]
    DefineMap {
        /// Map name.
        map: String,
        /// Section of the definition.
        section: String,
        /// What is wrong with it.
        #[source]
        source: Box<MapDefError>,
    },
    /// BTF-defined maps without the BTF that defines them.
    #[error(
        "Section `{section}` holds BTF-defined maps, but the object has no .BTF section (build with -g)"
    )]
    FindMapBtf {
        /// The maps section.
        section: String,
    },
    /// Legacy map definitions that do not divide their section.
    #[error("Legacy map section `{section}` ({size} bytes) {problem}")]
    SplitLegacyMaps {
        /// The section.
        section: String,
        /// Its size.
        size: u64,
        /// What is wrong.
        problem: String,
    },
    /// A relocation of a maps section that gives no initial value.
    #[error("Relocation at offset {offset:#x} in section `{section}` {problem}")]
    RelocateMaps {
        /// The maps section.
        section: String,
        /// Byte offset in it.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// An `ld_imm64` names a maps section somewhere no map starts.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` refers to byte {at:#x} of `{target_section}` (via `{symbol}`), where no map starts"
    )]
    ResolveMap {
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
        /// Symbol named.
        symbol: String,
        /// The maps section.
        target_section: String,
        /// Offset in it (symbol value plus addend).
        at: i128,
    },
    /// The caller gave no guest address for a map the program uses.
    #[error(
        "Program `{program}` uses map `{map}` (relocation at offset {offset:#x} in section `{section}`), which was not placed in guest memory"
    )]
    PlaceMap {
        /// Program being linked.
        program: String,
        /// Map name.
        map: String,
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
    },
    /// The caller gave no guest address for a data section the program
    /// uses.
    #[error(
        "Program `{program}` uses global data in `{data}` (relocation at offset {offset:#x} in section `{section}`), which was not placed in guest memory"
    )]
    PlaceData {
        /// Program being linked.
        program: String,
        /// Data section name.
        data: String,
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
    },
    /// A call to an extern function that BTF does not declare a kfunc.
    #[error(
        "Program `{program}` calls extern function `{symbol}` (relocation at offset {offset:#x} in section `{section}`), which BTF does not declare a kfunc (`extern ... __ksym`)"
    )]
    DeclareKfunc {
        /// Program being linked.
        program: String,
        /// Function name.
        symbol: String,
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
    },
    /// A data section's BTF variables cannot be read.
    #[error("Cannot read the global variables of section `{section}`: {problem}")]
    ReadVariable {
        /// Data section.
        section: String,
        /// What is wrong.
        problem: String,
    },
    /// No global variable has the name asked for.
    #[error("No global variable is named `{name}`; the object has: {available}")]
    FindVariable {
        /// Name asked for.
        name: String,
        /// The variables there are, `name (section, size)`.
        available: String,
    },
    /// A variable's new value is not its size.
    #[error("Global variable `{name}` is {size} bytes, but the value given is {given} bytes")]
    SizeVariable {
        /// Variable name.
        name: String,
        /// Its size.
        size: u64,
        /// Bytes given.
        given: usize,
    },
    /// A program uses a symbol defined outside the object other than by
    /// calling it as a kfunc (a `__ksym` or `__kconfig` variable).
    #[error(
        "Program `{program}` uses extern symbol `{symbol}` (relocation at offset {offset:#x} in section `{section}`); only calls to kfuncs may name extern symbols"
    )]
    UseExtern {
        /// Program being linked.
        program: String,
        /// Symbol name.
        symbol: String,
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
    },
    /// An `ld_imm64` names a symbol in a section that is neither code nor
    /// placed data.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` refers to `{symbol}` in section `{target_section}`, which holds neither code nor global data bpfvisor places"
    )]
    ResolveGlobal {
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
        /// Symbol name.
        symbol: String,
        /// Section of the symbol.
        target_section: String,
    },
    /// An `ld_imm64` of global data points outside the data section.
    #[error(
        "Relocation at offset {offset:#x} in section `{section}` points at byte {at} of `{target_section}`, outside its {size} bytes"
    )]
    CheckGlobalOffset {
        /// Section of the instruction.
        section: String,
        /// Its byte offset.
        offset: u64,
        /// Data section.
        target_section: String,
        /// Offset into it (symbol value plus addend).
        at: i128,
        /// Its size.
        size: u64,
    },
    /// The linked program does not decode; the error shows where.
    #[error(transparent)]
    DecodeProgram(Box<VerifyError>),
}
