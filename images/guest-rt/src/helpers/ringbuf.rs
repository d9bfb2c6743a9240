//! Ring buffer helpers: `bpf_ringbuf_output` (130), `_reserve` (131),
//! `_submit` (132), `_discard` (133), `_query` (134), their dynptr forms
//! `bpf_ringbuf_reserve_dynptr` (198), `_submit_dynptr` (199),
//! `_discard_dynptr` (200), and `bpf_user_ringbuf_drain` (209). Each runs
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

use super::dynptr::{load, store};
use super::loops::{BpfFunction, in_jit_code};
use super::maps::open_def;
use super::nofault;
use shm::dynptr::{Dynptr, DynptrKind};
use shm::errno::{EAGAIN, EBUSY, EFAULT, EINVAL};
use shm::layout::PAGE_SIZE;
use shm::maps::{MapError, MapMemory, MapType, StorageView};
use shm::ports::WAKEUP_PORT;
use shm::ringbuf::{self, RB_FORCE_WAKEUP, RB_NO_WAKEUP, RingGeometry};

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

// Note [Reserved samples]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Finding a sample's ring from the pointer alone (`ring_of_sample`: its
// header's page offset, then the ring's map header checked again) cost
// `bpf_ringbuf_submit` about 20 ns, half a record's cost, where the
// kernel's verifier already knows which ring a sample came from. So each
// vCPU remembers the last few samples it reserved and their ring, and a
// commit of one of them uses that ring directly and forgets the sample.
// It is as safe as the slow path: the ring was checked when the sample
// was reserved, its memory stays mapped at the same place while the
// sandbox lives, and `shm::ringbuf::commit` checks the offset against the
// ring's geometry whatever it is. A program that rewrote the ring's map
// header since only keeps the ring it reserved from, as in the kernel. A
// sample committed twice, or never reserved here, takes the slow path.

/// Samples reserved on this vCPU and not yet committed (Note [Reserved
/// samples]).
mod reserved {
    use super::GuestRing;
    use crate::percpu::{Kept, PerVcpu};
    use shm::layout::MAX_CPUS;
    use shm::maps::StorageView;
    use shm::ringbuf::RingGeometry;

    /// Samples kept per vCPU: a program seldom holds more at once.
    const WAYS: usize = 4;

    /// Where a sample's ring is.
    #[derive(Clone, Copy)]
    struct Ring {
        start: u64,
        geom: RingGeometry,
    }

    /// Each vCPU's reserved samples, by address.
    static KEPT: PerVcpu<Kept<Ring, WAYS>> = PerVcpu::new([Kept::EMPTY; MAX_CPUS]);

    /// Remembers that `sample` was reserved in `ring`.
    #[inline(always)]
    pub(super) fn remember(sample: u64, ring: &GuestRing) {
        KEPT.with(|kept| {
            let ring = Ring {
                start: ring.start,
                geom: ring.geom,
            };
            kept.put(sample, ring);
            Some(())
        });
    }

    /// The ring `sample` was reserved in, if this vCPU remembers it; it
    /// is forgotten.
    #[inline(always)]
    pub(super) fn take(sample: u64) -> Option<(GuestRing, usize)> {
        let ring = KEPT.with(|kept| kept.take(sample))?;
        let off = usize::try_from(sample.checked_sub(ring.start)?).ok()?;
        // SAFETY: as in `open_ring`, which checked this ring when the
        // sample was reserved: the host keeps `span` bytes mapped at its
        // start while the sandbox lives.
        let view = unsafe {
            StorageView::new(ring.start as *mut u8, ring.geom.span() as usize, ring.start)
        };
        Some((
            GuestRing {
                geom: ring.geom,
                view,
                start: ring.start,
            },
            off,
        ))
    }
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
        Ok(Some(off)) => {
            let sample = ring.start + off as u64;
            reserved::remember(sample, &ring);
            sample
        }
        _ => 0,
    }
}

/// Commits or discards a sample, waking the consumer as `flags` and the
/// kernel's rule say.
fn commit(sample: u64, flags: u64, discard: bool) {
    let Some((ring, off)) = reserved::take(sample).or_else(|| ring_of_sample(sample)) else {
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

/// `long bpf_ringbuf_reserve_dynptr(void *ringbuf, u32 size, u64 flags,
/// struct bpf_dynptr *ptr)`: a sample of `size` bytes as a ring buffer
/// dynptr in `*ptr`; 0, or -EINVAL (flags, no room) / -E2BIG (size) with
/// a NULL dynptr. If `ptr` cannot be written the sample is discarded
/// (nobody could ever commit it) and the result is -EFAULT.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_reserve_dynptr(map: u64, size: u64, flags: u64, ptr: u64) -> i64 {
    // A u32 argument: the low half of r2.
    let size = size as u32;
    let reserved = if flags != 0 {
        Err(EINVAL)
    } else if let Err(errno) = Dynptr::check_size(size) {
        Err(errno)
    } else {
        match open_ring(map, MapType::RingBuf) {
            Ok(ring) => match ringbuf::reserve(&ring.geom, &ring.view, u64::from(size)) {
                Ok(Some(off)) => Ok(ring.start + off as u64),
                _ => Err(EINVAL),
            },
            Err(_) => Err(EINVAL),
        }
    };
    match reserved {
        Ok(sample) => {
            if store(ptr, &Dynptr::new(sample, DynptrKind::Ringbuf, 0, size)).is_err() {
                commit(sample, RB_NO_WAKEUP, true);
                return EFAULT;
            }
            0
        }
        Err(errno) => {
            let _ = store(ptr, &Dynptr::NULL);
            errno
        }
    }
}

/// Commits or discards the sample of the ring buffer dynptr at `ptr`,
/// then makes it NULL; a NULL dynptr is left alone, as in the kernel.
fn commit_dynptr(ptr: u64, flags: u64, discard: bool) {
    let Some(dynptr) = load(ptr) else {
        return;
    };
    if dynptr.is_null() || dynptr.kind() != DynptrKind::Ringbuf {
        return;
    }
    commit(dynptr.data, flags, discard);
    let _ = store(ptr, &Dynptr::NULL);
}

/// `void bpf_ringbuf_submit_dynptr(struct bpf_dynptr *ptr, u64 flags)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_submit_dynptr(ptr: u64, flags: u64) {
    commit_dynptr(ptr, flags, false);
}

/// `void bpf_ringbuf_discard_dynptr(struct bpf_dynptr *ptr, u64 flags)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ringbuf_discard_dynptr(ptr: u64, flags: u64) {
    commit_dynptr(ptr, flags, true);
}

/// `long bpf_user_ringbuf_drain(struct bpf_map *map, void *callback_fn,
/// void *ctx, u64 flags)`: calls `callback_fn(dynptr, ctx)` for each
/// sample the host produced, in order, until it returns non-zero or
/// [`ringbuf::MAX_USER_RINGBUF_SAMPLES`] samples were seen; returns the
/// number of samples handed out (the kernel's count: the one the callback
/// stopped at included, discarded ones not), or -EINVAL (flags, a
/// producer position that does not add up), -E2BIG (a sample too large),
/// -EBUSY (another vCPU is draining). Wakes the host's producer if it
/// consumed anything, as `flags` allow.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_user_ringbuf_drain(map: u64, callback_fn: u64, ctx: u64, flags: u64) -> i64 {
    if flags & !(RB_NO_WAKEUP | RB_FORCE_WAKEUP) != 0 || !in_jit_code(callback_fn) {
        return EINVAL;
    }
    let Ok(ring) = open_ring(map, MapType::UserRingBuf) else {
        return EINVAL;
    };
    match ring.view.cas_u32(ringbuf::DRAIN_BUSY_OFFSET, 0, 1) {
        Ok(Ok(_)) => {}
        _ => return EBUSY,
    }
    // SAFETY: `callback_fn` is in the JIT code region (checked above), as
    // in `bpf_loop`.
    let callback: BpfFunction = unsafe { core::mem::transmute(callback_fn as usize) };
    let (mut samples, mut discarded, mut result) = (0i64, 0i64, 0u64);
    let mut error = None;
    while samples < ringbuf::MAX_USER_RINGBUF_SAMPLES as i64 && result == 0 {
        match ringbuf::user_peek(&ring.geom, &ring.view) {
            Ok(ringbuf::UserNext::Empty) => break,
            Ok(ringbuf::UserNext::Discarded) => discarded += 1,
            Ok(ringbuf::UserNext::Sample { off, len, total }) => {
                // On this stack, which programs can read: the callback
                // passes it to the dynptr helpers.
                let dynptr = Dynptr::new(ring.start + off as u64, DynptrKind::Local, 0, len);
                result = callback((&raw const dynptr) as u64, ctx, 0, 0, 0);
                if ringbuf::user_release(&ring.view, total).is_err() {
                    error = Some(EFAULT);
                    break;
                }
            }
            Err(errno) => {
                error = Some(errno);
                break;
            }
        }
        samples += 1;
    }
    let _ = ring.view.store_u32(ringbuf::DRAIN_BUSY_OFFSET, 0);
    if flags & RB_FORCE_WAKEUP != 0 || (flags & RB_NO_WAKEUP == 0 && samples > 0) {
        wake(&ring);
    }
    error.unwrap_or(samples - discarded)
}
