//! The map operations, for every type: what helpers (the guest runtime)
//! and the host's map API call. Each takes the map's validated
//! [`MapDef`] and its storage ([`MapMemory`]), and dispatches on the type.
//!
//! Two flavours where the kernel has two: a program's (`lookup`,
//! `update`, `delete`: this CPU's copy of a per-CPU value, LRU use
//! marked, `BPF_F_RDONLY_PROG` enforced) and the host's (`lookup_sys`,
//! `update_sys`, `delete_sys`: every CPU's copy, nothing marked,
//! `BPF_F_RDONLY` enforced), as the kernel's helpers and `bpf(2)`
//! commands differ.

use super::{
    MapDef, MapError, MapHeader, MapMemory, MapType, StorageView, array, flags, hash::Hash, queue,
};

/// The guest runtime's way into a map: the definition its header at guest
/// address `header` describes ([`MapDef::from_header`]) and a view of its
/// storage. `Corrupt` if the header does not add up or is misaligned.
///
/// # Safety
///
/// * `header` must be the address of a [`MapHeader`] readable by the
///   caller (what an `ld_imm64` naming a map loads), and its `data ..
///   data + data_size` readable and writable for as long as the view is
///   used, shared with other vCPUs only through atomic or volatile
///   accesses ([`StorageView::new`]).
/// * In the guest, a program can rewrite its maps' headers; then `data`
///   may point anywhere, and an access faults (a trap, as for any wild
///   pointer) or lands in other guest memory the program could write
///   anyway. The host never calls this: it keeps its own `MapDef`.
pub unsafe fn open_guest_map(header: u64) -> Result<(MapDef, StorageView<'static>), MapError> {
    if header == 0 || !header.is_multiple_of(8) {
        return Err(MapError::Corrupt);
    }
    // SAFETY: non-null and aligned (checked); readable by the caller's
    // contract; MapHeader is Pod, so any bytes are a value.
    let header = unsafe { (header as *const MapHeader).read_volatile() };
    let def = MapDef::from_header(&header)?;
    // SAFETY: the caller's contract covers data .. data + data_size.
    let mem = unsafe { StorageView::of_header(&header) }?;
    Ok((def, mem))
}

/// Empties a map's storage: the host calls it once, when it creates the
/// map, before any program can run.
pub fn init(def: &MapDef, mem: &impl MapMemory) -> Result<(), MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_hash() => Hash::new(def, mem)?.init(),
        MapType::Queue | MapType::Stack => queue::init(mem),
        _ => mem.zero(0, def.storage_size()),
    }
}

fn check_len(def: &MapDef, mem: &impl MapMemory) -> Result<(), MapError> {
    if mem.len() < def.storage_size() {
        return Err(MapError::OutOfBounds);
    }
    Ok(())
}

/// A program's `bpf_map_lookup_elem` on CPU `cpu`: the offset of the value
/// (of this CPU's copy, for per-CPU maps), `None` if there is no such
/// element. [`MapMemory::addr`] of it is what the helper returns. For
/// `ARRAY_OF_MAPS`/`HASH_OF_MAPS` the helper returns the slot's contents
/// instead ([`lookup_slot`]). Queues and stacks have no lookup.
pub fn lookup(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    cpu: u32,
) -> Result<Option<usize>, MapError> {
    lookup_marked(def, mem, key, cpu, Some(Some(cpu)))
}

/// `bpf_map_lookup_percpu_elem(map, key, cpu)`: CPU `cpu`'s copy of a
/// per-CPU map's value (`None` for an out-of-range CPU, as the kernel),
/// the use marked without making it any CPU's most recent.
pub fn lookup_percpu(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    cpu: u32,
) -> Result<Option<usize>, MapError> {
    if !def.map_type().is_percpu() || cpu >= def.nr_cpus() {
        return Ok(None);
    }
    lookup_marked(def, mem, key, cpu, Some(None))
}

/// The host's lookup: the offset of the value, CPU 0's copy for per-CPU
/// maps ([`MapDef::percpu_value_off`] gives the others); marks nothing.
pub fn lookup_sys(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
) -> Result<Option<usize>, MapError> {
    lookup_marked(def, mem, key, 0, None)
}

fn lookup_marked(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    cpu: u32,
    mark: Option<Option<u32>>,
) -> Result<Option<usize>, MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_array() => array::lookup(def, key, cpu),
        t if t.is_hash() => {
            if t.is_percpu() && cpu >= def.nr_cpus() {
                return Err(MapError::InvalidArgument("CPU out of range"));
            }
            let h = Hash::new(def, mem)?;
            Ok(h.lookup(key, mark)?.map(|i| h.value_off(i, cpu)))
        }
        _ => Err(MapError::Unsupported),
    }
}

/// What slot `key` of a `PROG_ARRAY`, `ARRAY_OF_MAPS` or `HASH_OF_MAPS`
/// holds (a program's entry, an inner map's header address), `None` if
/// empty or absent: the value of a program's lookup in a map of maps.
pub fn lookup_slot(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
) -> Result<Option<u64>, MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        MapType::ProgArray | MapType::ArrayOfMaps => array::lookup_slot(def, mem, key),
        MapType::HashOfMaps => {
            let h = Hash::new(def, mem)?;
            match h.lookup(key, None)? {
                Some(i) => Ok(Some(h.slot(i)?).filter(|&v| v != 0)),
                None => Ok(None),
            }
        }
        _ => Err(MapError::Unsupported),
    }
}

/// A program's `bpf_map_update_elem` on CPU `cpu`: `value` is one value
/// ([`MapDef::value_len`] bytes); a per-CPU map's update writes this
/// CPU's copy. `flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, with
/// `BPF_F_LOCK` where the value has a `bpf_spin_lock`.
pub fn update(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    value: &[u8],
    flags: u64,
    cpu: u32,
) -> Result<(), MapError> {
    if def.map_flags() & flags::RDONLY_PROG != 0 {
        return Err(MapError::ReadOnly);
    }
    update_on(def, mem, key, value, flags, Some(cpu))
}

/// The host's update: for per-CPU maps `values` holds every CPU's value
/// at [`MapDef::value_stride`] intervals, as `bpf(BPF_MAP_UPDATE_ELEM)`
/// takes them; for slot types, the u64 (little-endian) to store.
pub fn update_sys(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    values: &[u8],
    flags: u64,
) -> Result<(), MapError> {
    host_may_write(def)?;
    update_on(def, mem, key, values, flags, None)
}

/// The host's update of CPU `cpu`'s copy alone (`BPF_F_CPU`): `value` is
/// one value, as a program's [`update`] on that CPU, but refused by
/// `BPF_F_RDONLY` instead of `BPF_F_RDONLY_PROG`.
pub fn update_sys_cpu(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    value: &[u8],
    flags: u64,
    cpu: u32,
) -> Result<(), MapError> {
    host_may_write(def)?;
    update_on(def, mem, key, value, flags, Some(cpu))
}

/// `BPF_F_RDONLY`: the map is read-only to the host.
fn host_may_write(def: &MapDef) -> Result<(), MapError> {
    if def.map_flags() & flags::RDONLY != 0 {
        return Err(MapError::ReadOnly);
    }
    Ok(())
}

fn update_on(
    def: &MapDef,
    mem: &impl MapMemory,
    key: &[u8],
    values: &[u8],
    flags: u64,
    cpu: Option<u32>,
) -> Result<(), MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_array() => array::update(def, mem, key, values, flags, cpu),
        t if t.is_hash() => Hash::new(def, mem)?.update(key, values, flags, cpu),
        t if t == MapType::Arena || t.is_ringbuf() => Err(MapError::Unsupported),
        _ => Err(MapError::InvalidArgument(
            "queues and stacks take push, not update",
        )),
    }
}

/// A program's `bpf_map_delete_elem`.
pub fn delete(def: &MapDef, mem: &impl MapMemory, key: &[u8]) -> Result<(), MapError> {
    if def.map_flags() & flags::RDONLY_PROG != 0 {
        return Err(MapError::ReadOnly);
    }
    delete_on(def, mem, key)
}

/// The host's delete.
pub fn delete_sys(def: &MapDef, mem: &impl MapMemory, key: &[u8]) -> Result<(), MapError> {
    host_may_write(def)?;
    delete_on(def, mem, key)
}

fn delete_on(def: &MapDef, mem: &impl MapMemory, key: &[u8]) -> Result<(), MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_array() => array::delete(def, mem, key),
        t if t.is_hash() => Hash::new(def, mem)?.delete(key),
        _ => Err(MapError::Unsupported),
    }
}

/// `map_get_next_key`: writes the key after `key` (the first with `None`)
/// to `out`; -ENOENT after the last. Order is stable while the map does
/// not change. Each call is bounded, and a chain that does not end is
/// `Corrupt`; but a scribbled map can hold one key twice, which sends an
/// iteration round, and one running while programs delete keys restarts
/// from the first key, as the kernel's: a host iterating stops itself
/// after `max_entries` keys.
pub fn next_key(
    def: &MapDef,
    mem: &impl MapMemory,
    key: Option<&[u8]>,
    out: &mut [u8],
) -> Result<(), MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_array() => array::next_key(def, key, out),
        t if t.is_hash() => Hash::new(def, mem)?.next_key(key, out),
        _ => Err(MapError::Unsupported),
    }
}

/// Where [`for_each`] found an element's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKey {
    /// An array index (the kernel passes a pointer to a u32 holding it).
    Index(u32),
    /// The offset of the key in the storage (hash maps).
    At(usize),
}

/// `bpf_for_each_map_elem` on CPU `cpu`: calls `f(key, value offset)` for
/// each element until it returns `false` (the callback returned 1); the
/// number of calls, as the helper returns.
pub fn for_each(
    def: &MapDef,
    mem: &impl MapMemory,
    cpu: u32,
    mut f: impl FnMut(EntryKey, usize) -> bool,
) -> Result<u32, MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_array() => array::for_each(def, cpu, |i, v| f(EntryKey::Index(i), v)),
        MapType::HashOfMaps => Err(MapError::Unsupported),
        t if t.is_hash() => Hash::new(def, mem)?.for_each(cpu, |k, v| f(EntryKey::At(k), v)),
        _ => Err(MapError::Unsupported),
    }
}

/// The host's walk over a hash map of any kind, `HASH_OF_MAPS` included,
/// to list it: calls `f(key offset, value offset)` (CPU 0's copy of a
/// per-CPU value, the slot of a `HASH_OF_MAPS`) for each element, in
/// [`next_key`]'s order, until it returns `false`; the number of calls.
/// Each bucket is walked once under its lock, so `f` copies elements
/// nobody deletes or reuses meanwhile (values updated in place may still
/// be seen half old, half new). A loop over `next_key` would walk each
/// key's whole chain again: quadratic in the size of a map whose elements
/// a program linked into one chain; this is linear in any map.
pub fn walk_sys(
    def: &MapDef,
    mem: &impl MapMemory,
    f: impl FnMut(usize, usize) -> bool,
) -> Result<u32, MapError> {
    check_len(def, mem)?;
    match def.map_type() {
        t if t.is_hash() => Hash::new(def, mem)?.for_each_locked(f),
        _ => Err(MapError::Unsupported),
    }
}

/// `bpf_map_push_elem`.
pub fn push(def: &MapDef, mem: &impl MapMemory, value: &[u8], flags: u64) -> Result<(), MapError> {
    check_len(def, mem)?;
    queue::push(def, mem, value, flags)
}

/// `bpf_map_pop_elem`.
pub fn pop(def: &MapDef, mem: &impl MapMemory, out: &mut [u8]) -> Result<(), MapError> {
    check_len(def, mem)?;
    queue::pop(def, mem, out)
}

/// `bpf_map_peek_elem`.
pub fn peek(def: &MapDef, mem: &impl MapMemory, out: &mut [u8]) -> Result<(), MapError> {
    check_len(def, mem)?;
    queue::peek(def, mem, out)
}

/// A queue's or stack's values in pop order, none removed: `f` gets each
/// one's offset, under the map's lock (the host's listing).
pub fn queue_values(
    def: &MapDef,
    mem: &impl MapMemory,
    f: impl FnMut(usize) -> Result<(), MapError>,
) -> Result<(), MapError> {
    check_len(def, mem)?;
    queue::values(def, mem, f)
}
