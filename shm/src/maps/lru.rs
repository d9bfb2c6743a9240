//! Eviction for `LRU_HASH` and `LRU_PERCPU_HASH`.
//!
//! Note [LRU eviction]
//! The kernel's LRU (`bpf_lru_list.c`) is approximate: a lookup only sets
//! a `ref` bit on the element (and only if it is clear, so a hot element
//! does not keep dirtying its line), and when the map is full the
//! shrinker rotates its lists, giving referenced elements a second chance
//! and evicting unreferenced ones. Here the same idea is a clock:
//!
//! * Every element in use has a `ref` word; insertion, update and
//!   program lookups set it to 1 (a load first, a store only if it was 0).
//! * Each CPU has a "recent" word, on its own cache line: the element its
//!   last program lookup or update touched (index + 1; 0 = none). The
//!   kernel's per-CPU local lists keep a CPU's newest elements out of
//!   reach the same way. Host lookups mark nothing, as the kernel's
//!   syscall lookups.
//! * An insertion into a full map evicts, under the free-list lock, with
//!   a hand (`clock_hand` in the control block) going round the pool:
//!   an element not in use or some CPU's recent element is skipped; a
//!   referenced one has its bit cleared and is skipped; the first
//!   unreferenced one is evicted. Two rounds always find one unless every
//!   element is some CPU's recent one (more CPUs than elements), in which
//!   case a third round takes the first element in use.
//! * The victim's bucket is locked with a try (lock order, Note [Map
//!   locks]); a victim whose bucket is busy is skipped. An element in use
//!   but not in the chain its hash names is one another CPU is inserting:
//!   skipped too. When nothing could be taken because buckets were busy,
//!   the update lets go of its locks and tries again (as long as
//!   [`MapMemory::spin_wait`] allows, then `Busy`): their holders may be
//!   waiting for the free-list lock it holds. When no element is in use
//!   at all the pool does not add up: `Corrupt`.
//!
//! So a map never holds more than `max_entries` elements, an update never
//! fails for lack of room, and the element a CPU used last survives that
//! CPU's next insertion. With a single CPU inserting, keys looked up since
//! the previous eviction survive the next one, as with a strict LRU, when
//! at least one key was not looked up.
//!
//! `BPF_F_NO_COMMON_LRU` (per-CPU lists in the kernel) is accepted and
//! uses the same shared clock.

use super::def::MAX_MAP_CPUS;
use super::hash::{CLOCK_HAND_OFF, Hash, IN_USE};
use super::{MapError, MapMemory};

/// Offset of CPU `cpu`'s recent word.
fn recent_off<M: MapMemory>(h: &Hash<'_, M>, cpu: u32) -> usize {
    h.l.recent_off + cpu as usize * 64
}

/// Notes a use of element `i` in an LRU map: its `ref` bit and, for a
/// program on `cpu`, that CPU's recent element. Nothing for other maps.
pub(super) fn mark_used<M: MapMemory>(
    h: &Hash<'_, M>,
    i: u32,
    cpu: Option<u32>,
) -> Result<(), MapError> {
    if !h.def.map_type().is_lru() {
        return Ok(());
    }
    if h.mem.load_u32(h.ref_off(i))? == 0 {
        h.mem.store_u32(h.ref_off(i), 1)?;
    }
    if let Some(cpu) = cpu.filter(|&c| c < h.def.nr_cpus()) {
        let off = recent_off(h, cpu);
        if h.mem.load_u32(off)? != i + 1 {
            h.mem.store_u32(off, i + 1)?;
        }
    }
    Ok(())
}

/// Evicts an element for an insertion into bucket `b` (whose lock the
/// caller holds, with the free-list lock) and returns it, unlinked and
/// marked in use; `None` if every candidate's bucket was busy (the caller
/// lets go of its locks and tries again).
pub(super) fn evict<M: MapMemory>(h: &Hash<'_, M>, b: u32) -> Result<Option<u32>, MapError> {
    let max = h.def.max_entries();
    let nr_cpus = h.def.nr_cpus().min(MAX_MAP_CPUS) as usize;
    let mut recent = [0u32; MAX_MAP_CPUS as usize];
    for (cpu, slot) in recent.iter_mut().enumerate().take(nr_cpus) {
        *slot = h.mem.load_u32(recent_off(h, cpu as u32))?;
    }
    let recent = &recent[..nr_cpus];
    // A scribbled hand is only a bad place to start.
    let mut hand = h.mem.load_u32(CLOCK_HAND_OFF)?;
    if hand >= max {
        hand = 0;
    }
    let mut busy = false;
    for round in 0..3 {
        for _ in 0..max {
            let i = hand;
            hand = if hand + 1 == max { 0 } else { hand + 1 };
            if h.mem.load_u32(h.free_off(i))? != IN_USE {
                continue;
            }
            if round < 2 {
                if recent.contains(&(i + 1)) {
                    continue;
                }
                if h.mem.load_u32(h.ref_off(i))? != 0 {
                    h.mem.store_u32(h.ref_off(i), 0)?;
                    continue;
                }
            }
            let victim_bucket = h.bucket_of(h.mem.load_u32(h.hash_off(i))?);
            if victim_bucket != b && !h.try_lock_bucket(victim_bucket)? {
                busy = true;
                continue;
            }
            let unlinked = h.unlink(victim_bucket, i);
            if victim_bucket != b {
                h.unlock_bucket(victim_bucket)?;
            }
            if unlinked? {
                h.mem.store_u32(CLOCK_HAND_OFF, hand)?;
                return Ok(Some(i));
            }
        }
    }
    h.mem.store_u32(CLOCK_HAND_OFF, hand)?;
    if busy {
        Ok(None)
    } else {
        Err(MapError::Corrupt)
    }
}
