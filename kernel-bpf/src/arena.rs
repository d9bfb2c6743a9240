//! A kernel arena (`BPF_MAP_TYPE_ARENA`) mapped into this process.
//!
//! The verifier refuses a program using an arena whose user address is
//! not known yet ("arena's user address must be set via map_extra or
//! mmap()"): as libbpf does, the loader maps the arena right after
//! creating it — at `map_extra` when the object asks for an address (never
//! over an existing mapping: `MAP_FIXED_NOREPLACE`), else where the kernel
//! likes — and keeps the mapping while the object lives. Pages fault in
//! on first touch, which is how the `__arena` globals' initial bytes get
//! their pages, written at the arena's end (`arena_globals_offset`).

use crate::error::KernelError;
use guest_jit::elf::ARENA_PAGE_SIZE;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The arena's pages in this process; unmapped on drop.
#[derive(Debug)]
pub struct ArenaMapping {
    base: *mut u8,
    len: usize,
    /// `BPF_F_SEGV_ON_FAULT`: a page not allocated yet faults with
    /// SIGSEGV in user space instead of being allocated, so this process
    /// never touches the arena (it could not tell which pages are there).
    segv_on_fault: bool,
}

// SAFETY: the mapping is shared memory owned by this value, accessed only
// with volatile copies: sending or sharing it is as safe as sharing the
// memory with the kernel's programs already is.
unsafe impl Send for ArenaMapping {}
// SAFETY: as above.
unsafe impl Sync for ArenaMapping {}

impl ArenaMapping {
    /// Maps arena `map` (`name`, `pages` pages, asking for address
    /// `map_extra`, 0 for any).
    pub(crate) fn new(
        name: &str,
        map: BorrowedFd<'_>,
        pages: u32,
        map_extra: u64,
        segv_on_fault: bool,
    ) -> Result<ArenaMapping, KernelError> {
        let failed = |source| KernelError::MapArena {
            name: name.to_owned(),
            source,
        };
        let len = usize::try_from(u64::from(pages) * ARENA_PAGE_SIZE)
            .map_err(|_| failed(std::io::ErrorKind::InvalidInput.into()))?;
        let hint = usize::try_from(map_extra)
            .map_err(|_| failed(std::io::ErrorKind::InvalidInput.into()))?;
        let flags = if hint == 0 {
            libc::MAP_SHARED
        } else {
            libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE
        };
        // SAFETY: a new shared mapping of the arena; with an address, only
        // where nothing is mapped (MAP_FIXED_NOREPLACE), so no memory of
        // ours is replaced.
        let base = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                map.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(failed(std::io::Error::last_os_error()));
        }
        let mapping = ArenaMapping {
            base: base.cast(),
            len,
            segv_on_fault,
        };
        if hint != 0 && mapping.user_start() != map_extra {
            return Err(failed(std::io::ErrorKind::AddrInUse.into()));
        }
        Ok(mapping)
    }

    /// The arena's first address, as programs see it in user space.
    pub fn user_start(&self) -> u64 {
        self.base as usize as u64
    }

    /// Bytes of address space the arena takes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no pages at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` to `offset` of the arena; `false` if they do not
    /// fit, or the arena is `BPF_F_SEGV_ON_FAULT`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if self.segv_on_fault
            || offset
                .checked_add(bytes.len())
                .is_none_or(|end| end > self.len)
        {
            return false;
        }
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: offset + i < len (checked): inside the mapping,
            // which lives as long as `self`; volatile, as programs may
            // touch the same bytes.
            unsafe { self.base.add(offset + i).write_volatile(b) };
        }
        true
    }

    /// Copies `len` bytes from `offset` of the arena; `None` if they do
    /// not fit, or the arena is `BPF_F_SEGV_ON_FAULT`. Reading a page no
    /// one touched yet allocates it, as any access from user space does.
    pub fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        if self.segv_on_fault || offset.checked_add(len).is_none_or(|end| end > self.len) {
            return None;
        }
        Some(
            (0..len)
                // SAFETY: as in `write`.
                .map(|i| unsafe { self.base.add(offset + i).read_volatile() })
                .collect(),
        )
    }
}

impl Drop for ArenaMapping {
    fn drop(&mut self) {
        // SAFETY: the range is our mapping, made in `new`; nothing
        // borrows it past `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
