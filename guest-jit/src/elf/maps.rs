//! Map definitions: what each map of an object is (type, sizes, flags,
//! inner map, initial values), checked against the kernel's rules for the
//! map types bpfvisor provides.
//!
//! ```text
//!  .maps (BTF-defined, libbpf)                    maps (legacy bpf_map_def)
//!  struct {                                       struct bpf_map_def m = {
//!    __uint(type, BPF_MAP_TYPE_ARRAY);   int (*type)[2];     .type = 2,
//!    __type(key, __u32);                 __u32 *key;         .key_size = 4,
//!    __type(value, __u64);               __u64 *value;       .value_size = 8,
//!    __uint(max_entries, 16);            int (*max_entries)[16];  ...
//!    __array(values, struct inner);      struct inner *values[];
//!  } m SEC(".maps");                                       };
//! ```
//!
//! A BTF-defined map's section bytes are zeros: the definition is in the
//! *types* of the struct's members, which `btf_maps` reads. `__uint(f, n)`
//! is a pointer to an array of `n` ints, `__type(f, T)` a pointer to `T`
//! (the size is `sizeof(T)`), `__array(values, T)` an empty array of
//! pointers to `T` whose initial elements are relocations in `.rel.maps`
//! (`init_values`). Legacy definitions are bytes: five `u32`s.

use super::LoadError;

pub use shm::maps::{MapType, flags};

/// The kernel's map type names by number (`enum bpf_map_type`, up to
/// Linux 6.9), for messages about types bpfvisor does not provide.
const KERNEL_MAP_TYPES: [&str; 34] = [
    "UNSPEC",
    "HASH",
    "ARRAY",
    "PROG_ARRAY",
    "PERF_EVENT_ARRAY",
    "PERCPU_HASH",
    "PERCPU_ARRAY",
    "STACK_TRACE",
    "CGROUP_ARRAY",
    "LRU_HASH",
    "LRU_PERCPU_HASH",
    "LPM_TRIE",
    "ARRAY_OF_MAPS",
    "HASH_OF_MAPS",
    "DEVMAP",
    "SOCKMAP",
    "CPUMAP",
    "XSKMAP",
    "SOCKHASH",
    "CGROUP_STORAGE",
    "REUSEPORT_SOCKARRAY",
    "PERCPU_CGROUP_STORAGE",
    "QUEUE",
    "STACK",
    "SK_STORAGE",
    "DEVMAP_HASH",
    "STRUCT_OPS",
    "RINGBUF",
    "INODE_STORAGE",
    "TASK_STORAGE",
    "BLOOM_FILTER",
    "USER_RINGBUF",
    "CGRP_STORAGE",
    "ARENA",
];

/// Most pages an arena may have: 4 GiB of 4 KiB pages (`arena_map_alloc`:
/// `max_entries * PAGE_SIZE <= SZ_4G`).
pub const MAX_ARENA_PAGES: u32 = 1 << 20;

/// The arena's page size.
pub const ARENA_PAGE_SIZE: u64 = 4096;

/// `MAX_BPF_STACK`: the kernel's limit on a hash key, which programs pass
/// from their stack.
pub const MAX_KEY_SIZE: u32 = 512;
/// `KMALLOC_MAX_SIZE` on x86-64: the kernel's limit on one value.
pub const MAX_VALUE_SIZE: u32 = 4 << 20;
/// `PCPU_MIN_UNIT_SIZE`: the kernel's limit on a per-CPU value.
pub const MAX_PERCPU_VALUE_SIZE: u32 = 32 << 10;

/// libbpf's pinning attribute (`LIBBPF_PIN_*`). bpfvisor has no BPF file
/// system; it is recorded for callers that share maps by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pinning {
    /// `LIBBPF_PIN_NONE`.
    #[default]
    None,
    /// `LIBBPF_PIN_BY_NAME`.
    ByName,
}

/// An initial value of a `PROG_ARRAY` or map-in-map slot, named as in C:
/// `.values = { [1] = &tail, ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MapInit {
    /// A program of the object, by function name ([`super::ProgramSpec`]).
    Program(String),
    /// A map of the object, by name ([`MapSpec::name`]).
    Map(String),
}

/// A map, as its definition describes it; the caller creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// The C variable's name (`counters`); `outer.inner` for the template
    /// of a map-in-map's inner maps, as libbpf names it.
    pub name: String,
    /// Type.
    pub map_type: MapType,
    /// Key size in bytes; 0 for `QUEUE` and `STACK`.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps); 4 for
    /// `PROG_ARRAY` and maps of maps, as in the kernel, whatever the
    /// runtime stores there.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` bits ([`flags`]), checked against the type.
    pub map_flags: u32,
    /// `map_extra`: for an `ARENA`, the address it asks to start at (0:
    /// anywhere); 0 for every other type bpfvisor provides.
    pub map_extra: u64,
    /// Pinning (BTF-defined maps only).
    pub pinning: Pinning,
    /// For `ARRAY_OF_MAPS` / `HASH_OF_MAPS`: the definition every inner
    /// map must match.
    pub inner: Option<Box<MapSpec>>,
    /// Initial values by index, sorted: programs for a `PROG_ARRAY`, maps
    /// for maps of maps. For `HASH_OF_MAPS` the index is the (4-byte) key.
    pub values: Vec<(u32, MapInit)>,
    /// Offset in the value of its `struct bpf_spin_lock`, from BTF: the
    /// host must not copy over it when it updates a value.
    pub spin_lock_offset: Option<u32>,
    /// The key's BTF type (`__type(key, T)`), as the kernel's
    /// `btf_key_type_id`: what tools read keys as. `None` for legacy
    /// definitions and `__uint(key_size, n)`.
    pub btf_key_type_id: Option<u32>,
    /// The value's BTF type (`__type(value, T)`), as `btf_value_type_id`.
    /// `None` for legacy definitions and `__uint(value_size, n)`.
    pub btf_value_type_id: Option<u32>,
}

/// Why a map definition is refused. [`LoadError::DefineMap`] names the
/// map.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapDefError {
    /// The type number is not a kernel map type.
    #[error("Map type {number} is not a kernel map type")]
    DecodeType {
        /// `type`.
        number: u32,
    },
    /// A kernel map type bpfvisor does not provide.
    #[error("{name} maps ({number}) are not supported by bpfvisor")]
    SupportType {
        /// Kernel name.
        name: &'static str,
        /// Kernel number.
        number: u32,
    },
    /// A required attribute is missing.
    #[error("The definition has no `{field}`")]
    FindField {
        /// The attribute.
        field: &'static str,
    },
    /// A BTF-defined map's struct has a member libbpf does not define.
    #[error("The definition has an unknown field `{field}`")]
    DecodeField {
        /// Member name.
        field: String,
    },
    /// A member does not have the shape its macro gives it.
    #[error("Field `{field}` is {found}; it should be {expected}")]
    ShapeField {
        /// Member name.
        field: String,
        /// What it is (BTF kind).
        found: &'static str,
        /// What it should be, and the macro that makes it.
        expected: &'static str,
    },
    /// The definition is not a struct.
    #[error("The definition is {found}, not STRUCT")]
    ShapeDefinition {
        /// BTF kind found.
        found: &'static str,
    },
    /// `key_size` and `__type(key, ...)` (or the value pair) disagree.
    #[error("`{field}_size` is {declared}, but `__type({field}, ...)` is {from_type} bytes")]
    ConflictSize {
        /// `key` or `value`.
        field: &'static str,
        /// From `__uint(key_size, ...)`.
        declared: u32,
        /// From the type.
        from_type: u32,
    },
    /// A size breaks the type's rule.
    #[error("{field} {value} is invalid for {map_type} maps: {rule}")]
    CheckSize {
        /// `key_size`, `value_size` or `max_entries`.
        field: &'static str,
        /// The value.
        value: u32,
        /// Map type name.
        map_type: &'static str,
        /// What it must be.
        rule: String,
    },
    /// `map_flags` sets bits the type does not take.
    #[error("map_flags {flags:#x} sets {bad:#x}, which {map_type} maps do not take")]
    CheckFlags {
        /// The flags.
        flags: u32,
        /// The bits refused.
        bad: u32,
        /// Map type name.
        map_type: &'static str,
    },
    /// `map_flags` lacks bits the type requires.
    #[error("map_flags {flags:#x} lacks {missing:#x}, which {map_type} maps require")]
    RequireFlags {
        /// The flags.
        flags: u32,
        /// The bits missing.
        missing: u32,
        /// Map type name.
        map_type: &'static str,
    },
    /// An arena's `map_extra` (the address it asks to start at) breaks the
    /// kernel's rule.
    #[error("map_extra {map_extra:#x} is invalid for an arena of {pages} pages: {rule}")]
    CheckArenaStart {
        /// The requested start.
        map_extra: u64,
        /// `max_entries`.
        pages: u32,
        /// What it must be.
        rule: &'static str,
    },
    /// `map_extra` is set for a type that has no use for it.
    #[error("map_extra {map_extra:#x} must be 0 for {map_type} maps")]
    CheckExtra {
        /// The value.
        map_extra: u64,
        /// Map type name.
        map_type: &'static str,
    },
    /// `pinning` is not a value libbpf defines.
    #[error("pinning {pinning} is neither LIBBPF_PIN_NONE (0) nor LIBBPF_PIN_BY_NAME (1)")]
    CheckPinning {
        /// The value.
        pinning: u32,
    },
    /// `values` on a map that holds neither programs nor maps.
    #[error("`values` is only for PROG_ARRAY, ARRAY_OF_MAPS and HASH_OF_MAPS maps, not {map_type}")]
    UseValues {
        /// Map type name.
        map_type: &'static str,
    },
    /// A map of maps without the inner definition.
    #[error("{map_type} maps need the inner map's definition: `__array(values, struct {{ ... }})`")]
    FindInner {
        /// Map type name.
        map_type: &'static str,
    },
    /// An inner map that is itself a map of maps.
    #[error("The inner map is itself a map of maps; bpfvisor nests maps one level deep")]
    NestInner,
    /// The inner map definition is refused.
    #[error("Inner map definition is not valid")]
    DefineInner(#[source] Box<MapDefError>),
    /// BTF that a definition uses is broken.
    #[error("Cannot read the definition's BTF")]
    ReadBtf(#[source] crate::btf::BtfError),
    /// An initial value is not at a slot of `values`.
    #[error("Initial value at byte {offset} of the definition is not a slot of `values`")]
    PlaceValue {
        /// Offset from the start of the map's definition.
        offset: u64,
    },
    /// An initial value's index is not below an array's `max_entries`.
    #[error("Initial value [{index}] is outside max_entries {max_entries}")]
    IndexValue {
        /// The index.
        index: u64,
        /// The map's capacity.
        max_entries: u32,
    },
    /// More initial values than the map holds.
    #[error("The map has more initial values than its max_entries {max_entries}")]
    CountValues {
        /// The map's capacity.
        max_entries: u32,
    },
    /// Two initial values for one slot.
    #[error("Initial value [{index}] is given twice")]
    RepeatValue {
        /// The index.
        index: u32,
    },
    /// An initial value names the wrong kind of thing.
    #[error("Initial value [{index}] `{symbol}` is not {expected}")]
    ResolveValue {
        /// The index.
        index: u32,
        /// The symbol named.
        symbol: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A BTF-defined map has no ELF symbol to say where it is.
    #[error("The map has no symbol in section `{section}`")]
    FindSymbol {
        /// The maps section.
        section: String,
    },
    /// A definition does not lie inside its section.
    #[error(
        "The definition at offset {offset:#x} ({size} bytes) is not inside its section ({section_size} bytes)"
    )]
    PlaceDefinition {
        /// Offset in the section.
        offset: u64,
        /// Its size.
        size: u64,
        /// The section's size.
        section_size: u64,
    },
    /// The value holds more than one `bpf_spin_lock`.
    #[error("The value has more than one struct bpf_spin_lock")]
    CountSpinLocks,
    /// A `bpf_spin_lock` in a map type the kernel does not allow it in.
    #[error("A struct bpf_spin_lock in the value needs a HASH or ARRAY map, not {map_type}")]
    PlaceSpinLock {
        /// Map type name.
        map_type: &'static str,
    },
    /// A legacy definition is too short or has unknown fields set.
    #[error("{0}")]
    DecodeLegacy(String),
}

/// The type a kernel map type number stands for, or why bpfvisor refuses
/// it.
pub fn map_type(number: u32) -> Result<MapType, MapDefError> {
    if let Some(t) = MapType::from_number(number) {
        return Ok(t);
    }
    let index = usize::try_from(number).unwrap_or(usize::MAX);
    match KERNEL_MAP_TYPES.get(index) {
        None | Some(&"UNSPEC") => Err(MapDefError::DecodeType { number }),
        Some(&name) => Err(MapDefError::SupportType { name, number }),
    }
}

impl MapSpec {
    /// A spec with the given geometry and nothing else set.
    pub fn new(name: &str, map_type: MapType, key_size: u32, value_size: u32, max: u32) -> Self {
        MapSpec {
            name: name.to_owned(),
            map_type,
            key_size,
            value_size,
            max_entries: max,
            map_flags: 0,
            map_extra: 0,
            pinning: Pinning::None,
            inner: None,
            values: Vec::new(),
            spin_lock_offset: None,
            btf_key_type_id: None,
            btf_value_type_id: None,
        }
    }

    /// Checks sizes, flags and the inner map against the kernel's rules
    /// for the type (`*_map_alloc_check`).
    pub fn check(&self) -> Result<(), MapDefError> {
        let t = self.map_type;
        let size_err = |field, value, rule: &str| MapDefError::CheckSize {
            field,
            value,
            map_type: t.name(),
            rule: rule.to_owned(),
        };
        if t == MapType::Arena {
            return self.check_arena();
        }
        if t.is_ringbuf() {
            return self.check_ringbuf();
        }
        let (key, value) = (self.key_size, self.value_size);
        match t {
            _ if t.is_array() && key != 4 => {
                return Err(size_err("key_size", key, "array indices are 4 bytes"));
            }
            MapType::Queue | MapType::Stack if key != 0 => {
                return Err(size_err("key_size", key, "it must be 0 (no keys)"));
            }
            MapType::Hash
            | MapType::PercpuHash
            | MapType::LruHash
            | MapType::LruPercpuHash
            | MapType::HashOfMaps
                if key == 0 || key > MAX_KEY_SIZE =>
            {
                let rule = format!("it must be 1 to {MAX_KEY_SIZE}");
                return Err(size_err("key_size", key, &rule));
            }
            _ => {}
        }
        let max_value = if t.is_percpu() {
            MAX_PERCPU_VALUE_SIZE
        } else {
            MAX_VALUE_SIZE
        };
        if matches!(t, MapType::ProgArray) || t.is_map_in_map() {
            if value != 4 {
                let rule = "it must be 4 (the kernel's fd slot)";
                return Err(size_err("value_size", value, rule));
            }
        } else if value == 0 || value > max_value {
            let rule = format!("it must be 1 to {max_value}");
            return Err(size_err("value_size", value, &rule));
        }
        if self.max_entries == 0 {
            return Err(size_err("max_entries", 0, "it must be at least 1"));
        }
        let bad = self.map_flags & !t.allowed_flags();
        if bad != 0 {
            return Err(MapDefError::CheckFlags {
                flags: self.map_flags,
                bad,
                map_type: t.name(),
            });
        }
        if self.map_extra != 0 {
            return Err(MapDefError::CheckExtra {
                map_extra: self.map_extra,
                map_type: t.name(),
            });
        }
        if self.spin_lock_offset.is_some() && !matches!(t, MapType::Hash | MapType::Array) {
            return Err(MapDefError::PlaceSpinLock { map_type: t.name() });
        }
        match (&self.inner, t.is_map_in_map()) {
            (None, true) => Err(MapDefError::FindInner { map_type: t.name() }),
            (Some(inner), true) if inner.map_type.is_map_in_map() => Err(MapDefError::NestInner),
            (Some(inner), true) => inner
                .check()
                .map_err(|e| MapDefError::DefineInner(Box::new(e))),
            (Some(_), false) => Err(MapDefError::UseValues { map_type: t.name() }),
            (None, false) => Ok(()),
        }
    }
}

impl MapSpec {
    /// The kernel's `ringbuf_map_alloc` rules: no key or value, a data
    /// size that is a power of two and a whole number of pages (here at
    /// most [`shm::ringbuf::MAX_RING_SIZE`]), `BPF_F_NUMA_NODE` the only
    /// flag.
    fn check_ringbuf(&self) -> Result<(), MapDefError> {
        let t = self.map_type;
        let size_err = |field, value, rule: &str| MapDefError::CheckSize {
            field,
            value,
            map_type: t.name(),
            rule: rule.to_owned(),
        };
        if self.key_size != 0 {
            let rule = "it must be 0 (no keys)";
            return Err(size_err("key_size", self.key_size, rule));
        }
        if self.value_size != 0 {
            let rule = "it must be 0 (no values)";
            return Err(size_err("value_size", self.value_size, rule));
        }
        if shm::ringbuf::RingGeometry::new(u64::from(self.max_entries)).is_none() {
            let rule = format!(
                "it must be a power of two from 4096 to {} bytes",
                shm::ringbuf::MAX_RING_SIZE
            );
            return Err(size_err("max_entries", self.max_entries, &rule));
        }
        let bad = self.map_flags & !t.allowed_flags();
        if bad != 0 {
            return Err(MapDefError::CheckFlags {
                flags: self.map_flags,
                bad,
                map_type: t.name(),
            });
        }
        if self.map_extra != 0 {
            return Err(MapDefError::CheckExtra {
                map_extra: self.map_extra,
                map_type: t.name(),
            });
        }
        if self.inner.is_some() {
            return Err(MapDefError::UseValues { map_type: t.name() });
        }
        Ok(())
    }

    /// The kernel's `arena_map_alloc` rules: no key or value, 1 to
    /// [`MAX_ARENA_PAGES`] pages, `BPF_F_MMAPABLE` set and only
    /// `BPF_F_SEGV_ON_FAULT` / `BPF_F_NO_USER_CONV` besides, and a start
    /// (`map_extra`, when not 0) page-aligned with the whole arena inside
    /// one 4 GiB-aligned range, where 32-bit arena offsets work.
    fn check_arena(&self) -> Result<(), MapDefError> {
        let t = MapType::Arena;
        let size_err = |field, value, rule: &str| MapDefError::CheckSize {
            field,
            value,
            map_type: t.name(),
            rule: rule.to_owned(),
        };
        if self.key_size != 0 {
            return Err(size_err(
                "key_size",
                self.key_size,
                "it must be 0 (no keys)",
            ));
        }
        if self.value_size != 0 {
            let rule = "it must be 0 (no values)";
            return Err(size_err("value_size", self.value_size, rule));
        }
        if self.max_entries == 0 || self.max_entries > MAX_ARENA_PAGES {
            let rule = format!("it must be 1 to {MAX_ARENA_PAGES} pages (4 GiB)");
            return Err(size_err("max_entries", self.max_entries, &rule));
        }
        let bad = self.map_flags & !t.allowed_flags();
        if bad != 0 {
            return Err(MapDefError::CheckFlags {
                flags: self.map_flags,
                bad,
                map_type: t.name(),
            });
        }
        if self.map_flags & flags::MMAPABLE == 0 {
            return Err(MapDefError::RequireFlags {
                flags: self.map_flags,
                missing: flags::MMAPABLE,
                map_type: t.name(),
            });
        }
        let start_err = |rule| MapDefError::CheckArenaStart {
            map_extra: self.map_extra,
            pages: self.max_entries,
            rule,
        };
        if !self.map_extra.is_multiple_of(ARENA_PAGE_SIZE) {
            return Err(start_err("it must be page-aligned"));
        }
        let last = self
            .map_extra
            .checked_add(u64::from(self.max_entries) * ARENA_PAGE_SIZE - 1);
        if last.is_none_or(|last| last >> 32 != self.map_extra >> 32) {
            return Err(start_err("the arena would cross a 4 GiB boundary"));
        }
        if self.spin_lock_offset.is_some() {
            return Err(MapDefError::PlaceSpinLock { map_type: t.name() });
        }
        if self.inner.is_some() {
            return Err(MapDefError::UseValues { map_type: t.name() });
        }
        Ok(())
    }
}

/// Size of `struct bpf_map_def`: type, key_size, value_size, max_entries,
/// map_flags.
pub const LEGACY_DEF_SIZE: usize = 20;

/// A legacy `struct bpf_map_def` (`def` is the symbol's bytes, as long as
/// each definition in the section). Longer definitions (iproute2's
/// `bpf_elf_map`, later libbpf fields) are accepted when their extra bytes
/// are zero, as libbpf accepted them.
pub fn legacy_map(name: &str, def: &[u8]) -> Result<MapSpec, MapDefError> {
    if def.len() < LEGACY_DEF_SIZE {
        return Err(MapDefError::DecodeLegacy(format!(
            "The definition is {} bytes; struct bpf_map_def has {LEGACY_DEF_SIZE}",
            def.len()
        )));
    }
    if let Some(at) = def[LEGACY_DEF_SIZE..].iter().position(|&b| b != 0) {
        return Err(MapDefError::DecodeLegacy(format!(
            "Byte {} of the definition, past struct bpf_map_def's {LEGACY_DEF_SIZE}, is not zero",
            LEGACY_DEF_SIZE + at
        )));
    }
    let word = |i: usize| u32::from_le_bytes([def[i], def[i + 1], def[i + 2], def[i + 3]]);
    let mut spec = MapSpec::new(name, map_type(word(0))?, word(4), word(8), word(12));
    spec.map_flags = word(16);
    if spec.map_type.is_map_in_map() {
        // A legacy definition cannot describe its inner map.
        return Err(MapDefError::FindInner {
            map_type: spec.map_type.name(),
        });
    }
    spec.check()?;
    Ok(spec)
}

/// Wraps a definition error with the map's name and section.
pub(super) fn define_err(map: &str, section: &str) -> impl Fn(MapDefError) -> LoadError + use<> {
    let (map, section) = (map.to_owned(), section.to_owned());
    move |source| LoadError::DefineMap {
        map: map.clone(),
        section: section.clone(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(words: [u32; 5]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn types_round_trip_their_numbers() {
        for t in MapType::ALL {
            assert_eq!(MapType::from_number(t.number()), Some(t));
            assert_eq!(map_type(t.number()), Ok(t));
        }
        assert_eq!(MapType::ArrayOfMaps.name(), "ARRAY_OF_MAPS");
        assert_eq!(MapType::Stack.name(), "STACK");
        assert_eq!(map_type(27), Ok(MapType::RingBuf));
        assert_eq!(map_type(31), Ok(MapType::UserRingBuf));
        assert_eq!(map_type(33), Ok(MapType::Arena));
        assert_eq!(
            map_type(11).unwrap_err().to_string(),
            "LPM_TRIE maps (11) are not supported by bpfvisor"
        );
        assert_eq!(
            map_type(0).unwrap_err().to_string(),
            "Map type 0 is not a kernel map type"
        );
        assert_eq!(
            map_type(999).unwrap_err().to_string(),
            "Map type 999 is not a kernel map type"
        );
    }

    #[test]
    fn sizes_follow_the_kernel_rules() {
        let check = |t, k, v, m| MapSpec::new("m", t, k, v, m).check();
        assert_eq!(check(MapType::Array, 4, 8, 1), Ok(()));
        assert_eq!(check(MapType::Queue, 0, 8, 1), Ok(()));
        assert_eq!(check(MapType::LruHash, 512, 1, 1), Ok(()));
        let msg = |t, k, v, m| check(t, k, v, m).unwrap_err().to_string();
        assert_eq!(
            msg(MapType::Array, 8, 8, 1),
            "key_size 8 is invalid for ARRAY maps: array indices are 4 bytes"
        );
        assert_eq!(
            msg(MapType::Stack, 4, 8, 1),
            "key_size 4 is invalid for STACK maps: it must be 0 (no keys)"
        );
        assert_eq!(
            msg(MapType::Hash, 513, 8, 1),
            "key_size 513 is invalid for HASH maps: it must be 1 to 512"
        );
        assert_eq!(
            msg(MapType::Hash, 4, 0, 1),
            "value_size 0 is invalid for HASH maps: it must be 1 to 4194304"
        );
        assert_eq!(
            msg(MapType::PercpuArray, 4, 40000, 1),
            "value_size 40000 is invalid for PERCPU_ARRAY maps: it must be 1 to 32768"
        );
        assert_eq!(
            msg(MapType::ProgArray, 4, 8, 1),
            "value_size 8 is invalid for PROG_ARRAY maps: it must be 4 (the kernel's fd slot)"
        );
        assert_eq!(
            msg(MapType::Hash, 4, 4, 0),
            "max_entries 0 is invalid for HASH maps: it must be at least 1"
        );
    }

    #[test]
    fn flags_extra_inner_and_locks_are_checked() {
        let mut spec = MapSpec::new("m", MapType::LruHash, 4, 4, 4);
        spec.map_flags = flags::NO_PREALLOC;
        assert_eq!(
            spec.check().unwrap_err().to_string(),
            "map_flags 0x1 sets 0x1, which LRU_HASH maps do not take"
        );
        spec.map_flags = flags::NO_COMMON_LRU | flags::RDONLY_PROG;
        assert_eq!(spec.check(), Ok(()));
        spec.map_extra = 5;
        assert_eq!(
            spec.check().unwrap_err().to_string(),
            "map_extra 0x5 must be 0 for LRU_HASH maps"
        );
        spec.map_extra = 0;
        spec.spin_lock_offset = Some(0);
        assert_eq!(
            spec.check().unwrap_err().to_string(),
            "A struct bpf_spin_lock in the value needs a HASH or ARRAY map, not LRU_HASH"
        );

        let mut outer = MapSpec::new("o", MapType::HashOfMaps, 8, 4, 4);
        assert_eq!(
            outer.check().unwrap_err().to_string(),
            "HASH_OF_MAPS maps need the inner map's definition: `__array(values, struct { ... })`"
        );
        outer.inner = Some(Box::new(MapSpec::new("o.inner", MapType::Array, 4, 0, 1)));
        let err = outer.check().unwrap_err();
        assert_eq!(err.to_string(), "Inner map definition is not valid");
        assert!(matches!(err, MapDefError::DefineInner(_)));
        outer.inner = Some(Box::new(outer.clone()));
        assert_eq!(outer.check(), Err(MapDefError::NestInner));
        let mut array = MapSpec::new("a", MapType::Array, 4, 4, 1);
        array.inner = Some(Box::new(MapSpec::new("a.inner", MapType::Array, 4, 4, 1)));
        assert_eq!(
            array.check().unwrap_err().to_string(),
            "`values` is only for PROG_ARRAY, ARRAY_OF_MAPS and HASH_OF_MAPS maps, not ARRAY"
        );
    }

    #[test]
    fn arenas_follow_arena_map_alloc() {
        let arena = |pages, fl, extra| {
            let mut spec = MapSpec::new("arena", MapType::Arena, 0, 0, pages);
            spec.map_flags = fl;
            spec.map_extra = extra;
            spec.check().map_err(|e| e.to_string())
        };
        let mmap = flags::MMAPABLE;
        assert_eq!(arena(1, mmap, 0), Ok(()));
        assert_eq!(arena(MAX_ARENA_PAGES, mmap, 0), Ok(()));
        let all = mmap | flags::SEGV_ON_FAULT | flags::NO_USER_CONV;
        assert_eq!(arena(16, all, 0x7f00_0000_0000), Ok(()));
        // The last page may end exactly at the 4 GiB boundary.
        assert_eq!(arena(16, mmap, 0x1_ffff_0000), Ok(()));
        assert_eq!(
            arena(16, mmap, 0x1_ffff_1000).unwrap_err(),
            "map_extra 0x1ffff1000 is invalid for an arena of 16 pages: the arena would cross a 4 GiB boundary"
        );
        assert_eq!(
            arena(MAX_ARENA_PAGES, mmap, 0x1000).unwrap_err(),
            "map_extra 0x1000 is invalid for an arena of 1048576 pages: the arena would cross a 4 GiB boundary"
        );
        assert_eq!(
            arena(1, mmap, 0x1_0000_0800).unwrap_err(),
            "map_extra 0x100000800 is invalid for an arena of 1 pages: it must be page-aligned"
        );
        // Whether the host can reserve that address is the runtime's
        // question; the kernel's arithmetic accepts it.
        assert_eq!(arena(1, mmap, !0xfff), Ok(()));
        assert_eq!(
            arena(MAX_ARENA_PAGES + 1, mmap, 0).unwrap_err(),
            "max_entries 1048577 is invalid for ARENA maps: it must be 1 to 1048576 pages (4 GiB)"
        );
        assert_eq!(
            arena(0, mmap, 0).unwrap_err(),
            "max_entries 0 is invalid for ARENA maps: it must be 1 to 1048576 pages (4 GiB)"
        );
        assert_eq!(
            arena(1, 0, 0).unwrap_err(),
            "map_flags 0x0 lacks 0x400, which ARENA maps require"
        );
        assert_eq!(
            arena(1, mmap | flags::NUMA_NODE, 0).unwrap_err(),
            "map_flags 0x404 sets 0x4, which ARENA maps do not take"
        );
        let mut keyed = MapSpec::new("arena", MapType::Arena, 4, 0, 1);
        keyed.map_flags = mmap;
        assert_eq!(
            keyed.check().unwrap_err().to_string(),
            "key_size 4 is invalid for ARENA maps: it must be 0 (no keys)"
        );
        keyed.key_size = 0;
        keyed.value_size = 8;
        assert_eq!(
            keyed.check().unwrap_err().to_string(),
            "value_size 8 is invalid for ARENA maps: it must be 0 (no values)"
        );
    }

    #[test]
    fn legacy_definitions_decode() {
        let spec = legacy_map("old", &legacy([1, 8, 16, 32, flags::NO_PREALLOC])).unwrap();
        assert_eq!(
            (
                spec.map_type,
                spec.key_size,
                spec.value_size,
                spec.max_entries
            ),
            (MapType::Hash, 8, 16, 32)
        );
        assert_eq!(spec.map_flags, flags::NO_PREALLOC);
        let mut long = legacy([2, 4, 4, 1, 0]);
        long.extend([0; 8]);
        assert!(legacy_map("old", &long).is_ok());
        long[24] = 1;
        assert_eq!(
            legacy_map("old", &long).unwrap_err().to_string(),
            "Byte 24 of the definition, past struct bpf_map_def's 20, is not zero"
        );
        assert_eq!(
            legacy_map("old", &long[..12]).unwrap_err().to_string(),
            "The definition is 12 bytes; struct bpf_map_def has 20"
        );
        assert_eq!(
            legacy_map("old", &legacy([12, 4, 4, 1, 0]))
                .unwrap_err()
                .to_string(),
            "ARRAY_OF_MAPS maps need the inner map's definition: `__array(values, struct { ... })`"
        );
    }
}
