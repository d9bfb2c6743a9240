//! Spin locks in map storage: the maps' own bucket and list locks, and
//! `struct bpf_spin_lock` in values.
//!
//! Note [Map locks]
//! A lock is a u32: 0 free, 1 held. Taking it is an Acquire
//! compare-exchange (test-and-test-and-set: while it is held, waiters only
//! read it), releasing it a Release store, so everything written under the
//! lock is seen by the next holder. A waiter calls
//! [`MapMemory::spin_wait`] between tries and gives up with
//! [`MapError::Busy`] when it says so: in the guest after about a run's
//! deadline, on the host after a few microseconds, so neither side hangs
//! on a lock a stopped or hostile vCPU left taken. Any other value in the
//! word is a lock nobody can take: it reads as held until the budget runs
//! out.
//!
//! The maps' own locks are held for a bounded number of steps and never
//! while calling out to anything, with one order: bucket lock, then the
//! hash's free-list lock, then (only with a try) another bucket's lock.
//!
//! A `bpf_spin_lock` in a value is the same lock (the guest runtime's
//! `bpf_spin_lock` helper takes it the same way over the value's address).
//! The kernel's verifier makes sure a program releases it; here a program
//! that never does makes the next taker spin until its budget or its
//! run's deadline ends.

use super::{BPF_F_LOCK, MapDef, MapError, MapMemory};

/// Value of a free lock.
pub const UNLOCKED: u32 = 0;
/// Value of a held lock.
pub const LOCKED: u32 = 1;

/// Takes the lock at `off` if it is free, without waiting.
pub fn try_lock(mem: &impl MapMemory, off: usize) -> Result<bool, MapError> {
    Ok(mem.cas_u32(off, UNLOCKED, LOCKED)?.is_ok())
}

/// Takes the lock at `off`, spinning as [`MapMemory::spin_wait`] allows
/// (Note [Map locks]).
pub fn lock(mem: &impl MapMemory, off: usize) -> Result<(), MapError> {
    let mut tries = 0u32;
    loop {
        if try_lock(mem, off)? {
            return Ok(());
        }
        // Wait reading, not writing, so the holder keeps its cache line.
        loop {
            if !mem.spin_wait(tries) {
                return Err(MapError::Busy);
            }
            tries = tries.saturating_add(1);
            if mem.load_u32(off)? == UNLOCKED {
                break;
            }
        }
    }
}

/// Releases the lock at `off` (whoever holds it, as the kernel's
/// `bpf_spin_unlock`).
pub fn unlock(mem: &impl MapMemory, off: usize) -> Result<(), MapError> {
    mem.store_u32(off, UNLOCKED)
}

/// Runs `f` holding the lock at `off`, and releases it whatever `f`
/// returns.
pub fn with_lock<M: MapMemory, T>(
    mem: &M,
    off: usize,
    f: impl FnOnce() -> Result<T, MapError>,
) -> Result<T, MapError> {
    lock(mem, off)?;
    let result = f();
    unlock(mem, off)?;
    result
}

/// Copies `src` into the value at `off`, leaving its `bpf_spin_lock`
/// word (if the map has one) as it is, as the kernel's `copy_map_value`.
pub fn copy_value_in(
    def: &MapDef,
    mem: &impl MapMemory,
    off: usize,
    src: &[u8],
) -> Result<(), MapError> {
    match def.spin_lock_off() {
        Some(lock_off) => {
            let lock_off = lock_off as usize;
            let (head, rest) = src.split_at(lock_off.min(src.len()));
            mem.write(off, head)?;
            if let Some(tail) = rest.get(4..) {
                mem.write(off + lock_off + 4, tail)?;
            }
            Ok(())
        }
        None => mem.write(off, src),
    }
}

/// Copies the value at `off` into `out` (the lock word reads as 0). With
/// [`BPF_F_LOCK`] in `flags`, under the value's lock, as the kernel's
/// `copy_map_value_locked` for a `BPF_F_LOCK` lookup.
pub fn read_value(
    def: &MapDef,
    mem: &impl MapMemory,
    off: usize,
    out: &mut [u8],
    flags: u64,
) -> Result<(), MapError> {
    if flags & !BPF_F_LOCK != 0 {
        return Err(MapError::InvalidFlags);
    }
    let mut copy = || {
        mem.read(off, out)?;
        if let Some(word) = def
            .spin_lock_off()
            .and_then(|l| out.get_mut(l as usize..l as usize + 4))
        {
            word.fill(0);
        }
        Ok(())
    };
    match (flags & BPF_F_LOCK != 0, def.spin_lock_off()) {
        (false, _) => copy(),
        (true, None) => Err(MapError::InvalidFlags),
        (true, Some(lock_off)) => with_lock(mem, off + lock_off as usize, copy),
    }
}

/// Writes `src` into the value at `off`: under the value's lock with
/// [`BPF_F_LOCK`] in `flags` (`-EINVAL` if the value has none), else
/// plainly; the lock word is never overwritten.
pub(crate) fn write_value(
    def: &MapDef,
    mem: &impl MapMemory,
    off: usize,
    src: &[u8],
    flags: u64,
) -> Result<(), MapError> {
    match (flags & BPF_F_LOCK != 0, def.spin_lock_off()) {
        (false, _) => copy_value_in(def, mem, off, src),
        (true, None) => Err(MapError::InvalidFlags),
        (true, Some(lock_off)) => with_lock(mem, off + lock_off as usize, || {
            copy_value_in(def, mem, off, src)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{MapType, StorageView};
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_held_lock_gives_busy_not_a_hang() {
        let words = [AtomicU64::new(0)];
        let mem = StorageView::from_atomic(&words, 0).with_spin_tries(100);
        lock(&mem, 0).unwrap();
        assert_eq!(lock(&mem, 0), Err(MapError::Busy));
        assert!(!try_lock(&mem, 0).unwrap());
        unlock(&mem, 0).unwrap();
        assert!(try_lock(&mem, 0).unwrap());
        // Garbage in a lock word reads as held.
        mem.store_u32(4, 0xdead).unwrap();
        assert_eq!(lock(&mem, 4), Err(MapError::Busy));
        assert_eq!(MapError::Busy.errno(), crate::errno::EBUSY);
    }

    #[test]
    fn locked_copies_skip_the_lock_word() {
        let words: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
        let mem = StorageView::from_atomic(&words, 0).with_spin_tries(10);
        let def = MapDef::new(MapType::Array as u32, 4, 12, 1, 0, 1)
            .unwrap()
            .with_spin_lock(4)
            .unwrap();
        write_value(&def, &mem, 0, &[1; 12], BPF_F_LOCK).unwrap();
        assert_eq!(mem.load_u32(4).unwrap(), UNLOCKED);
        let mut out = [9u8; 12];
        read_value(&def, &mem, 0, &mut out, BPF_F_LOCK).unwrap();
        assert_eq!(out, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
        lock(&mem, 4).unwrap();
        assert_eq!(
            write_value(&def, &mem, 0, &[2; 12], BPF_F_LOCK),
            Err(MapError::Busy)
        );
        let plain = MapDef::new(MapType::Array as u32, 4, 12, 1, 0, 1).unwrap();
        assert_eq!(
            read_value(&plain, &mem, 0, &mut out, BPF_F_LOCK),
            Err(MapError::InvalidFlags)
        );
    }
}
