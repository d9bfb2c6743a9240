//! Guest memory: one memfd-backed region, mapped once in the host — shared
//! with a memfd of its own, or privately (copy-on-write) over a snapshot's
//! memfd, with shared overlays for what host threads map again (ring
//! buffers: Note [Snapshots and clones]).
//!
//! The memfd lets the host map the same pages again (ring buffers, clones,
//! a second view for another process). All host access goes through
//! `vm-memory`'s volatile copies: the guest may be writing the same bytes, so
//! the host never forms a reference into guest memory.

use shm::pod::{Pod, pod_bytes, read_pod};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Why guest memory could not be created or accessed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// `memfd_create` failed.
    #[error("Failed to create the guest memory file")]
    CreateMemfd(#[source] std::io::Error),
    /// Sizing the memfd failed.
    #[error("Failed to size the guest memory file to {0:#x} bytes")]
    SetLen(u64, #[source] std::io::Error),
    /// Mapping the memfd failed.
    #[error("Failed to map guest memory")]
    Map(#[source] vm_memory::mmap::MmapRegionError),
    /// The mapping could not become guest memory.
    #[error("Failed to register guest memory")]
    Register(#[source] vm_memory::GuestRegionCollectionError),
    /// Mapping a file over guest memory failed.
    #[error("Failed to remap guest memory")]
    Remap(#[source] std::io::Error),
    /// An access fell outside guest memory.
    #[error("Guest memory access of {len} bytes at {addr:#x} is out of bounds")]
    OutOfBounds {
        /// Guest-physical address of the access.
        addr: u64,
        /// Length of the access.
        len: usize,
    },
}

/// The guest's physical memory, starting at guest-physical address 0.
#[derive(Debug)]
pub struct GuestMemory {
    mem: GuestMemoryMmap,
    size: u64,
    /// A private (copy-on-write) mapping of a snapshot's memfd, rather
    /// than a shared mapping of a memfd of its own.
    private: bool,
}

impl GuestMemory {
    /// Creates `size` bytes of zeroed guest memory backed by a fresh memfd.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        let file = memfd(c"bpfvisor-guest").map_err(MemoryError::CreateMemfd)?;
        file.set_len(size)
            .map_err(|e| MemoryError::SetLen(size, e))?;
        let len = usize::try_from(size).map_err(|_| MemoryError::OutOfBounds {
            addr: 0,
            len: usize::MAX,
        })?;
        let region =
            MmapRegion::from_file(FileOffset::new(file, 0), len).map_err(MemoryError::Map)?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or(MemoryError::OutOfBounds { addr: 0, len })?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(MemoryError::Register)?;
        Ok(GuestMemory {
            mem,
            size,
            private: false,
        })
    }

    /// Guest memory over `snapshot`, a memfd of `size` bytes holding a
    /// sandbox's memory, copy-on-write: reads see the snapshot, a write
    /// copies the page it touches into this mapping alone. Nothing is
    /// copied up front.
    pub fn copy_on_write(snapshot: &File, size: u64) -> Result<GuestMemory, MemoryError> {
        let file = snapshot.try_clone().map_err(MemoryError::CreateMemfd)?;
        let len = usize::try_from(size).map_err(|_| MemoryError::OutOfBounds {
            addr: 0,
            len: usize::MAX,
        })?;
        let region = vm_memory::mmap::MmapRegionBuilder::new(len)
            .with_file_offset(FileOffset::new(file, 0))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_NORESERVE | libc::MAP_PRIVATE)
            .build()
            .map_err(MemoryError::Map)?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or(MemoryError::OutOfBounds { addr: 0, len })?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(MemoryError::Register)?;
        Ok(GuestMemory {
            mem,
            size,
            private: true,
        })
    }

    /// Whether this is a copy-on-write view of a snapshot.
    pub fn is_copy_on_write(&self) -> bool {
        self.private
    }

    /// Maps `len` bytes of `file` from `offset` over guest-physical
    /// `addr..addr + len`, shared: what the guest writes there goes to
    /// the file (and what another mapping of it writes is seen). For
    /// the memory a copy-on-write sandbox shares with host threads.
    pub fn overlay(
        &self,
        addr: u64,
        file: &File,
        offset: u64,
        len: u64,
    ) -> Result<(), MemoryError> {
        self.check(addr, usize::try_from(len).unwrap_or(usize::MAX))?;
        let bad = |_| MemoryError::OutOfBounds {
            addr,
            len: len as usize,
        };
        if !addr.is_multiple_of(4096) || !len.is_multiple_of(4096) || !offset.is_multiple_of(4096) {
            return Err(MemoryError::OutOfBounds {
                addr,
                len: len as usize,
            });
        }
        let offset = libc::off_t::try_from(offset).map_err(bad)?;
        // SAFETY: the target lies inside this mapping (checked), which
        // MAP_FIXED replaces with the file's pages; the host only reaches
        // guest memory through volatile copies and views, never through
        // references, so nothing observes the swap but the data.
        let got = unsafe {
            libc::mmap(
                (self.host_base() + addr) as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                std::os::fd::AsRawFd::as_raw_fd(file),
                offset,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(MemoryError::Remap(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// For a copy-on-write view: drops every page it copied, so that the
    /// memory is the snapshot's again (overlays are gone too).
    pub fn revert(&self) -> Result<(), MemoryError> {
        use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion as _};
        let file = self
            .mem
            .iter()
            .next()
            .and_then(|r| r.file_offset())
            .filter(|_| self.private)
            .ok_or(MemoryError::OutOfBounds { addr: 0, len: 0 })?;
        // SAFETY: the whole mapping, replaced by a fresh private mapping of
        // the same file at the same place; as in `overlay`, nothing holds
        // references into it.
        let got = unsafe {
            libc::mmap(
                self.host_base() as *mut libc::c_void,
                self.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                std::os::fd::AsRawFd::as_raw_fd(file.file()),
                0,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(MemoryError::Remap(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `vm-memory` view, for registering with KVM.
    pub fn inner(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The memfd behind guest memory (offset = guest-physical address), to
    /// map parts of it again.
    pub fn memfd(&self) -> Option<&File> {
        use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion as _};
        if self.private {
            // The file is the snapshot's: it does not see this memory.
            return None;
        }
        Some(self.mem.iter().next()?.file_offset()?.file())
    }

    /// Host address where guest-physical 0 is mapped.
    pub fn host_base(&self) -> u64 {
        use vm_memory::GuestMemoryBackend as _;
        self.mem
            .get_host_address(GuestAddress(0))
            .map(|p| p as u64)
            .unwrap_or(0)
    }

    /// Copies `bytes` to guest address `addr`.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), MemoryError> {
        self.check(addr, bytes.len())?;
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfBounds {
                addr,
                len: bytes.len(),
            })
    }

    /// Copies guest bytes at `addr` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.check(addr, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfBounds {
                addr,
                len: buf.len(),
            })
    }

    /// Fills `len` bytes at `addr` with zeros.
    pub fn zero(&self, addr: u64, len: usize) -> Result<(), MemoryError> {
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK.len());
            self.write(addr + done as u64, &CHUNK[..n])?;
            done += n;
        }
        Ok(())
    }

    /// Writes a plain-old-data value at `addr`.
    pub fn write_pod<T: Pod>(&self, addr: u64, value: &T) -> Result<(), MemoryError> {
        self.write(addr, pod_bytes(value))
    }

    /// Reads a plain-old-data value from `addr`. The guest may have written
    /// anything there; `T: Pod` makes any bytes a valid value.
    pub fn read_pod<T: Pod>(&self, addr: u64) -> Result<T, MemoryError> {
        let mut buf = [0u8; 512];
        let len = std::mem::size_of::<T>();
        let buf = buf
            .get_mut(..len)
            .ok_or(MemoryError::OutOfBounds { addr, len })?;
        self.read(addr, buf)?;
        read_pod(buf).ok_or(MemoryError::OutOfBounds { addr, len })
    }

    fn check(&self, addr: u64, len: usize) -> Result<(), MemoryError> {
        match addr.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(MemoryError::OutOfBounds { addr, len }),
        }
    }
}

/// A new, empty memfd (close-on-exec) named `name`: size it with
/// `set_len`, which leaves it all a hole.
pub(crate) fn memfd(name: &std::ffi::CStr) -> std::io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the call has no
    // other memory effects.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Copies the extents of `src` that hold data (`SEEK_DATA` / `SEEK_HOLE`)
/// within `src_off .. src_off + len` to `dst`, `src_off` landing at
/// `dst_off`: holes stay holes. Returns the bytes copied.
pub(crate) fn copy_extents(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let offset = |v: u64| i64::try_from(v).map_err(|_| std::io::ErrorKind::InvalidInput);
    let end = src_off
        .checked_add(len)
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    let shift = offset(dst_off)? - offset(src_off)?;
    let mut copied = 0;
    let mut at = src_off;
    while let Some((start, stop)) = next_extent(src, at, end)? {
        let (mut off_in, stop) = (offset(start)?, offset(stop)?);
        let mut off_out = off_in + shift;
        while off_in < stop {
            // SAFETY: the offsets are valid for writes of one i64 each.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &raw mut off_in,
                    dst.as_raw_fd(),
                    &raw mut off_out,
                    (stop - off_in) as usize,
                    0,
                )
            };
            if n <= 0 {
                return Err(if n == 0 {
                    std::io::ErrorKind::UnexpectedEof.into()
                } else {
                    std::io::Error::last_os_error()
                });
            }
            copied += n as u64;
        }
        at = stop as u64;
    }
    Ok(copied)
}

/// The first extent of `file` that holds data at or after `at`, cut at
/// `end`: `start .. stop`, or `None` if there is none before `end`.
pub(crate) fn next_extent(file: &File, at: u64, end: u64) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    if at >= end {
        return Ok(None);
    }
    let at = i64::try_from(at).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: plain descriptor calls; no memory is passed.
    let start = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
    if start < 0 {
        let e = std::io::Error::last_os_error();
        // ENXIO: no data after `at`.
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let start = start as u64;
    if start >= end {
        return Ok(None);
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), start as i64, libc::SEEK_HOLE) };
    if hole < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some((start, (hole as u64).min(end))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn extents_are_copied_shifted_and_holes_stay_holes() {
        let src = memfd(c"test-src").unwrap();
        src.set_len(16 * 4096).unwrap();
        src.write_all_at(&[1; 4096], 4096).unwrap();
        src.write_all_at(&[2; 10], 10 * 4096).unwrap();
        src.write_all_at(&[3; 10], 15 * 4096).unwrap();
        let dst = memfd(c"test-dst").unwrap();
        dst.set_len(16 * 4096).unwrap();
        // Pages 1..=12 of src land at page 0 of dst; page 15 is outside.
        let copied = copy_extents(&src, 4096, &dst, 0, 12 * 4096).unwrap();
        assert_eq!(copied, 2 * 4096, "the two pages with data, whole");
        let mut page = vec![0u8; 4096];
        dst.read_exact_at(&mut page, 0).unwrap();
        assert!(page.iter().all(|&b| b == 1));
        dst.read_exact_at(&mut page, 9 * 4096).unwrap();
        assert_eq!(&page[..11], &[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        dst.read_exact_at(&mut page, 14 * 4096).unwrap();
        assert!(
            page.iter().all(|&b| b == 0),
            "page 15 was outside the range"
        );
        // The rest is still a hole: only two pages hold memory.
        // SAFETY: fstat fills `st` on success.
        let blocks = unsafe {
            let mut st = std::mem::zeroed::<libc::stat>();
            assert_eq!(
                libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&dst), &raw mut st),
                0
            );
            st.st_blocks
        };
        assert_eq!(blocks * 512, 2 * 4096);
    }

    #[test]
    fn reads_back_writes_and_refuses_out_of_bounds() {
        let mem = GuestMemory::new(0x2000).unwrap();
        mem.write_pod(0x1ff8, &0x1234_5678_u64).unwrap();
        assert_eq!(mem.read_pod::<u64>(0x1ff8).unwrap(), 0x1234_5678);
        let err = mem.write_pod(0x1ffc, &0u64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Guest memory access of 8 bytes at 0x1ffc is out of bounds"
        );
        assert!(mem.read(u64::MAX, &mut [0u8; 2]).is_err());
    }
}
