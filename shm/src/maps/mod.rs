//! BPF maps: their in-memory format and every algorithm over it, shared by
//! the guest runtime (helpers called by programs) and the host (`vmm`'s map
//! API), with the kernel's semantics (`kernel/bpf/arraymap.c`, `hashtab.c`,
//! `bpf_lru_list.c`, `queue_stack_maps.c`).
//!
//! ```text
//!  maps region (shm::layout), one map after another
//!  ┌──────────────────────────┬──────────────────────────────────────────┐
//!  │ MapHeader (page-aligned) │ storage (MapHeader::data points here)    │
//!  │  magic, map_type,        │  ARRAY         values, stride 8-aligned  │
//!  │  key_size, value_size,   │  PERCPU_ARRAY  one block of values per   │
//!  │  max_entries @ 16, …     │                CPU                       │
//!  │  data @ 32, data_size    │  PROG_ARRAY,   u64 slots                 │
//!  │                          │  ARRAY_OF_MAPS                           │
//!  │                          │  *HASH*        control, buckets, element │
//!  │                          │                pool (+ per-CPU values)   │
//!  │                          │  QUEUE, STACK  control, ring of values   │
//!  └──────────────────────────┴──────────────────────────────────────────┘
//! ```
//!
//! An `ld_imm64` naming a map loads its header's guest address, as the
//! kernel loads a `struct bpf_map *`. Each storage layout is drawn in the
//! module that builds it ([`array`](mod@array), [`hash`], [`queue`]).
//!
//! Note [Trusting map memory]
//! The header and the storage are guest memory: any program may scribble
//! over them. So the geometry comes from a validated [`MapDef`] — the host
//! keeps its own copy and never re-reads the header; the guest takes one
//! from the header on each helper call ([`MapDef::from_header`], or the
//! definition it checked before for the very same header bytes: Note [Map
//! definition cache] in the guest runtime), which only lets a program
//! confuse itself. Every access to the storage goes
//! through [`MapMemory`], whose implementations bounds-check each one, and
//! every index read from the storage is checked before use. Every loop is
//! bounded: a chain walk by the number of elements, a lock by
//! [`MapMemory::spin_wait`]. A structure that does not add up gives
//! [`MapError::Corrupt`], a lock that stays taken [`MapError::Busy`]; no
//! input makes these functions hang, panic or leave the storage.

pub mod array;
pub mod def;
pub mod hash;
pub mod lock;
mod lru;
pub mod memory;
pub mod ops;
pub mod queue;
#[cfg(test)]
mod tests;

pub use def::{MapDef, MapHeader, MapType};
pub use memory::{MapMemory, StorageView};
pub use ops::*;

use crate::errno;
use core::fmt;

/// `map_flags` bits (`BPF_F_*` of `include/uapi/linux/bpf.h`) that matter
/// to the map's algorithms or are checked at creation.
pub mod flags {
    /// `BPF_F_NO_PREALLOC`: the kernel allocates hash elements on update.
    /// Accepted; bpfvisor always preallocates (there is no allocator in
    /// the guest), which holds the same `max_entries` elements.
    pub const NO_PREALLOC: u32 = 1 << 0;
    /// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU. Accepted; the LRU is
    /// shared (Note [LRU eviction]).
    pub const NO_COMMON_LRU: u32 = 1 << 1;
    /// `BPF_F_NUMA_NODE`: meaningless here, accepted.
    pub const NUMA_NODE: u32 = 1 << 2;
    /// `BPF_F_RDONLY`: the host may not write the map.
    pub const RDONLY: u32 = 1 << 3;
    /// `BPF_F_WRONLY`: the host may not read the map.
    pub const WRONLY: u32 = 1 << 4;
    /// `BPF_F_ZERO_SEED`: accepted; the hash seed is always fixed.
    pub const ZERO_SEED: u32 = 1 << 6;
    /// `BPF_F_RDONLY_PROG`: programs may not write the map (`.rodata`).
    pub const RDONLY_PROG: u32 = 1 << 7;
    /// `BPF_F_WRONLY_PROG`: programs may not read the map.
    pub const WRONLY_PROG: u32 = 1 << 8;
    /// `BPF_F_MMAPABLE`: accepted on arrays (the storage is always
    /// shared memory).
    pub const MMAPABLE: u32 = 1 << 10;
    /// `BPF_F_INNER_MAP`: an inner map whose `max_entries` may differ from
    /// the template's.
    pub const INNER_MAP: u32 = 1 << 12;
    /// `BPF_F_SEGV_ON_FAULT` (arenas): a host touch of a page no program
    /// allocated fails instead of allocating it.
    pub const SEGV_ON_FAULT: u32 = 1 << 17;
    /// `BPF_F_NO_USER_CONV` (arenas): `cast_user` keeps only the low 32
    /// bits of an arena pointer.
    pub const NO_USER_CONV: u32 = 1 << 18;
    /// The four access bits.
    pub const ACCESS_MASK: u32 = RDONLY | WRONLY | RDONLY_PROG | WRONLY_PROG;
}

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only (for queues and stacks: overwrite the oldest
/// value when full).
pub const BPF_EXIST: u64 = 2;
/// `BPF_F_LOCK`: copy the value under its `bpf_spin_lock`.
pub const BPF_F_LOCK: u64 = 4;
/// `BPF_F_CPU`: a host update of a per-CPU map writes one CPU's copy, the
/// CPU's number in the upper 32 bits of the flags (Linux 6.19 uapi).
pub const BPF_F_CPU: u64 = 8;
/// `BPF_F_ALL_CPUS`: a host update of a per-CPU map writes one value to
/// every CPU's copy (Linux 6.19 uapi).
pub const BPF_F_ALL_CPUS: u64 = 16;

/// Why a map operation failed. [`MapError::errno`] gives what a helper
/// returns for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A map definition the kernel refuses with -EINVAL: the reason.
    InvalidDef(&'static str),
    /// A map definition the kernel refuses with -E2BIG: the reason.
    TooBig(&'static str),
    /// No element with that key (-ENOENT), or an empty queue.
    NotFound,
    /// An element with that key exists and `BPF_NOEXIST` was given
    /// (-EEXIST).
    Exists,
    /// No room: a full hash or queue, or an array index past the end
    /// (-E2BIG, as the kernel).
    Full,
    /// Flags the operation does not accept (-EINVAL).
    InvalidFlags,
    /// A key or value buffer of the wrong size, or a CPU out of range
    /// (-EINVAL).
    InvalidArgument(&'static str),
    /// The map type does not have this operation (-EINVAL, as the
    /// kernel's array delete or queue lookup).
    Unsupported,
    /// The map is read-only to whoever asked (-EPERM).
    ReadOnly,
    /// The map is write-only to whoever asked: `BPF_F_WRONLY` to the host
    /// (-EPERM).
    WriteOnly,
    /// A lock stayed taken past the spin budget (-EBUSY).
    Busy,
    /// The map's bookkeeping in its storage does not add up: an index out
    /// of range, a chain that does not end, a bad header (-EFAULT).
    Corrupt,
    /// An access outside the map's storage, or misaligned for an atomic
    /// (-EFAULT): the storage is smaller than its definition.
    OutOfBounds,
}

impl MapError {
    /// The negative errno a helper returns for this error.
    pub const fn errno(self) -> i64 {
        match self {
            MapError::InvalidDef(_)
            | MapError::InvalidFlags
            | MapError::InvalidArgument(_)
            | MapError::Unsupported => errno::EINVAL,
            MapError::TooBig(_) | MapError::Full => errno::E2BIG,
            MapError::NotFound => errno::ENOENT,
            MapError::Exists => errno::EEXIST,
            MapError::ReadOnly | MapError::WriteOnly => errno::EPERM,
            MapError::Busy => errno::EBUSY,
            MapError::Corrupt | MapError::OutOfBounds => errno::EFAULT,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::InvalidDef(why) => write!(f, "Invalid map definition: {why}"),
            MapError::TooBig(why) => write!(f, "Map too big: {why}"),
            MapError::NotFound => f.write_str("No such element"),
            MapError::Exists => f.write_str("Element exists"),
            MapError::Full => f.write_str("Map is full or index is out of range"),
            MapError::InvalidFlags => f.write_str("Invalid flags for this operation"),
            MapError::InvalidArgument(why) => write!(f, "Invalid argument: {why}"),
            MapError::Unsupported => f.write_str("Operation not supported by this map type"),
            MapError::ReadOnly => f.write_str("Map is read-only"),
            MapError::WriteOnly => f.write_str("Map is write-only"),
            MapError::Busy => f.write_str("Map lock stayed taken"),
            MapError::Corrupt => f.write_str("Map storage is corrupt"),
            MapError::OutOfBounds => f.write_str("Access outside the map's storage"),
        }
    }
}

impl core::error::Error for MapError {}

/// Rounds `n` up to a multiple of `to` (a power of two), or `None` on
/// overflow.
const fn round_up(n: u64, to: u64) -> Option<u64> {
    match n.checked_add(to - 1) {
        Some(v) => Some(v & !(to - 1)),
        None => None,
    }
}
