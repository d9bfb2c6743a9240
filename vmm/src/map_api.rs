//! The host's map API: lookup, update, delete, iteration and per-CPU
//! values, over the same `shm::maps` algorithms the guest runs, on the
//! live storage.
//!
//! Programs may be running on other vCPUs meanwhile, and one may have
//! scribbled over its maps' bookkeeping. Every operation works from the
//! host's own [`MapDef`], is bounds-checked against the map's storage,
//! gives up on a lock after a short spin ([`MapError::Busy`]), and walks
//! at most `max_entries` keys ([`MapError::Corrupt`] for a structure that
//! does not add up): none can hang, crash or read outside the map.

use crate::maps::{MapId, MapInfo, inner_mismatch};
use crate::program::ProgramId;
use crate::sandbox::Sandbox;
use shm::maps::memory::HOST_SPIN_TRIES;
use shm::maps::{MapDef, MapError, MapType, StorageView, lock, ops};

/// A map of a sandbox, for the host to read and write.
#[derive(Debug, Clone, Copy)]
pub struct MapHandle<'a> {
    sandbox: &'a Sandbox,
    info: &'a MapInfo,
    id: MapId,
}

/// What a slot of a `PROG_ARRAY` or map of maps holds, as the host sees
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A loaded program.
    Program(ProgramId),
    /// A map of this sandbox.
    Map(MapId),
    /// An address that is neither: a program wrote it.
    Unknown(u64),
}

/// One element of a map, as [`MapHandle::entries`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's bytes (the index, little-endian, for arrays).
    pub key: Vec<u8>,
    /// The value: one per CPU for per-CPU maps, else one.
    pub values: Vec<Vec<u8>>,
}

impl Sandbox {
    /// Every map with its id, in creation order.
    pub fn maps(&self) -> impl Iterator<Item = MapHandle<'_>> {
        self.loaded
            .maps
            .list
            .iter()
            .enumerate()
            .map(|(i, info)| MapHandle {
                sandbox: self,
                info,
                id: MapId(i),
            })
    }

    /// Map `id`.
    pub fn map(&self, id: MapId) -> Option<MapHandle<'_>> {
        self.maps().nth(id.0)
    }

    /// The first map named `name` (a C variable, or a data section such as
    /// `.bss`).
    pub fn find_map(&self, name: &str) -> Option<MapHandle<'_>> {
        self.maps().find(|m| m.info.name == name)
    }

    /// A view of `info`'s storage on the host, with the host's short lock
    /// spin.
    pub(crate) fn map_storage(&self, info: &MapInfo) -> Result<StorageView<'_>, MapError> {
        let len = info.def.storage_size();
        let end = info.data.checked_add(len as u64);
        if end.is_none_or(|end| end > self.memory.size()) || !info.data.is_multiple_of(8) {
            return Err(MapError::OutOfBounds);
        }
        let base = (self.memory.host_base() + info.data) as *mut u8;
        // SAFETY: data .. data + len lies in guest memory (checked), which
        // stays mapped while the sandbox lives, and the view borrows the
        // sandbox; base is 8-byte aligned (the mapping is page-aligned and
        // data is checked). The guest's vCPUs are other CPUs: they touch
        // the bytes with their own instructions, never Rust references,
        // and the host touches them only through views and the volatile
        // copies of `GuestMemory`.
        let view = unsafe { StorageView::new(base, len, info.data) };
        Ok(view.with_spin_tries(HOST_SPIN_TRIES))
    }
}

impl<'a> MapHandle<'a> {
    /// The map's id.
    pub fn id(&self) -> MapId {
        self.id
    }

    /// What the map is.
    pub fn info(&self) -> &'a MapInfo {
        self.info
    }

    /// Its name.
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    /// Its definition.
    pub fn def(&self) -> &'a MapDef {
        &self.info.def
    }

    fn storage(&self) -> Result<StorageView<'a>, MapError> {
        self.sandbox.map_storage(self.info)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.def().key_size() {
            return Err(MapError::InvalidArgument("key is not key_size bytes"));
        }
        Ok(())
    }

    /// The value at `key`, `None` if there is none. For per-CPU maps, use
    /// [`MapHandle::lookup_percpu`]; for slots, [`MapHandle::slot`].
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let def = self.def();
        if def.map_type().is_percpu() {
            return Err(MapError::InvalidArgument(
                "per-CPU map: look up every CPU's value",
            ));
        }
        Ok(self.lookup_all(key)?.and_then(|mut v| v.pop()))
    }

    /// Every CPU's copy of the value at `key` of a per-CPU map (one value
    /// for other maps), `None` if there is none.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        self.lookup_all(key)
    }

    fn lookup_all(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        let def = self.def();
        self.check_key(key)?;
        if def.map_type().has_slots() {
            return Err(MapError::InvalidArgument("slot map: read its slots"));
        }
        let mem = self.storage()?;
        let Some(off) = ops::lookup_sys(def, &mem, key)? else {
            return Ok(None);
        };
        let cpus = if def.map_type().is_percpu() {
            def.nr_cpus()
        } else {
            1
        };
        (0..cpus)
            .map(|cpu| {
                let at = def
                    .percpu_value_off(off, cpu)
                    .ok_or(MapError::OutOfBounds)?;
                let mut value = vec![0; def.value_size() as usize];
                lock::read_value(def, &mem, at, &mut value, 0)?;
                Ok(value)
            })
            .collect::<Result<Vec<_>, MapError>>()
            .map(Some)
    }

    /// Stores `value` at `key` (`flags`: [`shm::maps::BPF_ANY`],
    /// `BPF_NOEXIST`, `BPF_EXIST`, with `BPF_F_LOCK` for values holding a
    /// `bpf_spin_lock`). For per-CPU maps, every CPU gets `value`; use
    /// [`MapHandle::update_percpu`] to give each its own.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let cpus = if self.def().map_type().is_percpu() {
            self.def().nr_cpus() as usize
        } else {
            1
        };
        self.update_percpu(key, &vec![value; cpus], flags)
    }

    /// Stores one value per CPU at `key` of a per-CPU map (`values[c]` for
    /// CPU `c`; exactly one value for other maps).
    pub fn update_percpu(&self, key: &[u8], values: &[&[u8]], flags: u64) -> Result<(), MapError> {
        let def = self.def();
        self.check_key(key)?;
        if def.map_type().has_slots() {
            return Err(MapError::InvalidArgument("slot map: use set_slot"));
        }
        let cpus = if def.map_type().is_percpu() {
            def.nr_cpus() as usize
        } else {
            1
        };
        if values.len() != cpus {
            return Err(MapError::InvalidArgument("one value per CPU"));
        }
        let size = def.value_size() as usize;
        let stride = def.value_stride();
        let mut buf = vec![0; stride * (cpus - 1) + size];
        for (i, value) in values.iter().enumerate() {
            if value.len() != size {
                return Err(MapError::InvalidArgument("value is not value_size bytes"));
            }
            buf[i * stride..i * stride + size].copy_from_slice(value);
        }
        let mem = self.storage()?;
        if matches!(def.map_type(), MapType::Queue | MapType::Stack) {
            return ops::push(def, &mem, &buf, flags);
        }
        ops::update_sys(def, &mem, key, &buf, flags)
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        ops::delete_sys(self.def(), &self.storage()?, key)
    }

    /// Every key, in the map's order: at most `max_entries` of them, so
    /// an iteration racing with programs, or over a scribbled map, ends.
    /// A chain that does not end is [`MapError::Corrupt`].
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, MapError> {
        let def = self.def();
        if matches!(def.map_type(), MapType::Queue | MapType::Stack) {
            return Err(MapError::Unsupported);
        }
        let mem = self.storage()?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0; def.key_size()];
        while keys.len() < def.max_entries() as usize {
            match ops::next_key(def, &mem, keys.last().map(Vec::as_slice), &mut next) {
                Ok(()) => keys.push(next.clone()),
                Err(MapError::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    }

    /// Every element with its value(s): [`MapHandle::keys`], each looked
    /// up (a key deleted meanwhile is left out). Not for slot maps or
    /// queues.
    pub fn entries(&self) -> Result<Vec<Entry>, MapError> {
        let mut entries = Vec::new();
        for key in self.keys()? {
            if let Some(values) = self.lookup_all(&key)? {
                entries.push(Entry { key, values });
            }
        }
        Ok(entries)
    }

    /// What slot `index` of a `PROG_ARRAY` or map of maps holds (`key`
    /// of a `HASH_OF_MAPS`), `None` if empty.
    pub fn slot(&self, key: &[u8]) -> Result<Option<Slot>, MapError> {
        let def = self.def();
        self.check_key(key)?;
        if !def.map_type().has_slots() {
            return Err(MapError::Unsupported);
        }
        let Some(addr) = ops::lookup_slot(def, &self.storage()?, key)? else {
            return Ok(None);
        };
        let program = self
            .sandbox
            .programs()
            .find(|(_, p)| p.entry() == addr)
            .map(|(id, _)| Slot::Program(id));
        let map = self
            .sandbox
            .maps()
            .find(|m| m.info.header == addr)
            .map(|m| Slot::Map(m.id));
        Ok(Some(program.or(map).unwrap_or(Slot::Unknown(addr))))
    }

    /// Every filled slot, with its key: at most `max_entries`.
    pub fn slots(&self) -> Result<Vec<(Vec<u8>, Slot)>, MapError> {
        let mut slots = Vec::new();
        for key in self.keys()? {
            if let Some(slot) = self.slot(&key)? {
                slots.push((key, slot));
            }
        }
        Ok(slots)
    }

    /// Puts program `program` in slot `key` of a `PROG_ARRAY`.
    pub fn set_program(&self, key: &[u8], program: ProgramId) -> Result<(), MapError> {
        if self.def().map_type() != MapType::ProgArray {
            return Err(MapError::InvalidArgument("not a PROG_ARRAY"));
        }
        let entry = self
            .sandbox
            .program(program)
            .ok_or(MapError::InvalidArgument("no such program"))?
            .entry();
        self.store_slot(key, entry)
    }

    /// Puts map `inner` in slot `key` of a map of maps; it must match the
    /// outer map's inner definition, as the kernel requires.
    pub fn set_inner_map(&self, key: &[u8], inner: MapId) -> Result<(), MapError> {
        let Some(template) = self.info.inner.as_ref() else {
            return Err(MapError::InvalidArgument("not a map of maps"));
        };
        let inner = self
            .sandbox
            .map(inner)
            .ok_or(MapError::InvalidArgument("no such map"))?;
        if inner_mismatch(template, inner.def()).is_some() {
            return Err(MapError::InvalidArgument(
                "map does not match the inner map definition",
            ));
        }
        self.store_slot(key, inner.info.header)
    }

    fn store_slot(&self, key: &[u8], value: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        let def = self.def();
        ops::update_sys(def, &self.storage()?, key, &value.to_le_bytes(), 0)
    }

    /// Empties slot `key` of a `PROG_ARRAY` or map of maps.
    pub fn clear_slot(&self, key: &[u8]) -> Result<(), MapError> {
        self.delete(key)
    }

    /// Pushes `value` on a queue or stack (`BPF_EXIST` in `flags`
    /// replaces the oldest value when full).
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if value.len() != self.def().value_size() as usize {
            return Err(MapError::InvalidArgument("value is not value_size bytes"));
        }
        ops::push(self.def(), &self.storage()?, value, flags)
    }

    /// Pops the next value of a queue or stack, `None` when empty.
    pub fn pop(&self) -> Result<Option<Vec<u8>>, MapError> {
        let mut out = vec![0; self.def().value_size() as usize];
        match ops::pop(self.def(), &self.storage()?, &mut out) {
            Ok(()) => Ok(Some(out)),
            Err(MapError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next value of a queue or stack without removing it.
    pub fn peek(&self) -> Result<Option<Vec<u8>>, MapError> {
        let mut out = vec![0; self.def().value_size() as usize];
        match ops::peek(self.def(), &self.storage()?, &mut out) {
            Ok(()) => Ok(Some(out)),
            Err(MapError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
