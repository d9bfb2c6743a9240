//! Global variables by name, from the `DATASEC`s of `.rodata`, `.data`,
//! `.bss` and their named variants, so that a caller can set them before
//! loading, as a libbpf skeleton sets `const volatile` knobs
//! (`skel->rodata->knob = 3` before `__load`).
//!
//! Clang writes a `DATASEC` per data section with a `VAR` per variable
//! but leaves the offsets 0; as libbpf, the loader takes each variable's
//! offset from its ELF symbol and its size from its BTF type.

use std::collections::HashSet;

use super::read::{Role, SymbolIndex};
use super::{LoadError, Object};
use crate::btf::{Btf, BtfKind, Linkage};

/// A global variable in a data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// Its C name.
    pub name: String,
    /// Index into [`Object::data_sections`].
    pub data: usize,
    /// Name of that section (`.rodata`).
    pub section: String,
    /// Byte offset in the section.
    pub offset: u64,
    /// Size in bytes (`sizeof` its type).
    pub size: u64,
    /// Its `VAR` in the object's BTF, which names it and gives its type.
    pub var_type_id: u32,
}

/// Reads every variable of every data section that has a `DATASEC`.
pub(super) fn read_variables(
    object: &Object,
    btf: &Btf,
    symbols: &SymbolIndex<'_>,
) -> Result<Vec<Variable>, LoadError> {
    let mut out = Vec::new();
    for (s, section) in object.sections.iter().enumerate() {
        let Role::Data(d) = section.role else {
            continue;
        };
        let Some(datasec) = btf.find_datasec(&section.name) else {
            continue;
        };
        let data = &object.data[d];
        for entry in btf.datasec_entries(datasec) {
            let err = |problem: String| LoadError::ReadVariable {
                section: section.name.clone(),
                problem,
            };
            let var = btf
                .get_type(entry.type_id)
                .map_err(|e| err(e.to_string()))?;
            let name = btf.type_name(var).unwrap_or_default();
            if var.kind != BtfKind::Var {
                return Err(err(format!(
                    "its DATASEC lists BTF type {} ({}), not a VAR",
                    entry.type_id,
                    var.kind.name()
                )));
            }
            if btf.linkage(var) == Some(Linkage::Extern) {
                continue;
            }
            let size = btf
                .type_size(var.size_or_type)
                .map_err(|e| err(format!("variable `{name}`: {e}")))?;
            let symbol = symbols
                .find(s, name)
                .ok_or_else(|| err(format!("variable `{name}` has no symbol in the section")))?;
            let size = u64::from(size);
            let fits = symbol
                .value
                .checked_add(size)
                .is_some_and(|end| end <= data.bytes.len() as u64);
            if !fits {
                return Err(err(format!(
                    "variable `{name}` at offset {:#x} ({size} bytes) runs past the section's {} bytes",
                    symbol.value,
                    data.bytes.len()
                )));
            }
            out.push(Variable {
                name: name.to_owned(),
                data: d,
                section: section.name.clone(),
                offset: symbol.value,
                size,
                var_type_id: entry.type_id,
            });
        }
    }
    Ok(out)
}

/// Names of the functions declared `extern ... __ksym` (`FUNC`s with
/// extern linkage in `DATASEC .ksyms`): the kfuncs the object may call.
pub(super) fn read_kfunc_declarations(btf: &Btf) -> HashSet<String> {
    let Some(ksyms) = btf.find_datasec(".ksyms") else {
        return HashSet::new();
    };
    btf.datasec_entries(ksyms)
        .into_iter()
        .filter_map(|e| btf.type_by_id(e.type_id))
        .filter(|t| t.kind == BtfKind::Func && btf.linkage(t) == Some(Linkage::Extern))
        .filter_map(|t| btf.type_name(t).map(str::to_owned))
        .collect()
}

impl Object {
    /// Global variables of the data sections, in section order, then in
    /// the order BTF lists them. Empty without BTF.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Sets global variable `name` to `value` (its bytes, little-endian)
    /// in the section's initial contents, before the object is loaded.
    /// `value` must be exactly the variable's size.
    pub fn set_variable(&mut self, name: &str, value: &[u8]) -> Result<(), LoadError> {
        let var = self
            .variables
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                let available = self
                    .variables
                    .iter()
                    .map(|v| format!("{} ({}, {} bytes)", v.name, v.section, v.size))
                    .collect::<Vec<_>>()
                    .join(", ");
                LoadError::FindVariable {
                    name: name.to_owned(),
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available
                    },
                }
            })?;
        if value.len() as u64 != var.size {
            return Err(LoadError::SizeVariable {
                name: name.to_owned(),
                size: var.size,
                given: value.len(),
            });
        }
        // Checked at parse: the variable lies inside the section.
        let at = usize::try_from(var.offset).unwrap_or(usize::MAX);
        let end = at.saturating_add(value.len());
        let bytes = self.data[var.data].bytes.get_mut(at..end);
        match bytes {
            Some(bytes) => {
                bytes.copy_from_slice(value);
                Ok(())
            }
            None => Err(LoadError::SizeVariable {
                name: name.to_owned(),
                size: var.size,
                given: value.len(),
            }),
        }
    }
}
