//! `QUEUE` and `STACK` (`kernel/bpf/queue_stack_maps.c`): a ring of
//! `max_entries + 1` values under one lock.
//!
//! ```text
//!  0        4        8        12                 CONTROL_SIZE
//!  ┌────────┬────────┬────────┬─────────────────┬────────┬────────┬─────┐
//!  │ lock   │ head   │ tail   │ zero            │ slot 0 │ slot 1 │  …  │
//!  └────────┴────────┴────────┴─────────────────┴────────┴────────┴─────┘
//!   slots: size = max_entries + 1, value_size bytes each (unaligned, as
//!   the kernel); empty when head == tail, full when head + 1 == tail
//!   (mod size). push writes slot head and advances head; a queue pops
//!   from tail (oldest first), a stack from head - 1 (newest first).
//! ```
//!
//! Pushing onto a full map fails with -E2BIG, unless the flags are
//! `BPF_EXIST`: then the oldest value (at tail, for both kinds) is dropped
//! to make room, as the kernel does. Popping or peeking an empty map gives
//! -ENOENT and zeroes the output. Head and tail are read under the lock
//! and checked against the ring's size: a scribbled index is
//! [`MapError::Corrupt`].

use super::lock::with_lock;
use super::{BPF_EXIST, BPF_NOEXIST, MapDef, MapError, MapMemory, MapType};

const LOCK_OFF: usize = 0;
const HEAD_OFF: usize = 4;
const TAIL_OFF: usize = 8;
/// Bytes before the first slot (a cache line, so the slots do not share
/// it with the lock).
pub const CONTROL_SIZE: usize = 64;

/// Storage bytes for `entries` values of `value_size` bytes.
pub(crate) fn storage_size(value_size: u32, entries: u64) -> Option<u64> {
    (entries + 1)
        .checked_mul(u64::from(value_size))?
        .checked_add(CONTROL_SIZE as u64)
}

/// The ring's size and the offset of slot `i`.
fn slots(def: &MapDef) -> u32 {
    // max_entries + 1 slots fit in storage_size, checked at creation;
    // max_entries is at most u32::MAX and the sum is done in u64 there,
    // but a u32 ring of u32::MAX + 1 slots cannot fit in 1 GiB.
    def.max_entries() + 1
}

fn slot_off(def: &MapDef, i: u32) -> usize {
    CONTROL_SIZE + i as usize * def.value_len()
}

/// Empties the map (the host, at creation).
pub fn init(mem: &impl MapMemory) -> Result<(), MapError> {
    mem.zero(0, CONTROL_SIZE)
}

/// Head and tail, checked against the ring.
fn indices(def: &MapDef, mem: &impl MapMemory) -> Result<(u32, u32), MapError> {
    let (head, tail) = (mem.load_u32(HEAD_OFF)?, mem.load_u32(TAIL_OFF)?);
    if head >= slots(def) || tail >= slots(def) {
        return Err(MapError::Corrupt);
    }
    Ok((head, tail))
}

fn check_kind(def: &MapDef) -> Result<(), MapError> {
    match def.map_type() {
        MapType::Queue | MapType::Stack => Ok(()),
        _ => Err(MapError::Unsupported),
    }
}

/// `map_push_elem`: appends `value`; with `BPF_EXIST` a full map drops its
/// oldest value first.
pub fn push(def: &MapDef, mem: &impl MapMemory, value: &[u8], flags: u64) -> Result<(), MapError> {
    check_kind(def)?;
    if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
        return Err(MapError::InvalidFlags);
    }
    if value.len() != def.value_len() {
        return Err(MapError::InvalidArgument("value has the wrong size"));
    }
    let size = slots(def);
    with_lock(mem, LOCK_OFF, || {
        let (head, mut tail) = indices(def, mem)?;
        let next = if head + 1 == size { 0 } else { head + 1 };
        if next == tail {
            if flags != BPF_EXIST {
                return Err(MapError::Full);
            }
            tail = if tail + 1 == size { 0 } else { tail + 1 };
            mem.store_u32(TAIL_OFF, tail)?;
        }
        mem.write(slot_off(def, head), value)?;
        mem.store_u32(HEAD_OFF, next)
    })
}

/// `map_pop_elem`: removes the oldest (queue) or newest (stack) value into
/// `out`.
pub fn pop(def: &MapDef, mem: &impl MapMemory, out: &mut [u8]) -> Result<(), MapError> {
    take(def, mem, out, true)
}

/// `map_peek_elem`: copies the value [`pop`] would remove.
pub fn peek(def: &MapDef, mem: &impl MapMemory, out: &mut [u8]) -> Result<(), MapError> {
    take(def, mem, out, false)
}

/// Calls `f` with the offset of each value (`value_len` bytes) in the
/// order [`pop`] would remove them, removing none: the host's listing.
/// `f` runs under the map's lock, so the values are one consistent state;
/// at most `max_entries` calls.
pub fn values(
    def: &MapDef,
    mem: &impl MapMemory,
    mut f: impl FnMut(usize) -> Result<(), MapError>,
) -> Result<(), MapError> {
    check_kind(def)?;
    let size = slots(def);
    with_lock(mem, LOCK_OFF, || {
        let (head, tail) = indices(def, mem)?;
        let count = if head >= tail {
            head - tail
        } else {
            head + size - tail
        };
        for n in 0..count {
            // size < 2^30 (the storage is at most 1 GiB): no overflow.
            let slot = if def.map_type() == MapType::Queue {
                (tail + n) % size
            } else {
                (head + size - 1 - n) % size
            };
            f(slot_off(def, slot))?;
        }
        Ok(())
    })
}

fn take(def: &MapDef, mem: &impl MapMemory, out: &mut [u8], remove: bool) -> Result<(), MapError> {
    check_kind(def)?;
    if out.len() != def.value_len() {
        return Err(MapError::InvalidArgument("value has the wrong size"));
    }
    let size = slots(def);
    let result = with_lock(mem, LOCK_OFF, || {
        let (head, tail) = indices(def, mem)?;
        if head == tail {
            return Err(MapError::NotFound);
        }
        if def.map_type() == MapType::Queue {
            mem.read(slot_off(def, tail), out)?;
            if remove {
                let tail = if tail + 1 == size { 0 } else { tail + 1 };
                mem.store_u32(TAIL_OFF, tail)?;
            }
        } else {
            let top = if head == 0 { size - 1 } else { head - 1 };
            mem.read(slot_off(def, top), out)?;
            if remove {
                mem.store_u32(HEAD_OFF, top)?;
            }
        }
        Ok(())
    });
    if result.is_err() {
        out.fill(0);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{BPF_ANY, StorageView};
    use std::sync::atomic::AtomicU64;

    fn setup_ring(ty: MapType, max: u32) -> (MapDef, Vec<AtomicU64>) {
        let def = MapDef::new(ty as u32, 0, 4, max, 0, 1).unwrap();
        let words = (0..def.storage_size() / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        (def, words)
    }

    fn popped(def: &MapDef, mem: &impl MapMemory) -> Result<u32, MapError> {
        let mut out = [0; 4];
        pop(def, mem, &mut out).map(|()| u32::from_le_bytes(out))
    }

    #[test]
    fn queue_is_fifo_and_overwrites_oldest_with_exist() {
        let (def, words) = setup_ring(MapType::Queue, 3);
        let mem = StorageView::from_atomic(&words, 0);
        for v in 1..=3u32 {
            push(&def, &mem, &v.to_le_bytes(), BPF_ANY).unwrap();
        }
        assert_eq!(
            push(&def, &mem, &4u32.to_le_bytes(), BPF_ANY),
            Err(MapError::Full)
        );
        push(&def, &mem, &4u32.to_le_bytes(), BPF_EXIST).unwrap();
        let mut out = [0; 4];
        peek(&def, &mem, &mut out).unwrap();
        assert_eq!(u32::from_le_bytes(out), 2);
        let got: Vec<_> = (0..4).map(|_| popped(&def, &mem)).collect();
        assert_eq!(got, [Ok(2), Ok(3), Ok(4), Err(MapError::NotFound)]);
        out = [9; 4];
        assert_eq!(peek(&def, &mem, &mut out), Err(MapError::NotFound));
        assert_eq!(out, [0; 4]);
    }

    #[test]
    fn stack_is_lifo_and_exist_drops_the_bottom() {
        let (def, words) = setup_ring(MapType::Stack, 2);
        let mem = StorageView::from_atomic(&words, 0);
        for v in 1..=3u32 {
            push(&def, &mem, &v.to_le_bytes(), BPF_EXIST).unwrap();
        }
        let got: Vec<_> = (0..3).map(|_| popped(&def, &mem)).collect();
        assert_eq!(got, [Ok(3), Ok(2), Err(MapError::NotFound)]);
    }

    #[test]
    fn bad_flags_sizes_and_kinds_are_refused() {
        let (def, words) = setup_ring(MapType::Queue, 2);
        let mem = StorageView::from_atomic(&words, 0);
        assert_eq!(
            push(&def, &mem, &[0; 4], BPF_NOEXIST),
            Err(MapError::InvalidFlags)
        );
        assert_eq!(push(&def, &mem, &[0; 4], 4), Err(MapError::InvalidFlags));
        assert!(push(&def, &mem, &[0; 3], BPF_ANY).is_err());
        let array = MapDef::new(2, 4, 4, 1, 0, 1).unwrap();
        assert_eq!(
            push(&array, &mem, &[0; 4], BPF_ANY),
            Err(MapError::Unsupported)
        );
    }

    #[test]
    fn scribbled_indices_are_corrupt_and_a_stuck_lock_busy() {
        let (def, words) = setup_ring(MapType::Queue, 2);
        let mem = StorageView::from_atomic(&words, 0).with_spin_tries(50);
        mem.store_u32(HEAD_OFF, 3).unwrap();
        assert_eq!(push(&def, &mem, &[0; 4], BPF_ANY), Err(MapError::Corrupt));
        assert_eq!(popped(&def, &mem), Err(MapError::Corrupt));
        mem.store_u32(HEAD_OFF, 0).unwrap();
        mem.store_u32(LOCK_OFF, 1).unwrap();
        assert_eq!(popped(&def, &mem), Err(MapError::Busy));
    }
}
