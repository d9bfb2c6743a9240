//! Ring buffers in a sandbox (`RINGBUF`, `USER_RINGBUF`; issue 7): the
//! ring's memory in the maps region, its second mapping in the guest's
//! ring window, its wakeup eventfd, and the host's ends.
//!
//! Note [Ring buffer memory]
//! A ring's map header starts a page of the maps region; the rest of that
//! page holds the ring's meta words, then come the consumer and producer
//! position pages and the data, once (Note [Ring buffer layout] in
//! `shm::ringbuf`). The guest sees the ring a second time in the ring
//! window (Note [Ring window] in `shm::layout`): the same pages in the
//! same order, then the data pages again, so that records that wrap are
//! contiguous. The header's `data` is the ring's start in the window,
//! which is where the runtime's helpers work. The host maps the same
//! pages of the guest memory memfd (in a clone: of the ring's own memfd,
//! Note [Snapshots and clones]), data twice, into a range of its own for
//! each consumer or producer (`mapping`), which therefore outlives the
//! sandbox if need be. The window's page tables are the sandbox's
//! base tables plus the ring's pages: tables the host builds, in the
//! page-table region the guest cannot see, written when a ring is created
//! and again after every reset.
//!
//! Note [Ring buffer wakeups]
//! After a commit that the consumer may be waiting for (the kernel's
//! self-pacing rule, `shm::ringbuf::commit`), the runtime writes the
//! ring's wakeup id to `shm::ports::WAKEUP_PORT`. The host registered an
//! ioeventfd for that port and id, so KVM signals the ring's eventfd and
//! resumes the vCPU at once: a wakeup never reaches the VMM's vCPU loop
//! (a run's `exits` do not count it). A consumer that keeps up costs one
//! such exit per batch it drains; one that falls behind costs none. A
//! `bpf_user_ringbuf_drain` that consumed samples wakes the host's
//! producer the same way.

mod consumer;
mod mapping;
mod poller;
mod producer;

pub use consumer::{Record, Records, RingBufConsumer};
pub use poller::RingBufPoller;
pub use producer::{UserRingBufProducer, UserSample};

use crate::arch::paging::{PageTables, PagingError};
use crate::maps::MapId;
use crate::memory::GuestMemory;
use kvm_ioctls::IoEventAddress;
use mapping::{End, RingMapping};
use shm::layout::{Access, PAGE_SIZE, PAGE_TABLES_START};
use shm::maps::{MapDef, MapError, MapMemory, MapType, StorageView};
use shm::ringbuf::{self, DATA_OFFSET, RingGeometry};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

/// Why a ring buffer's host end failed.
#[derive(Debug, thiserror::Error)]
pub enum RingBufError {
    /// No map of that name.
    #[error("The sandbox has no map named `{0}`")]
    NotFound(String),
    /// The map is not a ring buffer of the kind asked for.
    #[error("Map `{name}` is a {actual} map, not a {wanted}")]
    WrongType {
        /// The map.
        name: String,
        /// Its type.
        actual: &'static str,
        /// The type asked for.
        wanted: &'static str,
    },
    /// The ring already has a host end of this kind.
    #[error("Ring buffer `{0}` already has a host {1}; drop it first")]
    Attached(String, &'static str),
    /// The guest wrote something into the ring that does not add up.
    #[error("Ring buffer `{ring}`: {what}; skipped {skipped} bytes to the producer's position")]
    Corrupt {
        /// The ring.
        ring: String,
        /// What did not add up.
        what: &'static str,
        /// Bytes skipped.
        skipped: u64,
    },
    /// A sample larger than the ring can ever hold.
    #[error("Ring buffer `{ring}` cannot hold a {len}-byte sample")]
    TooBig {
        /// The ring.
        ring: String,
        /// The sample's length.
        len: usize,
    },
    /// No room until the program drains more.
    #[error("Ring buffer `{ring}` is full")]
    Full {
        /// The ring.
        ring: String,
    },
    /// An access to the ring's memory was refused.
    #[error("Ring buffer memory access failed: {0}")]
    Memory(MapError),
    /// Mapping the ring or waiting on its eventfd failed.
    #[error("Ring buffer I/O failed")]
    Io(#[from] std::io::Error),
}

impl From<MapError> for RingBufError {
    fn from(e: MapError) -> Self {
        RingBufError::Memory(e)
    }
}

/// Why a ring could not be set up in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum RingSetupError {
    /// The definition is not a ring's, or its header is outside the maps
    /// region.
    #[error("Not a ring buffer definition, or not placed in the maps region")]
    Define,
    /// The ring window's page tables do not fit.
    #[error("Failed to map the ring into the guest's ring window")]
    Map(#[source] PagingError),
    /// Guest memory could not be written.
    #[error("Failed to write the ring into guest memory")]
    WriteMemory(#[source] crate::memory::MemoryError),
    /// The wakeup eventfd could not be made or registered.
    #[error("Failed to set up the ring's wakeup eventfd")]
    Wakeup(#[source] std::io::Error),
}

/// Marks a ring's host end taken while it lives.
#[derive(Debug)]
struct Attachment(Arc<AtomicBool>);

impl Attachment {
    fn take(flag: &Arc<AtomicBool>) -> Option<Attachment> {
        (!flag.swap(true, Ordering::AcqRel)).then(|| Attachment(Arc::clone(flag)))
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Waits up to `timeout` (`None`: forever) for `fd` to be readable;
/// whether it is.
fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> Result<bool, RingBufError> {
    let ms = timeout.map_or(-1, |d| d.as_millis().clamp(1, i32::MAX as u128) as i32);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e.into())
        };
    }
    Ok(rc > 0)
}

/// What a ring is, apart from its host resources.
#[derive(Debug, Clone)]
pub(crate) struct RingSpec {
    map: MapId,
    name: String,
    map_type: MapType,
    geom: RingGeometry,
    /// Guest-physical address of its first page (the map header).
    header: u64,
    /// Its wakeup id (the datamatch of its ioeventfd).
    id: u32,
}

impl RingSpec {
    /// Bytes of guest memory the ring's pages take from its header on.
    fn len(&self) -> u64 {
        DATA_OFFSET as u64 + self.geom.size()
    }
}

/// One ring of the sandbox.
#[derive(Debug)]
struct Ring {
    spec: RingSpec,
    wakeup: EventFd,
    attached: Arc<AtomicBool>,
    /// In a sandbox cloned from a snapshot, the memfd holding the ring's
    /// pages (from offset 0), mapped over them shared: the guest memory
    /// itself is a private mapping no other mapping sees.
    own: Option<std::fs::File>,
}

/// The sandbox's rings and the page tables that map them.
#[derive(Debug, Default)]
pub(crate) struct Rings {
    list: Vec<Ring>,
    /// The sandbox's base tables plus every ring's window mapping, once a
    /// ring exists.
    tables: Option<PageTables>,
}

impl Rings {
    /// What a clone starts with: the tables, no rings yet (their host
    /// resources are made by [`crate::Sandbox::adopt_ring`]).
    pub(crate) fn for_clone(&self) -> Rings {
        Rings {
            list: Vec::new(),
            tables: self.tables.clone(),
        }
    }

    /// The rings, to make again in a clone.
    pub(crate) fn specs(&self) -> Vec<RingSpec> {
        self.list.iter().map(|r| r.spec.clone()).collect()
    }
}

impl crate::Sandbox {
    /// Sets up ring `map` (its header already written at `header`):
    /// zeroed storage, its wakeup id, its window mapping and its eventfd.
    pub(crate) fn create_ring(
        &mut self,
        map: MapId,
        name: &str,
        def: &MapDef,
        header: u64,
    ) -> Result<(), RingSetupError> {
        let geom = def.ring_geometry().ok_or(RingSetupError::Define)?;
        let virt = self
            .layout
            .ring_address(header)
            .ok_or(RingSetupError::Define)?;
        let id = u32::try_from(self.loaded.rings.list.len()).map_err(|_| RingSetupError::Define)?;
        let write = RingSetupError::WriteMemory;
        self.memory
            .zero(header + 64, geom.storage_size() as usize)
            .map_err(write)?;
        self.memory
            .write_pod(header + ringbuf::WAKEUP_ID_OFFSET as u64, &id)
            .map_err(write)?;

        let base = crate::machine::cached_page_tables(&self.layout, self.runtime)
            .map_err(RingSetupError::Map)?;
        let mut tables = match &self.loaded.rings.tables {
            Some(tables) => tables.clone(),
            None => (*base).clone(),
        };
        let once = DATA_OFFSET as u64 + geom.size();
        tables
            .map(virt, header, once, Access::ReadWrite, true)
            .and_then(|()| {
                tables.map(
                    virt + once,
                    header + DATA_OFFSET as u64,
                    geom.size(),
                    Access::ReadWrite,
                    true,
                )
            })
            .map_err(RingSetupError::Map)?;
        write_tables(&self.memory, &base, &tables).map_err(write)?;
        self.loaded.rings.tables = Some(tables);

        let spec = RingSpec {
            map,
            name: name.to_owned(),
            map_type: def.map_type(),
            geom,
            header,
            id,
        };
        self.attach_wakeup(spec, None)
    }

    /// Registers ring `spec`'s wakeup eventfd with the VM and adds it.
    fn attach_wakeup(
        &mut self,
        spec: RingSpec,
        own: Option<std::fs::File>,
    ) -> Result<(), RingSetupError> {
        let wakeup = EventFd::new(EFD_CLOEXEC | EFD_NONBLOCK).map_err(RingSetupError::Wakeup)?;
        self.vm
            .register_ioevent(
                &wakeup,
                &IoEventAddress::Pio(u64::from(shm::ports::WAKEUP_PORT)),
                spec.id,
            )
            .map_err(|e| RingSetupError::Wakeup(std::io::Error::from_raw_os_error(e.errno())))?;
        self.loaded.rings.list.push(Ring {
            spec,
            wakeup,
            attached: Arc::default(),
            own,
        });
        Ok(())
    }

    /// In a sandbox cloned from a snapshot (whose memory is a private
    /// mapping of `snapshot`): gives ring `spec` a memfd of its own with
    /// the snapshot's bytes of the ring, mapped shared over the ring's
    /// pages, so that host ends see what the guest writes; and its wakeup.
    pub(crate) fn adopt_ring(
        &mut self,
        spec: RingSpec,
        snapshot: &std::fs::File,
    ) -> Result<(), RingSetupError> {
        let own = ring_memfd(snapshot, spec.header, spec.len()).map_err(RingSetupError::Wakeup)?;
        self.memory
            .overlay(spec.header, &own, 0, spec.len())
            .map_err(RingSetupError::WriteMemory)?;
        self.attach_wakeup(spec, Some(own))
    }

    /// After a clone's memory was reverted to its snapshot: maps each
    /// ring's own memfd over its pages again (their contents are kept,
    /// as a reset keeps any sandbox's rings).
    pub(crate) fn overlay_rings(&self) -> Result<(), RingSetupError> {
        for ring in &self.loaded.rings.list {
            if let Some(own) = &ring.own {
                self.memory
                    .overlay(ring.spec.header, own, 0, ring.spec.len())
                    .map_err(RingSetupError::WriteMemory)?;
            }
        }
        Ok(())
    }

    /// After a reset rewrote the base page tables: maps the rings again,
    /// frees their producers' locks and drain flags (a run stopped at its
    /// deadline may have held them), and discards the records such a run
    /// reserved and never committed, which would otherwise stop the
    /// consumer for good.
    pub(crate) fn reinstall_rings(&self) -> Result<(), RingSetupError> {
        let Some(tables) = &self.loaded.rings.tables else {
            return Ok(());
        };
        let write = RingSetupError::WriteMemory;
        let base = crate::machine::cached_page_tables(&self.layout, self.runtime)
            .map_err(RingSetupError::Map)?;
        write_tables(&self.memory, &base, tables).map_err(write)?;
        for ring in &self.loaded.rings.list {
            let Some(view) = self.ring_storage(ring) else {
                continue;
            };
            // Only the guest's own bookkeeping: a failure here hurts
            // nobody but the guest, so it is not an error.
            let _ = view.store_u32(ringbuf::LOCK_OFFSET, 0);
            let _ = view.store_u32(ringbuf::DRAIN_BUSY_OFFSET, 0);
            if ring.spec.map_type == MapType::RingBuf {
                let _ = ringbuf::abandon_busy(&ring.spec.geom, &view);
            }
        }
        Ok(())
    }

    /// The ring's pages as they lie in guest memory (its data once): for
    /// the host's bookkeeping words, never for records.
    fn ring_storage(&self, ring: &Ring) -> Option<StorageView<'_>> {
        let len = DATA_OFFSET as u64 + ring.spec.geom.size();
        if ring
            .spec
            .header
            .checked_add(len)
            .is_none_or(|end| end > self.memory.size())
        {
            return None;
        }
        // SAFETY: header .. header + len lies in guest memory (checked),
        // mapped while the sandbox lives, which the view borrows; the
        // guest touches it only with its own instructions.
        let view = unsafe {
            StorageView::new(
                (self.memory.host_base() + ring.spec.header) as *mut u8,
                len as usize,
                ring.spec.header,
            )
        };
        Some(view.with_spin_tries(shm::maps::memory::HOST_SPIN_TRIES))
    }

    fn find_ring(&self, name: &str, wanted: MapType) -> Result<&Ring, RingBufError> {
        let info = self
            .loaded
            .maps
            .list
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| RingBufError::NotFound(name.to_owned()))?;
        let ring = self
            .loaded
            .rings
            .list
            .iter()
            .find(|r| r.spec.name == name && r.spec.map_type == wanted);
        ring.ok_or_else(|| RingBufError::WrongType {
            name: name.to_owned(),
            actual: info.def.map_type().name(),
            wanted: wanted.name(),
        })
    }

    /// The consumer of `RINGBUF` map `name`: records the programs commit
    /// from now on (and any not yet consumed). One at a time per ring.
    pub fn ring_buffer(&self, name: &str) -> Result<RingBufConsumer, RingBufError> {
        let ring = self.find_ring(name, MapType::RingBuf)?;
        let attached = Attachment::take(&ring.attached)
            .ok_or_else(|| RingBufError::Attached(name.to_owned(), "consumer"))?;
        let (mapping, wakeup) = self.map_ring(ring, End::Consumer)?;
        RingBufConsumer::new(
            ring.spec.name.clone(),
            ring.spec.geom,
            mapping,
            wakeup,
            attached,
        )
    }

    /// The producer of `USER_RINGBUF` map `name`. One at a time per ring.
    pub fn user_ring_buffer(&self, name: &str) -> Result<UserRingBufProducer, RingBufError> {
        let ring = self.find_ring(name, MapType::UserRingBuf)?;
        let attached = Attachment::take(&ring.attached)
            .ok_or_else(|| RingBufError::Attached(name.to_owned(), "producer"))?;
        let (mapping, wakeup) = self.map_ring(ring, End::Producer)?;
        UserRingBufProducer::new(
            ring.spec.name.clone(),
            ring.spec.geom,
            mapping,
            wakeup,
            attached,
        )
    }

    /// Reserves that found a `RINGBUF` full (or a sample larger than it)
    /// so far, all rings together: the guest's own counters, reported,
    /// never trusted.
    pub(crate) fn ring_drops(&self) -> u64 {
        self.loaded
            .rings
            .list
            .iter()
            .filter(|r| r.spec.map_type == MapType::RingBuf)
            .filter_map(|r| self.ring_storage(r)?.load_u64(ringbuf::DROPS_OFFSET).ok())
            .fold(0, u64::wrapping_add)
    }

    /// Names of the sandbox's ring buffers of either kind, with their map
    /// ids, in creation order.
    pub fn ring_buffers(&self) -> impl Iterator<Item = (MapId, &str, MapType)> {
        self.loaded
            .rings
            .list
            .iter()
            .map(|r| (r.spec.map, r.spec.name.as_str(), r.spec.map_type))
    }

    fn map_ring(&self, ring: &Ring, end: End) -> Result<(RingMapping, EventFd), RingBufError> {
        let (file, offset) = match &ring.own {
            Some(own) => (own, 0),
            None => (
                self.memory
                    .memfd()
                    .ok_or_else(|| std::io::Error::other("guest memory has no memfd"))?,
                ring.spec.header,
            ),
        };
        let mapping = RingMapping::new(file, offset, &ring.spec.geom, end)?;
        Ok((mapping, ring.wakeup.try_clone()?))
    }
}

/// Writes the pages of `tables` that differ from `base` (which is what the
/// boot image wrote) or that `base` does not have.
fn write_tables(
    memory: &GuestMemory,
    base: &PageTables,
    tables: &PageTables,
) -> Result<(), crate::memory::MemoryError> {
    let page = PAGE_SIZE as usize;
    for (i, chunk) in tables.bytes().chunks(page).enumerate() {
        if base.bytes().get(i * page..(i + 1) * page) != Some(chunk) {
            memory.write(PAGE_TABLES_START + (i * page) as u64, chunk)?;
        }
    }
    Ok(())
}

/// A memfd with the `len` bytes of `snapshot` from `offset` on.
fn ring_memfd(snapshot: &std::fs::File, offset: u64, len: u64) -> std::io::Result<std::fs::File> {
    let file = crate::memory::memfd(c"bpfvisor-ring")?;
    file.set_len(len)?;
    crate::memory::copy_extents(snapshot, offset, &file, 0, len)?;
    Ok(file)
}
