//! Map helpers: `bpf_map_lookup_elem` (1), `_update_elem` (2),
//! `_delete_elem` (3), `_push_elem` (87), `_pop_elem` (88), `_peek_elem`
//! (89), `bpf_for_each_map_elem` (164), `bpf_map_lookup_percpu_elem` (195).
//! Each runs `shm::maps`' algorithm — the code the host's map API runs —
//! over the map's storage, in the calling vCPU, with no VM exit.
//!
//! A map argument is the guest address of the map's `MapHeader` (what an
//! `ld_imm64` naming the map loads, as the kernel loads a `struct bpf_map
//! *`; what a lookup in a map of maps returns). Each call rebuilds the
//! map's definition from the header with `MapDef::from_header`, which
//! checks it, and works on the storage through a bounds-checked
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
use shm::maps::def::MAX_KEY_SIZE;
use shm::maps::{EntryKey, MapDef, MapError, MapHeader, MapMemory, MapType, StorageView, ops};
use shm::percpu::CPU_ID_OFFSET;

/// Largest value copied through a buffer on the runtime's stack (Note
/// [Helper arguments in program memory]).
const VALUE_BUF_SIZE: usize = 4096;

/// A map as a helper works on it.
struct GuestMap {
    def: MapDef,
    mem: StorageView<'static>,
}

/// The map whose header is at `map`, checked (`shm::maps::ops::
/// open_guest_map`).
fn open(map: u64) -> Result<GuestMap, MapError> {
    // A map pointer the program made up gives an error, not a trap: the
    // header is first read through the fault-safe copy.
    let mut probe = MaybeUninit::<MapHeader>::uninit();
    nofault::copy(
        probe.as_mut_ptr() as u64,
        map,
        size_of::<MapHeader>() as u64,
    )
    .map_err(|_| MapError::Corrupt)?;
    // SAFETY: the header's bytes are readable (just copied), and a
    // sandbox's page tables do not change while it runs. The host placed
    // the storage the header names, which stays mapped while the sandbox
    // lives and is only accessed through `StorageView`s (here, on other
    // vCPUs, and on the host) and by programs, never through Rust
    // references. A program that rewrote the header can at worst point
    // the view at other memory it can reach, whose accesses then fault
    // like its own would.
    let (def, mem) = unsafe { ops::open_guest_map(map) }?;
    Ok(GuestMap { def, mem })
}

/// This vCPU's index.
fn this_cpu() -> u32 {
    gs_read(CPU_ID_OFFSET) as u32
}

/// A key copied out of program memory. The buffer is not zeroed first
/// (512 bytes per call would cost more than the lookup): only the `len`
/// bytes the copy filled are ever read.
struct Key {
    bytes: [MaybeUninit<u8>; MAX_KEY_SIZE as usize],
    len: usize,
}

impl Key {
    /// The `def.key_size()` bytes at `addr`.
    fn read(def: &MapDef, addr: u64) -> Result<Key, MapError> {
        let len = def.key_size();
        let mut key = Key {
            bytes: [MaybeUninit::uninit(); MAX_KEY_SIZE as usize],
            len,
        };
        if len > key.bytes.len() {
            return Err(MapError::Corrupt);
        }
        let dst = key.bytes.as_mut_ptr() as u64;
        nofault::copy(dst, addr, len as u64).map_err(|_| MapError::OutOfBounds)?;
        Ok(key)
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `read` filled the first `len` bytes (<= the buffer's
        // size) or failed.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), self.len) }
    }
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
        // Not zeroed, as Key's buffer.
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
    let found =
        open(map).and_then(|m| {
            let key = Key::read(&m.def, key)?;
            match m.def.map_type() {
                MapType::ArrayOfMaps | MapType::HashOfMaps => {
                    ops::lookup_slot(&m.def, &m.mem, key.as_bytes())
                }
                MapType::ProgArray => Ok(None),
                _ => Ok(ops::lookup(&m.def, &m.mem, key.as_bytes(), this_cpu())?
                    .map(|off| m.mem.addr(off))),
            }
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
        let key = Key::read(&m.def, key)?;
        with_value_in(value, m.def.value_len(), |value| {
            ops::update(&m.def, &m.mem, key.as_bytes(), value, flags, this_cpu())
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
        let key = Key::read(&m.def, key)?;
        ops::delete(&m.def, &m.mem, key.as_bytes())
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
        let key = Key::read(&m.def, key)?;
        let off = ops::lookup_percpu(&m.def, &m.mem, key.as_bytes(), cpu as u32)?;
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
