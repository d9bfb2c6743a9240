//! Access to one map's storage: the [`MapMemory`] trait every algorithm
//! goes through, and [`StorageView`], its implementation over a pointer and
//! a length (the guest's, and the host's tests').
//!
//! Offsets count from the start of the storage. Implementations check
//! every access against [`MapMemory::len`] (and atomics for alignment) and
//! return [`MapError::OutOfBounds`] instead of touching anything outside,
//! so a host using its own implementation can never read or write outside
//! the map, whatever the guest wrote in it.
//!
//! Note [Map memory ordering]
//! Byte copies ([`MapMemory::read`], [`MapMemory::write`]) carry no
//! ordering: they move keys and values. Links, lock words and indices are
//! read with [`MapMemory::load_u32`] (Acquire) and written with
//! [`MapMemory::store_u32`] (Release) or compare-exchanged
//! ([`MapMemory::cas_u32`], AcqRel): a writer fills an element's bytes,
//! then publishes its index with a Release store; a reader that loads the
//! index with Acquire sees the bytes. Locks are taken with an Acquire
//! compare-exchange and released with a Release store.

use super::{MapError, MapHeader};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One map's storage, as the algorithms see it (Note [Map memory
/// ordering]). Every method checks its access lies inside `len()` bytes.
pub trait MapMemory {
    /// Bytes of storage.
    fn len(&self) -> usize;

    /// Whether the storage has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `out.len()` bytes at `off` into `out`; no ordering. Bytes
    /// another CPU writes meanwhile may be seen half old, half new.
    fn read(&self, off: usize, out: &mut [u8]) -> Result<(), MapError>;

    /// Copies `data` to `off`; no ordering.
    fn write(&self, off: usize, data: &[u8]) -> Result<(), MapError>;

    /// Loads the u32 at `off` (4-byte aligned) with Acquire ordering.
    fn load_u32(&self, off: usize) -> Result<u32, MapError>;

    /// Loads the u64 at `off` (8-byte aligned) with Acquire ordering.
    fn load_u64(&self, off: usize) -> Result<u64, MapError>;

    /// Stores `value` at `off` (4-byte aligned) with Release ordering.
    fn store_u32(&self, off: usize, value: u32) -> Result<(), MapError>;

    /// Stores `value` at `off` (8-byte aligned) with Release ordering.
    fn store_u64(&self, off: usize, value: u64) -> Result<(), MapError>;

    /// Replaces the u32 at `off` with `new` if it is `current` (AcqRel on
    /// success, Acquire on failure): `Ok(Ok(current))` if it did,
    /// `Ok(Err(found))` if not.
    fn cas_u32(&self, off: usize, current: u32, new: u32) -> Result<Result<u32, u32>, MapError>;

    /// As [`MapMemory::cas_u32`], for the u64 at `off` (8-byte aligned).
    fn cas_u64(&self, off: usize, current: u64, new: u64) -> Result<Result<u64, u64>, MapError>;

    /// The guest address of the byte at `off`: what a program's lookup
    /// returns. (`off` is not checked; callers pass offsets they got from
    /// a checked operation.)
    fn addr(&self, off: usize) -> u64;

    /// Called between two tries to take a lock that was held, `tries`
    /// counting from 0; returns `false` to give up, and the operation then
    /// fails with [`MapError::Busy`]. The guest may wait about as long as a
    /// run's deadline; the host must give up soon, since a stopped or
    /// hostile guest may never release the lock.
    fn spin_wait(&self, tries: u32) -> bool;

    /// Fills `len` bytes at `off` with zeros.
    fn zero(&self, off: usize, len: usize) -> Result<(), MapError> {
        const ZEROS: [u8; 64] = [0; 64];
        let end = off.checked_add(len).ok_or(MapError::OutOfBounds)?;
        let mut at = off;
        while at < end {
            let n = (end - at).min(ZEROS.len());
            self.write(at, &ZEROS[..n])?;
            at += n;
        }
        Ok(())
    }

    /// Whether the `bytes.len()` bytes at `off` equal `bytes`.
    fn equals(&self, off: usize, bytes: &[u8]) -> Result<bool, MapError> {
        let mut chunk = [0u8; 64];
        for (i, want) in bytes.chunks(chunk.len()).enumerate() {
            let got = &mut chunk[..want.len()];
            let at = off.checked_add(i * 64).ok_or(MapError::OutOfBounds)?;
            self.read(at, got)?;
            if got != want {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// How many times [`StorageView`] lets a lock spin by default in the
/// guest: about as long as a run's deadline (each try is a `pause`, tens
/// of nanoseconds), so a lock held by a vCPU the host preempted is waited
/// for, and one never released ends with `Busy` or the deadline.
pub const GUEST_SPIN_TRIES: u32 = 1 << 28;

/// How many times [`StorageView::from_atomic`] lets a lock spin by
/// default: short, as the host must not hang on a guest's lock.
pub const HOST_SPIN_TRIES: u32 = 1 << 16;

/// A map's storage seen through a pointer and a length: the guest
/// runtime's [`MapMemory`] (over the storage's guest address) and the
/// host's in tests (over `&[AtomicU64]`, threads standing in for vCPUs).
/// Every access is bounds-checked.
///
/// Byte copies are volatile, atomics use the platform's atomic
/// instructions: the memory is shared with code that does not follow
/// Rust's aliasing rules (other vCPUs, the host), so no reference to it is
/// ever formed.
#[derive(Debug)]
pub struct StorageView<'a> {
    base: *mut u8,
    len: usize,
    addr: u64,
    spin_tries: u32,
    _memory: PhantomData<&'a [AtomicU64]>,
}

// SAFETY: a view only reads and writes its memory with atomic or volatile
// accesses, which other threads may make at the same time (the
// constructors' contracts: the memory is shared with other vCPUs anyway),
// and it holds no thread-local state.
unsafe impl Send for StorageView<'_> {}
// SAFETY: as for Send; every method takes &self and is safe to run
// concurrently on the same memory.
unsafe impl Sync for StorageView<'_> {}

impl StorageView<'static> {
    /// A view of the `len` bytes at `base`, whose guest address is `addr`
    /// (what lookups return; `base as u64` in the guest).
    ///
    /// # Safety
    ///
    /// * `base..base + len` must be valid for reads and writes while the
    ///   view lives, and `base` 8-byte aligned.
    /// * Other code may access those bytes concurrently only with atomic
    ///   or volatile accesses, or as another `StorageView` (other vCPUs,
    ///   the host): never through Rust references.
    pub unsafe fn new(base: *mut u8, len: usize, addr: u64) -> StorageView<'static> {
        StorageView {
            base,
            len,
            addr,
            spin_tries: GUEST_SPIN_TRIES,
            _memory: PhantomData,
        }
    }
}

impl StorageView<'static> {
    /// A view of the storage a map's header names, `data .. data +
    /// data_size`: the guest runtime's, once it checked the header
    /// ([`MapDef::from_header`](super::MapDef::from_header)). `Corrupt` if
    /// `data` is null or misaligned, or the size above
    /// [`MAX_STORAGE_SIZE`](super::def::MAX_STORAGE_SIZE).
    ///
    /// # Safety
    ///
    /// As for [`StorageView::new`], over `data .. data + data_size`; in the
    /// guest, a header a program rewrote may name other memory it can
    /// reach, whose accesses then fault like its own
    /// ([`open_guest_map`](super::ops::open_guest_map)).
    pub unsafe fn of_header(header: &MapHeader) -> Result<StorageView<'static>, MapError> {
        if header.data == 0
            || !header.data.is_multiple_of(8)
            || header.data_size > super::def::MAX_STORAGE_SIZE
        {
            return Err(MapError::Corrupt);
        }
        // SAFETY: the caller's contract covers data .. data + data_size,
        // which is 8-byte aligned (checked); the size fits in usize.
        Ok(unsafe {
            StorageView::new(
                header.data as *mut u8,
                header.data_size as usize,
                header.data,
            )
        })
    }
}

impl<'a> StorageView<'a> {
    /// A view of `words` as bytes, whose first byte has guest address
    /// `addr`; locks give up after [`HOST_SPIN_TRIES`].
    pub fn from_atomic(words: &'a [AtomicU64], addr: u64) -> StorageView<'a> {
        StorageView {
            base: words.as_ptr().cast::<u8>().cast_mut(),
            len: core::mem::size_of_val(words),
            addr,
            spin_tries: HOST_SPIN_TRIES,
            _memory: PhantomData,
        }
    }

    /// The same view with locks giving up after `tries` tries.
    pub fn with_spin_tries(self, tries: u32) -> StorageView<'a> {
        StorageView {
            spin_tries: tries,
            ..self
        }
    }

    /// The pointer to `len` bytes at `off`, if they are inside the view
    /// and aligned to `align`.
    #[inline]
    fn at(&self, off: usize, len: usize, align: usize) -> Result<*mut u8, MapError> {
        match off.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => return Err(MapError::OutOfBounds),
        }
        // SAFETY: off + len <= self.len, inside the allocation `new` or
        // `from_atomic` describes.
        let ptr = unsafe { self.base.add(off) };
        if !(ptr as usize).is_multiple_of(align) {
            return Err(MapError::OutOfBounds);
        }
        Ok(ptr)
    }

    #[inline]
    fn atomic_u32(&self, off: usize) -> Result<&AtomicU32, MapError> {
        let ptr = self.at(off, 4, 4)?;
        // SAFETY: in bounds and aligned (checked by `at`); the memory is
        // only accessed atomically or volatilely (the constructors'
        // contracts), and lives for 'a.
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast::<u32>()) })
    }

    #[inline]
    fn atomic_u64(&self, off: usize) -> Result<&AtomicU64, MapError> {
        let ptr = self.at(off, 8, 8)?;
        // SAFETY: as in atomic_u32.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) })
    }
}

impl MapMemory for StorageView<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, off: usize, out: &mut [u8]) -> Result<(), MapError> {
        let src = self.at(off, out.len(), 1)?;
        let mut i = 0;
        // Whole aligned words where possible: keys and values are mostly
        // 8-byte multiples at 8-byte aligned offsets.
        while i < out.len() {
            if i + 8 <= out.len() && (src as usize + i).is_multiple_of(8) {
                // SAFETY: src + i .. src + i + 8 is inside the checked
                // range and 8-byte aligned.
                let word = unsafe { src.add(i).cast::<u64>().read_volatile() };
                out[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: src + i is inside the checked range.
                out[i] = unsafe { src.add(i).read_volatile() };
                i += 1;
            }
        }
        Ok(())
    }

    fn write(&self, off: usize, data: &[u8]) -> Result<(), MapError> {
        let dst = self.at(off, data.len(), 1)?;
        let mut i = 0;
        while i < data.len() {
            if i + 8 <= data.len() && (dst as usize + i).is_multiple_of(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(&data[i..i + 8]);
                // SAFETY: as in read.
                unsafe {
                    dst.add(i)
                        .cast::<u64>()
                        .write_volatile(u64::from_ne_bytes(word))
                };
                i += 8;
            } else {
                // SAFETY: dst + i is inside the checked range.
                unsafe { dst.add(i).write_volatile(data[i]) };
                i += 1;
            }
        }
        Ok(())
    }

    fn equals(&self, off: usize, bytes: &[u8]) -> Result<bool, MapError> {
        // Word by word, with no copy: a hash lookup compares a key with
        // each element of the chain.
        let src = self.at(off, bytes.len(), 1)?;
        let mut words = bytes.chunks_exact(8);
        let mut i = 0;
        if (src as usize).is_multiple_of(8) {
            for want in &mut words {
                // SAFETY: src + i .. src + i + 8 is inside the checked
                // range and 8-byte aligned.
                let got = unsafe { src.add(i).cast::<u64>().read_volatile() };
                let mut w = [0u8; 8];
                w.copy_from_slice(want);
                if got != u64::from_ne_bytes(w) {
                    return Ok(false);
                }
                i += 8;
            }
        }
        if let Some(want) = bytes.get(i..i + 4)
            && (src as usize + i).is_multiple_of(4)
        {
            // SAFETY: src + i .. src + i + 4 is inside the checked range
            // and 4-byte aligned.
            let got = unsafe { src.add(i).cast::<u32>().read_volatile() };
            let mut w = [0u8; 4];
            w.copy_from_slice(want);
            if got != u32::from_ne_bytes(w) {
                return Ok(false);
            }
            i += 4;
        }
        for &want in &bytes[i..] {
            // SAFETY: src + i is inside the checked range.
            if unsafe { src.add(i).read_volatile() } != want {
                return Ok(false);
            }
            i += 1;
        }
        Ok(true)
    }

    #[inline]
    fn load_u32(&self, off: usize) -> Result<u32, MapError> {
        Ok(self.atomic_u32(off)?.load(Ordering::Acquire))
    }

    #[inline]
    fn load_u64(&self, off: usize) -> Result<u64, MapError> {
        Ok(self.atomic_u64(off)?.load(Ordering::Acquire))
    }

    #[inline]
    fn store_u32(&self, off: usize, value: u32) -> Result<(), MapError> {
        self.atomic_u32(off)?.store(value, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn store_u64(&self, off: usize, value: u64) -> Result<(), MapError> {
        self.atomic_u64(off)?.store(value, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn cas_u32(&self, off: usize, current: u32, new: u32) -> Result<Result<u32, u32>, MapError> {
        Ok(self.atomic_u32(off)?.compare_exchange(
            current,
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ))
    }

    #[inline]
    fn cas_u64(&self, off: usize, current: u64, new: u64) -> Result<Result<u64, u64>, MapError> {
        Ok(self.atomic_u64(off)?.compare_exchange(
            current,
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ))
    }

    #[inline]
    fn addr(&self, off: usize) -> u64 {
        self.addr.wrapping_add(off as u64)
    }

    fn spin_wait(&self, tries: u32) -> bool {
        core::hint::spin_loop();
        // Threads standing in for vCPUs share two cores with everything
        // else: let a preempted lock holder run.
        #[cfg(test)]
        if tries % 64 == 63 {
            std::thread::yield_now();
        }
        tries < self.spin_tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn accesses_outside_or_misaligned_are_refused() {
        let words = setup_words(2);
        let mem = StorageView::from_atomic(&words, 0x5000);
        assert_eq!(mem.len(), 16);
        assert_eq!(mem.write(12, &[1; 5]), Err(MapError::OutOfBounds));
        assert_eq!(
            mem.read(usize::MAX, &mut [0; 2]),
            Err(MapError::OutOfBounds)
        );
        assert_eq!(mem.load_u32(2), Err(MapError::OutOfBounds));
        assert_eq!(mem.load_u64(12), Err(MapError::OutOfBounds));
        assert_eq!(mem.store_u64(16, 0), Err(MapError::OutOfBounds));
        assert_eq!(mem.zero(8, 9), Err(MapError::OutOfBounds));
        assert_eq!(mem.addr(3), 0x5003);
    }

    #[test]
    fn bytes_and_atomics_see_the_same_memory() {
        let words = setup_words(4);
        let mem = StorageView::from_atomic(&words, 0);
        let data: Vec<u8> = (1..=20).collect();
        mem.write(3, &data).unwrap();
        let mut out = [0u8; 20];
        mem.read(3, &mut out).unwrap();
        assert_eq!(out[..], data[..]);
        assert!(mem.equals(3, &data).unwrap());
        assert!(!mem.equals(2, &data).unwrap());
        assert_eq!(mem.load_u32(4).unwrap(), u32::from_le_bytes([2, 3, 4, 5]));
        assert_eq!(
            mem.cas_u32(4, 0, 9).unwrap(),
            Err(u32::from_le_bytes([2, 3, 4, 5]))
        );
        assert_eq!(mem.cas_u64(24, 0, 7).unwrap(), Ok(0));
        assert_eq!(mem.load_u64(24).unwrap(), 7);
        mem.zero(0, 32).unwrap();
        assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn equals_compares_every_byte_at_any_alignment() {
        let words = setup_words(8);
        let mem = StorageView::from_atomic(&words, 0);
        let data: Vec<u8> = (1..=64).collect();
        mem.write(0, &data).unwrap();
        for off in 0..9 {
            for len in 0..=40 {
                let want = &data[off..off + len];
                assert!(mem.equals(off, want).unwrap(), "{off} {len}");
                for wrong in 0..len {
                    let mut other = want.to_vec();
                    other[wrong] ^= 0x80;
                    assert!(!mem.equals(off, &other).unwrap(), "{off} {len} {wrong}");
                }
            }
        }
        assert_eq!(mem.equals(60, &[0; 5]), Err(MapError::OutOfBounds));
    }

    #[test]
    fn spinning_gives_up_after_the_budget() {
        let words = setup_words(1);
        let mem = StorageView::from_atomic(&words, 0).with_spin_tries(3);
        let tries = (0..).take_while(|&t| mem.spin_wait(t)).count();
        assert_eq!(tries, 3);
    }
}
