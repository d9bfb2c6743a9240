//! Where an arena is: [`ArenaGeometry`], which the host creates from the
//! map's definition and its own mappings, and [`ArenaHeader`], the copy
//! at the start of the state region the guest checks on every kfunc call
//! (Note [Trusting arena memory]).

use super::ArenaError;
use super::pte;
use crate::layout::PAGE_SIZE;
use crate::maps::{MapMemory, StorageView};
use crate::pod::Pod;
use core::mem::{offset_of, size_of};

/// `"ARNA"`: the first word of an arena's state region.
pub const ARENA_MAGIC: u32 = u32::from_le_bytes(*b"ARNA");

/// Most pages an arena may have: 4 GiB (the kernel's limit on
/// `max_entries * PAGE_SIZE`).
pub const MAX_PAGES: u32 = 1 << 20;

/// Guest-physical addresses must fit a PTE's address field (bits 12..51).
const PHYS_LIMIT: u64 = 1 << 52;

/// User addresses must be canonical lower-half ones.
const VIRT_LIMIT: u64 = 1 << 47;

/// The header at the start of the state region (diagram in the module
/// docs of [`super`]). The fields up to `reserved0` are written once by
/// the host and never change; the rest changes under `lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ArenaHeader {
    /// [`ARENA_MAGIC`].
    pub magic: u32,
    /// Pages in the arena (`max_entries`).
    pub npages: u32,
    /// Guest-physical address of page 0 (the arena memslot).
    pub gpa_base: u64,
    /// Virtual address of page 0, the same in guest and host.
    pub user_vm_start: u64,
    /// Guest address of page 0's leaf PTE; page j's is at `ptes + 8 * j`.
    pub ptes: u64,
    /// Bytes of the state array: `npages` rounded up to 8.
    pub states_len: u32,
    /// Zero.
    pub reserved0: u32,
    /// The arena's spin lock (Note [Map locks] in `shm::maps::lock`).
    pub lock: u32,
    /// First-fit hint: no page below it is FREE or FREED (Note [Finding
    /// free pages]). A hint only: garbage costs time, never correctness.
    pub cursor: u32,
    /// Pages ALLOCATED, as counted by the operations (informative).
    pub allocated: u32,
    /// Pages FREED and waiting for the host's release (informative: the
    /// host may use it to decide whether a release pass is worth it).
    pub freed: u32,
    /// Zero.
    pub reserved1: [u32; 2],
}

// SAFETY: repr(C), integers only, no padding (16 u32-sized and 3 u64
// fields, each at a multiple of its size; checked by a test).
unsafe impl Pod for ArenaHeader {}

/// Bytes of [`ArenaHeader`]; the state of page j is at `HEADER_SIZE + j`.
pub const HEADER_SIZE: usize = size_of::<ArenaHeader>();
/// Offset of the lock word in the state region.
pub(crate) const LOCK_OFF: usize = offset_of!(ArenaHeader, lock);
/// Offset of the first-fit hint.
pub(crate) const CURSOR_OFF: usize = offset_of!(ArenaHeader, cursor);
/// Offset of the ALLOCATED counter.
pub(crate) const ALLOCATED_OFF: usize = offset_of!(ArenaHeader, allocated);
/// Offset of the FREED counter.
pub(crate) const FREED_OFF: usize = offset_of!(ArenaHeader, freed);

/// A validated arena geometry: how many pages, and where page 0 is for
/// the guest's page tables and for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaGeometry {
    npages: u32,
    gpa_base: u64,
    user_vm_start: u64,
}

impl ArenaGeometry {
    /// A geometry of `npages` pages, page 0 at guest-physical `gpa_base`
    /// and virtual `user_vm_start`. Both page-aligned, the physical range
    /// inside a PTE's reach, the virtual one non-null, canonical and
    /// inside one 4 GiB-aligned region (the kernel's rule: programs form
    /// arena pointers from their low 32 bits).
    pub fn new(
        npages: u32,
        gpa_base: u64,
        user_vm_start: u64,
    ) -> Result<ArenaGeometry, ArenaError> {
        use ArenaError::InvalidArgument as Invalid;
        if npages == 0 || npages > MAX_PAGES {
            return Err(Invalid("page count must be 1 to 2^20"));
        }
        let size = u64::from(npages) * PAGE_SIZE;
        if !gpa_base.is_multiple_of(PAGE_SIZE) || gpa_base > PHYS_LIMIT - size {
            return Err(Invalid("guest-physical base not page-aligned or too high"));
        }
        if user_vm_start == 0
            || !user_vm_start.is_multiple_of(PAGE_SIZE)
            || user_vm_start > VIRT_LIMIT - size
        {
            return Err(Invalid(
                "user address null, not page-aligned or not canonical",
            ));
        }
        if user_vm_start >> 32 != (user_vm_start + size - 1) >> 32 {
            return Err(Invalid("user range crosses a 4 GiB boundary"));
        }
        Ok(ArenaGeometry {
            npages,
            gpa_base,
            user_vm_start,
        })
    }

    /// Checks a header the guest found in memory: the identity fields
    /// must be exactly what [`ArenaGeometry::header`] writes for the
    /// geometry they describe, else [`ArenaError::Corrupt`]. Returns the
    /// geometry and the PTE array's guest address.
    pub fn from_header(header: &ArenaHeader) -> Result<(ArenaGeometry, u64), ArenaError> {
        if header.magic != ARENA_MAGIC {
            return Err(ArenaError::Corrupt);
        }
        let geom = ArenaGeometry::new(header.npages, header.gpa_base, header.user_vm_start)
            .map_err(|_| ArenaError::Corrupt)?;
        let ptes = header.ptes;
        if ptes == 0
            || !ptes.is_multiple_of(8)
            || ptes.checked_add(geom.ptes_size() as u64).is_none()
        {
            return Err(ArenaError::Corrupt);
        }
        let want = geom.header(ptes);
        if identity(header) != identity(&want) {
            return Err(ArenaError::Corrupt);
        }
        Ok((geom, ptes))
    }

    /// The header of this arena, its PTE array at guest address `ptes`,
    /// with an unlocked lock, a zero hint and zero counters.
    pub fn header(&self, ptes: u64) -> ArenaHeader {
        ArenaHeader {
            magic: ARENA_MAGIC,
            npages: self.npages,
            gpa_base: self.gpa_base,
            user_vm_start: self.user_vm_start,
            ptes,
            states_len: self.states_len() as u32,
            reserved0: 0,
            lock: 0,
            cursor: 0,
            allocated: 0,
            freed: 0,
            reserved1: [0; 2],
        }
    }

    /// Pages.
    pub fn npages(&self) -> u32 {
        self.npages
    }

    /// Guest-physical address of page 0.
    pub fn gpa_base(&self) -> u64 {
        self.gpa_base
    }

    /// Virtual address of page 0.
    pub fn user_vm_start(&self) -> u64 {
        self.user_vm_start
    }

    /// Bytes the arena spans: `npages` pages.
    pub fn size(&self) -> u64 {
        u64::from(self.npages) * PAGE_SIZE
    }

    /// Bytes of the state array (`npages` rounded up to a word).
    pub fn states_len(&self) -> usize {
        (self.npages as usize).next_multiple_of(8)
    }

    /// Bytes of the state region: header and state array.
    pub fn states_size(&self) -> usize {
        HEADER_SIZE + self.states_len()
    }

    /// Bytes of the PTE array: one u64 per page.
    pub fn ptes_size(&self) -> usize {
        self.npages as usize * 8
    }

    /// The present PTE of page `page` (`page < npages`, unchecked):
    /// its guest-physical page with [`pte::ARENA_FLAGS`].
    pub fn pte(&self, page: u32) -> u64 {
        (self.gpa_base + u64::from(page) * PAGE_SIZE) | pte::ARENA_FLAGS
    }

    /// The virtual address of page `page`: what `bpf_arena_alloc_pages`
    /// returns.
    pub fn user_addr(&self, page: u32) -> u64 {
        self.user_vm_start + u64::from(page) * PAGE_SIZE
    }

    /// The page index of `addr` as the kernel computes it
    /// (`compute_pgoff`): from the low 32 bits only, so any pointer whose
    /// low half lies in the arena names a page of it. May be `npages` or
    /// more; the operations check.
    pub fn page_index(&self, addr: u64) -> u32 {
        (addr as u32).wrapping_sub(self.user_vm_start as u32) >> 12
    }

    /// Whether a state region view is large enough for this geometry
    /// (each access is bounds-checked anyway; this gives a clean error
    /// before an operation starts).
    pub(crate) fn check_states(&self, states: &impl MapMemory) -> Result<(), ArenaError> {
        if states.len() < self.states_size() {
            return Err(ArenaError::OutOfBounds);
        }
        Ok(())
    }

    /// As [`ArenaGeometry::check_states`], for both views.
    pub(crate) fn check_views(
        &self,
        states: &impl MapMemory,
        ptes: &impl MapMemory,
    ) -> Result<(), ArenaError> {
        self.check_states(states)?;
        if ptes.len() < self.ptes_size() {
            return Err(ArenaError::OutOfBounds);
        }
        Ok(())
    }
}

/// The fields of a header that never change.
fn identity(h: &ArenaHeader) -> (u32, u32, u64, u64, u64, u32, u32) {
    (
        h.magic,
        h.npages,
        h.gpa_base,
        h.user_vm_start,
        h.ptes,
        h.states_len,
        h.reserved0,
    )
}

/// Writes the arena's header and marks every page FREE: the host calls
/// it once, when it creates the arena, before any program runs. The PTE
/// array must already be zero (fresh memory: it is not touched here, so
/// page tables of unused ranges cost nothing).
pub fn init(geom: &ArenaGeometry, states: &impl MapMemory, ptes: u64) -> Result<(), ArenaError> {
    geom.check_states(states)?;
    states.zero(0, geom.states_size())?;
    states.write(0, crate::pod::pod_bytes(&geom.header(ptes)))?;
    Ok(())
}

/// Opens the arena whose state region is at guest address `header`: the
/// guest runtime's, on each kfunc call. Reads and checks the header
/// ([`ArenaGeometry::from_header`]) and returns the geometry with views of
/// the state region and the PTE array.
///
/// # Safety
///
/// * `header` must be readable, and `header .. header + states_size` and
///   `ptes .. ptes + ptes_size` of the header it holds must be valid for
///   reads and writes while the views live, as for [`StorageView::new`]
///   (the guest's arena regions are; a header a program rewrote fails the
///   check, or names memory the program can reach anyway).
pub unsafe fn open_guest_arena(
    header: u64,
) -> Result<(ArenaGeometry, StorageView<'static>, StorageView<'static>), ArenaError> {
    if header == 0 || !header.is_multiple_of(8) {
        return Err(ArenaError::Corrupt);
    }
    // SAFETY: non-null and aligned (checked), readable by the caller's
    // contract; ArenaHeader is Pod, so any bytes are a value.
    let h = unsafe { (header as *const ArenaHeader).read_volatile() };
    let (geom, ptes) = ArenaGeometry::from_header(&h)?;
    // SAFETY: the caller's contract covers both ranges; both are 8-byte
    // aligned (checked above and by from_header).
    let views = unsafe {
        (
            StorageView::new(header as *mut u8, geom.states_size(), header),
            StorageView::new(ptes as *mut u8, geom.ptes_size(), ptes),
        )
    };
    Ok((geom, views.0, views.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPA: u64 = 0x1_0000_0000;
    const VM: u64 = 0x7f48_0000_0000;

    #[test]
    fn the_header_has_no_padding_and_its_offsets_are_fixed() {
        assert_eq!(HEADER_SIZE, 64);
        assert_eq!(
            (LOCK_OFF, CURSOR_OFF, ALLOCATED_OFF, FREED_OFF),
            (40, 44, 48, 52)
        );
    }

    #[test]
    fn geometries_follow_the_kernel_rules() {
        let g = ArenaGeometry::new(3, GPA, VM + 0x1000).unwrap();
        assert_eq!(g.states_len(), 8);
        assert_eq!(g.states_size(), 72);
        assert_eq!(g.ptes_size(), 24);
        assert_eq!(g.pte(2), (GPA + 0x2000) | pte::ARENA_FLAGS);
        assert_eq!(g.user_addr(2), VM + 0x3000);
        assert_eq!(g.page_index(VM + 0x3fff), 2);
        // Only the low 32 bits count, as in the kernel.
        assert_eq!(g.page_index(0xdead_0000_0000_0000 | (VM + 0x2000)), 1);
        assert!(g.page_index(VM) >= g.npages());
        assert!(ArenaGeometry::new(MAX_PAGES, GPA, VM).is_ok());
        let bad = [
            ArenaGeometry::new(0, GPA, VM),
            ArenaGeometry::new(MAX_PAGES + 1, GPA, VM),
            ArenaGeometry::new(1, GPA + 8, VM),
            ArenaGeometry::new(1, PHYS_LIMIT, VM),
            ArenaGeometry::new(1, GPA, 0),
            ArenaGeometry::new(1, GPA, VM + 4),
            ArenaGeometry::new(1, GPA, VIRT_LIMIT),
            ArenaGeometry::new(2, GPA, VM + 0xffff_f000),
            ArenaGeometry::new(MAX_PAGES, GPA, VM + 0x1000),
        ];
        for b in bad {
            assert!(matches!(b, Err(ArenaError::InvalidArgument(_))), "{b:?}");
        }
        assert_eq!(
            ArenaGeometry::new(0, GPA, VM).unwrap_err().to_string(),
            "Invalid arena argument: page count must be 1 to 2^20"
        );
    }

    #[test]
    fn headers_round_trip_and_any_changed_identity_field_is_corrupt() {
        let g = ArenaGeometry::new(100, GPA, VM).unwrap();
        let h = g.header(0x20_0000);
        assert_eq!(ArenaGeometry::from_header(&h), Ok((g, 0x20_0000)));
        // The mutable fields are free to change.
        let busy = ArenaHeader {
            lock: 1,
            cursor: 7,
            allocated: 3,
            freed: 9,
            reserved1: [5, 5],
            ..h
        };
        assert_eq!(ArenaGeometry::from_header(&busy), Ok((g, 0x20_0000)));
        let bad = [
            ArenaHeader { magic: 0, ..h },
            ArenaHeader { npages: 0, ..h },
            ArenaHeader { npages: 200, ..h },
            ArenaHeader { gpa_base: 3, ..h },
            ArenaHeader {
                user_vm_start: VM + 0xffff_f000,
                ..h
            },
            ArenaHeader { ptes: 0, ..h },
            ArenaHeader {
                ptes: 0x20_0004,
                ..h
            },
            ArenaHeader {
                ptes: u64::MAX - 7,
                ..h
            },
            ArenaHeader {
                states_len: 100,
                ..h
            },
            ArenaHeader { reserved0: 1, ..h },
        ];
        for b in bad {
            assert_eq!(
                ArenaGeometry::from_header(&b),
                Err(ArenaError::Corrupt),
                "{b:?}"
            );
        }
    }

    #[test]
    fn the_guest_opens_an_arena_from_its_header() {
        use std::sync::atomic::AtomicU64;
        let g = ArenaGeometry::new(20, GPA, VM).unwrap();
        let states: Vec<AtomicU64> = (0..g.states_size() / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        let ptes: Vec<AtomicU64> = (0..20).map(|_| AtomicU64::new(0)).collect();
        let addr = states.as_ptr() as u64;
        init(
            &g,
            &StorageView::from_atomic(&states, addr),
            ptes.as_ptr() as u64,
        )
        .unwrap();
        // SAFETY: both vectors live until the end of the test.
        let (geom, s, p) = unsafe { open_guest_arena(addr) }.unwrap();
        assert_eq!(geom, g);
        assert_eq!((s.len(), p.len()), (g.states_size(), 160));
        s.store_u32(0, 0).unwrap();
        // SAFETY: as above; the bad magic is refused before any view.
        let bad_magic = unsafe { open_guest_arena(addr) };
        assert!(matches!(bad_magic, Err(ArenaError::Corrupt)));
        // SAFETY: refused before any access.
        let misaligned = unsafe { open_guest_arena(addr + 4) };
        assert!(matches!(misaligned, Err(ArenaError::Corrupt)));
    }
}
