//! Guest memory: one memfd-backed region, mapped once in the host.
//!
//! The memfd lets later features map the same pages again (copy-on-write
//! clones, a second view for another process). All host access goes through
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
        Ok(GuestMemory { mem, size })
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
