//! The arena in snapshots and clones (Note [Snapshots and clones] in
//! `crate::snapshot`).
//!
//! Note [Arena clones]
//! ```text
//!  guest (every clone = the template)      host of a clone
//!  W  ┌ user_vm_start                      W' ┌ host_start = user_vm_start + (W' - W)
//!     │ PTE j → ARENA_GPA + j·4096  memslot 1 │ snapshot's arena memfd,
//!     │                           ─────────►  │ MAP_PRIVATE|MAP_FIXED
//!     └ …                                     └ … (own reservation, guards)
//! ```
//! A snapshot copies the arena's memfd (its extents with data, as for
//! guest memory) and keeps its geometry. A clone keeps every guest address
//! of the template: `user_vm_start` and the window `W`, the memslot's
//! guest-physical range, the PTEs and state region (in guest memory), the
//! JIT code's `arena_upper` and the fixup window, and every pointer
//! programs stored in the arena or in maps. Nothing is relocated. Only the
//! host's view moves, because the template's host range is the template's
//! own mapping: a clone reserves a window `W'` of its own (4 GiB-aligned,
//! with guards, as any) and maps the snapshot's arena memfd there
//! privately, so nothing is copied until the clone writes a page, and its
//! memslot 1 points at that mapping. Host address = guest address +
//! (`W'` - `W`): a fixed offset, a multiple of 4 GiB, so the low 32 bits
//! of an arena pointer are the same on both sides. The host API
//! ([`crate::arena::ArenaHandle`]) takes and returns guest addresses (what
//! programs store) and translates them; host address = guest address
//! holds exactly for a sandbox that was not cloned.
//!
//! Releasing freed pages (Note [Releasing arena pages] in `shm::arena`)
//! must make them read as zeros and drop every vCPU's translation of
//! them. A clone cannot punch the memfd (it is the snapshot's, under every
//! sibling), and `MADV_DONTNEED` on its private mapping brings back the
//! snapshot's bytes, not zeros. So a clone's release drops its copies of
//! the pages (`MADV_DONTNEED`: frees them, and KVM's MMU notifier drops
//! the translations, as a punch does), then zeroes, through its own
//! mapping, those whose snapshot page holds data (`SEEK_DATA`), so that a
//! FREE page reads zeros as everywhere else (Note [Arena page states]).
//! Pages that are holes in the snapshot cost nothing; a zeroed page keeps
//! a page of memory until the clone's reset (unmapping it instead would
//! split the mapping once per released run of pages, and a program could
//! make the process run out of mappings). If a step fails the release is
//! cancelled: the pages stay FREED, which an allocation zeroes anyway.
//!
//! `Sandbox::reset` of a clone maps the snapshot's memfd privately over
//! the arena again, as it does for guest memory (where the state region
//! and PTEs live): pages and their bookkeeping return to the snapshot
//! together. A clone has no memfd of its own to hand out
//! ([`crate::arena::ArenaHandle::as_fd`] is `None`).

use super::{Arena, ArenaSetupError, Backing, window::Window};
use crate::memory;
use kvm_ioctls::VmFd;
use shm::arena::{ArenaGeometry, PageRange};
use shm::layout::PAGE_SIZE;
use std::fs::File;
use std::sync::Arc;

/// An arena as a snapshot holds it: its geometry and guest addresses, and
/// a copy of its memory to map privately in clones.
#[derive(Debug)]
pub(crate) struct ArenaImage {
    name: String,
    geom: ArenaGeometry,
    map_flags: u32,
    window: u64,
    states: u64,
    ptes: u64,
    memfd: Arc<File>,
    bytes: u64,
}

impl ArenaImage {
    /// Bytes of arena memory the image holds (the extents with data).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Arena {
    /// Copies the arena into an image for a snapshot: the memfd's extents
    /// with data, into a new sparse memfd. No vCPU may run meanwhile.
    /// Fails for a clone's arena (clones are not snapshotted).
    pub(crate) fn image(&self) -> std::io::Result<ArenaImage> {
        let Backing::Own(source) = &self.backing else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        let size = self.geom.size();
        let memfd = memory::memfd(c"bpfvisor-arena-snapshot")?;
        memfd.set_len(size)?;
        let bytes = memory::copy_extents(source, 0, &memfd, 0, size)?;
        Ok(ArenaImage {
            name: self.name.clone(),
            geom: self.geom,
            map_flags: self.map_flags,
            window: self.window,
            states: self.states,
            ptes: self.ptes,
            memfd: Arc::new(memfd),
            bytes,
        })
    }

    /// A clone's arena: `image`'s guest addresses, a host window of its
    /// own with the image's memfd mapped privately, and the memslot
    /// (Note [Arena clones]). Its tables and state region are already in
    /// the clone's guest memory, the snapshot's.
    pub(crate) fn clone_from(vm: &VmFd, image: &ArenaImage) -> Result<Arena, ArenaSetupError> {
        let mapping = Window::reserve_anywhere()?;
        let host_start = mapping.window() + (image.geom.user_vm_start() - image.window);
        mapping.map_private(&image.memfd, host_start, image.geom.size())?;
        let arena = Arena {
            name: image.name.clone(),
            geom: image.geom,
            map_flags: image.map_flags,
            window: image.window,
            host_start,
            states: image.states,
            ptes: image.ptes,
            backing: Backing::Snapshot(Arc::clone(&image.memfd)),
            mapping,
        };
        arena.register(vm)?;
        Ok(arena)
    }

    /// For a clone's arena: maps the snapshot privately over it again,
    /// dropping every page it copied. Nothing for an arena of its own
    /// (a reset keeps its pages).
    pub(crate) fn revert(&self) -> Result<(), ArenaSetupError> {
        match &self.backing {
            Backing::Own(_) => Ok(()),
            Backing::Snapshot(memfd) => {
                self.mapping
                    .map_private(memfd, self.host_start, self.geom.size())
            }
        }
    }

    /// A clone's release of `range` (Note [Arena clones]): drops its
    /// copies, then zeroes the pages the snapshot holds data for.
    pub(super) fn discard_copies(&self, snapshot: &File, range: PageRange) -> std::io::Result<()> {
        let start = u64::from(range.first) * PAGE_SIZE;
        let end = u64::from(range.end()) * PAGE_SIZE;
        if end > self.geom.size() || start >= end {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: pages of this arena's own private mapping (in range,
        // checked), RELEASING: no vCPU maps them (their PTEs are clear) and
        // the host touches them only through raw pointers.
        let r = unsafe {
            libc::madvise(
                (self.host_start + start) as *mut libc::c_void,
                (end - start) as usize,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut at = start;
        while let Some((data, hole)) = memory::next_extent(snapshot, at, end)? {
            let first = data - data % PAGE_SIZE;
            let stop = hole.next_multiple_of(PAGE_SIZE).min(end);
            // SAFETY: inside the arena's mapping (first .. stop lies in
            // start .. end, checked above), writable; volatile, as any
            // host access to memory a vCPU could map.
            unsafe { volatile_zero(self.host_start + first, stop - first) };
            at = stop;
        }
        Ok(())
    }
}

/// Writes `len` zero bytes (a multiple of 8) at `addr` with volatile
/// stores.
///
/// # Safety
/// `addr .. addr + len` must be mapped writable and 8-byte aligned.
unsafe fn volatile_zero(addr: u64, len: u64) {
    let words = addr as *mut u64;
    for i in 0..(len / 8) as usize {
        // SAFETY: in range by the caller's contract.
        unsafe { words.add(i).write_volatile(0) };
    }
}

impl crate::Sandbox {
    /// Gives a sandbox booted from a snapshot its clone of the snapshot's
    /// arena (Note [Arena clones]).
    pub(crate) fn adopt_arena(&mut self, image: &ArenaImage) -> Result<(), ArenaSetupError> {
        let arena = Arena::clone_from(&self.vm, image)?;
        self.loaded.arena = Some(arena);
        self.publish_boot_state()
            .map_err(ArenaSetupError::WriteMemory)
    }
}
