//! Hash maps: `HASH`, `PERCPU_HASH`, `LRU_HASH`, `LRU_PERCPU_HASH` and
//! `HASH_OF_MAPS` (`kernel/bpf/hashtab.c`), over a preallocated pool of
//! elements.
//!
//! ```text
//!  0                64            +nr_cpus*64 (LRU)  +n_buckets*8
//!  ┌────────────────┬──────────────┬──────────────────┬────────────────────┐
//!  │ control        │ recent marks │ buckets          │ elements           │
//!  │ free_lock @0   │ one u32 per  │ {lock, head} u32 │ max_entries × elem │
//!  │ free_head @4   │ CPU, a line  │ head: element or │                    │
//!  │ clock_hand @8  │ each         │ end marker       │                    │
//!  └────────────────┴──────────────┴──────────────────┴────────────────────┘
//!  elem: next @0 │ hash @4 │ free @8 │ ref @12 │ key @16 (round_up 8) │ value
//!  (per-CPU maps: no value in the element; after the elements, aligned to
//!   64, one block per CPU as in PERCPU_ARRAY: CPU c's value of element i
//!   at c * block + i * stride)
//! ```
//!
//! Note [Hash chains]
//! `n_buckets` is `max_entries` rounded up to a power of two, as the
//! kernel's. A bucket's `head` and an element's `next` hold an element
//! index, or an end marker `END | bucket` naming the bucket whose chain
//! ends there — the kernel's `hlist_nulls`. `free` holds the next free
//! element while the element is on the free list, `IN_USE` while it is in
//! a chain: the free list never touches `next`, so a reader standing on an
//! element that is deleted meanwhile still walks on along its old chain.
//!
//! Writers (update, delete) hold the bucket's lock (Note [Map locks]);
//! taking an element from the free list, or evicting one, also takes the
//! free-list lock. Readers (lookup, next_key, for_each) take no lock, as
//! the kernel's RCU readers: an element is filled before the Release
//! store that links it (Note [Map memory ordering]). An element deleted
//! and reused while a reader stands on it may lead the reader into
//! another chain; it notices at the end marker (wrong bucket) and starts
//! again, as the kernel does. After four tries, or when a walk takes more
//! than `max_entries` steps, the reader walks again under the bucket's
//! lock, where anything that does not add up (an index out of range, a
//! marker of another bucket, a walk longer than the pool) is
//! [`MapError::Corrupt`]. Values are updated in place, so a reader may
//! see a value half old and half new, as with the kernel's preallocated
//! maps (which reuse a deleted element at once) or array values.

use super::lock::{self, with_lock, write_value};
use super::lru;
use super::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, MapDef, MapError, MapMemory};

/// Most elements a hash map may hold, so that an end marker (`END |
/// bucket`) never looks like `IN_USE` or `FREE_END`.
pub const MAX_HASH_ENTRIES: u32 = 1 << 30;

/// Bit set in a link that is not an element index (Note [Hash chains]).
const END: u32 = 1 << 31;
/// `free` of an element in a chain.
pub(super) const IN_USE: u32 = u32::MAX - 1;
/// `free` of the last free element, and `free_head` of an empty list.
const FREE_END: u32 = u32::MAX;

const FREE_LOCK_OFF: usize = 0;
const FREE_HEAD_OFF: usize = 4;
pub(super) const CLOCK_HAND_OFF: usize = 8;
const CONTROL_SIZE: u64 = 64;
/// Bytes of one CPU's recent mark (a cache line, so that marking does not
/// bounce lines between CPUs).
const RECENT_SIZE: u64 = 64;
const BUCKET_SIZE: u64 = 8;
/// Element header: next, hash, free, ref.
const ELEM_HEADER: u64 = 16;
/// Lock-free walks before walking under the bucket's lock.
const LOCKLESS_TRIES: u32 = 4;

/// Where everything is in a hash map's storage (the diagram above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of buckets, a power of two.
    pub n_buckets: u32,
    /// Offset of the per-CPU recent marks (LRU maps).
    pub recent_off: usize,
    /// Offset of the buckets.
    pub buckets_off: usize,
    /// Offset of element 0.
    pub elems_off: usize,
    /// Bytes per element.
    pub elem_size: usize,
    /// Offset of the value in an element (not per-CPU maps).
    pub value_in_elem: usize,
    /// Offset of the per-CPU value blocks (per-CPU maps).
    pub values_off: usize,
    /// Total bytes.
    pub size: usize,
}

/// A [`Layout`] as [`MapDef`] keeps it: every offset is below
/// [`MAX_STORAGE_SIZE`](super::def::MAX_STORAGE_SIZE), so u32s, which
/// keeps a definition small enough to copy cheaply on every helper call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PackedLayout([u32; 8]);

impl PackedLayout {
    pub(super) fn new(l: &Layout) -> PackedLayout {
        // Layout::new checked that size, and so every offset, is at most
        // MAX_STORAGE_SIZE.
        PackedLayout([
            l.n_buckets,
            l.recent_off as u32,
            l.buckets_off as u32,
            l.elems_off as u32,
            l.elem_size as u32,
            l.value_in_elem as u32,
            l.values_off as u32,
            l.size as u32,
        ])
    }

    pub(super) fn unpack(&self) -> Layout {
        let [
            n_buckets,
            recent,
            buckets,
            elems,
            elem_size,
            value_in_elem,
            values,
            size,
        ] = self.0;
        Layout {
            n_buckets,
            recent_off: recent as usize,
            buckets_off: buckets as usize,
            elems_off: elems as usize,
            elem_size: elem_size as usize,
            value_in_elem: value_in_elem as usize,
            values_off: values as usize,
            size: size as usize,
        }
    }
}

impl Layout {
    /// The layout of `def`'s storage, or `None` if it overflows (checked
    /// by [`MapDef::new`], which keeps it: [`MapDef::hash_layout`]).
    pub fn new(def: &MapDef) -> Option<Layout> {
        let entries = u64::from(def.max_entries());
        let n_buckets = entries.checked_next_power_of_two()?;
        let recent = if def.map_type().is_lru() {
            RECENT_SIZE * u64::from(def.nr_cpus())
        } else {
            0
        };
        let key = (def.key_size() as u64).next_multiple_of(8);
        let stride = def.value_stride() as u64;
        let percpu = def.map_type().is_percpu();
        let elem_size = ELEM_HEADER + key + if percpu { 0 } else { stride };
        let buckets_off = CONTROL_SIZE + recent;
        let elems_off = buckets_off.checked_add(n_buckets.checked_mul(BUCKET_SIZE)?)?;
        let elems_end = elems_off.checked_add(entries.checked_mul(elem_size)?)?;
        let values_off = elems_end.next_multiple_of(64);
        let size = if percpu {
            let block = entries.checked_mul(stride)?.next_multiple_of(64);
            values_off.checked_add(block.checked_mul(u64::from(def.nr_cpus()))?)?
        } else {
            elems_end
        };
        // Everything below the storage limit fits in usize and u32 buckets.
        if size > super::def::MAX_STORAGE_SIZE {
            return None;
        }
        Some(Layout {
            n_buckets: u32::try_from(n_buckets).ok()?,
            recent_off: CONTROL_SIZE as usize,
            buckets_off: buckets_off as usize,
            elems_off: elems_off as usize,
            elem_size: elem_size as usize,
            value_in_elem: (ELEM_HEADER + key) as usize,
            values_off: values_off as usize,
            size: size as usize,
        })
    }
}

/// The kernel hashes with jhash and a random seed; any good mix will do
/// here (the seed is fixed, as with `BPF_F_ZERO_SEED`).
pub fn hash_key(key: &[u8]) -> u32 {
    let mix = |h: u64, word: u64| {
        let h = (h ^ word).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 32)
    };
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ key.len() as u64;
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        h = mix(h, u64::from_le_bytes(bytes));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Byte by byte: a variable-length copy would be a memcpy call.
        let word = rest
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &b)| w | u64::from(b) << (8 * i));
        h = mix(h, word);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

/// How a lock-free walk ended.
enum Walk<T> {
    Found(T),
    End,
    /// The walk left its chain (Note [Hash chains]): try again.
    Retry,
}

/// One hash map: its definition, storage and layout.
pub(super) struct Hash<'a, M> {
    pub(super) def: &'a MapDef,
    pub(super) mem: &'a M,
    pub(super) l: Layout,
}

impl<'a, M: MapMemory> Hash<'a, M> {
    pub(super) fn new(def: &'a MapDef, mem: &'a M) -> Result<Self, MapError> {
        if !def.map_type().is_hash() {
            return Err(MapError::Unsupported);
        }
        let l = def.hash_layout();
        if mem.len() < l.size {
            return Err(MapError::OutOfBounds);
        }
        Ok(Hash { def, mem, l })
    }

    fn max(&self) -> u32 {
        self.def.max_entries()
    }

    pub(super) fn bucket_of(&self, hash: u32) -> u32 {
        hash & (self.l.n_buckets - 1)
    }

    pub(super) fn lock_off(&self, b: u32) -> usize {
        self.l.buckets_off + b as usize * BUCKET_SIZE as usize
    }

    fn head_off(&self, b: u32) -> usize {
        self.lock_off(b) + 4
    }

    fn elem_off(&self, i: u32) -> usize {
        self.l.elems_off + i as usize * self.l.elem_size
    }

    fn next_off(&self, i: u32) -> usize {
        self.elem_off(i)
    }

    pub(super) fn hash_off(&self, i: u32) -> usize {
        self.elem_off(i) + 4
    }

    pub(super) fn free_off(&self, i: u32) -> usize {
        self.elem_off(i) + 8
    }

    pub(super) fn ref_off(&self, i: u32) -> usize {
        self.elem_off(i) + 12
    }

    fn key_off(&self, i: u32) -> usize {
        self.elem_off(i) + ELEM_HEADER as usize
    }

    /// Offset of CPU `cpu`'s value of element `i` (the one value of a
    /// map that is not per-CPU).
    pub(super) fn value_off(&self, i: u32, cpu: u32) -> usize {
        if self.def.map_type().is_percpu() {
            self.l.values_off
                + cpu as usize * self.def.percpu_block()
                + i as usize * self.def.value_stride()
        } else {
            self.elem_off(i) + self.l.value_in_elem
        }
    }

    /// `link` as an element index, or `Corrupt` (Note [Trusting map
    /// memory]).
    pub(super) fn index(&self, link: u32) -> Result<u32, MapError> {
        if link < self.max() {
            Ok(link)
        } else {
            Err(MapError::Corrupt)
        }
    }

    /// Empties the map (the host, at creation): every element on the free
    /// list, every chain empty.
    pub(super) fn init(&self) -> Result<(), MapError> {
        self.mem.zero(0, self.l.size)?;
        for b in 0..self.l.n_buckets {
            self.mem.store_u32(self.head_off(b), END | b)?;
        }
        for i in 0..self.max() {
            let next_free = if i + 1 < self.max() { i + 1 } else { FREE_END };
            self.mem.store_u32(self.next_off(i), FREE_END)?;
            self.mem.store_u32(self.free_off(i), next_free)?;
        }
        self.mem.store_u32(FREE_HEAD_OFF, 0)
    }

    /// Walks bucket `b`'s chain, calling `visit(link offset, element)` on
    /// each element until it returns something. `strict` (under the
    /// bucket's lock): anything odd is `Corrupt`; else `Retry`.
    fn walk<T>(
        &self,
        b: u32,
        strict: bool,
        mut visit: impl FnMut(usize, u32) -> Result<Option<T>, MapError>,
    ) -> Result<Walk<T>, MapError> {
        let mut link_off = self.head_off(b);
        let mut link = self.mem.load_u32(link_off)?;
        // At most max_entries elements, then the end marker.
        for _ in 0..=self.max() {
            if link & END != 0 {
                return match (link == END | b, strict) {
                    (true, _) => Ok(Walk::End),
                    (false, true) => Err(MapError::Corrupt),
                    (false, false) => Ok(Walk::Retry),
                };
            }
            let i = self.index(link)?;
            if let Some(found) = visit(link_off, i)? {
                return Ok(Walk::Found(found));
            }
            link_off = self.next_off(i);
            link = self.mem.load_u32(link_off)?;
        }
        if strict {
            Err(MapError::Corrupt)
        } else {
            Ok(Walk::Retry)
        }
    }

    /// Runs the walk `f` without the lock until it settles, then under
    /// bucket `b`'s lock (Note [Hash chains]).
    fn settle<T>(
        &self,
        b: u32,
        f: impl Fn(bool) -> Result<Walk<T>, MapError>,
    ) -> Result<Option<T>, MapError> {
        for _ in 0..LOCKLESS_TRIES {
            match f(false)? {
                Walk::Found(t) => return Ok(Some(t)),
                Walk::End => return Ok(None),
                Walk::Retry => {}
            }
        }
        with_lock(self.mem, self.lock_off(b), || match f(true)? {
            Walk::Found(t) => Ok(Some(t)),
            Walk::End => Ok(None),
            Walk::Retry => Err(MapError::Corrupt),
        })
    }

    fn matches(&self, i: u32, hash: u32, key: &[u8]) -> Result<bool, MapError> {
        Ok(
            self.mem.load_u32(self.hash_off(i))? == hash
                && self.mem.equals(self.key_off(i), key)?,
        )
    }

    /// The element holding `key` in bucket `b`: (offset of the link to it,
    /// its index).
    fn search(
        &self,
        b: u32,
        hash: u32,
        key: &[u8],
        strict: bool,
    ) -> Result<Walk<(usize, u32)>, MapError> {
        self.walk(b, strict, |link_off, i| {
            Ok(self.matches(i, hash, key)?.then_some((link_off, i)))
        })
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() == self.def.key_size() {
            Ok(())
        } else {
            Err(MapError::InvalidArgument("key has the wrong size"))
        }
    }

    /// The element holding `key`, found without locks (lookup). With
    /// `mark`, an LRU map notes the use (Note [LRU eviction]); `Some(cpu)`
    /// also makes it that CPU's most recent element.
    pub(super) fn lookup(
        &self,
        key: &[u8],
        mark: Option<Option<u32>>,
    ) -> Result<Option<u32>, MapError> {
        self.check_key(key)?;
        let hash = hash_key(key);
        let b = self.bucket_of(hash);
        // The first step of the lock-free walk, on its own: most keys are
        // first in their chain (there are at least as many buckets as
        // elements), and this step costs a fifth of what the general
        // walk's closures and retries do. Anything else — an end marker,
        // an index out of range, another key — takes the general walk,
        // which decides it (Note [Hash chains]).
        let head = self.mem.load_u32(self.head_off(b))?;
        let found = if head & END == 0 && head < self.max() && self.matches(head, hash, key)? {
            Some(head)
        } else {
            self.settle(b, |strict| {
                Ok(match self.search(b, hash, key, strict)? {
                    Walk::Found((_, i)) => Walk::Found(i),
                    Walk::End => Walk::End,
                    Walk::Retry => Walk::Retry,
                })
            })?
        };
        if let (Some(i), Some(cpu)) = (found, mark) {
            lru::mark_used(self, i, cpu)?;
        }
        Ok(found)
    }

    /// `map_update_elem`. `values`: one value, or with `cpu` `None` in a
    /// per-CPU map (the host), one per CPU at [`MapDef::value_stride`]
    /// intervals. With `cpu` `Some(c)` (a program), a per-CPU map's update
    /// writes CPU c's copy and a new element's other copies are zeroed.
    pub(super) fn update(
        &self,
        key: &[u8],
        values: &[u8],
        flags: u64,
        cpu: Option<u32>,
    ) -> Result<(), MapError> {
        let ty = self.def.map_type();
        let plain_flags = if ty.is_percpu() || ty.is_lru() {
            flags
        } else {
            flags & !BPF_F_LOCK
        };
        if plain_flags > BPF_EXIST {
            return Err(MapError::InvalidFlags);
        }
        if flags & BPF_F_LOCK != 0 && self.def.spin_lock_off().is_none() {
            return Err(MapError::InvalidFlags);
        }
        self.check_key(key)?;
        let all_cpus = ty.is_percpu() && cpu.is_none();
        let want = if all_cpus {
            self.def.nr_cpus() as usize * self.def.value_stride()
        } else {
            self.def.value_len()
        };
        if values.len() != want {
            return Err(MapError::InvalidArgument("value has the wrong size"));
        }
        if cpu.is_some_and(|c| c >= self.def.nr_cpus()) {
            return Err(MapError::InvalidArgument("CPU out of range"));
        }
        let hash = hash_key(key);
        let b = self.bucket_of(hash);
        // An LRU insertion whose eviction met only busy buckets lets go of
        // its lock (their holders may be waiting for the free list it
        // holds) and tries again, after spinning as long as a round of
        // the pool takes: the spin budget then bounds the work too, so a
        // host facing a guest that holds every bucket gives up in
        // milliseconds, not after 2^16 rounds of a large pool.
        let mut tries = 0u32;
        loop {
            if self
                .update_locked(b, hash, key, values, flags, cpu)?
                .is_some()
            {
                return Ok(());
            }
            for _ in 0..self.max() {
                if !self.mem.spin_wait(tries) {
                    return Err(MapError::Busy);
                }
                tries = tries.saturating_add(1);
            }
        }
    }

    /// One try of [`Hash::update`] under bucket `b`'s lock; `None` if an
    /// LRU eviction found every candidate's bucket busy.
    fn update_locked(
        &self,
        b: u32,
        hash: u32,
        key: &[u8],
        values: &[u8],
        flags: u64,
        cpu: Option<u32>,
    ) -> Result<Option<()>, MapError> {
        with_lock(self.mem, self.lock_off(b), || {
            let i = match self.search(b, hash, key, true)? {
                Walk::Found((_, i)) => {
                    if flags & BPF_NOEXIST != 0 {
                        return Err(MapError::Exists);
                    }
                    self.write_values(i, values, flags, cpu, false)?;
                    i
                }
                Walk::End | Walk::Retry => {
                    if flags & BPF_EXIST != 0 {
                        return Err(MapError::NotFound);
                    }
                    let Some(i) = self.alloc(b)? else {
                        return Ok(None);
                    };
                    self.mem.write(self.key_off(i), key)?;
                    self.mem.store_u32(self.hash_off(i), hash)?;
                    self.write_values(i, values, flags & !BPF_F_LOCK, cpu, true)?;
                    self.mem.store_u32(self.free_off(i), IN_USE)?;
                    let head = self.mem.load_u32(self.head_off(b))?;
                    self.mem.store_u32(self.next_off(i), head)?;
                    // Release: publishes the element's key and value.
                    self.mem.store_u32(self.head_off(b), i)?;
                    i
                }
            };
            lru::mark_used(self, i, cpu).map(Some)
        })
    }

    fn write_values(
        &self,
        i: u32,
        values: &[u8],
        flags: u64,
        cpu: Option<u32>,
        new: bool,
    ) -> Result<(), MapError> {
        let def = self.def;
        if def.map_type().has_slots() {
            let slot = <[u8; 8]>::try_from(values)
                .map_err(|_| MapError::InvalidArgument("slot value must be 8 bytes"))?;
            // Release: a program loading the inner map's address sees it
            // whole.
            return self
                .mem
                .store_u64(self.value_off(i, 0), u64::from_le_bytes(slot));
        }
        if !def.map_type().is_percpu() {
            let off = self.value_off(i, 0);
            write_value(def, self.mem, off, values, flags)?;
            if let (true, Some(lock_off)) = (new, def.spin_lock_off()) {
                // A reused element's lock may have been left held.
                self.mem
                    .store_u32(off + lock_off as usize, lock::UNLOCKED)?;
            }
            return Ok(());
        }
        let (len, stride) = (def.value_len(), def.value_stride());
        for c in 0..def.nr_cpus() {
            let off = self.value_off(i, c);
            match cpu {
                None => self.mem.write(off, &values[c as usize * stride..][..len])?,
                Some(this) if this == c => self.mem.write(off, values)?,
                Some(_) if new => self.mem.zero(off, len)?,
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A free element, taken off the free list or (LRU) evicted; the
    /// caller holds bucket `b`'s lock. `None`: every LRU candidate's bucket
    /// was busy.
    fn alloc(&self, b: u32) -> Result<Option<u32>, MapError> {
        with_lock(self.mem, FREE_LOCK_OFF, || {
            let head = self.mem.load_u32(FREE_HEAD_OFF)?;
            if head != FREE_END {
                let i = self.index(head)?;
                let next = self.mem.load_u32(self.free_off(i))?;
                if next != FREE_END {
                    // IN_USE here means a used element on the free list.
                    self.index(next)?;
                }
                self.mem.store_u32(FREE_HEAD_OFF, next)?;
                self.mem.store_u32(self.free_off(i), IN_USE)?;
                return Ok(Some(i));
            }
            if !self.def.map_type().is_lru() {
                return Err(MapError::Full);
            }
            lru::evict(self, b)
        })
    }

    /// Unlinks element `i` from bucket `b`'s chain, whose lock the caller
    /// holds; whether it was there.
    pub(super) fn unlink(&self, b: u32, i: u32) -> Result<bool, MapError> {
        let found = self.walk(b, true, |link_off, e| Ok((e == i).then_some(link_off)))?;
        let Walk::Found(link_off) = found else {
            return Ok(false);
        };
        // The element's own `next` stays: readers standing on it walk on.
        let next = self.mem.load_u32(self.next_off(i))?;
        self.mem.store_u32(link_off, next)?;
        Ok(true)
    }

    /// `map_delete_elem`.
    pub(super) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let hash = hash_key(key);
        let b = self.bucket_of(hash);
        with_lock(self.mem, self.lock_off(b), || {
            let Walk::Found((link_off, i)) = self.search(b, hash, key, true)? else {
                return Err(MapError::NotFound);
            };
            let next = self.mem.load_u32(self.next_off(i))?;
            self.mem.store_u32(link_off, next)?;
            self.mem.store_u32(self.ref_off(i), 0)?;
            with_lock(self.mem, FREE_LOCK_OFF, || {
                let head = self.mem.load_u32(FREE_HEAD_OFF)?;
                self.mem.store_u32(self.free_off(i), head)?;
                self.mem.store_u32(FREE_HEAD_OFF, i)
            })
        })
    }

    /// `map_get_next_key`: the key after `key` in bucket order, chain
    /// order within a bucket (stable while the map does not change); the
    /// first key if `key` is `None` or not in the map, as the kernel.
    pub(super) fn next_key(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
        if out.len() != self.def.key_size() {
            return Err(MapError::InvalidArgument("key has the wrong size"));
        }
        let mut first_bucket = 0;
        if let Some(key) = key {
            self.check_key(key)?;
            let hash = hash_key(key);
            let b = self.bucket_of(hash);
            let next = self.settle(b, |strict| {
                Ok(match self.search(b, hash, key, strict)? {
                    Walk::Found((_, i)) => {
                        let next = self.mem.load_u32(self.next_off(i))?;
                        // The whole chain must end: a host iterating with
                        // next_key cannot tell a cycle from a long chain.
                        if let Walk::Retry = self.walk(b, strict, |_, _| Ok(None::<()>))? {
                            return Ok(Walk::Retry);
                        }
                        match (next & END != 0 && next != END | b, strict) {
                            (false, _) => Walk::Found(next),
                            (true, true) => return Err(MapError::Corrupt),
                            (true, false) => Walk::Retry,
                        }
                    }
                    Walk::End => Walk::End,
                    Walk::Retry => Walk::Retry,
                })
            })?;
            match next {
                Some(link) if link & END == 0 => {
                    return self.mem.read(self.key_off(self.index(link)?), out);
                }
                Some(_) => first_bucket = b + 1,
                None => {}
            }
        }
        for b in first_bucket..self.l.n_buckets {
            let head = self.mem.load_u32(self.head_off(b))?;
            if head != END | b {
                return self.mem.read(self.key_off(self.index(head)?), out);
            }
        }
        Err(MapError::NotFound)
    }

    /// `bpf_for_each_map_elem`: calls `f(key offset, value offset)` (CPU
    /// `cpu`'s copy) for each element, bucket by bucket, until it returns
    /// `false`; the number of calls. Lock-free, as the kernel's: `f` may
    /// update or delete elements, and an element moved meanwhile may be
    /// missed or seen twice. A chain longer than the pool is checked
    /// under its lock, and `Corrupt` if it really is.
    pub(super) fn for_each(
        &self,
        cpu: u32,
        mut f: impl FnMut(usize, usize) -> bool,
    ) -> Result<u32, MapError> {
        let cpu = if self.def.map_type().is_percpu() {
            cpu
        } else {
            0
        };
        if cpu >= self.def.nr_cpus() {
            return Err(MapError::InvalidArgument("CPU out of range"));
        }
        let mut calls = 0u32;
        for b in 0..self.l.n_buckets {
            let walk = self.walk(b, false, |_, i| {
                calls = calls.saturating_add(1);
                let go_on = f(self.key_off(i), self.value_off(i, cpu));
                Ok((!go_on).then_some(()))
            })?;
            match walk {
                Walk::Found(()) => break,
                Walk::End => {}
                Walk::Retry => {
                    with_lock(self.mem, self.lock_off(b), || {
                        self.walk(b, true, |_, _| Ok(None::<()>)).map(|_| ())
                    })?;
                }
            }
        }
        Ok(calls)
    }

    /// The host's listing: calls `f(key offset, value offset)` (CPU 0's
    /// copy) for each element, bucket by bucket, until it returns `false`;
    /// the number of calls. Each bucket's chain is walked once, holding
    /// its lock as the kernel's batch lookups do, so no element of it is
    /// deleted or reused while `f` copies it out (Note [Hash chains]);
    /// anything that does not add up is `Corrupt`. Linear in the size of
    /// the map, whatever a program wrote in it: chains that end at their
    /// own bucket's marker share no element.
    pub(super) fn for_each_locked(
        &self,
        mut f: impl FnMut(usize, usize) -> bool,
    ) -> Result<u32, MapError> {
        let mut calls = 0u32;
        for b in 0..self.l.n_buckets {
            let walk = with_lock(self.mem, self.lock_off(b), || {
                self.walk(b, true, |_, i| {
                    calls = calls.saturating_add(1);
                    let go_on = f(self.key_off(i), self.value_off(i, 0));
                    Ok((!go_on).then_some(()))
                })
            })?;
            if let Walk::Found(()) = walk {
                break;
            }
        }
        Ok(calls)
    }

    /// The u64 in element `i`'s value (`HASH_OF_MAPS`).
    pub(super) fn slot(&self, i: u32) -> Result<u64, MapError> {
        self.mem.load_u64(self.value_off(i, 0))
    }

    /// Takes bucket `b`'s lock without waiting (eviction from another
    /// bucket, Note [LRU eviction]).
    pub(super) fn try_lock_bucket(&self, b: u32) -> Result<bool, MapError> {
        lock::try_lock(self.mem, self.lock_off(b))
    }

    pub(super) fn unlock_bucket(&self, b: u32) -> Result<(), MapError> {
        lock::unlock(self.mem, self.lock_off(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_pinned() {
        // A change of the function moves elements to other buckets (and
        // changes the host's listing order): it must be deliberate.
        assert_eq!(hash_key(&7u32.to_le_bytes()), 0x2c23_6581);
        let pinned: [u32; 20] = [
            0xd918_dd23,
            0x363f_e9d1,
            0x02c1_fd09,
            0x16dd_991d,
            0x2242_635f,
            0x9f08_e211,
            0x86d3_e382,
            0x2989_3a6c,
            0x617b_96be,
            0x5ea1_fa72,
            0xa413_06e3,
            0xcba3_11a9,
            0x8d2e_1123,
            0x1618_0b59,
            0x9b75_8313,
            0x4898_8992,
            0x2f73_9a29,
            0xff0e_73d5,
            0xc2bb_2256,
            0x1c72_6ed6,
        ];
        for (len, want) in pinned.into_iter().enumerate() {
            let key: Vec<u8> = (0..len as u8)
                .map(|i| 0x81u8.wrapping_add(0x13u8.wrapping_mul(i)))
                .collect();
            assert_eq!(hash_key(&key), want, "{len}-byte key");
        }
    }
}
