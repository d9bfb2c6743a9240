//! Loading clang-built BPF objects (`clang --target=bpf -O2 -g -c`).
//!
//! ```text
//!  hello.bpf.o (ET_REL, EM_BPF)          Object::parse        Object::link(program, placement)
//!  +-------------------+                 +--------------+     +--------------------------+
//!  | syscall    (AX)   |--- programs --->| ProgramSpec  |---->| slot 0: entry function   |
//!  | .text      (AX)   |--- subprograms  |              |     | then each .text function |
//!  | .relsyscall       |--- relocations  |              |     | it reaches, calls and    |
//!  | .rodata .data     |--- data ------->| DataSection  |     | ld_imm64 fixed up, maps  |
//!  | .bss  .rodata.*   |                 | Variable     |     | and data at placement(), |
//!  | .maps  maps       |--- maps ------->| MapSpec      |     | kfunc calls by name      |
//!  | .BTF  .BTF.ext    |--- types, lines |              |     | + LineTable, functions   |
//!  +-------------------+                 +--------------+     +--------------------------+
//! ```
//!
//! A *program* is a global function in an executable section other than
//! `.text` (libbpf's rule); `.text` holds the subprograms programs call.
//! Linking copies a program and every function it reaches (transitively,
//! each once) into one instruction array, rewrites local calls and function
//! addresses for the new layout, and turns `ld_imm64` of global data and of
//! maps into plain 64-bit constants: the guest address the caller placed
//! each data section or map header at ([`Placed`]), plus the offset. Calls
//! to extern functions become kfunc calls; extern variables are refused.
//!
//! [`Placed`]: crate::elf::Placed
//!
//! Maps come from BTF (`.maps`, see `btf_maps`) or legacy `struct
//! bpf_map_def`s (`maps`), checked against the kernel's rules for their
//! type (`maps`). Global variables are found by name through their
//! section's BTF `DATASEC` (`vars`), so a caller can set `const volatile`
//! knobs before loading.
//!
//! Parsing checks the whole file up front (header, sections, symbols, every
//! code relocation, BTF, map definitions), so a malformed object fails at
//! `parse` whatever program is asked for later; `link` fails only for what
//! a particular program uses.

mod arena;
mod btf_maps;
mod error;
mod link;
mod map_sections;
mod maps;
mod read;
mod vars;

use std::fmt::Write as _;

pub use arena::{ARENA_DATA_SECTION, globals_offset as arena_globals_offset};
pub use error::LoadError;
pub use link::{FunctionSymbol, LinkedProgram, PlacedLoad};
pub use maps::{
    ARENA_PAGE_SIZE, LEGACY_DEF_SIZE, MAX_ARENA_PAGES, MAX_KEY_SIZE, MAX_PERCPU_VALUE_SIZE,
    MAX_VALUE_SIZE, MapDefError, MapInit, MapSpec, MapType, Pinning, flags as map_flags, map_type,
};
pub use vars::Variable;

use crate::btf::Btf;

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
    /// `.BTF`, when the object has it.
    btf: Option<Btf>,
    /// Maps, BTF-defined then legacy; `map_sites` is indexed alike.
    maps: Vec<MapSpec>,
    map_sites: Vec<btf_maps::MapSite>,
    /// Map index by where its definition starts: (ELF section, offset).
    map_starts: std::collections::BTreeMap<(usize, u64), usize>,
    variables: Vec<Variable>,
    /// Functions BTF declares `extern ... __ksym`.
    kfunc_declarations: std::collections::HashSet<String>,
    /// The `license` section's string, up to its first NUL.
    license: Option<String>,
}

/// Something [`Object::link`] asks its caller to have placed in guest
/// memory: the caller answers with its guest address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placed {
    /// The start of `data_sections()[i]`.
    Data(usize),
    /// The header of `maps()[i]` (what an `ld_imm64` of the map loads, as
    /// the kernel loads a `struct bpf_map *`).
    Map(usize),
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
    /// `.addr_space.1`: `__arena` globals, initialised, writable, living in
    /// the object's `ARENA` map ([`Object::arena`]); an `ld_imm64` of one
    /// gives its arena (user) address. libbpf puts them in the arena's last
    /// pages ([`arena_globals_offset`]).
    Arena,
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

impl DataSection {
    /// The name of the internal map libbpf makes of this section, which
    /// tools and skeletons use for it: the section name (`.data`,
    /// `.rodata`, `.bss`, `.data.foo`, `.rodata.str1.1`, `.percpu`).
    pub fn map_name(&self) -> &str {
        &self.name
    }

    /// The internal map libbpf makes of this section: an `ARRAY` of one
    /// value, the section (`PERCPU_ARRAY` for `.percpu`), read-only to
    /// programs for `.rodata*`. bpfvisor keeps the bytes in the data
    /// regions; the map header points at them. An empty section gives
    /// value_size 0, which [`MapSpec::check`] refuses: libbpf makes no map
    /// of it either. `.addr_space.1` has no map of its own (the arena is
    /// its map): its spec is an `ARENA` of the pages it needs, which no
    /// map-storage definition accepts.
    pub fn map_spec(&self) -> MapSpec {
        let size = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        let (map_type, flags) = match self.kind {
            DataKind::ReadOnly => (MapType::Array, map_flags::RDONLY_PROG | map_flags::MMAPABLE),
            DataKind::ReadWrite | DataKind::Zeroed => (MapType::Array, map_flags::MMAPABLE),
            DataKind::PerCpu => (MapType::PercpuArray, 0),
            DataKind::Arena => {
                let pages = (self.bytes.len() as u64).div_ceil(ARENA_PAGE_SIZE);
                let pages = u32::try_from(pages).unwrap_or(u32::MAX);
                let mut spec = MapSpec::new(self.map_name(), MapType::Arena, 0, 0, pages);
                spec.map_flags = map_flags::MMAPABLE;
                return spec;
            }
        };
        let mut spec = MapSpec::new(self.map_name(), map_type, 4, size, 1);
        spec.map_flags = flags;
        spec
    }
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

    /// Global data sections: `.rodata*`, `.data*`, `.bss*`, `.percpu` and
    /// `.addr_space.1`, in section order. [`Object::link`]'s `placement` is indexed like
    /// this slice.
    pub fn data_sections(&self) -> &[DataSection] {
        &self.data
    }

    /// Maps the object defines: BTF-defined (`.maps`) in BTF order, then
    /// legacy (`maps`) by offset. [`Placed::Map`] is indexed like this
    /// slice. Global data sections are maps too for the host API, but are
    /// not listed here: see [`DataSection::map_spec`].
    pub fn maps(&self) -> &[MapSpec] {
        &self.maps
    }

    /// The license the object declares (`char LICENSE[] SEC("license")
    /// = "GPL"`), which the kernel checks before it allows GPL-only
    /// helpers; `None` without a `license` section.
    pub fn license(&self) -> Option<&str> {
        self.license.as_deref()
    }

    /// The size of ELF section `name` (the first of that name) as its
    /// header says, `.bss` included: what a loader fills a `DATASEC`'s
    /// size from, which clang leaves 0.
    pub fn section_size(&self, name: &str) -> Option<u64> {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.size)
    }

    /// The named symbols (not section symbols) defined in ELF section
    /// `name`, with their values (offsets in the section), in table
    /// order: what a loader fills a `DATASEC`'s variable offsets from.
    pub fn section_symbols(&self, name: &str) -> Vec<(&str, u64)> {
        let Some(index) = self.sections.iter().position(|s| s.name == name) else {
            return Vec::new();
        };
        self.symbols
            .iter()
            .filter(|s| !s.is_section && s.place == read::Place::Section(index))
            .map(|s| (s.name.as_str(), s.value))
            .collect()
    }

    /// The index in [`Object::maps`] of the map named `name`.
    pub fn find_map(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }

    /// Links `program` into one instruction array; `placement` gives the
    /// guest address of each data section and map it uses (`None`: not
    /// placed, and the program cannot be linked). See [`LinkedProgram`].
    pub fn link(
        &self,
        program: &ProgramSpec,
        placement: &dyn Fn(Placed) -> Option<u64>,
    ) -> Result<LinkedProgram, LoadError> {
        link::link(self, program, placement)
    }
}
