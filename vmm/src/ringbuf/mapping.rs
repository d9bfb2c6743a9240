//! The host's own mapping of a ring: the guest memory memfd's pages of
//! the ring mapped again into a fresh range of the host's address space,
//! the data twice, with the protections of the host's end.
//!
//! ```text
//!  host range (span = 3 pages + 2 × size)     memfd offset (= guest-physical)
//!  +0          first page (MapHeader, meta)   header      read-only
//!  +0x1000     consumer position              header + 0x1000
//!  +0x2000     producer position              header + 0x2000
//!  +0x3000     data                           header + 0x3000
//!  +0x3000+S   data again                     header + 0x3000
//! ```
//! A consumer maps only the consumer position writable, a producer only
//! the producer position and the data: a host bug writing where its end
//! must not faults instead of corrupting the guest's ring.
//!
//! Note [Kernel ring mapping]
//! A ring buffer of the host kernel (`BPF_MAP_TYPE_RINGBUF`, its map fd)
//! has the same positions and record format, and its mmap offers the same
//! pages in another order: the consumer position page at offset 0 (the
//! only page it lets us write), then the producer position page and the
//! data twice at offset `PAGE_SIZE` (read-only). [`RingMapping::kernel`]
//! maps them where the layout above has them, with a zero page in front,
//! so one consumer reads both kinds of ring:
//! ```text
//!  host range                                 map fd offset
//!  +0          zero page (no map header)      -               read-only
//!  +0x1000     consumer position              0               read-write
//!  +0x2000     producer position              0x1000          read-only
//!  +0x3000     data, then data again          0x2000 ...      read-only
//! ```

use shm::layout::PAGE_SIZE;
use shm::maps::StorageView;
use shm::maps::memory::HOST_SPIN_TRIES;
use shm::ringbuf::{DATA_OFFSET, RingGeometry};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Which end of the ring the host is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Consumer of a `RINGBUF`: writes the consumer position.
    Consumer,
    /// Producer of a `USER_RINGBUF`: writes the producer position and data.
    Producer,
}

/// A ring mapped into the host; unmapped on drop.
#[derive(Debug)]
pub(crate) struct RingMapping {
    base: *mut u8,
    span: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is
// only accessed through `StorageView`s (atomic and volatile accesses), so
// moving or sharing it between threads is as safe as sharing the memory
// with the guest already is.
unsafe impl Send for RingMapping {}
// SAFETY: as above; `view` takes &self and views are Sync.
unsafe impl Sync for RingMapping {}

impl RingMapping {
    /// Maps the ring whose first page is at offset `header` of `memfd`.
    pub(crate) fn new(
        memfd: &File,
        header: u64,
        geom: &RingGeometry,
        end: End,
    ) -> std::io::Result<RingMapping> {
        let mapping = RingMapping::reserve(geom)?;
        let size = geom.size() as usize;
        let page = PAGE_SIZE as usize;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let (cons_prot, prod_prot) = match end {
            End::Consumer => (rw, libc::PROT_READ),
            End::Producer => (libc::PROT_READ, rw),
        };
        let pieces = [
            (0, header, page, libc::PROT_READ),
            (page, header + PAGE_SIZE, page, cons_prot),
            (2 * page, header + 2 * PAGE_SIZE, page + size, prod_prot),
            (
                DATA_OFFSET + size,
                header + DATA_OFFSET as u64,
                size,
                prod_prot,
            ),
        ];
        for (at, offset, len, prot) in pieces {
            mapping.map_at(at, len, prot, memfd.as_raw_fd(), offset)?;
        }
        Ok(mapping)
    }

    /// Maps the host kernel's ring buffer `map` (a `RINGBUF` map fd) as a
    /// consumer: Note [Kernel ring mapping].
    pub(crate) fn kernel(map: BorrowedFd<'_>, geom: &RingGeometry) -> std::io::Result<RingMapping> {
        let mapping = RingMapping::reserve(geom)?;
        let size = geom.size() as usize;
        let page = PAGE_SIZE as usize;
        let fd = map.as_raw_fd();
        // The zero page: readable as the guest ring's header page is.
        mapping.map_at(0, page, libc::PROT_READ, -1, 0)?;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        mapping.map_at(page, page, rw, fd, 0)?;
        mapping.map_at(2 * page, page + 2 * size, libc::PROT_READ, fd, PAGE_SIZE)?;
        Ok(mapping)
    }

    /// A fresh `PROT_NONE` range of the span of a ring of `geom`, unmapped
    /// on drop.
    fn reserve(geom: &RingGeometry) -> std::io::Result<RingMapping> {
        let span = usize::try_from(geom.span()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh anonymous PROT_NONE reservation; nothing else
        // refers to the range it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingMapping {
            base: base.cast(),
            span,
        })
    }

    /// Maps `len` bytes of `fd` from `offset` (anonymous zeros when `fd`
    /// is -1) at `at` of the reservation, shared, with `prot`.
    fn map_at(
        &self,
        at: usize,
        len: usize,
        prot: libc::c_int,
        fd: RawFd,
        offset: u64,
    ) -> std::io::Result<()> {
        let inside = at.checked_add(len).is_some_and(|end| end <= self.span);
        if !inside {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let offset = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let flags = if fd < 0 {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED
        } else {
            libc::MAP_SHARED | libc::MAP_FIXED
        };
        // SAFETY: `at + len <= span` (checked): the target lies inside our
        // own reservation, which MAP_FIXED replaces and nothing else uses.
        let got = unsafe { libc::mmap(self.base.add(at).cast(), len, prot, flags, fd, offset) };
        if got == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The ring as the algorithms of `shm::ringbuf` see it; locks give up
    /// soon, as the host must.
    pub(crate) fn view(&self) -> StorageView<'_> {
        // SAFETY: base..base + span is mapped while `self` lives (the view
        // borrows it), page-aligned; the guest and other host views touch
        // it only atomically or volatilely, never through references.
        let view = unsafe { StorageView::new(self.base, self.span, 0) };
        view.with_spin_tries(HOST_SPIN_TRIES)
    }
}

impl Drop for RingMapping {
    fn drop(&mut self) {
        // SAFETY: the range is ours (reserved in `new`); every view of it
        // borrowed `self` and is gone.
        unsafe { libc::munmap(self.base.cast(), self.span) };
    }
}
