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
        let name = c"bpfvisor-guest";
        // SAFETY: `name` is a valid NUL-terminated string; the call has no
        // other memory effects.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(MemoryError::CreateMemfd(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
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

#[cfg(test)]
mod tests {
    use super::*;

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
