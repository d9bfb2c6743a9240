//! Arrays: `ARRAY`, `PERCPU_ARRAY`, and the slot arrays `PROG_ARRAY` and
//! `ARRAY_OF_MAPS` (`kernel/bpf/arraymap.c`).
//!
//! ```text
//!  ARRAY                      stride = round_up(value_size, 8)
//!  ┌──────────┬──────────┬─────┬──────────────────┐
//!  │ value 0  │ value 1  │  …  │ value max-1      │   value i at i * stride
//!  └──────────┴──────────┴─────┴──────────────────┘
//!  PERCPU_ARRAY               block = round_up(max_entries * stride, 64)
//!  ┌─────────────────────────┬─────────────────────────┬─────┐
//!  │ CPU 0: value 0 … max-1  │ CPU 1: value 0 … max-1  │  …  │
//!  └─────────────────────────┴─────────────────────────┴─────┘
//!                        CPU c's value i at c * block + i * stride
//!  PROG_ARRAY, ARRAY_OF_MAPS  u64 slot i at i * 8: a program's entry
//!                             address / an inner MapHeader's address,
//!                             0 = empty
//! ```
//!
//! The key is a little-endian u32 index. Every value exists from creation
//! (zeroed): lookups of an index in range always succeed, `BPF_NOEXIST`
//! always fails with -EEXIST, delete is -EINVAL — except in slot arrays,
//! where a slot is empty until set and delete empties it. A CPU's values
//! are contiguous and a cache line apart from the next CPU's, so per-CPU
//! counters do not share lines.

use super::lock::write_value;
use super::{BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, MapDef, MapError, MapMemory, MapType};

/// The index a key names (not checked against `max_entries`).
fn index(def: &MapDef, key: &[u8]) -> Result<u32, MapError> {
    match <[u8; 4]>::try_from(key) {
        Ok(bytes) if def.key_size() == 4 => Ok(u32::from_le_bytes(bytes)),
        _ => Err(MapError::InvalidArgument("array key must be 4 bytes")),
    }
}

/// Offset of CPU `cpu`'s copy of value `index` (CPU 0 for non-per-CPU
/// arrays), which must both be in range.
fn value_off(def: &MapDef, index: u32, cpu: u32) -> usize {
    cpu as usize * def.percpu_block() + index as usize * def.value_stride()
}

/// `map_lookup_elem`: the offset of value `key` (this CPU's copy for a
/// per-CPU array), or `None` past the end. For slot arrays, the offset of
/// the slot, whatever it holds ([`lookup_slot`] reads it).
pub fn lookup(def: &MapDef, key: &[u8], cpu: u32) -> Result<Option<usize>, MapError> {
    let index = index(def, key)?;
    if index >= def.max_entries() {
        return Ok(None);
    }
    let cpu = if def.map_type().is_percpu() { cpu } else { 0 };
    if cpu >= def.nr_cpus() {
        return Err(MapError::InvalidArgument("CPU out of range"));
    }
    Ok(Some(value_off(def, index, cpu)))
}

/// What slot `key` of a slot array holds, `None` if empty or past the
/// end: the inner map's header address a program's `ARRAY_OF_MAPS`
/// lookup returns.
pub fn lookup_slot(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
) -> Result<Option<u64>, MapError> {
    match lookup(def, key, 0)? {
        // Pairs with the Release store in update.
        Some(off) => Ok(Some(mem.load_u64(off)?).filter(|&v| v != 0)),
        None => Ok(None),
    }
}

/// `map_update_elem`. `values` holds one value, or for a per-CPU array
/// with `cpu` `None` (the host's update), one per CPU at
/// [`MapDef::value_stride`] intervals, as the kernel's syscall takes them.
/// With `cpu` `Some(c)`, a program's update: CPU `c`'s copy only.
pub fn update(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    values: &[u8],
    flags: u64,
    cpu: Option<u32>,
) -> Result<(), MapError> {
    let index = index(def, key)?;
    if def.map_type().has_slots() {
        if flags != BPF_ANY {
            return Err(MapError::InvalidFlags);
        }
        if index >= def.max_entries() {
            return Err(MapError::Full);
        }
        let slot = <[u8; 8]>::try_from(values)
            .map_err(|_| MapError::InvalidArgument("slot value must be 8 bytes"))?;
        // Release: a tail call or inner lookup that loads the slot sees
        // everything written before it was set.
        return mem.store_u64(value_off(def, index, 0), u64::from_le_bytes(slot));
    }
    // array_map_update_elem()'s checks, in its order.
    if flags & !BPF_F_LOCK > BPF_EXIST {
        return Err(MapError::InvalidFlags);
    }
    if index >= def.max_entries() {
        return Err(MapError::Full);
    }
    if flags & BPF_NOEXIST != 0 {
        return Err(MapError::Exists);
    }
    let len = def.value_len();
    match (def.map_type(), cpu) {
        (MapType::PercpuArray, None) => {
            let stride = def.value_stride();
            if values.len() != def.nr_cpus() as usize * stride {
                return Err(MapError::InvalidArgument("need one value per CPU"));
            }
            for c in 0..def.nr_cpus() {
                let at = c as usize * stride;
                mem.write(value_off(def, index, c), &values[at..at + len])?;
            }
            Ok(())
        }
        (ty, cpu) => {
            if values.len() != len {
                return Err(MapError::InvalidArgument("value has the wrong size"));
            }
            let cpu = if ty.is_percpu() { cpu.unwrap_or(0) } else { 0 };
            if cpu >= def.nr_cpus() {
                return Err(MapError::InvalidArgument("CPU out of range"));
            }
            write_value(def, mem, value_off(def, index, cpu), values, flags)
        }
    }
}

/// `map_delete_elem`: empties a slot (-ENOENT if it was empty, -E2BIG past
/// the end); -EINVAL for value arrays, as the kernel.
pub fn delete(def: &MapDef, mem: &impl MapMemory, key: &[u8]) -> Result<(), MapError> {
    let index = index(def, key)?;
    if !def.map_type().has_slots() {
        return Err(MapError::Unsupported);
    }
    if index >= def.max_entries() {
        return Err(MapError::Full);
    }
    let off = value_off(def, index, 0);
    let old = mem.load_u64(off)?;
    if old == 0 || mem.cas_u64(off, old, 0)?.is_err() {
        // Empty, or emptied by someone else meanwhile.
        return Err(MapError::NotFound);
    }
    Ok(())
}

/// `map_get_next_key`: the index after `key`, 0 for no key or one past
/// the end, -ENOENT after the last.
pub fn next_key(def: &MapDef, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
    let next = match key.map(|k| index(def, k)).transpose()? {
        Some(i) if i < def.max_entries() => i + 1,
        _ => 0,
    };
    if next >= def.max_entries() {
        return Err(MapError::NotFound);
    }
    let out: &mut [u8; 4] = out
        .try_into()
        .map_err(|_| MapError::InvalidArgument("array key must be 4 bytes"))?;
    *out = next.to_le_bytes();
    Ok(())
}

/// `bpf_for_each_map_elem` over an array: calls `f(index, value offset)`
/// for each index in order (this CPU's copy for a per-CPU array) until it
/// returns `false`; the number of calls. Slot arrays are not iterable, as
/// in the kernel.
pub fn for_each(
    def: &MapDef,
    cpu: u32,
    mut f: impl FnMut(u32, usize) -> bool,
) -> Result<u32, MapError> {
    if def.map_type().has_slots() {
        return Err(MapError::Unsupported);
    }
    let cpu = if def.map_type().is_percpu() { cpu } else { 0 };
    if cpu >= def.nr_cpus() {
        return Err(MapError::InvalidArgument("CPU out of range"));
    }
    let mut calls = 0;
    for index in 0..def.max_entries() {
        calls += 1;
        if !f(index, value_off(def, index, cpu)) {
            break;
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::StorageView;
    use std::sync::atomic::AtomicU64;

    fn setup_array(ty: MapType, value_size: u32, max: u32) -> (MapDef, Vec<AtomicU64>) {
        let def = MapDef::new(ty as u32, 4, value_size, max, 0, 3).unwrap();
        let words = (0..def.storage_size() / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        (def, words)
    }

    fn key(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn array_values_exist_from_creation_and_update_in_place() {
        let (def, words) = setup_array(MapType::Array, 12, 3);
        let mem = StorageView::from_atomic(&words, 0x10_0000);
        assert_eq!(lookup(&def, &key(2), 0), Ok(Some(32)));
        assert_eq!(lookup(&def, &key(3), 0), Ok(None));
        update(&def, &mem, &key(1), &[7; 12], BPF_EXIST, Some(0)).unwrap();
        let mut out = [0; 12];
        mem.read(16, &mut out).unwrap();
        assert_eq!(out, [7; 12]);
        assert_eq!(
            update(&def, &mem, &key(1), &[7; 12], BPF_NOEXIST, None),
            Err(MapError::Exists)
        );
        assert_eq!(
            update(&def, &mem, &key(3), &[7; 12], BPF_ANY, None),
            Err(MapError::Full)
        );
        assert_eq!(
            update(&def, &mem, &key(0), &[7; 12], 3, None),
            Err(MapError::InvalidFlags)
        );
        assert_eq!(
            update(&def, &mem, &key(0), &[7; 12], BPF_F_LOCK, None),
            Err(MapError::InvalidFlags)
        );
        assert_eq!(
            update(&def, &mem, &key(0), &[7; 8], BPF_ANY, None).map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(delete(&def, &mem, &key(0)).map_err(|e| e.errno()), Err(-22));
        assert_eq!(
            lookup(&def, &[0; 8], 0),
            Err(MapError::InvalidArgument("array key must be 4 bytes"))
        );
    }

    #[test]
    fn next_key_walks_indices_like_the_kernel() {
        let (def, _) = setup_array(MapType::Array, 8, 3);
        let mut out = [0xff; 4];
        let mut seen = vec![];
        let mut prev: Option<[u8; 4]> = None;
        while next_key(&def, prev.as_ref().map(|k| &k[..]), &mut out).is_ok() {
            seen.push(u32::from_le_bytes(out));
            prev = Some(out);
        }
        assert_eq!(seen, [0, 1, 2]);
        next_key(&def, Some(&key(99)), &mut out).unwrap();
        assert_eq!(out, key(0));
        assert_eq!(
            next_key(&def, Some(&key(2)), &mut out),
            Err(MapError::NotFound)
        );
    }

    #[test]
    fn percpu_copies_are_separate_and_cache_line_apart() {
        let (def, words) = setup_array(MapType::PercpuArray, 4, 5);
        let mem = StorageView::from_atomic(&words, 0);
        // 5 values * 8 bytes = 40, rounded to a 64-byte block per CPU.
        assert_eq!(lookup(&def, &key(1), 2), Ok(Some(2 * 64 + 8)));
        update(&def, &mem, &key(1), &9u32.to_le_bytes(), BPF_ANY, Some(2)).unwrap();
        assert_eq!(mem.load_u32(2 * 64 + 8).unwrap(), 9);
        assert_eq!(mem.load_u32(8).unwrap(), 0);
        let all: Vec<u8> = [1u64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        update(&def, &mem, &key(4), &all, BPF_ANY, None).unwrap();
        let got: Vec<u32> = (0..3).map(|c| mem.load_u32(c * 64 + 32).unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(update(&def, &mem, &key(4), &all[..16], BPF_ANY, None).is_err());
        assert!(lookup(&def, &key(0), 3).is_err());
    }

    #[test]
    fn slot_arrays_hold_addresses_until_deleted() {
        let (def, words) = setup_array(MapType::ProgArray, 4, 4);
        let mem = StorageView::from_atomic(&words, 0);
        assert_eq!(lookup_slot(&def, &mem, &key(1)), Ok(None));
        update(
            &def,
            &mem,
            &key(1),
            &0x60_1000u64.to_le_bytes(),
            BPF_ANY,
            None,
        )
        .unwrap();
        assert_eq!(lookup_slot(&def, &mem, &key(1)), Ok(Some(0x60_1000)));
        // The JIT's tail call reads slot i at data + i * 8.
        assert_eq!(mem.load_u64(8).unwrap(), 0x60_1000);
        assert_eq!(
            update(&def, &mem, &key(1), &[0; 8], BPF_NOEXIST, None),
            Err(MapError::InvalidFlags)
        );
        assert_eq!(
            update(&def, &mem, &key(4), &[0; 8], BPF_ANY, None),
            Err(MapError::Full)
        );
        delete(&def, &mem, &key(1)).unwrap();
        assert_eq!(delete(&def, &mem, &key(1)), Err(MapError::NotFound));
        assert_eq!(delete(&def, &mem, &key(9)), Err(MapError::Full));
        assert_eq!(for_each(&def, 0, |_, _| true), Err(MapError::Unsupported));
    }

    #[test]
    fn for_each_stops_when_told() {
        let (def, _) = setup_array(MapType::PercpuArray, 8, 10);
        let mut seen = vec![];
        let calls = for_each(&def, 1, |i, off| {
            seen.push((i, off));
            i < 2
        });
        assert_eq!(calls, Ok(3));
        assert_eq!(seen, [(0, 128), (1, 136), (2, 144)]);
    }
}
