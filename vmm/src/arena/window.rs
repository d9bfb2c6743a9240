//! The host side of the arena window (Note [Arena window]): a `PROT_NONE`
//! reservation of 4 GiB with guards, 4 GiB-aligned, and the memfd mapped
//! inside it (shared, or a snapshot's privately for a clone: Note [Arena
//! clones]). Dropping it unmaps both.

use super::{ArenaSetupError, HOST_GUARD, WINDOW_SIZE};
use std::fs::File;
use std::os::fd::AsRawFd;

/// `[window - HOST_GUARD, window + WINDOW_SIZE + HOST_GUARD)`, reserved.
#[derive(Debug)]
pub(super) struct Window {
    /// Start of the reservation (the low guard).
    base: u64,
    /// The 4 GiB-aligned window.
    window: u64,
}

const RESERVED: u64 = WINDOW_SIZE + 2 * HOST_GUARD;

impl Window {
    /// Reserves a window wherever the kernel has room: twice the size,
    /// then gives back what lies outside the aligned part.
    pub(super) fn reserve_anywhere() -> Result<Window, ArenaSetupError> {
        let len = 2 * WINDOW_SIZE + 2 * HOST_GUARD;
        // SAFETY: a fresh anonymous PROT_NONE mapping; nothing else is
        // affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ArenaSetupError::Reserve(std::io::Error::last_os_error()));
        }
        let start = p as u64;
        let window = (start + HOST_GUARD).next_multiple_of(WINDOW_SIZE);
        let base = window - HOST_GUARD;
        let end = base + RESERVED;
        // SAFETY: both ranges lie inside the mapping just made and outside
        // the part kept.
        unsafe {
            if base > start {
                libc::munmap(p, (base - start) as usize);
            }
            if start + len > end {
                libc::munmap(end as *mut libc::c_void, (start + len - end) as usize);
            }
        }
        Ok(Window { base, window })
    }

    /// Reserves the window at `window` exactly, or fails (the address is in
    /// use, or not a user address).
    pub(super) fn reserve_at(window: u64) -> std::io::Result<Window> {
        let base = window
            .checked_sub(HOST_GUARD)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                RESERVED as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if p as u64 != base {
            // An old kernel that ignores the flag placed it elsewhere.
            // SAFETY: the mapping just made, unused.
            unsafe { libc::munmap(p, RESERVED as usize) };
            return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(Window { base, window })
    }

    /// The 4 GiB-aligned start.
    pub(super) fn window(&self) -> u64 {
        self.window
    }

    /// Maps `size` bytes of `memfd` (from offset 0) at `at`, inside the
    /// window, shared: the arena of a sandbox that was not cloned.
    pub(super) fn map_memfd(
        &self,
        memfd: &File,
        at: u64,
        size: u64,
    ) -> Result<(), ArenaSetupError> {
        self.map(memfd, at, size, libc::MAP_SHARED)
    }

    /// Maps `size` bytes of a snapshot's `memfd` (from offset 0) at `at`,
    /// inside the window, privately: a clone's arena, which reads the
    /// snapshot's bytes and copies a page when it first writes it. Over
    /// an existing mapping, drops every page copied so far.
    pub(super) fn map_private(
        &self,
        memfd: &File,
        at: u64,
        size: u64,
    ) -> Result<(), ArenaSetupError> {
        self.map(memfd, at, size, libc::MAP_PRIVATE | libc::MAP_NORESERVE)
    }

    fn map(
        &self,
        memfd: &File,
        at: u64,
        size: u64,
        flags: libc::c_int,
    ) -> Result<(), ArenaSetupError> {
        let inside = at >= self.window
            && at
                .checked_add(size)
                .is_some_and(|end| end <= self.window + WINDOW_SIZE);
        if !inside {
            return Err(ArenaSetupError::MapMemfd(
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        // SAFETY: MAP_FIXED over part of our own reservation (checked
        // above), which nothing else uses; the host reaches arena memory
        // only through raw pointers (never references), so replacing
        // pages under them changes only the bytes they read.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_FIXED,
                memfd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ArenaSetupError::MapMemfd(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the reservation (and the memfd mapping inside it) is
        // ours; the memslot that used it went with the VM, dropped first.
        let r = unsafe { libc::munmap(self.base as *mut libc::c_void, RESERVED as usize) };
        debug_assert_eq!(r, 0, "munmap of the arena window failed");
    }
}
