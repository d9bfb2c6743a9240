//! Ring buffer helpers: `bpf_ringbuf_output` (130), `_reserve` (131),
//! `_submit` (132), `_discard` (133), `_query` (134). Each runs
//! `shm::ringbuf`'s algorithm over the ring as mapped in the ring window
//! (Note [Ring buffer memory] in `vmm::ringbuf`), in the calling vCPU; a
//! commit the consumer may be waiting for writes the ring's wakeup id to
//! the wakeup port, which KVM turns into an eventfd signal without
//! leaving to the VMM (Note [Ring buffer wakeups]).
//!
//! A map argument is checked as every map helper checks it
//! (`super::maps::open_def`); a sample pointer leads back to its ring
//! through the `pg_off` in its header, as in the kernel, and that ring's
//! header must name the ring's own start, so a pointer a program made up
//! is refused rather than followed into memory that is not a ring.

use super::maps::open_def;
use super::nofault;
use shm::errno::{EAGAIN, EFAULT, EINVAL};
use shm::layout::PAGE_SIZE;
use shm::maps::{MapError, MapMemory, MapType, StorageView};
use shm::ringbuf::{self, RB_FORCE_WAKEUP, RB_NO_WAKEUP, RingGeometry};
use shm::ports::WAKEUP_PORT;

/// A ring as a helper works on it.
pub(super) struct GuestRing {
    pub(super) geom: RingGeometry,
    pub(super) view: StorageView<'static>,
    /// Its start in the ring window.
    pub(super) start: u64,
}

/// The ring of type `want` whose map header is at `map`.
pub(super) fn open_ring(map: u64, want: MapType) -> Result<GuestRing, MapError> {
    let (def, start) = open_def(map)?;
    if def.map_type() != want {
        return Err(MapError::Unsupported);
    }
    let geom = def.ring_geometry().ok_or(MapError::Corrupt)?;
    if start == 0 || !start.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Corrupt);
    }
    // SAFETY: the host maps `span` bytes at the ring's start in the ring
    // window for as long as the sandbox lives; they are accessed only
    // through views (here, other vCPUs, the host) and by programs. A
    // header a program rewrote may name other memory it can reach, whose
    // accesses then fault like its own.
    let view = unsafe { StorageView::new(start as *mut u8, geom.span() as usize, start) };
    Ok(GuestRing { geom, view, start })
}

/// The ring a sample pointer `sample` (from `bpf_ringbuf_reserve`) belongs
/// to, and the sample's offset in it.
pub(super) fn ring_of_sample(sample: u64) -> Option<(GuestRing, usize)> {
    let hdr = sample.checked_sub(ringbuf::HDR_SIZE)?;
    if !hdr.is_multiple_of(8) {
        return None;
    }
    let mut pg_off = 0u32;
    nofault::copy((&raw mut pg_off) as u64, hdr + 4, 4).ok()?;
    let start = (hdr & !(PAGE_SIZE - 1)).checked_sub(u64::from(pg_off) * PAGE_SIZE)?;
    let ring = open_ring(start, MapType::RingBuf).ok()?;
    // The header found is a ring's header seen through its own window.
    (ring.start == start).then_some(())?;
    let off = usize::try_from(sample - start).ok()?;
    Some((ring, off))
}

/// Tells the ring's consumer to wake up (Note [Ring buffer wakeups]).
pub(super) fn wake(ring: &GuestRing) {
    let Ok(id) = ring.view.load_u32(ringbuf::WAKEUP_ID_OFFSET) else {
        return;
    };
    // SAFETY: `out` to our own wakeup port only signals the host (an
    // ioeventfd); it touches no guest memory.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") WAKEUP_PORT, in("eax") id, options(nostack, nomem))
    }
}

/// `void *bpf_ringbuf_reserve(void *ringbuf, u64 size, u64 flags)`: a
/// sample of `size` bytes to fill, or NULL (no room, any flag, not a
/// ring buffer).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_reserve(map: u64, size: u64, flags: u64) -> u64 {
    if flags != 0 {
        return 0;
    }
    let Ok(ring) = open_ring(map, MapType::RingBuf) else {
        return 0;
    };
    match ringbuf::reserve(&ring.geom, &ring.view, size) {
        Ok(Some(off)) => ring.start + off as u64,
        _ => 0,
    }
}

/// Commits or discards a sample, waking the consumer as `flags` and the
/// kernel's rule say.
fn commit(sample: u64, flags: u64, discard: bool) {
    let Some((ring, off)) = ring_of_sample(sample) else {
        return;
    };
    if let Ok(true) = ringbuf::commit(&ring.geom, &ring.view, off, discard, flags) {
        wake(&ring);
    }
}

/// `void bpf_ringbuf_submit(void *data, u64 flags)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_submit(sample: u64, flags: u64) {
    commit(sample, flags, false);
}

/// `void bpf_ringbuf_discard(void *data, u64 flags)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_discard(sample: u64, flags: u64) {
    commit(sample, flags, true);
}

/// `long bpf_ringbuf_output(void *ringbuf, void *data, u64 size, u64
/// flags)`: copies `size` bytes into a new sample. 0, -EINVAL (flags),
/// -EAGAIN (no room), -EFAULT (`data` unreadable; the sample is
/// discarded).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_output(map: u64, data: u64, size: u64, flags: u64) -> i64 {
    if flags & !(RB_NO_WAKEUP | RB_FORCE_WAKEUP) != 0 {
        return EINVAL;
    }
    let Ok(ring) = open_ring(map, MapType::RingBuf) else {
        return EINVAL;
    };
    let off = match ringbuf::reserve(&ring.geom, &ring.view, size) {
        Ok(Some(off)) => off,
        _ => return EAGAIN,
    };
    let copied = nofault::copy(ring.start + off as u64, data, size).is_ok();
    if let Ok(true) = ringbuf::commit(&ring.geom, &ring.view, off, !copied, flags) {
        wake(&ring);
    }
    if copied { 0 } else { EFAULT }
}

/// `u64 bpf_ringbuf_query(void *ringbuf, u64 flags)`: available data,
/// ring size, consumer or producer position; 0 for anything else.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_query(map: u64, flags: u64) -> u64 {
    let Ok(ring) = open_ring(map, MapType::RingBuf) else {
        return 0;
    };
    ringbuf::query(&ring.geom, &ring.view, flags).unwrap_or(0)
}
