//! Reading and checking the ELF file into owned tables.

use std::collections::{BTreeMap, HashMap, HashSet};

use object::LittleEndian;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rel, SectionHeader, Sym};

use super::map_sections::{read_map_relocations, read_maps};
use super::vars::{read_kfunc_declarations, read_variables};
use super::{DataKind, DataSection, LoadError, Object, ProgramSpec};
use crate::btf::{Btf, BtfExt, LineInfo};
use crate::insn::opcode::{CALL, LD_IMM64};
use crate::insn::{INSN_SIZE, Insn};

const LE: LittleEndian = LittleEndian;
/// Size of `Elf64_Ehdr`.
const EHDR_SIZE: usize = 64;
/// Most bytes of global data one object may bring. Far beyond what BPF
/// programs use (the kernel caps a global data map's value at
/// `KMALLOC_MAX_SIZE`), and small enough that a hostile `.bss` size cannot
/// exhaust the host.
pub(super) const MAX_DATA_SIZE: u64 = 64 << 20;
/// The section holding the object's license string.
const LICENSE_SECTION: &str = "license";
/// The code section libbpf takes subprograms from.
pub(super) const TEXT_SECTION: &str = ".text";

/// A section and what it is to the loader.
#[derive(Clone, Debug)]
pub(super) struct Section {
    pub name: String,
    pub role: Role,
    pub size: u64,
}

/// What a section is to the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Executable: index into [`Object::code`].
    Code(usize),
    /// Global data: index into [`Object::data`].
    Data(usize),
    /// BTF-defined (`.maps`) or legacy (`maps`) map definitions.
    Maps,
    /// Anything else: debug info, BTF, license, ...
    Other,
}

/// Where a symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// `SHN_UNDEF`: outside the object (kfuncs, ksyms, kconfig).
    Undefined,
    /// In the section with this ELF index.
    Section(usize),
    /// `SHN_ABS`, `SHN_COMMON` and other reserved indices.
    Special,
}

/// A symbol table entry.
#[derive(Clone, Debug)]
pub(super) struct Symbol {
    /// Its name; a section symbol takes its section's name.
    pub name: String,
    pub place: Place,
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// `STT_SECTION`: clang relocates static objects and functions against
    /// the section symbol, with the offset in the instruction.
    pub is_section: bool,
}

/// Named symbols (not section symbols) by section and name, and every
/// named symbol of each section: lookups that would otherwise walk the
/// whole table for each map and variable of a (possibly hostile) object.
pub(super) struct SymbolIndex<'a> {
    by_name: HashMap<(usize, &'a str), &'a Symbol>,
    by_section: HashMap<usize, Vec<&'a Symbol>>,
}

impl<'a> SymbolIndex<'a> {
    pub fn new(symbols: &'a [Symbol]) -> Self {
        let mut index = SymbolIndex {
            by_name: HashMap::new(),
            by_section: HashMap::new(),
        };
        for sym in symbols.iter().filter(|s| !s.is_section) {
            if let Place::Section(s) = sym.place {
                index.by_name.entry((s, sym.name.as_str())).or_insert(sym);
                index.by_section.entry(s).or_default().push(sym);
            }
        }
        index
    }

    /// The first named symbol `name` defined in `section`.
    pub fn find(&self, section: usize, name: &str) -> Option<&'a Symbol> {
        self.by_name.get(&(section, name)).copied()
    }

    /// The named symbols defined in `section`, in table order.
    pub fn in_section(&self, section: usize) -> &[&'a Symbol] {
        self.by_section.get(&section).map_or(&[], Vec::as_slice)
    }
}

/// A function in a code section.
#[derive(Clone, Debug)]
pub(super) struct Function {
    pub name: String,
    /// First slot.
    pub start: usize,
    /// Slot after the last.
    pub end: usize,
    /// `STB_GLOBAL` or `STB_WEAK`.
    pub global: bool,
}

/// How a relocation patches its instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RelocKind {
    /// `R_BPF_64_64` on an `ld_imm64`: address of data or of a function.
    Ld64,
    /// `R_BPF_64_32` on a `call`: a subprogram or an extern function.
    Call,
}

/// A relocation of an instruction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reloc {
    pub kind: RelocKind,
    /// Index into [`Object::symbols`].
    pub symbol: usize,
}

/// An executable section.
#[derive(Clone, Debug)]
pub(super) struct CodeSection {
    pub name: String,
    pub insns: Vec<Insn>,
    /// Relocations by slot.
    pub relocs: BTreeMap<usize, Reloc>,
    /// Functions, by start slot.
    pub functions: Vec<Function>,
    /// Line info, by slot.
    pub lines: Vec<LineInfo>,
    /// Slots that are the second half of an `ld_imm64`.
    pub second_half: Vec<bool>,
}

impl CodeSection {
    /// The function that starts at `slot`.
    pub fn function_at(&self, slot: usize) -> Option<usize> {
        self.functions.binary_search_by_key(&slot, |f| f.start).ok()
    }
}

/// Slots that are the second half of an `ld_imm64`, walking from the
/// section start as clang lays instructions out.
fn second_halves(insns: &[Insn]) -> Vec<bool> {
    let mut second = vec![false; insns.len()];
    let mut pc = 0;
    while pc < insns.len() {
        if insns[pc].code == LD_IMM64 {
            if let Some(s) = second.get_mut(pc + 1) {
                *s = true;
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    second
}

/// Checks the ELF header fields that make this a BPF object, from the raw
/// bytes, so that each has its own message.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(LoadError::CheckMagic);
    }
    if bytes.len() < EHDR_SIZE {
        return Err(LoadError::ReadHeader { len: bytes.len() });
    }
    let half = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    if bytes[4] != elf::ELFCLASS64.0 {
        return Err(LoadError::CheckClass { class: bytes[4] });
    }
    if bytes[5] != elf::ELFDATA2LSB.0 {
        return Err(LoadError::CheckEndian { data: bytes[5] });
    }
    if half(16) != elf::ET_REL.0 {
        return Err(LoadError::CheckType { e_type: half(16) });
    }
    if half(18) != elf::EM_BPF.0 {
        return Err(LoadError::CheckMachine { machine: half(18) });
    }
    Ok(())
}

/// What a section header and name make a section, before it has an index
/// among its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Code,
    Data(DataKind),
    Maps,
    Other,
}

/// Classifies a section as libbpf does: executable `PROGBITS` is code;
/// `.maps` (and legacy `maps`) hold map definitions; the `.rodata`,
/// `.data`, `.bss` and `.percpu` families and `.addr_space.1` are global
/// data.
fn classify(name: &str, sh_type: elf::SectionType, flags: u64) -> Class {
    let is_bits = sh_type == elf::SHT_PROGBITS || sh_type == elf::SHT_NOBITS;
    if sh_type == elf::SHT_PROGBITS && flags & elf::SHF_EXECINSTR.0 != 0 {
        return Class::Code;
    }
    if name == ".maps" || name == "maps" || name.starts_with("maps/") {
        return Class::Maps;
    }
    if !is_bits {
        return Class::Other;
    }
    // `.data`, and `.data.anything` (named variants, `.rodata.str1.1`).
    let family = |base: &str| {
        name.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    if name == super::ARENA_DATA_SECTION {
        // clang writes it PROGBITS, zeros included.
        Class::Data(DataKind::Arena)
    } else if family(".percpu") || name == ".data..percpu" {
        // libbpf's name, and the kernel's, which an earlier libbpf proposal
        // used; tested before `.data`, which would claim the latter.
        Class::Data(DataKind::PerCpu)
    } else if family(".rodata") {
        Class::Data(DataKind::ReadOnly)
    } else if family(".data") {
        Class::Data(DataKind::ReadWrite)
    } else if family(".bss") {
        Class::Data(DataKind::Zeroed)
    } else {
        Class::Other
    }
}

/// A copy of `bytes` at an 8-byte aligned address, as the `object`
/// crate's ELF structs require: the storage and where the copy starts in
/// it. Most callers' buffers already are aligned and are not copied.
fn aligned(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut storage = vec![0u8; bytes.len() + INSN_SIZE];
    // align_offset may in theory give up (usize::MAX); the parser then
    // reports a misaligned header instead of reading out of bounds.
    let off = storage.as_ptr().align_offset(INSN_SIZE).min(INSN_SIZE);
    storage[off..off + bytes.len()].copy_from_slice(bytes);
    (storage, off)
}

pub(super) fn parse(bytes: &[u8]) -> Result<Object, LoadError> {
    check_header(bytes)?;
    let storage;
    let data: &[u8] = if bytes.as_ptr().align_offset(INSN_SIZE) == 0 {
        bytes
    } else {
        storage = aligned(bytes);
        &storage.0[storage.1..storage.1 + bytes.len()]
    };
    let elf_err = |what| move |source| LoadError::ParseElf { what, source };
    let header = FileHeader64::<LittleEndian>::parse(data).map_err(elf_err("header"))?;
    let table = header
        .sections(LE, data)
        .map_err(elf_err("section table"))?;

    let mut object = Object {
        sections: Vec::with_capacity(table.len()),
        symbols: Vec::new(),
        code: Vec::new(),
        programs: Vec::new(),
        data: Vec::new(),
        btf: None,
        maps: Vec::new(),
        map_sites: Vec::new(),
        variables: Vec::new(),
        kfunc_declarations: HashSet::new(),
        map_starts: BTreeMap::new(),
        license: None,
    };
    let mut map_bytes = BTreeMap::new();
    let mut btf_bytes = None;
    let mut btf_ext_bytes = None;
    let mut data_total = 0u64;
    for (index, sh) in table.enumerate() {
        let name = table
            .section_name(LE, sh)
            .map_err(elf_err("section name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let contents = |name: &str| {
            sh.data(LE, data).map_err(|source| LoadError::ReadSection {
                section: name.to_owned(),
                source,
            })
        };
        let size = sh.sh_size(LE);
        let role = match classify(&name, sh.sh_type(LE), sh.sh_flags(LE).0) {
            Class::Code => {
                let bytes = contents(&name)?;
                let insns = Insn::slice_from_bytes(bytes).map_err(|_| LoadError::SplitCode {
                    section: name.clone(),
                    size,
                })?;
                object.code.push(CodeSection {
                    name: name.clone(),
                    second_half: second_halves(&insns),
                    insns,
                    relocs: BTreeMap::new(),
                    functions: Vec::new(),
                    lines: Vec::new(),
                });
                Role::Code(object.code.len() - 1)
            }
            Class::Data(kind) => {
                data_total = data_total.saturating_add(size);
                if data_total > MAX_DATA_SIZE {
                    return Err(LoadError::SizeData {
                        section: name,
                        total: data_total,
                        max: MAX_DATA_SIZE,
                    });
                }
                let bytes = if sh.sh_type(LE) == elf::SHT_NOBITS {
                    // Bounded by MAX_DATA_SIZE just above.
                    vec![0; usize::try_from(size).unwrap_or(0)]
                } else {
                    contents(&name)?.to_vec()
                };
                object.data.push(DataSection {
                    name: name.clone(),
                    kind,
                    bytes,
                    align: sh.sh_addralign(LE).max(1),
                });
                Role::Data(object.data.len() - 1)
            }
            Class::Maps => {
                map_bytes.insert(index.0, contents(&name)?);
                Role::Maps
            }
            Class::Other => {
                if name == ".BTF" {
                    btf_bytes = Some(contents(&name)?);
                } else if name == ".BTF.ext" {
                    btf_ext_bytes = Some(contents(&name)?);
                } else if name == LICENSE_SECTION {
                    let bytes = contents(&name)?;
                    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
                    object.license = Some(String::from_utf8_lossy(text).into_owned());
                }
                Role::Other
            }
        };
        debug_assert_eq!(index.0, object.sections.len());
        object.sections.push(Section { name, role, size });
    }

    read_symbols(&mut object, &table, data)?;
    read_functions(&mut object);
    read_relocations(&mut object, &table, data)?;
    read_lines(&mut object, btf_bytes, btf_ext_bytes)?;
    let (maps, variables) = {
        let symbols = SymbolIndex::new(&object.symbols);
        let maps = read_maps(&object, &symbols, &map_bytes)?;
        let variables = match &object.btf {
            Some(btf) => read_variables(&object, btf, &symbols)?,
            None => Vec::new(),
        };
        (maps, variables)
    };
    for (i, (_, site)) in maps.iter().enumerate() {
        object
            .map_starts
            .entry((site.section, site.offset))
            .or_insert(i);
    }
    (object.maps, object.map_sites) = maps.into_iter().unzip();
    object.variables = variables;
    if let Some(btf) = &object.btf {
        object.kfunc_declarations = read_kfunc_declarations(btf);
    }
    read_map_relocations(&mut object, &table, data, &map_bytes)?;
    super::arena::check_arena(&object)?;
    Ok(object)
}

pub(super) type SectionTable<'data> =
    object::read::elf::SectionTable<'data, FileHeader64<LittleEndian>, &'data [u8]>;

fn read_symbols(
    object: &mut Object,
    table: &SectionTable<'_>,
    data: &[u8],
) -> Result<(), LoadError> {
    let elf_err = |what| move |source| LoadError::ParseElf { what, source };
    let symtab = table
        .symbols(LE, data, elf::SHT_SYMTAB)
        .map_err(elf_err("symbol table"))?;
    for (index, sym) in symtab.enumerate() {
        let name = symtab
            .symbol_name(LE, sym)
            .map_err(elf_err("symbol name"))?;
        let mut name = String::from_utf8_lossy(name).into_owned();
        let place = if sym.st_shndx(LE) == elf::SHN_UNDEF {
            Place::Undefined
        } else {
            match symtab
                .symbol_section(LE, sym, index)
                .map_err(elf_err("symbol section index"))?
            {
                Some(section) if section.0 < object.sections.len() => Place::Section(section.0),
                Some(section) => {
                    return Err(LoadError::ResolveSymbolSection {
                        symbol: name,
                        index: section.0,
                        count: object.sections.len(),
                    });
                }
                None => Place::Special,
            }
        };
        let is_section = sym.st_type() == elf::STT_SECTION;
        if let (true, Place::Section(s)) = (is_section && name.is_empty(), place) {
            name.clone_from(&object.sections[s].name);
        }
        object.symbols.push(Symbol {
            name,
            place,
            value: sym.st_value(LE),
            size: sym.st_size(LE),
            is_section,
        });
        if sym.st_type() == elf::STT_FUNC
            && let Place::Section(s) = place
            && let Role::Code(c) = object.sections[s].role
        {
            let global = matches!(sym.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK);
            let (value, size) = (sym.st_value(LE), sym.st_size(LE));
            // `end` 0 stands for "up to the next function", set in
            // read_functions.
            let start = usize::try_from(value / 8).unwrap_or(usize::MAX);
            let end = usize::try_from(value.saturating_add(size) / 8).unwrap_or(0);
            let section_size = object.sections[s].size;
            let code = &mut object.code[c];
            let fits = value.is_multiple_of(8)
                && size.is_multiple_of(8)
                && value.checked_add(size).is_some_and(|e| e <= section_size)
                && start < code.insns.len()
                && !code.second_half[start];
            if !fits {
                return Err(LoadError::CheckFunction {
                    symbol: object.symbols[index.0].name.clone(),
                    section: code.name.clone(),
                    value,
                    size,
                    section_size,
                });
            }
            code.functions.push(Function {
                name: object.symbols[index.0].name.clone(),
                start,
                end: if size == 0 { 0 } else { end },
                global,
            });
        }
    }
    Ok(())
}

/// Sorts each code section's functions, gives sized-0 ones their extent,
/// and lists the programs.
fn read_functions(object: &mut Object) {
    for (c, code) in object.code.iter_mut().enumerate() {
        // Aliases (two symbols, one start): keep the global one.
        code.functions
            .sort_by_key(|f| (f.start, std::cmp::Reverse(f.global)));
        code.functions.dedup_by_key(|f| f.start);
        let len = code.insns.len();
        let starts: Vec<usize> = code.functions.iter().map(|f| f.start).collect();
        for (i, f) in code.functions.iter_mut().enumerate() {
            if f.end == 0 {
                f.end = starts.get(i + 1).copied().unwrap_or(len);
            }
        }
        if code.name == TEXT_SECTION {
            continue;
        }
        for (i, f) in code.functions.iter().enumerate() {
            if f.global {
                object.programs.push(ProgramSpec {
                    name: f.name.clone(),
                    section: code.name.clone(),
                    code: c,
                    function: i,
                });
            }
        }
    }
}

fn read_relocations(
    object: &mut Object,
    table: &SectionTable<'_>,
    data: &[u8],
) -> Result<(), LoadError> {
    let symtab_index = table
        .iter()
        .position(|sh| sh.sh_type(LE) == elf::SHT_SYMTAB);
    for (index, sh) in table.enumerate() {
        let sh_type = sh.sh_type(LE);
        if sh_type != elf::SHT_REL && sh_type != elf::SHT_RELA {
            continue;
        }
        let name = object.sections[index.0].name.clone();
        let target = usize::try_from(sh.sh_info(LE)).unwrap_or(usize::MAX);
        let Some(target_section) = object.sections.get(target) else {
            continue;
        };
        let target_name = target_section.name.clone();
        let section_err = |problem: String| LoadError::CheckRelocationSection {
            section: name.clone(),
            target: target_name.clone(),
            problem,
        };
        match target_section.role {
            Role::Code(c) => {
                if sh_type == elf::SHT_RELA {
                    return Err(section_err("is SHT_RELA; BPF objects use SHT_REL".into()));
                }
                let link = usize::try_from(sh.sh_link(LE)).unwrap_or(usize::MAX);
                if Some(link) != symtab_index {
                    return Err(section_err(format!(
                        "links section {link}, not the symbol table"
                    )));
                }
                let rels = sh
                    .rel(LE, data)
                    .map_err(|source| LoadError::ReadSection {
                        section: name.clone(),
                        source,
                    })?
                    .map_or(&[][..], |(rels, _)| rels);
                for rel in rels {
                    let (offset, sym, r_type) = (rel.r_offset(LE), rel.r_sym(LE), rel.r_type(LE).0);
                    add_code_reloc(object, c, offset, sym, r_type)?;
                }
            }
            Role::Data(_) => {
                let first = match sh_type {
                    elf::SHT_REL => sh
                        .rel(LE, data)
                        .ok()
                        .flatten()
                        .and_then(|(r, _)| r.first().map(|r| (r.r_offset(LE), r.r_sym(LE)))),
                    _ => sh.rela(LE, data).ok().flatten().and_then(|(r, _)| {
                        r.first().map(|r| (r.r_offset.get(LE), r.r_sym(LE, false)))
                    }),
                };
                if let Some((offset, sym)) = first {
                    let symbol = usize::try_from(sym)
                        .ok()
                        .and_then(|s| object.symbols.get(s))
                        .map_or_else(|| format!("symbol {sym}"), |s| s.name.clone());
                    return Err(LoadError::RelocateData {
                        section: target_name,
                        offset,
                        symbol,
                    });
                }
            }
            // Maps: read_map_relocations, once the maps are known. BTF and
            // debug info: nothing to apply.
            Role::Maps | Role::Other => {}
        }
    }
    Ok(())
}

/// Checks one relocation of code section `c` and records it.
fn add_code_reloc(
    object: &mut Object,
    c: usize,
    offset: u64,
    sym: u32,
    r_type: u32,
) -> Result<(), LoadError> {
    let code = &mut object.code[c];
    let section = code.name.clone();
    let kind = match r_type {
        t if t == elf::R_BPF_64_64.0 => RelocKind::Ld64,
        t if t == elf::R_BPF_64_32.0 => RelocKind::Call,
        _ => {
            return Err(LoadError::CheckRelocationType {
                section,
                offset,
                r_type,
            });
        }
    };
    let offset_err = |reason: String| LoadError::CheckRelocationOffset {
        section: section.clone(),
        offset,
        reason,
    };
    let len = code.insns.len();
    if !offset.is_multiple_of(INSN_SIZE as u64) {
        return Err(offset_err("not a multiple of 8".into()));
    }
    let slot = usize::try_from(offset / INSN_SIZE as u64).unwrap_or(usize::MAX);
    if slot >= len {
        return Err(offset_err(format!(
            "past the end of the section, {len} instructions"
        )));
    }
    if code.second_half[slot] {
        return Err(offset_err(format!(
            "the second half of the ld_imm64 at instruction {}",
            slot - 1
        )));
    }
    let symbol = usize::try_from(sym).unwrap_or(usize::MAX);
    if symbol == 0 || symbol >= object.symbols.len() {
        return Err(LoadError::ResolveRelocationSymbol {
            section,
            offset,
            index: sym,
            count: object.symbols.len(),
        });
    }
    let code_byte = code.insns[slot].code;
    let (name, expected, want) = match kind {
        RelocKind::Ld64 => ("R_BPF_64_64", "an ld_imm64 (0x18)", LD_IMM64),
        RelocKind::Call => ("R_BPF_64_32", "a call (0x85)", CALL),
    };
    if code_byte != want {
        return Err(LoadError::MatchRelocation {
            section,
            offset,
            r_type: name,
            expected,
            code: code_byte,
        });
    }
    if code.relocs.insert(slot, Reloc { kind, symbol }).is_some() {
        return Err(LoadError::DuplicateRelocation { section, offset });
    }
    Ok(())
}

/// Parses `.BTF` and `.BTF.ext` and hands each code section its lines.
fn read_lines(
    object: &mut Object,
    btf: Option<&[u8]>,
    ext: Option<&[u8]>,
) -> Result<(), LoadError> {
    object.btf = btf
        .map(Btf::parse)
        .transpose()
        .map_err(LoadError::ParseBtf)?;
    let Some(ext) = ext else {
        return Ok(());
    };
    let btf = object
        .btf
        .as_ref()
        .ok_or(LoadError::ParseBtf(crate::btf::BtfError::FindBtf))?;
    let ext = BtfExt::parse(ext, btf).map_err(LoadError::ParseBtf)?;
    for code in &mut object.code {
        let lines = ext.lines_of(&code.name);
        if let Some(bad) = lines.iter().find(|l| l.slot >= code.insns.len()) {
            return Err(LoadError::CheckLineInfo {
                section: code.name.clone(),
                slot: bad.slot,
                len: code.insns.len(),
            });
        }
        code.lines = lines.to_vec();
        // Clang writes them in order; linking relies on it.
        code.lines.sort_by_key(|l| l.slot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_license_is_read_up_to_its_nul() {
        let hello = crate::elf::arena::tests::setup_sample("hello.bpf.o");
        assert_eq!(hello.license(), Some("GPL"));
    }

    #[test]
    fn sections_are_classified_like_libbpf() {
        let data = |name| classify(name, elf::SHT_PROGBITS, elf::SHF_ALLOC.0);
        assert_eq!(data(".rodata"), Class::Data(DataKind::ReadOnly));
        assert_eq!(data(".rodata.str1.1"), Class::Data(DataKind::ReadOnly));
        assert_eq!(data(".data.table"), Class::Data(DataKind::ReadWrite));
        assert_eq!(data(".percpu"), Class::Data(DataKind::PerCpu));
        assert_eq!(data(".data..percpu"), Class::Data(DataKind::PerCpu));
        assert_eq!(data(".addr_space.1"), Class::Data(DataKind::Arena));
        assert_eq!(data(".addr_space.2"), Class::Other);
        assert_eq!(data(".maps"), Class::Maps);
        assert_eq!(data(".rodatax"), Class::Other);
        assert_eq!(data("license"), Class::Other);
        assert_eq!(data(".BTF"), Class::Other);
        let bss = classify(".bss", elf::SHT_NOBITS, elf::SHF_ALLOC.0);
        assert_eq!(bss, Class::Data(DataKind::Zeroed));
        let exec = elf::SHF_ALLOC.0 | elf::SHF_EXECINSTR.0;
        assert_eq!(classify("xdp", elf::SHT_PROGBITS, exec), Class::Code);
        // A `.data` that is a note, or executable, is not data.
        assert_eq!(classify(".data", elf::SHT_NOTE, 0), Class::Other);
        assert_eq!(classify(".data", elf::SHT_PROGBITS, exec), Class::Code);
    }

    #[test]
    fn second_halves_follow_ld_imm64() {
        let lddw = Insn::new(LD_IMM64, 1, 0, 0, 0);
        let exit = Insn::new(0x95, 0, 0, 0, 0);
        assert_eq!(
            second_halves(&[lddw, Insn::default(), exit, lddw]),
            [false, true, false, false]
        );
        // Data that looks like ld_imm64 in a second half starts nothing.
        assert_eq!(second_halves(&[lddw, lddw, exit]), [false, true, false]);
    }

    #[test]
    fn misaligned_input_is_copied_aligned() {
        let bytes = [1u8, 2, 3, 4, 5];
        let (storage, off) = aligned(&bytes);
        assert_eq!(storage[off..off + 5], bytes);
        assert_eq!(storage[off..].as_ptr().align_offset(INSN_SIZE), 0);
    }
}
