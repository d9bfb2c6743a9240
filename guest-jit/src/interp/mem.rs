//! Guest memory as the interpreter sees it: a list of regions at guest
//! addresses, every access bounds-checked against them.
//!
//! The interpreter never forms a host pointer from a BPF value: an address
//! is only a key to look a region up, so a program can read or write nothing
//! but the bytes it was given, and results do not depend on where the host
//! allocated them.
//!
//! ```text
//!   0                    never mapped: NULL dereferences fault
//!   CTX_START            context (r1 at entry), as long as the input
//!                        (up to 256 MiB, below the stacks)
//!   STACK_AREA_START     frame 0: [top - 512, top), top = r10
//!   + STACK_STRIDE       frame 1 (mapped only while a local call runs)
//!   ...                  up to frame MAX_CALL_FRAMES - 1
//! ```
//!
//! Each frame's 512 bytes sit at the top of their own page, so the rest of
//! the page is an unmapped guard: running off one stack faults instead of
//! reaching another frame. These addresses are the interpreter's own model,
//! not the VM's map (which is `shm::layout`).

use thiserror::Error;

use crate::insn::Size;

/// Guest address of the context buffer.
pub const CTX_START: u64 = 0x1000_0000;
/// Bytes of stack per frame (the kernel's `MAX_BPF_STACK`, RFC 9669 §2.4).
pub const STACK_SIZE: usize = 512;
/// Start of the area holding the frames' stacks.
pub const STACK_AREA_START: u64 = 0x2000_0000;
/// Distance between consecutive frames' stacks.
pub const STACK_STRIDE: u64 = 0x1000;

/// r10 of call frame `frame` (0 = the program's entry frame).
pub const fn stack_top(frame: usize) -> u64 {
    // Saturating so that no frame number panics; only frames below
    // `MAX_CALL_FRAMES` are ever mapped.
    let frames = (frame as u64).saturating_add(1);
    STACK_AREA_START.saturating_add(frames.saturating_mul(STACK_STRIDE))
}

/// Lowest address of the stack of call frame `frame`.
pub const fn stack_start(frame: usize) -> u64 {
    stack_top(frame).saturating_sub(STACK_SIZE as u64)
}

/// What a region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The context buffer r1 points to at entry.
    Context,
    /// The stack of a call frame.
    Stack {
        /// Frame depth, 0 for the entry frame.
        frame: usize,
    },
    /// Anything else a caller maps (maps' values, read-only data, ...).
    Other,
}

/// A direction of access, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "Read",
            Access::Write => "Write",
        })
    }
}

/// Why a memory operation failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MemError {
    /// No single region holds all the bytes accessed.
    #[error("{access} of {len} bytes at {addr:#x} is outside every memory region")]
    FindRegion {
        /// First byte accessed.
        addr: u64,
        /// Number of bytes.
        len: usize,
        /// Read or write.
        access: Access,
    },
    /// The bytes are in a read-only region.
    #[error("Write of {len} bytes at {addr:#x} is to read-only memory")]
    WriteReadOnly {
        /// First byte accessed.
        addr: u64,
        /// Number of bytes.
        len: usize,
    },
    /// A new region overlaps an existing one or wraps around the address
    /// space.
    #[error("Region of {len} bytes at {start:#x} overlaps another or wraps around")]
    MapRegion {
        /// Guest address of the region.
        start: u64,
        /// Its length.
        len: usize,
    },
}

/// Bytes mapped at a guest address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    kind: RegionKind,
    start: u64,
    bytes: Vec<u8>,
    writable: bool,
}

impl Region {
    /// A region of `bytes` at guest address `start`.
    pub fn new(kind: RegionKind, start: u64, bytes: Vec<u8>, writable: bool) -> Self {
        Self {
            kind,
            start,
            bytes,
            writable,
        }
    }

    /// A zeroed stack for call frame `frame`.
    pub fn stack(frame: usize) -> Self {
        Self::new(
            RegionKind::Stack { frame },
            stack_start(frame),
            vec![0; STACK_SIZE],
            true,
        )
    }

    /// What the region holds.
    pub fn kind(&self) -> RegionKind {
        self.kind
    }

    /// Guest address of the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether stores are allowed.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Offset of `[addr, addr + len)` inside the region, if it is inside.
    fn offset_of(&self, addr: u64, len: usize) -> Option<usize> {
        let offset = usize::try_from(addr.checked_sub(self.start)?).ok()?;
        (offset.checked_add(len)? <= self.bytes.len()).then_some(offset)
    }
}

/// All the memory a program can reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    regions: Vec<Region>,
}

impl Memory {
    /// No memory at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Memory holding a writable context buffer at [`CTX_START`].
    pub fn with_context(ctx: Vec<u8>) -> Self {
        Self {
            regions: vec![Region::new(RegionKind::Context, CTX_START, ctx, true)],
        }
    }

    /// Adds a region; it must not overlap another one.
    pub fn map(&mut self, region: Region) -> Result<(), MemError> {
        let error = MemError::MapRegion {
            start: region.start,
            len: region.bytes.len(),
        };
        let len = u64::try_from(region.bytes.len()).map_err(|_| error.clone())?;
        let end = region.start.checked_add(len).ok_or(error.clone())?;
        let overlaps = self.regions.iter().any(|r| {
            // Bytes of a region always fit in the address space: checked
            // when it was mapped.
            let r_end = r.start + r.bytes.len() as u64;
            region.start < r_end && r.start < end
        });
        if overlaps {
            return Err(error);
        }
        self.regions.push(region);
        Ok(())
    }

    /// Removes and returns the region starting at `start`.
    pub fn unmap(&mut self, start: u64) -> Option<Region> {
        let index = self.regions.iter().position(|r| r.start == start)?;
        Some(self.regions.remove(index))
    }

    /// The regions, in the order they were mapped.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The first region of kind `kind`.
    pub fn region(&self, kind: RegionKind) -> Option<&Region> {
        self.regions.iter().find(|r| r.kind == kind)
    }

    /// Copies `buf.len()` bytes at `addr` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        let (region, offset) = self
            .regions
            .iter()
            .find_map(|r| r.offset_of(addr, len).map(|o| (r, o)))
            .ok_or(MemError::FindRegion {
                addr,
                len,
                access: Access::Read,
            })?;
        // In bounds: `offset_of` checked `offset + len <= bytes.len()`.
        buf.copy_from_slice(&region.bytes[offset..offset + len]);
        Ok(())
    }

    /// Copies `data` to `addr`.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let len = data.len();
        let (region, offset) = self
            .regions
            .iter_mut()
            .find_map(|r| r.offset_of(addr, len).map(|o| (r, o)))
            .ok_or(MemError::FindRegion {
                addr,
                len,
                access: Access::Write,
            })?;
        if !region.writable {
            return Err(MemError::WriteReadOnly { addr, len });
        }
        // In bounds: `offset_of` checked `offset + len <= bytes.len()`.
        region.bytes[offset..offset + len].copy_from_slice(data);
        Ok(())
    }

    /// Loads a little-endian value of `size` at `addr`, zero-extended.
    pub fn load(&self, addr: u64, size: Size) -> Result<u64, MemError> {
        let mut bytes = [0u8; 8];
        self.read(addr, &mut bytes[..size.bytes()])?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Stores the low `size` bytes of `value` at `addr`, little-endian.
    pub fn store(&mut self, addr: u64, size: Size, value: u64) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes()[..size.bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_are_little_endian() {
        let mut mem = Memory::with_context(vec![0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0]);
        assert_eq!(mem.load(CTX_START, Size::W), Ok(0x4433_2211));
        assert_eq!(mem.load(CTX_START + 1, Size::H), Ok(0x3322));
        mem.store(CTX_START + 4, Size::H, 0xdead_beef).unwrap();
        assert_eq!(mem.load(CTX_START, Size::DW), Ok(0xbeef_4433_2211));
    }

    #[test]
    fn out_of_bounds_accesses_fail() {
        let mut mem = Memory::with_context(vec![0; 4]);
        let err = mem.load(CTX_START + 1, Size::W).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Read of 4 bytes at 0x10000001 is outside every memory region"
        );
        assert!(mem.load(CTX_START - 1, Size::B).is_err());
        assert!(mem.load(0, Size::B).is_err());
        assert!(mem.load(u64::MAX, Size::DW).is_err());
        assert_eq!(
            mem.store(u64::MAX - 3, Size::DW, 0),
            Err(MemError::FindRegion {
                addr: u64::MAX - 3,
                len: 8,
                access: Access::Write,
            })
        );
    }

    #[test]
    fn an_access_may_not_span_two_regions() {
        let mut mem = Memory::new();
        mem.map(Region::new(RegionKind::Other, 0x1000, vec![0; 4], true))
            .unwrap();
        mem.map(Region::new(RegionKind::Other, 0x1004, vec![0; 4], true))
            .unwrap();
        assert!(mem.load(0x1002, Size::W).is_err());
        assert!(mem.load(0x1004, Size::W).is_ok());
    }

    #[test]
    fn read_only_regions_refuse_writes() {
        let mut mem = Memory::new();
        mem.map(Region::new(RegionKind::Other, 0x1000, vec![7; 8], false))
            .unwrap();
        assert_eq!(mem.load(0x1000, Size::B), Ok(7));
        let err = mem.store(0x1000, Size::B, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Write of 1 bytes at 0x1000 is to read-only memory"
        );
    }

    #[test]
    fn overlapping_or_wrapping_regions_are_refused() {
        let mut mem = Memory::with_context(vec![0; 16]);
        let err = mem
            .map(Region::new(
                RegionKind::Other,
                CTX_START + 15,
                vec![0; 2],
                true,
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Region of 2 bytes at 0x1000000f overlaps another or wraps around"
        );
        assert!(
            mem.map(Region::new(RegionKind::Other, u64::MAX, vec![0; 2], true))
                .is_err()
        );
        assert!(mem.map(Region::stack(0)).is_ok());
        assert!(mem.map(Region::stack(0)).is_err());
        assert_eq!(
            mem.unmap(stack_start(0)).map(|r| r.kind()),
            Some(RegionKind::Stack { frame: 0 })
        );
        assert!(mem.region(RegionKind::Context).is_some());
    }

    #[test]
    fn stacks_have_guard_gaps() {
        let mut mem = Memory::new();
        mem.map(Region::stack(0)).unwrap();
        mem.map(Region::stack(1)).unwrap();
        assert!(mem.load(stack_top(0) - 8, Size::DW).is_ok());
        // Just above frame 0's top, and just below frame 1's bottom.
        assert!(mem.load(stack_top(0), Size::B).is_err());
        assert!(mem.load(stack_start(1) - 1, Size::B).is_err());
    }
}
