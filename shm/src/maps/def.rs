//! A map's identity and geometry: the header in guest memory
//! ([`MapHeader`]) and the validated definition every algorithm works from
//! ([`MapDef`], Note [Trusting map memory]).

use super::hash::{Layout as HashLayout, PackedLayout};
use super::{MapError, flags, round_up};
use crate::pod::Pod;
use core::mem::{offset_of, size_of};

/// Map types bpfvisor provides, with the kernel's numbers
/// (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_PROG_ARRAY`: u64 slots, a program's entry address.
    ProgArray = 3,
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    PercpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray = 6,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    LruPercpuHash = 10,
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`: u64 slots, an inner map's header.
    ArrayOfMaps = 12,
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`: a hash whose values are u64 inner map
    /// header addresses.
    HashOfMaps = 13,
    /// `BPF_MAP_TYPE_QUEUE`.
    Queue = 22,
    /// `BPF_MAP_TYPE_STACK`.
    Stack = 23,
    /// `BPF_MAP_TYPE_RINGBUF`: programs produce records, the host consumes
    /// them (`crate::ringbuf`). No keys or values: the map operations
    /// refuse it, and it is not in [`MapType::ALL`].
    RingBuf = 27,
    /// `BPF_MAP_TYPE_USER_RINGBUF`: the host produces, programs drain.
    /// As [`MapType::RingBuf`], not in [`MapType::ALL`].
    UserRingBuf = 31,
    /// `BPF_MAP_TYPE_ARENA`: `max_entries` pages of memory shared with the
    /// host at the same address (issue 5). Not a map with storage in the
    /// maps region: [`MapDef::new`] refuses it, and it is not in
    /// [`MapType::ALL`].
    Arena = 33,
}

impl MapType {
    /// Every type with storage in the maps region (all but
    /// [`MapType::Arena`]), in kernel number order.
    pub const ALL: [MapType; 11] = [
        MapType::Hash,
        MapType::Array,
        MapType::ProgArray,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::LruHash,
        MapType::LruPercpuHash,
        MapType::ArrayOfMaps,
        MapType::HashOfMaps,
        MapType::Queue,
        MapType::Stack,
    ];

    /// The type with kernel number `n`, if bpfvisor provides it.
    pub fn from_number(n: u32) -> Option<MapType> {
        // A match, not a search of ALL: the guest decodes a header on
        // every helper call.
        Some(match n {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            5 => MapType::PercpuHash,
            6 => MapType::PercpuArray,
            9 => MapType::LruHash,
            10 => MapType::LruPercpuHash,
            12 => MapType::ArrayOfMaps,
            13 => MapType::HashOfMaps,
            22 => MapType::Queue,
            23 => MapType::Stack,
            27 => MapType::RingBuf,
            31 => MapType::UserRingBuf,
            33 => MapType::Arena,
            _ => return None,
        })
    }

    /// The kernel's number (`BPF_MAP_TYPE_*`), what a map header holds.
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The kernel's name without the `BPF_MAP_TYPE_` prefix.
    pub const fn name(self) -> &'static str {
        match self {
            MapType::Hash => "HASH",
            MapType::Array => "ARRAY",
            MapType::ProgArray => "PROG_ARRAY",
            MapType::PercpuHash => "PERCPU_HASH",
            MapType::PercpuArray => "PERCPU_ARRAY",
            MapType::LruHash => "LRU_HASH",
            MapType::LruPercpuHash => "LRU_PERCPU_HASH",
            MapType::ArrayOfMaps => "ARRAY_OF_MAPS",
            MapType::HashOfMaps => "HASH_OF_MAPS",
            MapType::Queue => "QUEUE",
            MapType::Stack => "STACK",
            MapType::RingBuf => "RINGBUF",
            MapType::UserRingBuf => "USER_RINGBUF",
            MapType::Arena => "ARENA",
        }
    }

    /// Whether it is a ring buffer of either direction.
    pub const fn is_ringbuf(self) -> bool {
        matches!(self, MapType::RingBuf | MapType::UserRingBuf)
    }

    /// Whether values are inner maps.
    pub const fn is_map_in_map(self) -> bool {
        matches!(self, MapType::ArrayOfMaps | MapType::HashOfMaps)
    }

    /// Whether each CPU has its own copy of every value.
    pub const fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuArray | MapType::PercpuHash | MapType::LruPercpuHash
        )
    }

    /// Whether the storage is a hash table ([`super::hash`]).
    pub const fn is_hash(self) -> bool {
        matches!(
            self,
            MapType::Hash
                | MapType::PercpuHash
                | MapType::LruHash
                | MapType::LruPercpuHash
                | MapType::HashOfMaps
        )
    }

    /// Whether full hash maps evict instead of failing.
    pub const fn is_lru(self) -> bool {
        matches!(self, MapType::LruHash | MapType::LruPercpuHash)
    }

    /// Whether keys are `u32` indices `0..max_entries`.
    pub const fn is_array(self) -> bool {
        matches!(
            self,
            MapType::Array | MapType::PercpuArray | MapType::ProgArray | MapType::ArrayOfMaps
        )
    }

    /// Whether values are u64 slots (program entries or inner map headers)
    /// although `value_size` is 4, the kernel's file descriptor.
    pub const fn has_slots(self) -> bool {
        matches!(
            self,
            MapType::ProgArray | MapType::ArrayOfMaps | MapType::HashOfMaps
        )
    }

    /// The `map_flags` bits accepted for this type: the kernel's
    /// `*_CREATE_FLAG_MASK` and per-type checks. Maps of maps and
    /// `PROG_ARRAY` take no per-program access bits: a program cannot be
    /// kept from writing slots it looks up.
    pub const fn allowed_flags(self) -> u32 {
        use flags::*;
        match self {
            MapType::Array => NUMA_NODE | MMAPABLE | ACCESS_MASK | INNER_MAP,
            MapType::PercpuArray => NUMA_NODE | ACCESS_MASK | INNER_MAP,
            MapType::ProgArray | MapType::ArrayOfMaps => NUMA_NODE | RDONLY | WRONLY | INNER_MAP,
            MapType::Hash | MapType::PercpuHash => {
                NO_PREALLOC | NUMA_NODE | ACCESS_MASK | ZERO_SEED
            }
            MapType::HashOfMaps => NO_PREALLOC | NUMA_NODE | RDONLY | WRONLY | ZERO_SEED,
            MapType::LruHash | MapType::LruPercpuHash => {
                NO_COMMON_LRU | NUMA_NODE | ACCESS_MASK | ZERO_SEED
            }
            MapType::Queue | MapType::Stack => NUMA_NODE | ACCESS_MASK,
            // arena_map_alloc(): exactly these (BPF_F_MMAPABLE required).
            MapType::Arena => MMAPABLE | SEGV_ON_FAULT | NO_USER_CONV,
            // RINGBUF_CREATE_FLAG_MASK (BPF_F_RB_OVERWRITE, Linux 6.19,
            // is not provided).
            MapType::RingBuf | MapType::UserRingBuf => NUMA_NODE,
        }
    }
}

/// `MapHeader::magic`: "BPFM".
pub const MAP_MAGIC: u32 = u32::from_le_bytes(*b"BPFM");

/// [`MapHeader::spin_lock_off`] of a value without a `bpf_spin_lock`.
pub const NO_SPIN_LOCK: u32 = u32::MAX;

/// Most bytes of storage one map may have: the maps region is at most
/// 1 GiB (`shm::layout`).
pub const MAX_STORAGE_SIZE: u64 = 1 << 30;

/// `MAX_BPF_STACK`: the kernel's limit on a hash key, which programs pass
/// from their stack.
pub const MAX_KEY_SIZE: u32 = 512;
/// `KMALLOC_MAX_SIZE` on x86-64: the kernel's limit on one value.
pub const MAX_VALUE_SIZE: u32 = 4 << 20;
/// `PCPU_MIN_UNIT_SIZE`: the kernel's limit on a per-CPU value.
pub const MAX_PERCPU_VALUE_SIZE: u32 = 32 << 10;
/// Most CPUs a map keeps values for ([`crate::layout::MAX_CPUS`]).
pub const MAX_MAP_CPUS: u32 = crate::layout::MAX_CPUS as u32;

/// What the guest sees of a map: the first bytes of its page in the maps
/// region. The JIT reads `max_entries` ([`MAX_ENTRIES_OFFSET`]) and `data`
/// ([`DATA_OFFSET`]) for `bpf_tail_call` and inline array lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapHeader {
    /// [`MAP_MAGIC`].
    pub magic: u32,
    /// Kernel map type number ([`MapType`]).
    pub map_type: u32,
    /// Key size in bytes (0 for queues and stacks).
    pub key_size: u32,
    /// Value size in bytes, per CPU for per-CPU maps; 4 for slot types
    /// ([`MapType::has_slots`]), as in the kernel.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub map_flags: u32,
    /// CPUs the map keeps values for (per-CPU maps) or LRU marks for.
    pub nr_cpus: u32,
    /// Bytes from one array value to the next ([`MapDef::value_stride`]).
    pub value_stride: u32,
    /// Guest address of the storage.
    pub data: u64,
    /// Size of the storage in bytes ([`MapDef::storage_size`]).
    pub data_size: u64,
    /// Offset of the value's `bpf_spin_lock`, or [`NO_SPIN_LOCK`].
    pub spin_lock_off: u32,
    /// Bytes from one CPU's values to the next in a per-CPU array
    /// ([`MapDef::percpu_block`]; 0 for other maps).
    pub percpu_block: u32,
    /// Zero.
    pub reserved: [u32; 2],
}

// SAFETY: repr(C), 12 u32 and 2 u64 fields laid out without padding (the
// u64s sit at 32 and 40); 64 bytes.
unsafe impl Pod for MapHeader {}

/// Size of [`MapHeader`].
pub const MAP_HEADER_SIZE: usize = size_of::<MapHeader>();
/// Byte offset of [`MapHeader::map_type`] (a u32).
pub const MAP_TYPE_OFFSET: usize = offset_of!(MapHeader, map_type);
/// Byte offset of [`MapHeader::max_entries`] (a u32).
pub const MAX_ENTRIES_OFFSET: usize = offset_of!(MapHeader, max_entries);
/// Byte offset of [`MapHeader::value_stride`] (a u32).
pub const VALUE_STRIDE_OFFSET: usize = offset_of!(MapHeader, value_stride);
/// Byte offset of [`MapHeader::percpu_block`] (a u32).
pub const PERCPU_BLOCK_OFFSET: usize = offset_of!(MapHeader, percpu_block);
/// Byte offset of [`MapHeader::data`] (a u64).
pub const DATA_OFFSET: usize = offset_of!(MapHeader, data);

const _: () = assert!(MAP_HEADER_SIZE == 64);
const _: () = assert!(MAP_TYPE_OFFSET == 4 && MAX_ENTRIES_OFFSET == 16 && DATA_OFFSET == 32);
const _: () = assert!(VALUE_STRIDE_OFFSET == 28 && PERCPU_BLOCK_OFFSET == 52);

/// A map's validated geometry. Fields are private: every `MapDef` passed
/// the kernel's checks for its type, and its storage size fits in
/// [`MAX_STORAGE_SIZE`], so the algorithms compute offsets without
/// overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    nr_cpus: u32,
    spin_lock_off: Option<u32>,
    /// Derived from the fields above once, in [`MapDef::new`]: the guest
    /// runtime checks a header once and then uses its definition on every
    /// helper call (Note [Map definition cache] in the guest runtime).
    /// [`MapDef::storage_size`]: at most 1 GiB.
    storage_size: u32,
    /// [`MapDef::value_stride`].
    value_stride: u32,
    /// [`MapDef::percpu_block`].
    percpu_block: u32,
    /// [`MapDef::hash_layout`] (zeros for other types).
    hash_layout: PackedLayout,
}

impl MapDef {
    /// Checks a definition as the kernel's `map_alloc_check` for its type
    /// does. `nr_cpus` is the sandbox's vCPU count: per-CPU maps keep that
    /// many copies of each value, LRU maps that many recent marks.
    pub fn new(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        nr_cpus: u32,
    ) -> Result<MapDef, MapError> {
        let Some(ty) = MapType::from_number(map_type) else {
            return Err(MapError::InvalidDef("map type not supported"));
        };
        if ty == MapType::Arena {
            if key_size != 0 || value_size != 0 {
                return Err(MapError::InvalidDef("an arena has no keys or values"));
            }
            return MapDef::new_arena(max_entries, map_flags, nr_cpus);
        }
        if ty.is_ringbuf() {
            if key_size != 0 || value_size != 0 {
                return Err(MapError::InvalidDef("a ring buffer has no keys or values"));
            }
            return MapDef::new_ringbuf(ty, max_entries, map_flags, nr_cpus);
        }
        MapDef::new_storage(ty, key_size, value_size, max_entries, map_flags, nr_cpus)
    }

    /// An `ARENA` map's definition (`arena_map_alloc`'s checks): no key or
    /// value, 1 to 2^20 pages, `BPF_F_MMAPABLE` required. It has no storage
    /// in the maps region: its header's `data` is the guest address of the
    /// arena's state region (`crate::arena::ArenaHeader`), and the map
    /// operations refuse it.
    pub fn new_arena(max_entries: u32, map_flags: u32, nr_cpus: u32) -> Result<MapDef, MapError> {
        let ty = MapType::Arena;
        if nr_cpus == 0 || nr_cpus > MAX_MAP_CPUS {
            return Err(MapError::InvalidDef("CPU count out of range"));
        }
        if map_flags & !ty.allowed_flags() != 0 {
            return Err(MapError::InvalidDef("flags not allowed for this map type"));
        }
        if map_flags & flags::MMAPABLE == 0 {
            return Err(MapError::InvalidDef("an arena needs BPF_F_MMAPABLE"));
        }
        if max_entries == 0 || max_entries > crate::arena::geometry::MAX_PAGES {
            return Err(MapError::InvalidDef("an arena has 1 to 2^20 pages"));
        }
        Ok(MapDef {
            map_type: ty,
            key_size: 0,
            value_size: 0,
            max_entries,
            map_flags,
            nr_cpus,
            spin_lock_off: None,
            storage_size: 0,
            value_stride: 0,
            percpu_block: 0,
            hash_layout: PackedLayout::default(),
        })
    }

    /// A ring buffer's definition (`ringbuf_map_alloc`'s checks): no key or
    /// value, `max_entries` data bytes, a power of two and a whole number of
    /// pages, at most [`crate::ringbuf::MAX_RING_SIZE`] here. Its header's
    /// `data` is the ring's start in the guest's ring window and its
    /// storage the rest of the header's page, the position pages and the
    /// data (Note [Ring buffer layout] in `crate::ringbuf`).
    pub fn new_ringbuf(
        ty: MapType,
        max_entries: u32,
        map_flags: u32,
        nr_cpus: u32,
    ) -> Result<MapDef, MapError> {
        if !ty.is_ringbuf() {
            return Err(MapError::InvalidDef("not a ring buffer type"));
        }
        if nr_cpus == 0 || nr_cpus > MAX_MAP_CPUS {
            return Err(MapError::InvalidDef("CPU count out of range"));
        }
        if map_flags & !ty.allowed_flags() != 0 {
            return Err(MapError::InvalidDef("flags not allowed for this map type"));
        }
        let Some(geom) = crate::ringbuf::RingGeometry::new(u64::from(max_entries)) else {
            return Err(if u64::from(max_entries) > crate::ringbuf::MAX_RING_SIZE {
                MapError::TooBig("ring buffer above 256 MiB")
            } else {
                MapError::InvalidDef("ring size must be a power of two and a multiple of 4096")
            });
        };
        Ok(MapDef {
            map_type: ty,
            key_size: 0,
            value_size: 0,
            max_entries,
            map_flags,
            nr_cpus,
            spin_lock_off: None,
            storage_size: geom.storage_size() as u32,
            value_stride: 0,
            percpu_block: 0,
            hash_layout: PackedLayout::default(),
        })
    }

    /// A ring buffer's geometry; `None` for other maps.
    pub fn ring_geometry(&self) -> Option<crate::ringbuf::RingGeometry> {
        if self.map_type.is_ringbuf() {
            crate::ringbuf::RingGeometry::new(u64::from(self.max_entries))
        } else {
            None
        }
    }

    fn new_storage(
        ty: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        nr_cpus: u32,
    ) -> Result<MapDef, MapError> {
        if nr_cpus == 0 || nr_cpus > MAX_MAP_CPUS {
            return Err(MapError::InvalidDef("CPU count out of range"));
        }
        if map_flags & !ty.allowed_flags() != 0 {
            return Err(MapError::InvalidDef("flags not allowed for this map type"));
        }
        // bpf_map_flags_access_ok().
        let both = |a: u32, b: u32| map_flags & a != 0 && map_flags & b != 0;
        if both(flags::RDONLY, flags::WRONLY) || both(flags::RDONLY_PROG, flags::WRONLY_PROG) {
            return Err(MapError::InvalidDef("read-only and write-only at once"));
        }
        if max_entries == 0 || (value_size == 0) {
            return Err(MapError::InvalidDef(
                "max_entries and value_size must be non-zero",
            ));
        }
        if ty.has_slots() && value_size != 4 {
            return Err(MapError::InvalidDef(
                "value_size must be 4 for this map type",
            ));
        }
        if ty.is_array() && key_size != 4 {
            return Err(MapError::InvalidDef("key_size must be 4 for an array"));
        }
        if matches!(ty, MapType::Queue | MapType::Stack) && key_size != 0 {
            return Err(MapError::InvalidDef(
                "key_size must be 0 for a queue or stack",
            ));
        }
        if ty.is_hash() {
            if key_size == 0 {
                return Err(MapError::InvalidDef("key_size must be non-zero for a hash"));
            }
            if key_size > MAX_KEY_SIZE {
                return Err(MapError::TooBig("key_size above 512"));
            }
            if max_entries > super::hash::MAX_HASH_ENTRIES {
                return Err(MapError::TooBig("max_entries above 2^30"));
            }
        }
        if value_size > MAX_VALUE_SIZE {
            return Err(MapError::TooBig("value_size above 4 MiB"));
        }
        if ty.is_percpu() && value_size.next_multiple_of(8) > MAX_PERCPU_VALUE_SIZE {
            return Err(MapError::TooBig("per-CPU value_size above 32 KiB"));
        }
        let value_len = if ty.has_slots() { 8 } else { value_size };
        // value_size <= MAX_VALUE_SIZE: no overflow.
        let value_stride = value_len.next_multiple_of(8);
        let def = MapDef {
            map_type: ty,
            key_size,
            value_size,
            max_entries,
            map_flags,
            nr_cpus,
            spin_lock_off: None,
            storage_size: 0,
            value_stride,
            percpu_block: 0,
            hash_layout: PackedLayout::default(),
        };
        let too_big = MapError::TooBig("storage above 1 GiB");
        let hash_layout = if ty.is_hash() {
            PackedLayout::new(&HashLayout::new(&def).ok_or(too_big)?)
        } else {
            PackedLayout::default()
        };
        let def = MapDef { hash_layout, ..def };
        let size = match def.compute_storage_size() {
            Some(size) if size <= MAX_STORAGE_SIZE => size as u32,
            _ => return Err(too_big),
        };
        // One CPU's values fit in the storage of a per-CPU map.
        let percpu_block = if ty.is_percpu() {
            (u64::from(max_entries) * u64::from(value_stride)).next_multiple_of(64) as u32
        } else {
            0
        };
        Ok(MapDef {
            storage_size: size,
            percpu_block,
            ..def
        })
    }

    /// The definition with a `struct bpf_spin_lock` at byte `off` of the
    /// value (from BTF), which `BPF_F_LOCK` operations take and value
    /// copies leave alone. The kernel allows one in ARRAY and HASH values
    /// only, 4-byte aligned.
    pub fn with_spin_lock(self, off: u32) -> Result<MapDef, MapError> {
        if !matches!(self.map_type, MapType::Array | MapType::Hash) {
            return Err(MapError::InvalidDef(
                "bpf_spin_lock only in ARRAY or HASH values",
            ));
        }
        if !off.is_multiple_of(4) || off.checked_add(4).is_none_or(|end| end > self.value_size) {
            return Err(MapError::InvalidDef(
                "bpf_spin_lock misaligned or outside the value",
            ));
        }
        Ok(MapDef {
            spin_lock_off: Some(off),
            ..self
        })
    }

    /// The definition with CPU `c`'s copies `c * block` bytes after CPU
    /// 0's instead of packed: the internal map of a `.percpu` section,
    /// whose copies live in the vCPUs' per-CPU areas (Note [Per-CPU data]
    /// in `crate::layout`). PERCPU_ARRAY only; `block` must be a multiple
    /// of 64 that holds one CPU's values, and the storage (from CPU 0's
    /// first value to the end of the last CPU's) at most 1 GiB.
    pub fn with_percpu_block(self, block: u32) -> Result<MapDef, MapError> {
        if self.map_type != MapType::PercpuArray {
            return Err(MapError::InvalidDef("percpu_block only in PERCPU_ARRAY"));
        }
        if !block.is_multiple_of(64) || block < self.percpu_block {
            return Err(MapError::InvalidDef(
                "percpu_block misaligned or smaller than one CPU's values",
            ));
        }
        let size = u64::from(block) * u64::from(self.nr_cpus.saturating_sub(1))
            + u64::from(self.percpu_block);
        if size > MAX_STORAGE_SIZE {
            return Err(MapError::TooBig("storage above 1 GiB"));
        }
        Ok(MapDef {
            percpu_block: block,
            storage_size: size as u32,
            ..self
        })
    }

    /// The definition a header describes, checked as [`MapDef::new`] does
    /// and against the header's `magic` and `data_size`: what the guest
    /// runtime works from (Note [Trusting map memory]).
    pub fn from_header(header: &MapHeader) -> Result<MapDef, MapError> {
        if header.magic != MAP_MAGIC {
            return Err(MapError::Corrupt);
        }
        let def = if header.map_type == MapType::Arena.number() && header.key_size == 0 {
            MapDef::new_arena(header.max_entries, header.map_flags, header.nr_cpus)
        } else {
            MapDef::new(
                header.map_type,
                header.key_size,
                header.value_size,
                header.max_entries,
                header.map_flags,
                header.nr_cpus,
            )
        }
        .map_err(|_| MapError::Corrupt)?;
        let def = match header.spin_lock_off {
            NO_SPIN_LOCK => def,
            off => def.with_spin_lock(off).map_err(|_| MapError::Corrupt)?,
        };
        let def = if def.map_type == MapType::PercpuArray && header.percpu_block != def.percpu_block
        {
            def.with_percpu_block(header.percpu_block)
                .map_err(|_| MapError::Corrupt)?
        } else {
            def
        };
        // data_size and the derived fields too (the JIT's inline code
        // reads them): the header must be exactly what the host wrote.
        if *header != def.header(header.data) {
            return Err(MapError::Corrupt);
        }
        Ok(def)
    }

    /// The header of this map, its storage at guest address `data`.
    pub fn header(&self, data: u64) -> MapHeader {
        MapHeader {
            magic: MAP_MAGIC,
            map_type: self.map_type as u32,
            key_size: self.key_size,
            value_size: self.value_size,
            max_entries: self.max_entries,
            map_flags: self.map_flags,
            nr_cpus: self.nr_cpus,
            value_stride: self.value_stride() as u32,
            data,
            data_size: self.storage_size() as u64,
            spin_lock_off: self.spin_lock_off.unwrap_or(NO_SPIN_LOCK),
            percpu_block: if self.map_type == MapType::PercpuArray {
                self.percpu_block() as u32
            } else {
                0
            },
            reserved: [0; 2],
        }
    }

    /// Type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size as usize
    }

    /// Value size in bytes as the kernel defines it (per CPU; 4 for slot
    /// types).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Bytes of one value as stored and as passed to update and returned
    /// by lookup: `value_size`, or 8 for slot types (a u64 guest address).
    pub fn value_len(&self) -> usize {
        if self.map_type.has_slots() {
            8
        } else {
            self.value_size as usize
        }
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// `BPF_F_*` creation flags.
    pub fn map_flags(&self) -> u32 {
        self.map_flags
    }

    /// CPUs the map serves.
    pub fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    /// Offset of the value's `bpf_spin_lock`, if it has one.
    pub fn spin_lock_off(&self) -> Option<u32> {
        self.spin_lock_off
    }

    /// Bytes from one value to the next, in arrays and in per-CPU value
    /// blocks: `round_up(value_len, 8)`, as the kernel's `elem_size`, so
    /// every value is 8-byte aligned.
    pub fn value_stride(&self) -> usize {
        self.value_stride as usize
    }

    /// Bytes one CPU's copies of all values take in a per-CPU map, rounded
    /// to a cache line so that CPUs do not share lines: CPU `c`'s copy of
    /// value `i` is at `c * percpu_block() + i * value_stride()` (from the
    /// start of the values area). 0 for maps that are not per-CPU.
    pub fn percpu_block(&self) -> usize {
        self.percpu_block as usize
    }

    /// Where everything is in a hash map's storage ([`HashLayout::new`]);
    /// all zeros for other types.
    pub fn hash_layout(&self) -> HashLayout {
        self.hash_layout.unpack()
    }

    /// Offset of CPU `cpu`'s copy of a per-CPU value, given the offset of
    /// CPU 0's copy (what a lookup returns), or `None` if `cpu` is out of
    /// range. For other maps, `cpu` 0 gives `off` back.
    pub fn percpu_value_off(&self, off: usize, cpu: u32) -> Option<usize> {
        if self.map_type.is_percpu() {
            off.checked_add(cpu as usize * self.percpu_block())
                .filter(|_| cpu < self.nr_cpus)
        } else {
            (cpu == 0).then_some(off)
        }
    }

    /// Bytes of storage the map needs after its header (a multiple of 8).
    pub fn storage_size(&self) -> usize {
        self.storage_size as usize
    }

    fn compute_storage_size(&self) -> Option<u64> {
        let stride = round_up(u64::from(self.value_size), 8)?.max(8);
        let entries = u64::from(self.max_entries);
        let size = match self.map_type {
            MapType::Array | MapType::ProgArray | MapType::ArrayOfMaps => entries * stride,
            MapType::PercpuArray => round_up(entries * stride, 64)? * u64::from(self.nr_cpus),
            MapType::Queue | MapType::Stack => {
                super::queue::storage_size(self.value_size, entries)?
            }
            _ => self.hash_layout.unpack().size as u64,
        };
        round_up(size, 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno;

    fn setup_def(ty: MapType, key: u32, value: u32, max: u32) -> MapDef {
        MapDef::new(ty as u32, key, value, max, 0, 4).unwrap()
    }

    #[test]
    fn kernel_checks_refuse_bad_geometry() {
        let cases: &[(MapType, u32, u32, u32, u32, i64)] = &[
            (MapType::Array, 8, 8, 4, 0, errno::EINVAL),
            (MapType::Array, 4, 0, 4, 0, errno::EINVAL),
            (MapType::Array, 4, 8, 0, 0, errno::EINVAL),
            (MapType::Queue, 4, 8, 4, 0, errno::EINVAL),
            (MapType::Stack, 0, 0, 4, 0, errno::EINVAL),
            (MapType::Hash, 0, 8, 4, 0, errno::EINVAL),
            (MapType::Hash, 513, 8, 4, 0, errno::E2BIG),
            (MapType::ProgArray, 4, 8, 4, 0, errno::EINVAL),
            (MapType::HashOfMaps, 4, 8, 4, 0, errno::EINVAL),
            (MapType::PercpuArray, 4, 32 * 1024 + 1, 1, 0, errno::E2BIG),
            (MapType::Hash, 4, 8, 4, flags::NO_COMMON_LRU, errno::EINVAL),
            (MapType::LruHash, 4, 8, 4, flags::NO_PREALLOC, errno::EINVAL),
            (
                MapType::ProgArray,
                4,
                4,
                4,
                flags::RDONLY_PROG,
                errno::EINVAL,
            ),
            (
                MapType::Array,
                4,
                4,
                4,
                flags::RDONLY | flags::WRONLY,
                errno::EINVAL,
            ),
            (MapType::Array, 4, 1 << 20, 2048, 0, errno::E2BIG),
        ];
        for &(ty, key, value, max, fl, want) in cases {
            let err = MapDef::new(ty as u32, key, value, max, fl, 2).unwrap_err();
            assert_eq!(
                err.errno(),
                want,
                "{ty:?} {key} {value} {max} {fl:#x}: {err}"
            );
        }
        assert_eq!(
            MapDef::new(4, 4, 4, 4, 0, 1).unwrap_err().to_string(),
            "Invalid map definition: map type not supported"
        );
        // Arenas: arena_map_alloc's checks, no storage here; the header
        // names the state region and checks back.
        let arena = MapDef::new(33, 0, 0, 1 << 20, flags::MMAPABLE, 1).unwrap();
        assert_eq!((arena.storage_size(), arena.max_entries()), (0, 1 << 20));
        assert_eq!(MapDef::from_header(&arena.header(0x5000)), Ok(arena));
        for (key, value, max, fl, why) in [
            (4, 0, 1, flags::MMAPABLE, "an arena has no keys or values"),
            (0, 0, 1, 0, "an arena needs BPF_F_MMAPABLE"),
            (0, 0, 0, flags::MMAPABLE, "an arena has 1 to 2^20 pages"),
            (
                0,
                0,
                (1 << 20) + 1,
                flags::MMAPABLE,
                "an arena has 1 to 2^20 pages",
            ),
            (
                0,
                0,
                1,
                flags::RDONLY,
                "flags not allowed for this map type",
            ),
        ] {
            assert_eq!(
                MapDef::new(33, key, value, max, fl, 1),
                Err(MapError::InvalidDef(why))
            );
        }
        assert!(MapDef::new(2, 4, 8, 1, 0, 0).is_err());
    }

    #[test]
    fn accepted_definitions_have_kernel_strides() {
        let def = setup_def(MapType::Array, 4, 12, 3);
        assert_eq!(def.value_stride(), 16);
        assert_eq!(def.storage_size(), 48);
        let def = setup_def(MapType::PercpuArray, 4, 4, 3);
        assert_eq!(def.percpu_block(), 64);
        assert_eq!(def.storage_size(), 4 * 64);
        assert_eq!(def.percpu_value_off(8, 3), Some(8 + 3 * 64));
        assert_eq!(def.percpu_value_off(8, 4), None);
        assert_eq!(def.header(0).percpu_block, 64);
        // Spread copies, as a `.percpu` section's: CPU c's at c * block.
        let spread = def.with_percpu_block(0x2_0000).unwrap();
        assert_eq!(spread.percpu_value_off(8, 3), Some(8 + 3 * 0x2_0000));
        assert_eq!(spread.storage_size(), 3 * 0x2_0000 + 64);
        assert_eq!(MapDef::from_header(&spread.header(0x1000)), Ok(spread));
        assert!(def.with_percpu_block(32).is_err());
        assert!(def.with_percpu_block(96).is_err());
        let def = setup_def(MapType::ProgArray, 4, 4, 5);
        assert_eq!((def.value_len(), def.storage_size()), (8, 40));
    }

    #[test]
    fn derived_geometry_is_computed_once_and_kept() {
        for ty in MapType::ALL {
            let (key, value) = match ty {
                MapType::Queue | MapType::Stack => (0, 12),
                t if t.has_slots() => (4, 4),
                t if t.is_array() => (4, 12),
                _ => (12, 20),
            };
            let def = setup_def(ty, key, value, 100);
            let stride = (def.value_len() as u64).next_multiple_of(8);
            assert_eq!(def.value_stride() as u64, stride, "{ty:?}");
            let block = if ty.is_percpu() {
                (100 * stride).next_multiple_of(64)
            } else {
                0
            };
            assert_eq!(def.percpu_block() as u64, block, "{ty:?}");
            let layout = super::super::hash::Layout::new(&def).unwrap();
            if ty.is_hash() {
                assert_eq!(def.hash_layout(), layout, "{ty:?}");
                assert_eq!(def.storage_size(), layout.size, "{ty:?}");
            } else {
                assert_eq!(def.hash_layout().size, 0, "{ty:?}");
            }
        }
    }

    #[test]
    fn spin_lock_only_inside_array_or_hash_values() {
        let def = setup_def(MapType::Array, 4, 16, 1);
        assert_eq!(def.with_spin_lock(12).unwrap().spin_lock_off(), Some(12));
        assert!(def.with_spin_lock(13).is_err());
        assert!(def.with_spin_lock(16).is_err());
        assert!(
            setup_def(MapType::PercpuArray, 4, 16, 1)
                .with_spin_lock(0)
                .is_err()
        );
    }

    #[test]
    fn header_round_trips_and_rejects_scribbles() {
        let def = setup_def(MapType::Hash, 8, 16, 10)
            .with_spin_lock(4)
            .unwrap();
        let header = def.header(0x1000);
        assert_eq!(MapDef::from_header(&header), Ok(def));
        assert_eq!(header.value_stride, 16);
        for scribble in [
            MapHeader { magic: 0, ..header },
            MapHeader {
                key_size: 0,
                ..header
            },
            MapHeader {
                data_size: 8,
                ..header
            },
            MapHeader {
                spin_lock_off: 15,
                ..header
            },
            MapHeader {
                value_stride: 8,
                ..header
            },
            MapHeader {
                reserved: [1, 0],
                ..header
            },
        ] {
            assert_eq!(MapDef::from_header(&scribble), Err(MapError::Corrupt));
        }
    }
}
