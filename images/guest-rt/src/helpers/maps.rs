//! Map helpers: `bpf_map_lookup_elem` (1), `_update_elem` (2),
//! `_delete_elem` (3), `_push_elem` (87), `_pop_elem` (88), `_peek_elem`
//! (89), `bpf_for_each_map_elem` (164), `bpf_map_lookup_percpu_elem` (195).
//! Each runs `shm::maps`' algorithm — the code the host's map API runs —
//! over the map's storage, in the calling vCPU, with no VM exit.
//!
//! A map argument is the guest address of the map's `MapHeader` (what an
//! `ld_imm64` naming the map loads, as the kernel loads a `struct bpf_map
//! *`; what a lookup in a map of maps returns). Each call reads the
//! header through the fault-safe routines of `super::nofault`, takes the
//! map's definition from it (checked by `MapDef::from_header`, or
//! remembered, Note [Map definition cache]), and works on the storage
//! through a bounds-checked
//! `StorageView` (Note [Trusting map memory] in `shm::maps`): a program
//! that scribbled over a map only confuses itself.
//!
//! Note [Helper arguments in program memory]
//! The kernel's verifier proves a key or value pointer points at
//! `key_size` / `value_size` bytes of the program's memory; here a
//! program can pass anything. Keys (at most 512 bytes) and values of up to
//! [`VALUE_BUF_SIZE`] bytes are copied through the fault-safe routines of
//! `super::nofault` into buffers on the runtime's stack, so a bad pointer
//! gives -EFAULT (a lookup NULL). Larger values, which do not fit the
//! runtime's stack, are first probed one byte per page for reading
//! (-EFAULT if a page cannot be read) and then accessed in place; a
//! destination that is readable but not writable then faults in the
//! runtime, and the run ends with a trap rather than an error code.

use super::loops::{BpfFunction, in_jit_code};
use super::nofault::{self, read_byte};
use crate::percpu::gs_read;
use core::mem::MaybeUninit;
use shm::errno::EINVAL;
use shm::layout::PAGE_SIZE;
use shm::maps::def::{MAP_HEADER_SIZE, MAX_KEY_SIZE};
use shm::maps::{EntryKey, MapDef, MapError, MapHeader, MapMemory, MapType, StorageView, ops};
use shm::percpu::CPU_ID_OFFSET;

/// Largest value copied through a buffer on the runtime's stack (Note
/// [Helper arguments in program memory]).
const VALUE_BUF_SIZE: usize = 4096;

/// A header's bytes, as the words they are compared by.
type HeaderWords = [u64; MAP_HEADER_SIZE / 8];

const _: () = assert!(size_of::<HeaderWords>() == MAP_HEADER_SIZE);

/// A map as a helper works on it.
struct GuestMap {
    def: MapDef,
    mem: StorageView<'static>,
}

/// The map whose header is at `map`, checked (Note [Map definition
/// cache]).
#[inline(always)]
fn open(map: u64) -> Result<GuestMap, MapError> {
    if map == 0 || !map.is_multiple_of(8) {
        return Err(MapError::Corrupt);
    }
    let (def, words) = match def_cache::get(map) {
        Some(kept) => kept,
        None => check(map)?,
    };
    // SAFETY: MapHeader is Pod, of the same size and alignment: any 64
    // bytes are a header.
    let header: MapHeader = unsafe { core::mem::transmute(words) };
    // SAFETY: the host placed the storage the header names, which stays
    // mapped while the sandbox lives and is only accessed through
    // `StorageView`s (here, on other vCPUs, and on the host) and by
    // programs, never through Rust references. A program that rewrote the
    // header can at worst point the view at other memory it can reach,
    // whose accesses then fault like its own would.
    let mem = unsafe { StorageView::of_header(&header) }?;
    Ok(GuestMap { def, mem })
}

/// The definition of the map whose header is at `map` and the header's
/// `data`, checked as [`open`] checks them: for maps whose storage is not
/// `data .. data + data_size` (ring buffers).
pub(super) fn open_def(map: u64) -> Result<(MapDef, u64), MapError> {
    if map == 0 || !map.is_multiple_of(8) {
        return Err(MapError::Corrupt);
    }
    let (def, words) = match def_cache::get(map) {
        Some(kept) => kept,
        None => check(map)?,
    };
    Ok((def, words[shm::maps::def::DATA_OFFSET / 8]))
}

/// The header at `map` and its definition, checked in full and kept.
#[inline(never)]
fn check(map: u64) -> Result<(MapDef, HeaderWords), MapError> {
    // A map pointer the program made up gives an error, not a trap: the
    // header is read through the fault-safe copy, once.
    let mut words = MaybeUninit::<HeaderWords>::uninit();
    nofault::copy(
        words.as_mut_ptr() as u64,
        map,
        size_of::<HeaderWords>() as u64,
    )
    .map_err(|_| MapError::Corrupt)?;
    // SAFETY: the copy filled all of it.
    let words = unsafe { words.assume_init() };
    // SAFETY: as in open.
    let header: MapHeader = unsafe { core::mem::transmute(words) };
    let def = MapDef::from_header(&header)?;
    def_cache::put(map, &words, &def);
    Ok((def, words))
}

/// This vCPU's index.
fn this_cpu() -> u32 {
    gs_read(CPU_ID_OFFSET) as u32
}

/// Runs `f` on the `def.key_size()` bytes of program memory at `addr`,
/// copied to a buffer on this stack (Note [Helper arguments in program
/// memory]). The buffer is not zeroed first (512 bytes per call would
/// cost more than the lookup), nor moved: only the bytes the copy filled
/// are ever read.
fn with_key<T>(
    def: &MapDef,
    addr: u64,
    f: impl FnOnce(&[u8]) -> Result<T, MapError>,
) -> Result<T, MapError> {
    let len = def.key_size();
    let mut buf = [MaybeUninit::<u8>::uninit(); MAX_KEY_SIZE as usize];
    if len > buf.len() {
        return Err(MapError::Corrupt);
    }
    nofault::copy(buf.as_mut_ptr() as u64, addr, len as u64).map_err(|_| MapError::OutOfBounds)?;
    // SAFETY: the copy filled the first `len` bytes (<= the buffer's size).
    f(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) })
}

/// Whether every page of `len` bytes at `addr` can be read.
fn readable(addr: u64, len: usize) -> bool {
    let Some(last) = addr.checked_add(len as u64 - 1) else {
        return false;
    };
    let mut page = addr & !(PAGE_SIZE - 1);
    loop {
        if read_byte(page.max(addr)).is_none() {
            return false;
        }
        match page.checked_add(PAGE_SIZE) {
            Some(next) if next <= last => page = next,
            _ => return true,
        }
    }
}

/// Runs `f` on the `len` bytes of program memory at `addr`, as a slice
/// (Note [Helper arguments in program memory]).
fn with_value_in<T>(
    addr: u64,
    len: usize,
    f: impl FnOnce(&[u8]) -> Result<T, MapError>,
) -> Result<T, MapError> {
    if len <= VALUE_BUF_SIZE {
        // Not zeroed, as with_key's buffer.
        let mut buf = [MaybeUninit::<u8>::uninit(); VALUE_BUF_SIZE];
        nofault::copy(buf.as_mut_ptr() as u64, addr, len as u64)
            .map_err(|_| MapError::OutOfBounds)?;
        // SAFETY: the copy filled the first `len` bytes.
        let value = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        return f(value);
    }
    if !readable(addr, len) {
        return Err(MapError::OutOfBounds);
    }
    // SAFETY: every page of the range is mapped readable (probed above; a
    // sandbox's page tables do not change while it runs), and the slice
    // lives only for `f`, which copies it into the map. Another vCPU may
    // write the bytes meanwhile and tear the value, as in the kernel.
    f(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}

/// Runs `f` to fill a value, then writes it to the `len` bytes of program
/// memory at `addr` (Note [Helper arguments in program memory]) whether
/// `f` succeeded or not: pop and peek zero the output when they fail, as
/// the kernel's.
fn with_value_out(
    addr: u64,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> Result<(), MapError>,
) -> Result<(), MapError> {
    if len <= VALUE_BUF_SIZE {
        let mut buf = [MaybeUninit::<u8>::uninit(); VALUE_BUF_SIZE];
        let buf = &mut buf[..len];
        buf.fill(MaybeUninit::new(0));
        // SAFETY: the first `len` bytes were just initialised.
        let buf = unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) };
        let result = f(buf);
        nofault::copy(addr, buf.as_ptr() as u64, len as u64).map_err(|_| MapError::OutOfBounds)?;
        return result;
    }
    if !readable(addr, len) {
        return Err(MapError::OutOfBounds);
    }
    // SAFETY: as in with_value_in; a page that is readable but not
    // writable faults here, which the trap path reports.
    f(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) })
}

/// The helper's return value: 0, or the error's negative errno.
fn status(result: Result<(), MapError>) -> i64 {
    match result {
        Ok(()) => 0,
        Err(err) => err.errno(),
    }
}

/// The types a program may only look up (the kernel's verifier allows
/// nothing else on them; a program array only `bpf_tail_call`).
fn lookup_only(def: &MapDef) -> bool {
    def.map_type().has_slots()
}

/// `void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)`: the
/// address of the value (this vCPU's copy in a per-CPU map), or NULL. In a
/// map of maps, the inner map's header address, as the kernel returns the
/// inner `struct bpf_map *`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_lookup_elem(map: u64, key: u64) -> u64 {
    let found = open(map).and_then(|m| {
        with_key(&m.def, key, |key| match m.def.map_type() {
            MapType::ArrayOfMaps | MapType::HashOfMaps => ops::lookup_slot(&m.def, &m.mem, key),
            MapType::ProgArray => Ok(None),
            _ => Ok(ops::lookup(&m.def, &m.mem, key, this_cpu())?.map(|off| m.mem.addr(off))),
        })
    });
    found.ok().flatten().unwrap_or(0)
}

/// `long bpf_map_update_elem(struct bpf_map *map, const void *key, const
/// void *value, u64 flags)`: `BPF_ANY`, `BPF_NOEXIST` or `BPF_EXIST`, with
/// `BPF_F_LOCK` for a value with a `bpf_spin_lock`; 0 or a negative errno
/// as the kernel (-E2BIG for a full map or an index past an array's end,
/// -EEXIST, -ENOENT, -EPERM for a read-only map).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_update_elem(map: u64, key: u64, value: u64, flags: u64) -> i64 {
    status(open(map).and_then(|m| {
        if lookup_only(&m.def) {
            return Err(MapError::Unsupported);
        }
        with_key(&m.def, key, |key| {
            with_value_in(value, m.def.value_len(), |value| {
                ops::update(&m.def, &m.mem, key, value, flags, this_cpu())
            })
        })
    }))
}

/// `long bpf_map_delete_elem(struct bpf_map *map, const void *key)`: 0,
/// -ENOENT, or -EINVAL for an array (whose elements cannot be deleted).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_delete_elem(map: u64, key: u64) -> i64 {
    status(open(map).and_then(|m| {
        if lookup_only(&m.def) {
            return Err(MapError::Unsupported);
        }
        with_key(&m.def, key, |key| ops::delete(&m.def, &m.mem, key))
    }))
}

/// `long bpf_map_push_elem(struct bpf_map *map, const void *value, u64
/// flags)`: onto a queue or stack; `BPF_EXIST` overwrites the oldest value
/// of a full one, otherwise a full one is -E2BIG.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_push_elem(map: u64, value: u64, flags: u64) -> i64 {
    status(open(map).and_then(|m| {
        with_value_in(value, m.def.value_len(), |value| {
            ops::push(&m.def, &m.mem, value, flags)
        })
    }))
}

/// `long bpf_map_pop_elem(struct bpf_map *map, void *value)`: takes the
/// next value (oldest of a queue, newest of a stack) into `value`; -ENOENT
/// when empty.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_pop_elem(map: u64, value: u64) -> i64 {
    status(open(map).and_then(|m| {
        with_value_out(value, m.def.value_len(), |out| {
            ops::pop(&m.def, &m.mem, out)
        })
    }))
}

/// `long bpf_map_peek_elem(struct bpf_map *map, void *value)`: as pop,
/// leaving the value in place.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_peek_elem(map: u64, value: u64) -> i64 {
    status(open(map).and_then(|m| {
        with_value_out(value, m.def.value_len(), |out| {
            ops::peek(&m.def, &m.mem, out)
        })
    }))
}

/// `void *bpf_map_lookup_percpu_elem(struct bpf_map *map, const void
/// *key, u32 cpu)`: CPU `cpu`'s copy of a per-CPU map's value, or NULL (a
/// CPU out of range, a map that is not per-CPU).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_map_lookup_percpu_elem(map: u64, key: u64, cpu: u64) -> u64 {
    let found = open(map).and_then(|m| {
        let off = with_key(&m.def, key, |key| {
            ops::lookup_percpu(&m.def, &m.mem, key, cpu as u32)
        })?;
        Ok(off.map(|off| m.mem.addr(off)))
    });
    found.ok().flatten().unwrap_or(0)
}

/// `long bpf_for_each_map_elem(struct bpf_map *map, void *callback_fn,
/// void *callback_ctx, u64 flags)`: calls `callback_fn(map, key, value,
/// callback_ctx)` for each element (this vCPU's copy of per-CPU values)
/// until it returns non-zero; returns the number of calls. An array's key
/// is a pointer to a u32 index, as the kernel passes. Flags must be 0, the
/// callback in JIT code (as `bpf_loop`'s); -EINVAL otherwise, and for maps
/// the kernel does not iterate (queues, stacks, maps of maps, program
/// arrays).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_for_each_map_elem(
    map: u64,
    callback_fn: u64,
    callback_ctx: u64,
    flags: u64,
) -> i64 {
    if flags != 0 || !in_jit_code(callback_fn) {
        return EINVAL;
    }
    let m = match open(map) {
        Ok(m) => m,
        Err(err) => return err.errno(),
    };
    // SAFETY: as in bpf_loop: the address is in the JIT code region, whose
    // functions follow the SysV ABI.
    let callback: BpfFunction = unsafe { core::mem::transmute(callback_fn as usize) };
    let result = ops::for_each(&m.def, &m.mem, this_cpu(), |key, value_off| {
        // The index lives on this frame for the duration of the call.
        let index: u32;
        let key_addr = match key {
            EntryKey::Index(i) => {
                index = i;
                (&raw const index) as u64
            }
            EntryKey::At(off) => m.mem.addr(off),
        };
        callback(map, key_addr, m.mem.addr(value_off), callback_ctx, 0) == 0
    });
    match result {
        Ok(calls) => i64::from(calls),
        Err(err) => err.errno(),
    }
}

/// Note [Map definition cache]
/// Checking a header (`MapDef::from_header`: the kernel's checks for the
/// type, the storage size, every derived field) costs more than the array
/// lookup that follows it. A definition depends on the header's 64 bytes
/// alone, so each vCPU keeps the last [`def_cache::WAYS`] headers it
/// checked, with their addresses and definitions. A call whose map
/// pointer is a kept address compares the 64 bytes there with the kept
/// ones, through the fault-safe routine (`nofault::equal64`); if they are
/// the same it takes the kept definition, and otherwise — another
/// pointer, a header a program rewrote, a fault — it copies the header
/// out through the fault-safe copy and checks it in full, as before. So a
/// bad pointer still gives NULL or -EFAULT, and a scribbled header is
/// still refused.
///
/// Each vCPU has its own slot, indexed by its id, which no other vCPU
/// touches, as the kernel's per-CPU data: no lock, no shared line. The
/// slots are runtime memory, which a program can write as it can write
/// the headers (both run at CPL 3, Note [Guest privilege levels] in
/// `shm::layout`): a program that scribbles over them can make its own
/// helper calls use a wrong definition, whose accesses still stay inside
/// the storage the kept header names (`StorageView` bounds-checks each
/// one), so again it only confuses itself.
mod def_cache {
    use super::{HeaderWords, nofault};
    use crate::percpu::{Kept, PerVcpu};
    use shm::layout::MAX_CPUS;
    use shm::maps::MapDef;

    /// Headers kept per vCPU: a program seldom uses more maps in a loop.
    pub(super) const WAYS: usize = 4;

    #[derive(Clone, Copy)]
    struct Header {
        words: HeaderWords,
        def: MapDef,
    }

    /// Each vCPU's kept headers, by map address.
    static KEPT: PerVcpu<Kept<Header, WAYS>> = PerVcpu::new([Kept::EMPTY; MAX_CPUS]);

    /// The kept definition and header of the map at `addr`, if the 64
    /// bytes there are still the kept header.
    #[inline(always)]
    pub(super) fn get(addr: u64) -> Option<(MapDef, HeaderWords)> {
        KEPT.with(|kept| {
            let header = kept.get(addr)?;
            match nofault::equal64(addr, &header.words) {
                Ok(true) => Some((header.def, header.words)),
                _ => None,
            }
        })
    }

    /// Keeps `def`, checked from the header `words` read at `addr`: in
    /// the way that held `addr`, or in the next one.
    pub(super) fn put(addr: u64, words: &HeaderWords, def: &MapDef) {
        KEPT.with(|kept| {
            let header = Header {
                words: *words,
                def: *def,
            };
            kept.put(addr, header);
            Some(())
        });
    }
}
