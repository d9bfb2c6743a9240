//! The leaf page-table entries of the arena window: the only place their
//! bits are spelled out. The guest runtime writes them at CPL 3, only
//! through the arena operations ([`alloc()`](super::alloc()),
//! [`free()`](super::free()), [`fault_in`](super::fault_in)), which take
//! them from [`ArenaGeometry::pte`](super::ArenaGeometry::pte).
//!
//! An allocated page's entry is `gpa_base + j * 4096 | ARENA_FLAGS`; any
//! other page's is 0 (not present). Accessed and dirty are preset so the
//! CPU never writes the entry back (a write to a page table KVM shadows
//! costs a trap, docs/arena-experiments.md); NX because arena memory is
//! data, never code.

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable.
pub const WRITABLE: u64 = 1 << 1;
/// Reachable at CPL 3 (programs run there).
pub const USER: u64 = 1 << 2;
/// Accessed, preset.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty, preset.
pub const DIRTY: u64 = 1 << 6;
/// Not executable.
pub const NO_EXECUTE: u64 = 1 << 63;

/// The flags of every present arena PTE.
pub const ARENA_FLAGS: u64 = PRESENT | WRITABLE | USER | ACCESSED | DIRTY | NO_EXECUTE;

/// The entry of a page that is not allocated.
pub const NOT_PRESENT: u64 = 0;
