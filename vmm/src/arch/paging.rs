//! Host-built 4-level page tables.
//!
//! ```text
//!  virtual address bits   47..39   38..30   29..21   20..12   11..0
//!                          PML4  →  PDPT  →   PD   →   PT   → offset
//! ```
//!
//! Tables are allocated from the page-table region of the address map
//! (`shm::layout::PAGE_TABLES_START`), which is itself not mapped, so the
//! guest cannot change its own mappings. Intermediate entries allow
//! everything; the leaf entry decides: present, writable or not, and NX on
//! every page that is not code. Accessed and dirty bits are preset so the CPU
//! never writes to the tables. Pages that are never mapped — the null page,
//! guard pages, the tables themselves — fault on any access.

use shm::layout::{Access, PAGE_SIZE, PAGE_TABLES_SIZE, PAGE_TABLES_START};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const ENTRIES: usize = 512;

/// Why a mapping could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// The page-table region is full.
    #[error("Page-table region is full ({PAGE_TABLES_SIZE:#x} bytes)")]
    OutOfTables,
    /// An address is not page-aligned or not canonical.
    #[error("Cannot map {0:#x}: not a page-aligned lower-half address")]
    BadAddress(u64),
    /// The page is already mapped.
    #[error("Page {0:#x} is mapped twice")]
    AlreadyMapped(u64),
}

/// Page tables under construction, as the bytes of the page-table region.
#[derive(Debug, Clone)]
pub struct PageTables {
    /// Tables allocated so far, the PML4 first.
    bytes: Vec<u8>,
}

impl Default for PageTables {
    fn default() -> Self {
        Self::new()
    }
}

impl PageTables {
    /// An empty hierarchy: just the PML4 at the start of the region.
    pub fn new() -> PageTables {
        PageTables {
            bytes: vec![0; PAGE_SIZE as usize],
        }
    }

    /// Guest-physical address of the PML4, for CR3.
    pub fn root(&self) -> u64 {
        PAGE_TABLES_START
    }

    /// The tables, to copy into guest memory at `PAGE_TABLES_START`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Maps `size` bytes at guest-virtual `virt` to guest-physical `phys`.
    /// `user` makes it reachable from CPL 3.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        size: u64,
        access: Access,
        user: bool,
    ) -> Result<(), PagingError> {
        for page in (0..size).step_by(PAGE_SIZE as usize) {
            self.map_page(virt + page, phys + page, access, user)?;
        }
        Ok(())
    }

    /// Maps a range identically (virtual = physical).
    pub fn identity_map(
        &mut self,
        start: u64,
        size: u64,
        access: Access,
        user: bool,
    ) -> Result<(), PagingError> {
        self.map(start, start, size, access, user)
    }

    fn map_page(
        &mut self,
        virt: u64,
        phys: u64,
        access: Access,
        user: bool,
    ) -> Result<(), PagingError> {
        if !virt.is_multiple_of(PAGE_SIZE) || virt >= 1 << 47 {
            return Err(PagingError::BadAddress(virt));
        }
        if !phys.is_multiple_of(PAGE_SIZE) || phys & !ADDRESS_MASK != 0 {
            return Err(PagingError::BadAddress(phys));
        }
        let mut table = 0;
        for level in [3u32, 2, 1] {
            let index = ((virt >> (12 + 9 * level)) & 0x1ff) as usize;
            let entry = self.entry(table, index);
            table = if entry & PRESENT != 0 {
                ((entry & ADDRESS_MASK) - PAGE_TABLES_START) as usize / PAGE_SIZE as usize
            } else {
                let new = self.allocate()?;
                let addr = PAGE_TABLES_START + new as u64 * PAGE_SIZE;
                self.set_entry(table, index, addr | PRESENT | WRITABLE | USER | ACCESSED);
                new
            };
        }
        let index = ((virt >> 12) & 0x1ff) as usize;
        if self.entry(table, index) & PRESENT != 0 {
            return Err(PagingError::AlreadyMapped(virt));
        }
        let user = if user { USER } else { 0 };
        self.set_entry(table, index, phys | leaf_flags(access) | user);
        Ok(())
    }

    fn allocate(&mut self) -> Result<usize, PagingError> {
        let index = self.bytes.len() / PAGE_SIZE as usize;
        if self.bytes.len() as u64 + PAGE_SIZE > PAGE_TABLES_SIZE {
            return Err(PagingError::OutOfTables);
        }
        self.bytes.resize(self.bytes.len() + PAGE_SIZE as usize, 0);
        Ok(index)
    }

    fn entry(&self, table: usize, index: usize) -> u64 {
        let at = table * PAGE_SIZE as usize + index * 8;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.bytes[at..at + 8]);
        u64::from_le_bytes(raw)
    }

    fn set_entry(&mut self, table: usize, index: usize, value: u64) {
        let at = table * PAGE_SIZE as usize + index * 8;
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Walks the tables like the MMU: the physical address, access and
    /// user-accessibility of `virt`, or `None` if it is not mapped.
    pub fn translate(&self, virt: u64) -> Option<(u64, Access, bool)> {
        let mut table = 0;
        for level in [3u32, 2, 1, 0] {
            let index = ((virt >> (12 + 9 * level)) & 0x1ff) as usize;
            let entry = self.entry(table, index);
            if entry & PRESENT == 0 {
                return None;
            }
            if level == 0 {
                let access = match (entry & WRITABLE != 0, entry & NO_EXECUTE == 0) {
                    (true, _) => Access::ReadWrite,
                    (false, true) => Access::ReadExec,
                    (false, false) => Access::Read,
                };
                let phys = (entry & ADDRESS_MASK) | (virt & (PAGE_SIZE - 1));
                return Some((phys, access, entry & USER != 0));
            }
            table = ((entry & ADDRESS_MASK) - PAGE_TABLES_START) as usize / PAGE_SIZE as usize;
        }
        None
    }
}

fn leaf_flags(access: Access) -> u64 {
    let base = PRESENT | ACCESSED;
    match access {
        Access::Read => base | NO_EXECUTE,
        Access::ReadWrite => base | WRITABLE | DIRTY | NO_EXECUTE,
        Access::ReadExec => base,
    }
}

const _: () = assert!(ENTRIES * 8 == PAGE_SIZE as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_follows_what_map_wrote() {
        let mut pt = PageTables::new();
        pt.identity_map(0x1000, 0x2000, Access::Read, false)
            .unwrap();
        pt.map(0x7f00_0000_0000, 0x40_0000, 0x1000, Access::ReadWrite, true)
            .unwrap();
        pt.identity_map(0x20_0000, 0x1000, Access::ReadExec, true)
            .unwrap();
        assert_eq!(pt.translate(0x1234), Some((0x1234, Access::Read, false)));
        assert_eq!(pt.translate(0x2fff), Some((0x2fff, Access::Read, false)));
        assert_eq!(pt.translate(0x3000), None);
        assert_eq!(pt.translate(0), None);
        assert_eq!(
            pt.translate(0x7f00_0000_0010),
            Some((0x40_0010, Access::ReadWrite, true))
        );
        assert_eq!(
            pt.translate(0x20_0000),
            Some((0x20_0000, Access::ReadExec, true))
        );
    }

    #[test]
    fn leaf_flags_never_allow_write_and_execute() {
        for access in [Access::Read, Access::ReadWrite, Access::ReadExec] {
            let flags = leaf_flags(access);
            assert!(
                flags & WRITABLE == 0 || flags & NO_EXECUTE != 0,
                "{access:?}"
            );
        }
    }

    #[test]
    fn bad_and_duplicate_mappings_are_refused() {
        let mut pt = PageTables::new();
        assert_eq!(
            pt.identity_map(0x1001, 0x1000, Access::Read, true),
            Err(PagingError::BadAddress(0x1001))
        );
        assert_eq!(
            pt.map(1 << 47, 0, 0x1000, Access::Read, true),
            Err(PagingError::BadAddress(1 << 47))
        );
        pt.identity_map(0x1000, 0x1000, Access::Read, true).unwrap();
        assert_eq!(
            pt.identity_map(0x1000, 0x1000, Access::Read, true),
            Err(PagingError::AlreadyMapped(0x1000))
        );
    }
}
