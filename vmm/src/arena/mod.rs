//! The sandbox's arena (`BPF_MAP_TYPE_ARENA`): memory mapped at the same
//! virtual address in the guest and in the host, so a pointer a program
//! stores is one the host can follow (issue 5; design and measurements in
//! docs/arena-experiments.md; page bookkeeping in `shm::arena`). A clone
//! of a snapshot keeps the guest addresses but maps the arena at a host
//! address of its own, a fixed offset away (Note [Arena clones]).
//!
//! Note [Arena window]
//! ```text
//!  host virtual = guest virtual                      memfd      guest-physical
//!  W - 64 KiB  ┌──────────────────────────┐
//!              │ guard (PROT_NONE)        │
//!  W           ├──────────────────────────┤ ← 4 GiB-aligned, PML4 slot > 0
//!              │ (map_extra's low half:   │
//!              │  PROT_NONE below it)     │
//!  user_vm_    ├──────────────────────────┤ offset 0  ARENA_GPA
//!  start       │ arena page 0             │
//!              │ …   MAP_SHARED|MAP_FIXED │ …         … (memslot 1, hva =
//!              │ page npages-1            │            user_vm_start)
//!              ├──────────────────────────┤
//!              │ PROT_NONE up to W + 4 GiB│
//!  W + 4 GiB   ├──────────────────────────┤
//!              │ guard (PROT_NONE)        │
//!  + 64 KiB    └──────────────────────────┘
//! ```
//! The host reserves `[W - 64 KiB, W + 4 GiB + 64 KiB)` `PROT_NONE` and maps
//! the arena's memfd at `user_vm_start` inside it; page j of the arena is
//! memfd page j, guest-physical `ARENA_GPA + j * 4096` (one memslot whose
//! host address is the window mapping itself, so host writes populate what
//! the guest's shadow MMU prefetches), and virtual `user_vm_start + j *
//! 4096` on both sides. The guest's page tables for the window live in the
//! arena tables region (`shm::layout::arena_area`), user-RW so that the
//! runtime's kfuncs write leaf PTEs at CPL 3: the host writes the PML4
//! entry (into its own tables, again after every reset), the PDPT entries
//! of the 4 GiB and the PD entries of the 2 MiB ranges the arena covers;
//! the leaf PTE of window page i is at `PTS_OFFSET + 8 * i`, so the arena's
//! PTEs are contiguous. The rest of the window (and its guards) is never
//! present: the runtime's trap handler turns a fault of a JIT access
//! anywhere in `[W - 32 KiB, W + 4 GiB + 32 KiB)` into a load of 0 or a
//! dropped store (Note [Arena pointers] in the JIT), as the kernel's
//! `BPF_PROBE_MEM32`. On the host an access outside the arena's pages
//! faults (SIGSEGV) instead of reaching other memory.
//!
//! All of this holds for a clone of a snapshot (Note [Arena clones]) with
//! "host" read as its own window `W'`: the guest side (W, user_vm_start,
//! memslot GPA, tables, fixup window) is the template's; the host maps the
//! snapshot's memfd privately at `user_vm_start + (W' - W)` and memslot 1
//! points there.
//!
//! Note [Arena map header]
//! A program names the arena with an `ld_imm64` of the map, as any map:
//! the guest address of a 64-byte `MapHeader` in the maps region, type
//! 33 (`ARENA`), `max_entries` = pages, its `map_flags`, `data_size` 0
//! (no storage: map helpers refuse it) and `data` = the guest address of
//! the arena's state region (`shm::arena::ArenaHeader`: magic "ARNA",
//! npages, gpa_base, user_vm_start, the guest address of page 0's PTE,
//! then the lock, cursor and counters, then one state byte per page).
//! The kfuncs check the map header (`MapDef::from_header`), then the
//! arena header (`ArenaGeometry::from_header`), and work on the two
//! regions through bounds-checked views; the host keeps its own geometry
//! and never reads either header back (Note [Trusting arena memory]).

mod clone;
mod handle;
mod window;

pub(crate) use clone::ArenaImage;
pub use handle::{ArenaAccessError, ArenaHandle};

use crate::memory::{GuestMemory, MemoryError};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use shm::arena::{ArenaGeometry, PageRange};
use shm::layout::{Layout, PAGE_SIZE, PAGE_TABLES_START, arena_area};
use shm::maps::{StorageView, flags};
use std::fs::File;
use window::Window;

/// The vCPUs' MAXPHYADDR: KVM's when the guest has no CPUID leaf
/// 0x8000_0008 (Note [Guest CPUID] in `crate::vcpu`).
pub const MAX_PHYS_BITS: u32 = 36;
/// The KVM memslot of the arena (slot 0 is the low region).
pub const ARENA_SLOT: u32 = 1;
/// Bytes of the window: every 32-bit offset.
pub const WINDOW_SIZE: u64 = 1 << 32;
/// `PROT_NONE` bytes the host keeps on each side of the window (the
/// kernel's `GUARD_SZ` is 64 KiB in all, for a signed 16-bit `off`).
pub const HOST_GUARD: u64 = 0x1_0000;
/// Bytes on each side of the window whose faults are fixed up: a signed
/// 16-bit `off` past either end.
pub const FIXUP_GUARD: u64 = 0x8000;
/// Lowest window the guest can map beside its own identity-mapped low
/// region, which uses PML4 entry 0.
const LOWEST_WINDOW: u64 = 1 << 39;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
/// Flags of the window's PML4, PDPT and PD entries (the leaf decides).
const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER | ACCESSED;

/// Why the arena could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ArenaSetupError {
    /// A second arena map (the kernel ties a program to one arena).
    #[error("The sandbox already has arena `{0}`; a sandbox has at most one arena")]
    SecondArena(String),
    /// `memfd_create` failed.
    #[error("Failed to create the arena's memory file")]
    CreateMemfd(#[source] std::io::Error),
    /// Sizing the memfd failed.
    #[error("Failed to size the arena's memory file to {0:#x} bytes")]
    SetLen(u64, #[source] std::io::Error),
    /// No 4 GiB-aligned window could be reserved.
    #[error("Failed to reserve a 4 GiB-aligned host window for the arena")]
    Reserve(#[source] std::io::Error),
    /// `map_extra` asks for an address the host cannot reserve.
    #[error(
        "The arena's map_extra asks for address {0:#x}, which the host cannot reserve (in use or not a user address)"
    )]
    ReserveAt(u64, #[source] std::io::Error),
    /// `map_extra` asks for an address inside the guest's own address map.
    #[error(
        "The arena's map_extra asks for address {0:#x}, inside the guest's own low 512 GiB; choose an address at or above 0x80_0000_0000"
    )]
    LowAddress(u64),
    /// Mapping the memfd into the window failed.
    #[error("Failed to map the arena's memory into its window")]
    MapMemfd(#[source] std::io::Error),
    /// The arena's guest-physical range is beyond the vCPU's reach.
    #[error(
        "The arena's guest-physical range {gpa:#x}..{end:#x} does not fit the vCPU's {bits}-bit physical addresses"
    )]
    PhysicalAddress {
        /// Start.
        gpa: u64,
        /// End.
        end: u64,
        /// MAXPHYADDR.
        bits: u32,
    },
    /// The window's geometry was refused.
    #[error("Invalid arena geometry")]
    Geometry(#[source] shm::arena::ArenaError),
    /// The PML4 entry of the window is taken by the sandbox's own tables.
    #[error("PML4 entry {0} of the arena window is already used")]
    PageTableSlot(usize),
    /// Guest memory could not be written.
    #[error("Failed to write the arena's tables into guest memory")]
    WriteMemory(#[source] MemoryError),
    /// The state region could not be initialised or updated.
    #[error("Failed to update the arena's page states")]
    States(#[source] shm::arena::ArenaError),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("Failed to register the arena with KVM")]
    SetUserMemoryRegion(#[source] kvm_ioctls::Error),
}

/// The sandbox's arena: its memory, window, memslot and tables.
#[derive(Debug)]
pub struct Arena {
    name: String,
    geom: ArenaGeometry,
    map_flags: u32,
    /// `W`: the 4 GiB-aligned start of the guest's window.
    window: u64,
    /// Host address of page 0: `user_vm_start`, unless the sandbox is a
    /// clone (Note [Arena clones]).
    host_start: u64,
    /// Guest address of the state region.
    states: u64,
    /// Guest address of page 0's PTE.
    ptes: u64,
    backing: Backing,
    /// Owns the host reservation and the memfd mapping inside it.
    mapping: Window,
}

/// What the arena's host mapping maps.
#[derive(Debug)]
enum Backing {
    /// A memfd of its own, mapped shared: a hole is a page nobody holds.
    Own(File),
    /// A snapshot's memfd, mapped privately (a clone, Note [Arena
    /// clones]): pages read the snapshot's bytes until written.
    Snapshot(std::sync::Arc<File>),
}

impl Arena {
    /// Creates the arena of map `name` (`pages` pages, `map_flags`,
    /// `map_extra`): memfd, window, guest tables and state region in the
    /// layout's arena tables region, and the memslot at the first 4 GiB
    /// boundary above the low region. The PML4 entry is written by
    /// [`Arena::install`], which the caller runs after this and after every
    /// reset of the boot image.
    pub fn create(
        vm: &VmFd,
        memory: &GuestMemory,
        layout: &Layout,
        name: &str,
        pages: u32,
        map_flags: u32,
        map_extra: u64,
    ) -> Result<Arena, ArenaSetupError> {
        let size = u64::from(pages) * PAGE_SIZE;
        let gpa = layout.memory_size().next_multiple_of(WINDOW_SIZE);
        if gpa + size > 1u64 << MAX_PHYS_BITS {
            return Err(ArenaSetupError::PhysicalAddress {
                gpa,
                end: gpa + size,
                bits: MAX_PHYS_BITS,
            });
        }
        let memfd = create_memfd(size)?;
        let mapping = reserve_window(map_extra)?;
        let window = mapping.window();
        let user_vm_start = window + (map_extra & (WINDOW_SIZE - 1));
        mapping.map_memfd(&memfd, user_vm_start, size)?;
        let geom =
            ArenaGeometry::new(pages, gpa, user_vm_start).map_err(ArenaSetupError::Geometry)?;
        let tables = layout.arena_tables_start();
        let pts = tables + arena_area::PTS_OFFSET;
        let arena = Arena {
            name: name.to_owned(),
            geom,
            map_flags,
            window,
            host_start: user_vm_start,
            states: tables + arena_area::STATES_OFFSET,
            ptes: pts + 8 * ((user_vm_start - window) / PAGE_SIZE),
            backing: Backing::Own(memfd),
            mapping,
        };
        arena.write_tables(memory, tables)?;
        shm::arena::init(&geom, &arena.states_view(memory)?, arena.ptes)
            .map_err(ArenaSetupError::States)?;
        arena.register(vm)?;
        Ok(arena)
    }

    /// Registers the arena's memslot: its guest-physical range, backed by
    /// the host mapping of page 0 onwards.
    fn register(&self, vm: &VmFd) -> Result<(), ArenaSetupError> {
        let region = kvm_userspace_memory_region {
            slot: ARENA_SLOT,
            flags: 0,
            guest_phys_addr: self.geom.gpa_base(),
            memory_size: self.geom.size(),
            userspace_addr: self.host_start,
        };
        // SAFETY: the region is the memfd mapping the arena owns (its
        // `mapping`); the Sandbox keeps the arena (in `Loaded`) until after
        // the VM is dropped, and vCPU threads are joined before either.
        unsafe { vm.set_user_memory_region(region) }.map_err(ArenaSetupError::SetUserMemoryRegion)
    }

    /// The PDPT entries of the window and the PD entries of the 2 MiB
    /// ranges the arena covers (Note [Arena window]); leaf PTs stay zero.
    fn write_tables(&self, memory: &GuestMemory, tables: u64) -> Result<(), ArenaSetupError> {
        let write = |addr, value: u64| {
            memory
                .write_pod(addr, &value)
                .map_err(ArenaSetupError::WriteMemory)
        };
        let pdpt = tables + arena_area::PDPT_OFFSET;
        let first_gib = (self.window >> 30) & 0x1ff;
        for k in 0..arena_area::PD_COUNT {
            let pd = tables + arena_area::PD_OFFSET + k * PAGE_SIZE;
            write(pdpt + 8 * (first_gib + k), pd | TABLE_FLAGS)?;
        }
        let start = self.geom.user_vm_start() - self.window;
        let first_pt = start >> 21;
        let last_pt = (start + self.geom.size() - 1) >> 21;
        for pt in first_pt..=last_pt {
            let entry = tables + arena_area::PD_OFFSET + 8 * pt;
            let table = tables + arena_area::PTS_OFFSET + pt * PAGE_SIZE;
            write(entry, table | TABLE_FLAGS)?;
        }
        Ok(())
    }

    /// Writes the window's PML4 entry into the sandbox's page tables: once
    /// the arena exists and again after each reset rewrote them. The entry
    /// goes from not present to present, which needs no flush.
    pub fn install(&self, memory: &GuestMemory, layout: &Layout) -> Result<(), ArenaSetupError> {
        let index = (self.window >> 39) as usize & 0x1ff;
        let slot = PAGE_TABLES_START + 8 * index as u64;
        let pdpt = layout.arena_tables_start() + arena_area::PDPT_OFFSET;
        let old: u64 = memory
            .read_pod(slot)
            .map_err(ArenaSetupError::WriteMemory)?;
        if old != 0 && old != pdpt | TABLE_FLAGS {
            return Err(ArenaSetupError::PageTableSlot(index));
        }
        memory
            .write_pod(slot, &(pdpt | TABLE_FLAGS))
            .map_err(ArenaSetupError::WriteMemory)
    }

    /// After a reset: frees the arena's lock, which a run stopped at its
    /// deadline inside a kfunc may have kept (no vCPU runs during a reset,
    /// so nobody holds it legitimately). Pages and PTEs stay as they are.
    pub fn unlock_after_reset(&self, memory: &GuestMemory) -> Result<(), ArenaSetupError> {
        let lock = self.states + std::mem::offset_of!(shm::arena::ArenaHeader, lock) as u64;
        memory
            .write_pod(lock, &0u32)
            .map_err(ArenaSetupError::WriteMemory)
    }

    /// The arena map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The geometry the host keeps.
    pub fn geometry(&self) -> &ArenaGeometry {
        &self.geom
    }

    /// `BPF_F_*` flags of the arena map.
    pub fn map_flags(&self) -> u32 {
        self.map_flags
    }

    /// Whether host touches of unallocated pages are errors.
    pub fn segv_on_fault(&self) -> bool {
        self.map_flags & flags::SEGV_ON_FAULT != 0
    }

    /// `W`, the 4 GiB-aligned start of the guest's window.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Host address of page 0: `user_vm_start` unless the sandbox is a
    /// clone (Note [Arena clones]).
    pub fn host_start(&self) -> u64 {
        self.host_start
    }

    /// The host address of arena address `addr` (as programs see it),
    /// which the caller checked lies in the arena.
    pub(crate) fn host_addr(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.geom.user_vm_start())
            .wrapping_add(self.host_start)
    }

    /// What `JitConfig::arena_upper` must be: the window's upper half.
    pub fn upper(&self) -> u32 {
        // Below 2^47 (a user address): the upper half fits 15 bits.
        (self.window >> 32) as u32
    }

    /// The addresses whose faults the runtime fixes up.
    pub fn fixup_window(&self) -> (u64, u64) {
        (
            self.window - FIXUP_GUARD,
            self.window + WINDOW_SIZE + FIXUP_GUARD,
        )
    }

    /// Guest address of the state region: the arena map header's `data`.
    pub fn states_addr(&self) -> u64 {
        self.states
    }

    /// The arena's memory file; `None` for a clone, whose memory is a
    /// private mapping of its snapshot's file (which does not see it).
    pub fn memfd(&self) -> Option<&File> {
        match &self.backing {
            Backing::Own(memfd) => Some(memfd),
            Backing::Snapshot(_) => None,
        }
    }

    /// A host view of the state region (lock spins are the host's).
    pub(crate) fn states_view<'m>(
        &self,
        memory: &'m GuestMemory,
    ) -> Result<StorageView<'m>, ArenaSetupError> {
        guest_view(memory, self.states, self.geom.states_size())
    }

    /// A host view of the arena's PTEs.
    pub(crate) fn ptes_view<'m>(
        &self,
        memory: &'m GuestMemory,
    ) -> Result<StorageView<'m>, ArenaSetupError> {
        guest_view(memory, self.ptes, self.geom.ptes_size())
    }

    /// Allocates pages `first .. first + count` at load time (the
    /// `__arena` globals' pages) and copies `bytes` to their start.
    pub(crate) fn place_globals(
        &self,
        memory: &GuestMemory,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), ArenaSetupError> {
        let count = (bytes.len() as u64).div_ceil(PAGE_SIZE) as u32;
        if count == 0 {
            return Ok(());
        }
        let first = (offset / PAGE_SIZE) as u32;
        let states = self.states_view(memory)?;
        let ptes = self.ptes_view(memory)?;
        shm::arena::alloc(&self.geom, &states, &ptes, count, Some(first))
            .map_err(ArenaSetupError::States)?;
        let dst = self.host_start + offset;
        // SAFETY: the pages were just allocated, inside the arena mapping
        // this arena owns; copied volatile, as guest memory shared with
        // vCPUs (none runs these pages' programs yet).
        unsafe { volatile_copy_to(dst as *mut u8, bytes) };
        Ok(())
    }

    /// Releases FREED pages (Note [Releasing arena pages] in `shm::arena`):
    /// moves them to RELEASING, discards their memory (punches them out of
    /// the memfd; a clone's: Note [Arena clones]), makes them FREE. Indices come from the host's geometry; the guest's FREED
    /// counter only decides whether to look. Returns the pages released.
    pub(crate) fn release(&self, memory: &GuestMemory) -> Result<u32, ArenaSetupError> {
        let states = self.states_view(memory)?;
        if shm::arena::freed_hint(&states).map_err(ArenaSetupError::States)? == 0 {
            return Ok(0);
        }
        let mut ranges = [PageRange::default(); 64];
        let (mut from, mut released) = (0, 0);
        loop {
            let batch = shm::arena::take_freed_for_release(&self.geom, &states, from, &mut ranges)
                .map_err(ArenaSetupError::States)?;
            let taken = &ranges[..batch.ranges];
            if taken.iter().all(|r| self.discard(*r).is_ok()) {
                released += shm::arena::finish_release(&self.geom, &states, taken)
                    .map_err(ArenaSetupError::States)?;
            } else {
                shm::arena::cancel_release(&self.geom, &states, taken)
                    .map_err(ArenaSetupError::States)?;
            }
            match batch.resume {
                Some(next) if next > from => from = next,
                _ => return Ok(released),
            }
        }
    }

    /// Frees the memory of `range`: afterwards its pages read as zeros and
    /// KVM has dropped every vCPU's translation of them.
    fn discard(&self, range: PageRange) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let memfd = match &self.backing {
            Backing::Own(memfd) => memfd,
            Backing::Snapshot(snapshot) => return self.discard_copies(snapshot, range),
        };
        let offset = i64::from(range.first) * PAGE_SIZE as i64;
        let len = i64::from(range.count) * PAGE_SIZE as i64;
        // SAFETY: a plain syscall on a descriptor this arena owns.
        let r = unsafe {
            libc::fallocate(
                memfd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The host window for an arena whose `map_extra` is `map_extra`:
/// anywhere for 0, else the 4 GiB range holding that address, exactly.
fn reserve_window(map_extra: u64) -> Result<Window, ArenaSetupError> {
    match map_extra {
        0 => Window::reserve_anywhere(),
        at if at & !(WINDOW_SIZE - 1) < LOWEST_WINDOW => Err(ArenaSetupError::LowAddress(at)),
        at => Window::reserve_at(at & !(WINDOW_SIZE - 1))
            .map_err(|e| ArenaSetupError::ReserveAt(at, e)),
    }
}

/// A host view of `len` bytes of guest memory at guest address `addr`.
fn guest_view(
    memory: &GuestMemory,
    addr: u64,
    len: usize,
) -> Result<StorageView<'_>, ArenaSetupError> {
    let end = addr.checked_add(len as u64);
    if end.is_none_or(|end| end > memory.size()) || !addr.is_multiple_of(8) {
        return Err(ArenaSetupError::WriteMemory(MemoryError::OutOfBounds {
            addr,
            len,
        }));
    }
    let base = (memory.host_base() + addr) as *mut u8;
    // SAFETY: addr .. addr + len lies in guest memory (checked), which
    // stays mapped while `memory` lives (the view borrows it); base is
    // 8-byte aligned. vCPUs touch these bytes with their own instructions,
    // never Rust references (as for maps, `map_api::map_storage`).
    let view = unsafe { StorageView::new(base, len, addr) };
    Ok(view.with_spin_tries(shm::maps::memory::HOST_SPIN_TRIES))
}

/// Copies `src` to `dst` with volatile stores.
///
/// # Safety
/// `dst .. dst + src.len()` must be mapped and writable.
unsafe fn volatile_copy_to(dst: *mut u8, src: &[u8]) {
    for (i, b) in src.iter().enumerate() {
        // SAFETY: in range by the caller's contract.
        unsafe { dst.add(i).write_volatile(*b) };
    }
}

/// The arena's memfd, `size` bytes, sparse.
fn create_memfd(size: u64) -> Result<File, ArenaSetupError> {
    let file = crate::memory::memfd(c"bpfvisor-arena").map_err(ArenaSetupError::CreateMemfd)?;
    file.set_len(size)
        .map_err(|e| ArenaSetupError::SetLen(size, e))?;
    Ok(file)
}

/// The pages `first..end` that `len` bytes at `addr` span, if all lie in
/// the arena.
pub(crate) fn check_page_range(geom: &ArenaGeometry, addr: u64, len: usize) -> Option<(u32, u32)> {
    let start = addr.checked_sub(geom.user_vm_start())?;
    let end = start.checked_add(len as u64)?;
    if end > geom.size() || len == 0 {
        return None;
    }
    Some(((start / PAGE_SIZE) as u32, end.div_ceil(PAGE_SIZE) as u32))
}

impl crate::Sandbox {
    /// Creates the sandbox's arena for the ARENA map `spec` and maps it in
    /// the guest (Note [Arena window]).
    pub(crate) fn create_arena(
        &mut self,
        spec: &guest_jit::elf::MapSpec,
    ) -> Result<(), ArenaSetupError> {
        if let Some(arena) = &self.loaded.arena {
            return Err(ArenaSetupError::SecondArena(arena.name().to_owned()));
        }
        let arena = Arena::create(
            &self.vm,
            &self.memory,
            &self.layout,
            &spec.name,
            spec.max_entries,
            spec.map_flags,
            spec.map_extra,
        )?;
        arena.install(&self.memory, &self.layout)?;
        self.loaded.arena = Some(arena);
        self.publish_boot_state()
            .map_err(ArenaSetupError::WriteMemory)
    }

    /// The sandbox's arena, once an object with an ARENA map is loaded.
    pub fn arena(&self) -> Option<ArenaHandle<'_>> {
        self.loaded.arena.as_ref().map(|arena| ArenaHandle {
            arena,
            memory: &self.memory,
        })
    }

    /// Releases the arena pages programs freed: after every invocation,
    /// before it is reported. A failure leaves the pages FREED for the
    /// next time (their memory stays held, nothing else changes).
    /// Pages allocated in the arena, as its own count says (0 without
    /// one): reported, never trusted.
    pub(crate) fn arena_pages(&self) -> u64 {
        self.loaded
            .arena
            .as_ref()
            .and_then(|arena| {
                self.memory
                    .read_pod::<shm::arena::ArenaHeader>(arena.states_addr())
                    .ok()
            })
            .map_or(0, |header| u64::from(header.allocated))
    }

    pub(crate) fn release_arena_pages(&self) {
        if let Some(arena) = &self.loaded.arena {
            let _ = arena.release(&self.memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_map_extra_is_honoured_or_refused() {
        let w = reserve_window(0).unwrap();
        let at = w.window();
        assert_eq!(at % WINDOW_SIZE, 0);
        assert!(at >= LOWEST_WINDOW);
        // Taken: map_extra naming it is refused, naming the address.
        let err = reserve_window(at + 0x1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "The arena's map_extra asks for address {:#x}, which the host cannot reserve (in use or not a user address)",
                at + 0x1000
            )
        );
        // Dropping it gives the range back, and map_extra gets it exactly.
        drop(w);
        let again = reserve_window(at + 0x1000).unwrap();
        assert_eq!(again.window(), at);
        assert_eq!(
            reserve_window(0x1_0000_0000).unwrap_err().to_string(),
            "The arena's map_extra asks for address 0x100000000, inside the guest's own low 512 GiB; choose an address at or above 0x80_0000_0000"
        );
    }

    #[test]
    fn host_ranges_must_lie_in_the_arena() {
        let g = ArenaGeometry::new(4, 0x1_0000_0000, 0x7f00_0000_0000).unwrap();
        let base = g.user_vm_start();
        assert_eq!(check_page_range(&g, base, 1), Some((0, 1)));
        assert_eq!(check_page_range(&g, base + 4095, 2), Some((0, 2)));
        assert_eq!(check_page_range(&g, base + 3 * 4096, 4096), Some((3, 4)));
        assert_eq!(check_page_range(&g, base + 3 * 4096, 4097), None);
        assert_eq!(check_page_range(&g, base - 1, 1), None);
        assert_eq!(check_page_range(&g, base, 0), None);
        assert_eq!(check_page_range(&g, u64::MAX, 2), None);
    }
}
