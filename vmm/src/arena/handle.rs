//! The host's access to the arena ([`crate::Sandbox::arena`]).

use super::{Arena, ArenaSetupError, volatile_copy_to};
use crate::memory::GuestMemory;
use shm::arena::{ArenaError, FaultIn};
use shm::layout::PAGE_SIZE;
use std::os::fd::{AsFd, BorrowedFd};

/// How often a host access retries a page the host's own release holds.
const RELEASING_RETRIES: u32 = 1000;

/// Why a host access to the arena failed.
#[derive(Debug, thiserror::Error)]
pub enum ArenaAccessError {
    /// The bytes are not all inside the arena.
    #[error("Access of {len} bytes at {addr:#x} is outside the arena {start:#x}..{end:#x}")]
    OutOfRange {
        /// Address.
        addr: u64,
        /// Length.
        len: usize,
        /// The arena's first byte.
        start: u64,
        /// One past its last.
        end: u64,
    },
    /// `BPF_F_SEGV_ON_FAULT`: the page is not allocated.
    #[error("Arena page at {0:#x} is not allocated (the arena has BPF_F_SEGV_ON_FAULT)")]
    Unallocated(u64),
    /// The page bookkeeping refused (its lock stayed taken, or its
    /// regions are unusable).
    #[error("Failed to fault in the arena page at {addr:#x}")]
    FaultIn {
        /// The page.
        addr: u64,
        /// Why.
        #[source]
        source: ArenaError,
    },
    /// The state region could not be reached.
    #[error(transparent)]
    Setup(#[from] ArenaSetupError),
}

/// The sandbox's arena, seen from the host. Addresses are those programs
/// see and store (the arena's guest addresses). In a sandbox that was not
/// cloned the host maps the arena at the same addresses, so they are also
/// host addresses; a clone maps it elsewhere, at a fixed offset
/// ([`ArenaHandle::host_base`] - [`ArenaHandle::base`]), and
/// [`ArenaHandle::host_ptr`] translates (Note [Arena clones]).
#[derive(Debug, Clone, Copy)]
pub struct ArenaHandle<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) memory: &'a GuestMemory,
}

impl<'a> ArenaHandle<'a> {
    /// The arena map's name.
    pub fn name(&self) -> &'a str {
        self.arena.name()
    }

    /// Address of page 0 as programs see it (the kernel's
    /// `user_vm_start`): pointers programs store are relative to it.
    pub fn base(&self) -> u64 {
        self.arena.geometry().user_vm_start()
    }

    /// Host address of page 0: [`ArenaHandle::base`] unless the sandbox
    /// is a clone, whose arena the host maps elsewhere (Note [Arena
    /// clones]). The two differ by a multiple of 4 GiB.
    pub fn host_base(&self) -> u64 {
        self.arena.host_start()
    }

    /// The host pointer to arena address `addr` (as programs see and
    /// store it), or `None` if `addr` is not in the arena. The rules of
    /// [`ArenaHandle::as_ptr`] hold for dereferencing it.
    pub fn host_ptr(&self, addr: u64) -> Option<*mut u8> {
        super::check_page_range(self.arena.geometry(), addr, 1)?;
        Some(self.arena.host_addr(addr) as *mut u8)
    }

    /// Bytes of the arena: `max_entries` pages.
    pub fn len(&self) -> u64 {
        self.arena.geometry().size()
    }

    /// Always false: an arena has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `BPF_F_*` flags of the arena map.
    pub fn map_flags(&self) -> u32 {
        self.arena.map_flags()
    }

    /// The host pointer to page 0: host code may dereference it, and,
    /// through [`ArenaHandle::host_ptr`], pointers programs stored in the
    /// arena (in a sandbox that was not cloned they are host pointers as
    /// they are; a clone's are offset, Note [Arena clones]).
    ///
    /// # Safety contract for dereferences
    /// * Only pages that are allocated ([`ArenaHandle::is_allocated`], or a
    ///   pointer a program handed out) may be touched: any other page of the
    ///   window is a hole that a touch allocates behind the guest's back
    ///   (the memory is then held until a program frees that page), and
    ///   the guard and unused window around the arena are `PROT_NONE`
    ///   (SIGSEGV). [`ArenaHandle::read`] and [`ArenaHandle::write`]
    ///   check first.
    /// * Programs may write the bytes at any time on other CPUs: use raw
    ///   volatile or atomic accesses, never `&`/`&mut` references, as for
    ///   any memory shared with the guest.
    /// * A page a program frees may be released at the end of the next
    ///   invocation: afterwards it reads as zeros.
    /// * The pointer is valid while the sandbox lives (a clone's reset
    ///   keeps the address and brings back the snapshot's bytes).
    pub fn as_ptr(&self) -> *mut u8 {
        self.host_base() as *mut u8
    }

    /// The arena's memory file (offset j * 4096 is page j), to map in
    /// another process. Holes read as zeros there, and touching one there
    /// allocates it without the guest knowing. `None` for a clone: its
    /// arena is a private mapping of its snapshot's file, which does not
    /// see the clone's writes.
    pub fn as_fd(&self) -> Option<BorrowedFd<'a>> {
        self.arena.memfd().map(AsFd::as_fd)
    }

    /// Whether the page holding `addr` is allocated (a snapshot: a program
    /// may free it just after). `false` outside the arena.
    pub fn is_allocated(&self, addr: u64) -> bool {
        let geom = self.arena.geometry();
        let Some((page, _)) = super::check_page_range(geom, addr, 1) else {
            return false;
        };
        let Ok(states) = self.arena.states_view(self.memory) else {
            return false;
        };
        shm::arena::is_allocated(geom, &states, page).unwrap_or(false)
    }

    /// Copies `buf.len()` bytes at arena address `addr` (as programs see
    /// it; translated for a clone) out of the arena. Pages that are
    /// not allocated are faulted in first (allocated, as the kernel does for
    /// user space), or, with `BPF_F_SEGV_ON_FAULT`, refused.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ArenaAccessError> {
        self.prepare(addr, buf.len())?;
        let src = self.arena.host_addr(addr) as *const u8;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: addr .. addr + len lies in the arena's pages (checked
            // by prepare), which are mapped while the handle borrows the
            // sandbox; volatile, as programs may write them meanwhile.
            *b = unsafe { src.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` into the arena at `addr`, faulting pages in as
    /// [`ArenaHandle::read`] does.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), ArenaAccessError> {
        self.prepare(addr, data.len())?;
        // SAFETY: as in read.
        unsafe { volatile_copy_to(self.arena.host_addr(addr) as *mut u8, data) };
        Ok(())
    }

    /// Releases pages programs freed (the host also does it at the end of
    /// every invocation); returns how many.
    pub fn release(&self) -> Result<u32, ArenaAccessError> {
        Ok(self.arena.release(self.memory)?)
    }

    /// Makes every page of `addr .. addr + len` allocated, or says why not.
    fn prepare(&self, addr: u64, len: usize) -> Result<(), ArenaAccessError> {
        let geom = self.arena.geometry();
        let (first, end) =
            super::check_page_range(geom, addr, len).ok_or(ArenaAccessError::OutOfRange {
                addr,
                len,
                start: geom.user_vm_start(),
                end: geom.user_vm_start() + geom.size(),
            })?;
        let states = self.arena.states_view(self.memory)?;
        let ptes = self.arena.ptes_view(self.memory)?;
        for page in first..end {
            let page_addr = geom.user_addr(page);
            let err = |source| ArenaAccessError::FaultIn {
                addr: page_addr,
                source,
            };
            if shm::arena::is_allocated(geom, &states, page).map_err(err)? {
                continue;
            }
            if self.arena.segv_on_fault() {
                return Err(ArenaAccessError::Unallocated(page_addr));
            }
            let mut tries = 0;
            let done = loop {
                match shm::arena::fault_in(geom, &states, &ptes, page) {
                    Err(ArenaError::RangeInUse) if tries < RELEASING_RETRIES => {
                        tries += 1;
                        std::thread::yield_now();
                    }
                    other => break other.map_err(err)?,
                }
            };
            if let FaultIn::Allocated {
                needs_zeroing: true,
            } = done
            {
                // SAFETY: the page is allocated now and lies in the arena
                // mapping; it held a freed page's old data.
                unsafe {
                    volatile_copy_to(
                        self.arena.host_addr(page_addr) as *mut u8,
                        &[0; PAGE_SIZE as usize],
                    );
                };
            }
        }
        Ok(())
    }
}
