//! Arena kfuncs: `bpf_arena_alloc_pages`, `bpf_arena_free_pages`,
//! `bpf_arena_reserve_pages`, with the kernel's signatures and semantics
//! (`kernel/bpf/arena.c`), over `shm::arena`'s page bookkeeping, in the
//! calling vCPU at CPL 3 with no VM exit: allocating writes the pages' PTEs,
//! freeing clears them and leaves the pages FREED for the host to release
//! (Note [Releasing arena pages] in `shm::arena`).
//!
//! The map argument is the arena map's header (Note [Arena map header] in
//! the host's `vmm::arena`): a `MapHeader` of type ARENA whose `data` is
//! the guest address of the arena's state region. Both headers are read
//! through the fault-safe copy and checked; a map pointer a program made
//! up gives NULL / -EINVAL, not a trap.

use super::nofault;
use core::mem::MaybeUninit;
use shm::arena::{ArenaGeometry, ArenaHeader};
use shm::errno::EINVAL;
use shm::layout::PAGE_SIZE;
use shm::maps::{MapDef, MapHeader, MapType, StorageView};

/// The kernel's `NUMA_NO_NODE`.
const NUMA_NO_NODE: i32 = -1;

/// An opened arena: its geometry and views of its state and PTE regions.
struct GuestArena {
    geom: ArenaGeometry,
    states: StorageView<'static>,
    ptes: StorageView<'static>,
}

/// Reads a `T` (plain data) from program memory at `addr`, fault-safe.
fn read<T: shm::pod::Pod>(addr: u64) -> Option<T> {
    let mut value = MaybeUninit::<T>::uninit();
    nofault::copy(value.as_mut_ptr() as u64, addr, size_of::<T>() as u64).ok()?;
    // SAFETY: the copy filled it; T is Pod, so any bytes are a value.
    Some(unsafe { value.assume_init() })
}

/// The arena whose map header is at `map`, checked.
fn open(map: u64) -> Option<GuestArena> {
    if map == 0 || !map.is_multiple_of(8) {
        return None;
    }
    let header: MapHeader = read(map)?;
    let def = MapDef::from_header(&header).ok()?;
    if def.map_type() != MapType::Arena || !header.data.is_multiple_of(8) {
        return None;
    }
    let arena: ArenaHeader = read(header.data)?;
    let (geom, ptes) = ArenaGeometry::from_header(&arena).ok()?;
    // The regions must be readable too, not just the header: one byte at
    // each end of each.
    let ends = [
        header.data + geom.states_size() as u64 - 1,
        ptes,
        ptes + geom.ptes_size() as u64 - 1,
    ];
    if ends.iter().any(|&a| nofault::read_byte(a).is_none()) {
        return None;
    }
    // SAFETY: the host placed both regions in user-RW guest memory that
    // stays mapped while the sandbox lives, accessed only through views
    // (here, on other vCPUs and on the host) and by programs, never through
    // Rust references. A program that rewrote the headers can only point
    // the views at other memory it can reach (their ends were probed; a
    // page in between that is not mapped faults in the runtime and ends
    // the run with a trap), which only confuses itself.
    let (states, ptes) = unsafe {
        (
            StorageView::new(header.data as *mut u8, geom.states_size(), header.data),
            StorageView::new(ptes as *mut u8, geom.ptes_size(), ptes),
        )
    };
    Some(GuestArena { geom, states, ptes })
}

/// `void *bpf_arena_alloc_pages(void *map, void *addr, u32 page_cnt, int
/// node_id, u64 flags)`: `page_cnt` contiguous pages, anywhere or at
/// `addr` exactly, as a user address; NULL if none (or a bad argument:
/// `flags` not 0, a node other than NUMA_NO_NODE or 0, a zero count, an
/// unaligned or out-of-range `addr`). Pages taken back from FREED are
/// zeroed here; FREE ones are holes and read as zeros already.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_arena_alloc_pages(
    map: u64,
    addr: u64,
    page_cnt: u64,
    node_id: u64,
    flags: u64,
) -> u64 {
    let (count, node) = (page_cnt as u32, node_id as i32);
    if flags != 0 || count == 0 || (node != NUMA_NO_NODE && node != 0) {
        return 0;
    }
    let Some(a) = open(map) else { return 0 };
    let at = match addr {
        0 => None,
        addr if !addr.is_multiple_of(PAGE_SIZE) => return 0,
        addr => Some(a.geom.page_index(addr)),
    };
    let Ok(got) = shm::arena::alloc(&a.geom, &a.states, &a.ptes, count, at) else {
        return 0;
    };
    for range in got.needs_zeroing.as_slice() {
        let start = a.geom.user_addr(range.first);
        let len = u64::from(range.count) * PAGE_SIZE;
        // The PTEs were just written: the pages are mapped. A fault here
        // (a program that rewrote the arena header) leaves old bytes in
        // its own pages.
        let _ = nofault::fill(start, 0, len);
    }
    a.geom.user_addr(got.first_page)
}

/// `void bpf_arena_free_pages(void *map, void *ptr, u32 page_cnt)`: frees
/// the allocated or reserved pages of the range (clipped to the arena);
/// does nothing for NULL, a zero count or a bad map.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_arena_free_pages(map: u64, ptr: u64, page_cnt: u64) {
    let count = page_cnt as u32;
    if ptr == 0 || count == 0 {
        return;
    }
    let Some(a) = open(map) else { return };
    let first = a.geom.page_index(ptr & !(PAGE_SIZE - 1));
    let _ = shm::arena::free(&a.geom, &a.states, &a.ptes, first, count);
}

/// `int bpf_arena_reserve_pages(void *map, void *ptr, u32 page_cnt)`:
/// reserves free pages so no allocation takes them: 0, -EINVAL (bad map,
/// range past the end), -EBUSY (a page in use, or the lock). An
/// unaligned `ptr` reserves nothing and returns 0, as the kernel.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_arena_reserve_pages(map: u64, ptr: u64, page_cnt: u64) -> i64 {
    let count = page_cnt as u32;
    let Some(a) = open(map) else { return EINVAL };
    if count == 0 || !ptr.is_multiple_of(PAGE_SIZE) {
        return 0;
    }
    let first = a.geom.page_index(ptr);
    match shm::arena::reserve(&a.geom, &a.states, first, count) {
        Ok(()) => 0,
        Err(e) => e.errno(),
    }
}
