//! Maps in a sandbox: created from an object's definitions in the maps
//! region before its programs are linked, and the internal array maps
//! that stand for its global data sections, as libbpf makes them.
//!
//! ```text
//!  maps region
//!  ┌────────────┬──────────────┬──···──┬────────────┬───────────────┐
//!  │ header (64)│ storage      │ pad   │ header (64)│ storage …     │
//!  └────────────┴──────────────┴──···──┴────────────┴───────────────┘
//!   page-aligned  header + 64           next page
//! ```
//!
//! A global data section's map has its header in the maps region too, but
//! its storage is the section itself in the data regions, where programs
//! address it directly; so the host API and `bpf_map_lookup_elem` on it
//! see the bytes programs use.
//!
//! The host keeps each map's [`MapDef`] and addresses: it never reads a
//! header back (Note [Trusting map memory] in `shm::maps`).

use crate::program::LoadError;
use guest_jit::elf::{DataKind, DataSection, MapInit, MapSpec, Object};
use shm::layout::{Layout, PAGE_SIZE, arena_area};
use shm::maps::def::MAP_HEADER_SIZE;
use shm::maps::{MapDef, MapError, MapType, flags};

/// Identifies a map of a [`crate::Sandbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapId(pub(crate) usize);

/// What a map of a sandbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    pub(crate) name: String,
    pub(crate) def: MapDef,
    pub(crate) header: u64,
    pub(crate) data: u64,
    pub(crate) inner: Option<MapDef>,
    pub(crate) global_data: bool,
}

impl MapInfo {
    /// The map's name: its C variable, or the data section it stands for
    /// (`.bss`, `.rodata`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its validated definition.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// Type.
    pub fn map_type(&self) -> MapType {
        self.def.map_type()
    }

    /// Guest address of its header: what an `ld_imm64` of the map loads.
    pub fn header(&self) -> u64 {
        self.header
    }

    /// Guest address of its storage.
    pub fn data(&self) -> u64 {
        self.data
    }

    /// For maps of maps: the definition every inner map must match.
    pub fn inner(&self) -> Option<&MapDef> {
        self.inner.as_ref()
    }

    /// Whether it is the internal map of a global data section.
    pub fn is_global_data(&self) -> bool {
        self.global_data
    }
}

/// The maps of a sandbox, and how much of the maps region they take.
#[derive(Debug, Default)]
pub(crate) struct Maps {
    pub(crate) list: Vec<MapInfo>,
    pub(crate) used: u64,
}

/// Why a map could not be created or filled.
#[derive(Debug, thiserror::Error)]
pub enum CreateMapError {
    /// The definition is not one the map algorithms accept.
    #[error(transparent)]
    Define(MapError),
    /// The inner map template of a map of maps is invalid.
    #[error("Its inner map definition is invalid")]
    DefineInner(#[source] MapError),
    /// An initial value names a program or map the object does not have.
    #[error("Initial value [{index}] names {what} `{name}`, which the object does not have")]
    FindInitial {
        /// Slot.
        index: u32,
        /// "program" or "map".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An initial value of a map of maps is not compatible with its
    /// inner map definition.
    #[error(
        "Initial value [{index}]: map `{name}` does not match the inner map definition ({why})"
    )]
    MatchInner {
        /// Slot.
        index: u32,
        /// The map.
        name: String,
        /// What differs.
        why: &'static str,
    },
    /// Storing an initial value failed.
    #[error("Initial value [{index}] could not be stored")]
    StoreInitial {
        /// Slot.
        index: u32,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The storage could not be initialised.
    #[error("Its storage could not be initialised")]
    InitStorage(#[source] MapError),
    /// The arena could not be set up.
    #[error(transparent)]
    Arena(#[from] crate::arena::ArenaSetupError),
    /// The ring buffer could not be set up.
    #[error(transparent)]
    Ring(#[from] crate::ringbuf::RingSetupError),
}

/// The validated definition of `spec` for a sandbox of `nr_cpus` vCPUs.
pub fn map_def(spec: &MapSpec, nr_cpus: usize) -> Result<MapDef, CreateMapError> {
    let def = def_from_spec(spec, nr_cpus).map_err(CreateMapError::Define)?;
    if let Some(inner) = &spec.inner {
        def_from_spec(inner, nr_cpus).map_err(CreateMapError::DefineInner)?;
    }
    Ok(def)
}

fn def_from_spec(spec: &MapSpec, nr_cpus: usize) -> Result<MapDef, MapError> {
    let nr_cpus = u32::try_from(nr_cpus).unwrap_or(u32::MAX);
    let def = MapDef::new(
        spec.map_type.number(),
        spec.key_size,
        spec.value_size,
        spec.max_entries,
        spec.map_flags,
        nr_cpus,
    )?;
    match spec.spin_lock_offset {
        Some(off) => def.with_spin_lock(off),
        None => Ok(def),
    }
}

/// The internal map of data section `section`, or `None` for sections
/// that have none here: empty ones (libbpf makes no map of them) and
/// `__arena` globals. A `.percpu` section's is a PERCPU_ARRAY of one value
/// with its copies packed; [`data_map_def_in`] spreads them over the
/// vCPUs' per-CPU data.
pub fn data_map_def(section: &DataSection, nr_cpus: usize) -> Option<MapDef> {
    // `__arena` globals live in the arena, which is their map.
    if section.bytes.is_empty() || section.kind == DataKind::Arena {
        return None;
    }
    let mut spec = section.map_spec();
    if section.kind == DataKind::ReadOnly {
        // libbpf freezes .rodata after load: the host may not write it
        // either (set `const volatile` variables before loading instead).
        spec.map_flags |= flags::RDONLY;
    }
    def_from_spec(&spec, nr_cpus).ok()
}

/// [`data_map_def`] in `layout`: a `.percpu` section's copies are one
/// per-CPU area apart (Note [Per-CPU data] in `shm::layout`).
pub fn data_map_def_in(section: &DataSection, layout: &Layout) -> Option<MapDef> {
    let def = data_map_def(section, layout.nr_cpus())?;
    if section.kind != DataKind::PerCpu {
        return Some(def);
    }
    let block = u32::try_from(layout.percpu_area_size()).ok()?;
    def.with_percpu_block(block).ok()
}

/// Where a map of `storage` bytes goes after `used` bytes of the maps
/// region: the offset of its header (the next page boundary) and the new
/// `used` (the end of its storage), or `None` on overflow. Pure, so that
/// [`maps_size_needed`] counts exactly what [`place`] takes.
fn next_offset(used: u64, storage: u64) -> Option<(u64, u64)> {
    let offset = used.checked_next_multiple_of(PAGE_SIZE)?;
    let end = offset
        .checked_add(MAP_HEADER_SIZE as u64)?
        .checked_add(storage)?;
    Some((offset, end))
}

/// Where the next map goes: its header's guest address, page-aligned after
/// `used` bytes of the maps region, and the storage right after it.
/// Returns `(header, data, new used)`, or `None` if it does not fit.
pub(crate) fn place(layout: &Layout, used: u64, storage: u64) -> Option<(u64, u64, u64)> {
    let (offset, end) = next_offset(used, storage)?;
    if end > layout.maps_size() {
        return None;
    }
    let header = layout.maps_start() + offset;
    Some((header, header + MAP_HEADER_SIZE as u64, end))
}

/// The header addresses the object's maps get when created after `used`
/// bytes of the maps region, in the order of [`Object::maps`], with their
/// definitions.
pub(crate) fn plan_object_maps(
    layout: &Layout,
    used: &mut u64,
    object: &Object,
) -> Result<Vec<(MapDef, u64, u64)>, LoadError> {
    let mut next = *used;
    let plan = object
        .maps()
        .iter()
        .map(|spec| {
            let def = map_def(spec, layout.nr_cpus()).map_err(|source| LoadError::CreateMap {
                name: spec.name.clone(),
                source,
            })?;
            let storage = def.storage_size() as u64;
            let (header, data, end) =
                place(layout, next, storage).ok_or_else(|| LoadError::Fit {
                    name: spec.name.clone(),
                    region: "maps",
                    needed: storage + MAP_HEADER_SIZE as u64,
                    free: layout
                        .maps_size()
                        .saturating_sub(next.next_multiple_of(PAGE_SIZE)),
                })?;
            next = end;
            // An arena's header names its state region (Note [Arena map
            // header] in `crate::arena`).
            // A ring's names its start in the ring window (Note [Ring
            // buffer memory] in `crate::ringbuf`).
            let data = match def.map_type() {
                MapType::Arena => layout.arena_tables_start() + arena_area::STATES_OFFSET,
                t if t.is_ringbuf() => layout.ring_address(header).unwrap_or(0),
                _ => data,
            };
            Ok((def, header, data))
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    *used = next;
    Ok(plan)
}

/// The smallest [`crate::SandboxConfig::maps_size`] (a whole number of
/// pages, 0 for none) with room for `object`'s maps, and the headers of
/// the internal maps of its global data, when it is the first object
/// loaded into a sandbox of `nr_cpus` vCPUs. Invalid definitions count
/// nothing (loading reports them).
pub fn maps_size_needed(object: &Object, nr_cpus: usize) -> u64 {
    let object_maps = object
        .maps()
        .iter()
        .filter_map(|spec| map_def(spec, nr_cpus).ok())
        .map(|def| def.storage_size() as u64);
    // A data section's storage is the section itself, in the data regions.
    let data_maps = object
        .data_sections()
        .iter()
        .filter_map(|s| data_map_def(s, nr_cpus))
        .map(|_| 0);
    object_maps
        .chain(data_maps)
        .try_fold(0, |used, storage| Some(next_offset(used, storage)?.1))
        .and_then(|used| used.checked_next_multiple_of(PAGE_SIZE))
        .unwrap_or(u64::MAX)
}

/// What a map-of-maps slot may hold: `why` it may not hold a map of
/// definition `map`, given the outer map's inner `template`. The kernel's
/// `bpf_map_meta_equal`: type, key and value size, flags, and
/// `max_entries` unless the template has `BPF_F_INNER_MAP`.
pub(crate) fn inner_mismatch(template: &MapDef, map: &MapDef) -> Option<&'static str> {
    if template.map_type() != map.map_type() {
        Some("type")
    } else if template.key_size() != map.key_size() {
        Some("key size")
    } else if template.value_size() != map.value_size() {
        Some("value size")
    } else if template.map_flags() & !flags::INNER_MAP != map.map_flags() & !flags::INNER_MAP {
        Some("flags")
    } else if template.map_flags() & flags::INNER_MAP == 0
        && template.max_entries() != map.max_entries()
    {
        Some("max_entries")
    } else if template.spin_lock_off() != map.spin_lock_off() {
        Some("spin lock")
    } else {
        None
    }
}

/// The slot value an initial value of map `outer` stands for: the entry
/// of a program or the header of a map, given the object's `programs`
/// (name, entry) and `maps` (created for [`Object::maps`], in order).
pub(crate) fn initial_slot(
    outer: &MapInfo,
    index: u32,
    init: &MapInit,
    object: &Object,
    programs: &[(String, u64)],
    maps: &[&MapInfo],
) -> Result<u64, CreateMapError> {
    match init {
        MapInit::Program(name) => programs
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, entry)| entry)
            .ok_or_else(|| CreateMapError::FindInitial {
                index,
                what: "program",
                name: name.clone(),
            }),
        MapInit::Map(name) => {
            let map = object
                .find_map(name)
                .and_then(|i| maps.get(i))
                .ok_or_else(|| CreateMapError::FindInitial {
                    index,
                    what: "map",
                    name: name.clone(),
                })?;
            if let Some(why) = outer
                .inner
                .as_ref()
                .and_then(|t| inner_mismatch(t, &map.def))
            {
                return Err(CreateMapError::MatchInner {
                    index,
                    name: name.clone(),
                    why,
                });
            }
            Ok(map.header)
        }
    }
}

impl crate::Sandbox {
    /// Creates the maps of `object` (in the order of [`Object::maps`]):
    /// headers written, storage initialised, slots still empty. Their room
    /// is taken first, so a map that fails leaves no later map on top of
    /// those already made.
    pub(crate) fn create_object_maps(&mut self, object: &Object) -> Result<Vec<MapId>, LoadError> {
        let plan = plan_object_maps(&self.layout, &mut self.loaded.maps.used.clone(), object)?;
        for (spec, (def, _, _)) in object.maps().iter().zip(&plan) {
            self.check_limits(&spec.name, def)?;
        }
        let plan = plan_object_maps(&self.layout, &mut self.loaded.maps.used, object)?;
        let first = self.loaded.maps.list.len();
        for (spec, (def, header, data)) in object.maps().iter().zip(plan) {
            if def.map_type() == MapType::Arena {
                self.create_arena(spec).map_err(|e| LoadError::CreateMap {
                    name: spec.name.clone(),
                    source: e.into(),
                })?;
            }
            if def.map_type().is_ringbuf() {
                self.write_map_header(&spec.name, &def, header, data)?;
                let id = MapId(self.loaded.maps.list.len());
                self.create_ring(id, &spec.name, &def, header)
                    .map_err(|e| LoadError::CreateMap {
                        name: spec.name.clone(),
                        source: e.into(),
                    })?;
                self.loaded.maps.list.push(MapInfo {
                    name: spec.name.clone(),
                    def,
                    header,
                    data,
                    inner: None,
                    global_data: false,
                });
                continue;
            }
            let inner = spec
                .inner
                .as_deref()
                .and_then(|inner| def_from_spec(inner, self.layout.nr_cpus()).ok());
            self.create_map(MapInfo {
                name: spec.name.clone(),
                def,
                header,
                data,
                inner,
                global_data: false,
            })?;
        }
        Ok((first..self.loaded.maps.list.len()).map(MapId).collect())
    }

    /// Creates the internal maps of `object`'s data sections, placed at
    /// `placement` (in the order of [`Object::data_sections`]).
    pub(crate) fn create_data_maps(
        &mut self,
        object: &Object,
        placement: &[u64],
    ) -> Result<(), LoadError> {
        for (section, &data) in object.data_sections().iter().zip(placement) {
            let Some(def) = data_map_def_in(section, &self.layout) else {
                continue;
            };
            let used = self.loaded.maps.used;
            let fit = || LoadError::Fit {
                name: section.name.clone(),
                region: "maps",
                needed: MAP_HEADER_SIZE as u64,
                free: self
                    .layout
                    .maps_size()
                    .saturating_sub(used.next_multiple_of(PAGE_SIZE)),
            };
            // The storage is the section: only the header takes room here.
            let (header, _, end) = place(&self.layout, used, 0).ok_or_else(fit)?;
            self.loaded.maps.used = end;
            self.write_map_header(&section.name, &def, header, data)?;
            self.loaded.maps.list.push(MapInfo {
                name: section.name.clone(),
                def,
                header,
                data,
                inner: None,
                global_data: true,
            });
        }
        Ok(())
    }

    /// Checks map `name` against the sandbox's limits.
    fn check_limits(&self, name: &str, def: &MapDef) -> Result<(), LoadError> {
        let limits = self.limits;
        let over = |what, value: u64, limit: Option<u64>| match limit {
            Some(limit) if value > limit => Err(LoadError::Limit {
                name: name.to_owned(),
                what,
                value,
                limit,
            }),
            _ => Ok(()),
        };
        if def.map_type() == MapType::Arena {
            let pages = u64::from(def.max_entries());
            over("pages", pages, limits.max_arena_pages.map(u64::from))?;
            over(
                "guest memory with the arena, in bytes,",
                self.layout.memory_size() + pages * PAGE_SIZE,
                limits.max_memory,
            )
        } else if def.map_type().is_ringbuf() {
            over(
                "data size in bytes",
                u64::from(def.max_entries()),
                limits.max_map_bytes,
            )
        } else {
            over(
                "storage in bytes",
                def.storage_size() as u64,
                limits.max_map_bytes,
            )
        }
    }

    fn create_map(&mut self, info: MapInfo) -> Result<(), LoadError> {
        self.write_map_header(&info.name, &info.def, info.header, info.data)?;
        let view = self.map_storage(&info).map_err(|e| LoadError::CreateMap {
            name: info.name.clone(),
            source: CreateMapError::InitStorage(e),
        })?;
        shm::maps::ops::init(&info.def, &view).map_err(|e| LoadError::CreateMap {
            name: info.name.clone(),
            source: CreateMapError::InitStorage(e),
        })?;
        self.loaded.maps.list.push(info);
        Ok(())
    }

    fn write_map_header(
        &self,
        name: &str,
        def: &MapDef,
        header: u64,
        data: u64,
    ) -> Result<(), LoadError> {
        self.memory
            .write_pod(header, &def.header(data))
            .map_err(|source| LoadError::WriteMemory {
                name: name.to_owned(),
                source,
            })
    }

    /// Stores the object's initial slot values (`.values = { ... }`) in
    /// `maps`, created for it, once its programs are loaded: `programs`
    /// holds their names and entries.
    pub(crate) fn fill_initial_values(
        &self,
        object: &Object,
        maps: &[MapId],
        programs: &[(String, u64)],
    ) -> Result<(), LoadError> {
        let infos: Vec<&MapInfo> = maps.iter().map(|id| &self.loaded.maps.list[id.0]).collect();
        for (spec, info) in object.maps().iter().zip(&infos) {
            let err = |source| LoadError::CreateMap {
                name: spec.name.clone(),
                source,
            };
            for (index, init) in &spec.values {
                let slot =
                    initial_slot(info, *index, init, object, programs, &infos).map_err(err)?;
                let view = self.map_storage(info).map_err(|source| {
                    err(CreateMapError::StoreInitial {
                        index: *index,
                        source,
                    })
                })?;
                shm::maps::ops::update_sys(
                    &info.def,
                    &view,
                    &index.to_le_bytes(),
                    &slot.to_le_bytes(),
                    shm::maps::BPF_ANY,
                )
                .map_err(|source| {
                    err(CreateMapError::StoreInitial {
                        index: *index,
                        source,
                    })
                })?;
            }
        }
        Ok(())
    }
}
