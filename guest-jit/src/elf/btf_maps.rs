//! BTF-defined maps: the `DATASEC .maps` of `.BTF` read as libbpf's
//! `parse_btf_map_def` does, and the initial `values` of program arrays
//! and maps of maps from the relocations of `.maps`.
//!
//! ```text
//!  DATASEC .maps ─► VAR outer ─► STRUCT { type:   PTR ─► ARRAY[12]           (__uint)
//!                                        key:    PTR ─► __u32                (__type)
//!                                        values: ARRAY[0] of PTR ─► STRUCT { (__array)
//!                                                  type: ..., key: ... } }   inner definition
//!  symbol `outer` in .maps: offset 0x40, 40 bytes (the definition + 2 values)
//!  .rel.maps: R_BPF_64_ABS64 at 0x58 -> a1   values[0] = &a1  (0x58 - 0x40 - 24) / 8
//! ```
//!
//! Clang leaves offsets and sizes in the `DATASEC` zero; as libbpf, the
//! loader takes each map's place from the ELF symbol of the same name.

use std::collections::HashMap;

use super::LoadError;
use super::Object;
use super::maps::{MapDefError, MapInit, MapSpec, MapType, Pinning, define_err, map_type};
use super::read::{Place, Role, Symbol, SymbolIndex, TEXT_SECTION};
use crate::btf::{Btf, BtfKind, BtfType, Member};

/// Size of a pointer slot in `values`.
const POINTER_SIZE: u64 = 8;

/// Where a map's definition lies in the object, to resolve references to
/// it and its initial values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MapSite {
    /// ELF section index.
    pub section: usize,
    /// Offset of the definition in the section.
    pub offset: u64,
    /// Its size (the symbol's: with initial values, past the struct).
    pub size: u64,
    /// Offset of the `values` member in the definition.
    pub values_at: Option<u64>,
}

/// The attributes of a definition, as its members give them.
#[derive(Default)]
struct Fields {
    map_type: Option<u32>,
    max_entries: Option<u32>,
    key_size: Option<u32>,
    value_size: Option<u32>,
    map_flags: u32,
    map_extra: u64,
    pinning: u32,
    /// `__type(key, T)`: T's id and size.
    key_type: Option<(u32, u32)>,
    /// `__type(value, T)`: T's id and size.
    value_type: Option<(u32, u32)>,
    /// `__array(values, T)`: T's id (after modifiers), its kind, and the
    /// member's byte offset.
    values: Option<(u32, Option<BtfKind>, u64)>,
}

impl Object {
    /// The object's `.BTF`, if it has one: the types that
    /// [`MapSpec::btf_key_type_id`], [`MapSpec::btf_value_type_id`] and
    /// [`super::Variable::var_type_id`] name.
    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }
}

/// Reads the maps the `DATASEC` of BTF-defined maps section `section`
/// (ELF index) declares, in `DATASEC` order.
pub(super) fn read_btf_maps(
    object: &Object,
    btf: &Btf,
    symbols: &SymbolIndex<'_>,
    section: usize,
) -> Result<Vec<(MapSpec, MapSite)>, LoadError> {
    let info = &object.sections[section];
    let Some(datasec) = btf.find_datasec(&info.name) else {
        return Ok(Vec::new());
    };
    let mut maps = Vec::new();
    let mut read_structs = HashMap::new();
    for entry in btf.datasec_entries(datasec) {
        let var = btf
            .get_type(entry.type_id)
            .map_err(|e| define_err("?", &info.name)(MapDefError::ReadBtf(e)))?;
        let name = btf.type_name(var).unwrap_or_default();
        let err = define_err(name, &info.name);
        if var.kind != BtfKind::Var {
            return Err(err(MapDefError::ShapeDefinition {
                found: var.kind.name(),
            }));
        }
        // Maps often share a definition struct (`struct inner a, b`); a
        // hostile file can make thousands share one huge struct.
        let read = read_structs
            .entry(var.size_or_type)
            .or_insert_with(|| definition(btf, var.size_or_type, false));
        let (mut spec, values_at) = read.clone().map_err(&err)?;
        spec.name = name.to_owned();
        if let Some(inner) = &mut spec.inner {
            inner.name = format!("{name}.inner");
        }
        let symbol = symbols.find(section, name).ok_or_else(|| {
            err(MapDefError::FindSymbol {
                section: info.name.clone(),
            })
        })?;
        // A symbol without a size (hand-written assembly) covers the struct.
        let size = match symbol.size {
            0 => u64::from(btf.type_size(var.size_or_type).unwrap_or(0)),
            size => size,
        };
        if symbol
            .value
            .checked_add(size)
            .is_none_or(|end| end > info.size)
        {
            return Err(err(MapDefError::PlaceDefinition {
                offset: symbol.value,
                size,
                section_size: info.size,
            }));
        }
        let site = MapSite {
            section,
            offset: symbol.value,
            size,
            values_at,
        };
        maps.push((spec, site));
    }
    Ok(maps)
}

/// Reads one definition struct, type `id`: the map (unnamed) and the byte
/// offset of its `values` member. `inner`: this is the inner map of a map
/// of maps.
fn definition(btf: &Btf, id: u32, inner: bool) -> Result<(MapSpec, Option<u64>), MapDefError> {
    let (_, ty) = btf.skip_modifiers(id).map_err(MapDefError::ReadBtf)?;
    let ty = ty.ok_or(MapDefError::ShapeDefinition { found: "void" })?;
    if ty.kind != BtfKind::Struct {
        return Err(MapDefError::ShapeDefinition {
            found: ty.kind.name(),
        });
    }
    let mut f = Fields::default();
    for m in btf.members(ty) {
        read_member(btf, &m, &mut f)?;
    }
    let number = f.map_type.ok_or(MapDefError::FindField { field: "type" })?;
    let map_type = map_type(number)?;
    let key_size = agree("key", f.key_size, f.key_type.map(|(_, size)| size))?;
    let mut value_size = agree("value", f.value_size, f.value_type.map(|(_, size)| size))?;
    let max_entries = f.max_entries.ok_or(MapDefError::FindField {
        field: "max_entries",
    })?;
    let mut spec = MapSpec::new("", map_type, key_size, value_size, max_entries);
    spec.map_flags = f.map_flags;
    spec.map_extra = f.map_extra;
    spec.btf_key_type_id = f.key_type.map(|(id, _)| id);
    spec.btf_value_type_id = f.value_type.map(|(id, _)| id);
    spec.pinning = match f.pinning {
        0 => Pinning::None,
        1 => Pinning::ByName,
        pinning => return Err(MapDefError::CheckPinning { pinning }),
    };
    if let Some((value_id, _)) = f.value_type {
        spec.spin_lock_offset = spin_lock_offset(btf, value_id)?;
    }
    let values_at = match f.values {
        None => None,
        Some(_) if !(map_type.is_map_in_map() || map_type == MapType::ProgArray) => {
            return Err(MapDefError::UseValues {
                map_type: map_type.name(),
            });
        }
        Some(_) if inner => return Err(MapDefError::NestInner),
        Some((target, kind, at)) => {
            // The kernel's slot holds a 4-byte fd; libbpf sets the size.
            if value_size != 0 && value_size != 4 {
                return Err(MapDefError::ConflictSize {
                    field: "value",
                    declared: value_size,
                    from_type: 4,
                });
            }
            value_size = 4;
            spec.value_size = value_size;
            let (expected_kind, expected) = if map_type.is_map_in_map() {
                (
                    BtfKind::Struct,
                    "an array of pointers to the inner map's definition, as `__array(values, struct { ... })` declares",
                )
            } else {
                (
                    BtfKind::FuncProto,
                    "an array of pointers to functions, as `__array(values, int (void *))` declares",
                )
            };
            if kind != Some(expected_kind) {
                return Err(MapDefError::ShapeField {
                    field: "values".into(),
                    found: kind.map_or("void", BtfKind::name),
                    expected,
                });
            }
            if map_type.is_map_in_map() {
                let (inner, _) = definition(btf, target, true)
                    .map_err(|e| MapDefError::DefineInner(Box::new(e)))?;
                spec.inner = Some(Box::new(inner));
            }
            Some(at)
        }
    };
    spec.check()?;
    Ok((spec, values_at))
}

/// `key_size` and the key type's size (or the value pair) must agree when
/// both are given.
fn agree(
    field: &'static str,
    declared: Option<u32>,
    from_type: Option<u32>,
) -> Result<u32, MapDefError> {
    match (declared, from_type) {
        (Some(declared), Some(from_type)) if declared != from_type => {
            Err(MapDefError::ConflictSize {
                field,
                declared,
                from_type,
            })
        }
        (Some(size), _) | (None, Some(size)) => Ok(size),
        (None, None) => Ok(0),
    }
}

/// Reads one member of a definition into `f`.
fn read_member(btf: &Btf, m: &Member<'_>, f: &mut Fields) -> Result<(), MapDefError> {
    let shape = |found: &BtfType, expected| MapDefError::ShapeField {
        field: m.name.to_owned(),
        found: found.kind.name(),
        expected,
    };
    let resolve = |id| -> Result<&BtfType, MapDefError> {
        match btf.skip_modifiers(id).map_err(MapDefError::ReadBtf)? {
            (_, Some(ty)) => Ok(ty),
            (_, None) => Err(MapDefError::ShapeField {
                field: m.name.to_owned(),
                found: "void",
                expected: "a pointer",
            }),
        }
    };
    // `__uint(name, n)`: `int (*name)[n]`.
    let uint = || -> Result<u32, MapDefError> {
        const EXPECTED: &str = "a pointer to an array, as `__uint(name, value)` declares";
        let ptr = resolve(m.type_id)?;
        if ptr.kind != BtfKind::Ptr {
            return Err(shape(ptr, EXPECTED));
        }
        let array = resolve(ptr.size_or_type)?;
        btf.array(array)
            .map(|a| a.nelems)
            .ok_or_else(|| shape(array, EXPECTED))
    };
    // `__type(name, T)`: `typeof(T) *name`; T's id and size.
    let typed = || -> Result<(u32, u32), MapDefError> {
        let ptr = resolve(m.type_id)?;
        if ptr.kind != BtfKind::Ptr {
            return Err(shape(
                ptr,
                "a pointer to the type, as `__type(name, type)` declares",
            ));
        }
        let size = btf
            .type_size(ptr.size_or_type)
            .map_err(MapDefError::ReadBtf)?;
        Ok((ptr.size_or_type, size))
    };
    match m.name {
        "type" => f.map_type = Some(uint()?),
        "max_entries" => f.max_entries = Some(uint()?),
        "key_size" => f.key_size = Some(uint()?),
        "value_size" => f.value_size = Some(uint()?),
        "map_flags" => f.map_flags = uint()?,
        "pinning" => f.pinning = uint()?,
        // One NUMA node: accepted, nothing to do.
        "numa_node" => {
            uint()?;
        }
        "map_extra" => {
            // `__ulong(name, n)` is an enum with one enumerator n; older
            // headers use `__uint`.
            let ty = resolve(m.type_id)?;
            f.map_extra = match ty.kind {
                BtfKind::Enum | BtfKind::Enum64 if ty.vlen() == 1 => {
                    let data = btf.type_data(ty);
                    let word = |at: usize| {
                        data.get(at..at + 4)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u32::from_le_bytes)
                    };
                    if ty.kind == BtfKind::Enum {
                        u64::from(word(4))
                    } else {
                        u64::from(word(4)) | (u64::from(word(8)) << 32)
                    }
                }
                _ => u64::from(uint()?),
            };
        }
        "key" => f.key_type = Some(typed()?),
        "value" => f.value_type = Some(typed()?),
        "values" => {
            const EXPECTED: &str =
                "an empty array of pointers, as `__array(values, type)` declares";
            let array = resolve(m.type_id)?;
            let info = btf
                .array(array)
                .filter(|a| a.nelems == 0)
                .ok_or_else(|| shape(array, EXPECTED))?;
            let ptr = resolve(info.elem_type)?;
            if ptr.kind != BtfKind::Ptr {
                return Err(shape(ptr, EXPECTED));
            }
            let (target, ty) = btf
                .skip_modifiers(ptr.size_or_type)
                .map_err(MapDefError::ReadBtf)?;
            let kind = ty.map(|t| t.kind);
            f.values = Some((target, kind, u64::from(m.bit_offset / 8)));
        }
        other => {
            return Err(MapDefError::DecodeField {
                field: other.to_owned(),
            });
        }
    }
    Ok(())
}

/// The offset of the `struct bpf_spin_lock` member of value type `id`, if
/// it is a struct with one.
fn spin_lock_offset(btf: &Btf, id: u32) -> Result<Option<u32>, MapDefError> {
    let (_, ty) = btf.skip_modifiers(id).map_err(MapDefError::ReadBtf)?;
    let Some(ty) = ty.filter(|t| t.kind == BtfKind::Struct) else {
        return Ok(None);
    };
    let mut found = None;
    for m in btf.members(ty) {
        let (_, member_ty) = btf
            .skip_modifiers(m.type_id)
            .map_err(MapDefError::ReadBtf)?;
        let is_lock = member_ty.is_some_and(|t| {
            t.kind == BtfKind::Struct && btf.type_name(t) == Some("bpf_spin_lock")
        });
        if is_lock {
            if found.is_some() {
                return Err(MapDefError::CountSpinLocks);
            }
            found = Some(m.bit_offset / 8);
        }
    }
    Ok(found)
}

/// Records the initial value a relocation of BTF-defined maps section
/// `section` at `offset` gives: `symbol` (plus `addend`) is a program for
/// a `PROG_ARRAY`, a map for a map of maps.
pub(super) fn add_init_value(
    object: &mut Object,
    section: usize,
    offset: u64,
    symbol: usize,
    addend: u64,
) -> Result<(), LoadError> {
    let section_name = object.sections[section].name.clone();
    // The closest definition starting at or before the offset.
    let m = object
        .map_starts
        .range(..=(section, offset))
        .next_back()
        .filter(|&(&(s, start), &m)| s == section && offset - start < object.map_sites[m].size)
        .map(|(_, &m)| m);
    let Some(m) = m else {
        return Err(LoadError::RelocateMaps {
            section: section_name,
            offset,
            problem: "is not inside any map's definition".into(),
        });
    };
    let site = object.map_sites[m].clone();
    let (map_type, max_entries) = (object.maps[m].map_type, object.maps[m].max_entries);
    let err = define_err(&object.maps[m].name, &section_name);
    let relative = offset - site.offset;
    let index = site
        .values_at
        .and_then(|at| relative.checked_sub(at))
        .filter(|rel| rel % POINTER_SIZE == 0)
        .map(|rel| rel / POINTER_SIZE)
        .ok_or(err(MapDefError::PlaceValue { offset: relative }))?;
    // An array's index must be below max_entries; a hash of maps takes
    // the index as its key, and only the count is limited.
    let index = u32::try_from(index)
        .ok()
        .filter(|&i| map_type == MapType::HashOfMaps || i < max_entries)
        .ok_or(err(MapDefError::IndexValue { index, max_entries }))?;
    let target = object.symbols.get(symbol).cloned();
    let value = match target {
        Some(sym) if map_type.is_map_in_map() => init_map(object, &sym, addend),
        Some(sym) => init_program(object, &sym, addend),
        None => None,
    };
    let Some(value) = value else {
        let expected = if map_type.is_map_in_map() {
            "a map defined in a `.maps` section"
        } else {
            "a program (a global function in a section other than .text)"
        };
        let symbol = object
            .symbols
            .get(symbol)
            .map_or_else(|| format!("symbol {symbol}"), |s| s.name.clone());
        return Err(err(MapDefError::ResolveValue {
            index,
            symbol,
            expected,
        }));
    };
    let values = &mut object.maps[m].values;
    let at = match values.binary_search_by_key(&index, |(i, _)| *i) {
        Ok(_) => return Err(err(MapDefError::RepeatValue { index })),
        Err(at) => at,
    };
    if values.len() >= max_entries as usize {
        return Err(err(MapDefError::CountValues { max_entries }));
    }
    values.insert(at, (index, value));
    Ok(())
}

/// The map whose definition starts where `sym` + `addend` points.
fn init_map(object: &Object, sym: &Symbol, addend: u64) -> Option<MapInit> {
    let Place::Section(s) = sym.place else {
        return None;
    };
    let at = sym.value.wrapping_add(addend);
    let &m = object.map_starts.get(&(s, at))?;
    Some(MapInit::Map(object.maps[m].name.clone()))
}

/// The program that starts where `sym` + `addend` points.
fn init_program(object: &Object, sym: &Symbol, addend: u64) -> Option<MapInit> {
    let Place::Section(s) = sym.place else {
        return None;
    };
    let Role::Code(c) = object.sections[s].role else {
        return None;
    };
    let code = &object.code[c];
    let at = sym.value.wrapping_add(addend);
    if code.name == TEXT_SECTION || !at.is_multiple_of(8) {
        return None;
    }
    let function = code.function_at(usize::try_from(at / 8).ok()?)?;
    // Programs are listed by code section, then by function.
    let p = object
        .programs
        .binary_search_by_key(&(c, function), |p| (p.code, p.function))
        .ok()?;
    Some(MapInit::Program(object.programs[p].name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_and_typed_sizes_must_agree() {
        assert_eq!(agree("key", Some(4), Some(4)), Ok(4));
        assert_eq!(agree("key", None, Some(8)), Ok(8));
        assert_eq!(agree("value", Some(16), None), Ok(16));
        assert_eq!(agree("key", None, None), Ok(0), "QUEUE and STACK");
        assert_eq!(
            agree("key", Some(4), Some(8)).unwrap_err().to_string(),
            "`key_size` is 4, but `__type(key, ...)` is 8 bytes"
        );
    }
}
