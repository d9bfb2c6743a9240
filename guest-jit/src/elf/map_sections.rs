//! The maps sections of an object: the maps each defines (BTF-defined in
//! `.maps`, legacy `struct bpf_map_def`s in `maps` and `maps/*`) and the
//! relocations that give BTF-defined maps their initial values.

use std::collections::BTreeMap;

use object::LittleEndian;
use object::elf;
use object::read::elf::{Rel, SectionHeader};

use super::btf_maps::{MapSite, add_init_value, read_btf_maps};
use super::maps::{MapSpec, define_err, legacy_map};
use super::read::{SectionTable, SymbolIndex};
use super::{LoadError, Object};

const LE: LittleEndian = LittleEndian;
/// `R_BPF_64_ABS64`: a 64-bit absolute address in data (the `object` crate
/// names only the code relocations).
const R_BPF_64_ABS64: u32 = 2;
/// The section of BTF-defined maps; `maps` and `maps/*` hold legacy ones.
pub(super) const BTF_MAPS_SECTION: &str = ".maps";

/// Reads the map definitions of every maps section, BTF-defined first.
pub(super) fn read_maps(
    object: &Object,
    symbols: &SymbolIndex<'_>,
    bytes: &BTreeMap<usize, &[u8]>,
) -> Result<Vec<(MapSpec, MapSite)>, LoadError> {
    let mut found: Vec<(MapSpec, MapSite)> = Vec::new();
    let btf_sections = bytes
        .keys()
        .filter(|&&s| object.sections[s].name == BTF_MAPS_SECTION);
    for &s in btf_sections {
        let btf = object.btf.as_ref().ok_or_else(|| LoadError::FindMapBtf {
            section: BTF_MAPS_SECTION.into(),
        })?;
        found.extend(read_btf_maps(object, btf, symbols, s)?);
    }
    for (&s, &contents) in bytes {
        if object.sections[s].name != BTF_MAPS_SECTION {
            found.extend(read_legacy_maps(object, symbols, s, contents)?);
        }
    }
    Ok(found)
}

/// Reads the `struct bpf_map_def`s of legacy section `s`: one per symbol,
/// each as long as the section divided by their number (libbpf's rule).
fn read_legacy_maps(
    object: &Object,
    symbols: &SymbolIndex<'_>,
    s: usize,
    contents: &[u8],
) -> Result<Vec<(MapSpec, MapSite)>, LoadError> {
    let section = &object.sections[s];
    let mut symbols = symbols.in_section(s).to_vec();
    if symbols.is_empty() {
        return Ok(Vec::new());
    }
    symbols.sort_by_key(|sym| sym.value);
    let split_err = |problem: String| LoadError::SplitLegacyMaps {
        section: section.name.clone(),
        size: contents.len() as u64,
        problem,
    };
    let count = symbols.len();
    if contents.is_empty() || !contents.len().is_multiple_of(count) {
        return Err(split_err(format!(
            "does not divide into {count} definitions, one per symbol"
        )));
    }
    let def_size = contents.len() / count;
    let mut maps = Vec::with_capacity(count);
    for sym in symbols {
        let def = usize::try_from(sym.value)
            .ok()
            .and_then(|at| contents.get(at..at.checked_add(def_size)?))
            .ok_or_else(|| {
                split_err(format!(
                    "has no room for `{}`'s {def_size}-byte definition at offset {:#x}",
                    sym.name, sym.value
                ))
            })?;
        let spec = legacy_map(&sym.name, def).map_err(define_err(&sym.name, &section.name))?;
        let site = MapSite {
            section: s,
            offset: sym.value,
            size: def_size as u64,
            values_at: None,
        };
        maps.push((spec, site));
    }
    Ok(maps)
}

/// Applies the relocations of maps sections: initial values of program
/// arrays and maps of maps. Legacy definitions have no pointers.
pub(super) fn read_map_relocations(
    object: &mut Object,
    table: &SectionTable<'_>,
    data: &[u8],
    bytes: &BTreeMap<usize, &[u8]>,
) -> Result<(), LoadError> {
    for (index, sh) in table.enumerate() {
        let sh_type = sh.sh_type(LE);
        if sh_type != elf::SHT_REL && sh_type != elf::SHT_RELA {
            continue;
        }
        let target = usize::try_from(sh.sh_info(LE)).unwrap_or(usize::MAX);
        let Some(contents) = bytes.get(&target) else {
            continue;
        };
        let name = object.sections[index.0].name.clone();
        let target_name = object.sections[target].name.clone();
        if sh_type == elf::SHT_RELA {
            return Err(LoadError::CheckRelocationSection {
                section: name,
                target: target_name,
                problem: "is SHT_RELA; BPF objects use SHT_REL".into(),
            });
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
            let reloc_err = |problem: String| LoadError::RelocateMaps {
                section: target_name.clone(),
                offset,
                problem,
            };
            if target_name != BTF_MAPS_SECTION {
                return Err(reloc_err(
                    "is a pointer in a legacy map definition, which has no pointer fields".into(),
                ));
            }
            // 64-bit absolute: R_BPF_64_ABS64, or R_BPF_64_64 from clang
            // before LLVM 14 split the types.
            if r_type != R_BPF_64_ABS64 && r_type != elf::R_BPF_64_64.0 {
                return Err(reloc_err(format!(
                    "has type {r_type}; initial values take R_BPF_64_ABS64 (2)"
                )));
            }
            let symbol = usize::try_from(sym).unwrap_or(usize::MAX);
            if symbol == 0 || symbol >= object.symbols.len() {
                return Err(reloc_err(format!(
                    "names symbol {sym}, but the symbol table has {}",
                    object.symbols.len()
                )));
            }
            // SHT_REL keeps the addend in the bytes it relocates.
            let addend = usize::try_from(offset)
                .ok()
                .and_then(|at| contents.get(at..at.checked_add(8)?))
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            add_init_value(object, target, offset, symbol, addend)?;
        }
    }
    Ok(())
}
