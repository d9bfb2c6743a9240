//! The host's map API: lookup, update, delete, iteration and per-CPU
//! values, over the same `shm::maps` algorithms the guest runs, on the
//! live storage, with the semantics of the kernel's `bpf(2)` map commands
//! (flags, errors, `BPF_F_RDONLY`/`BPF_F_WRONLY` for the host).
//!
//! Programs may be running on other vCPUs meanwhile, and one may have
//! scribbled over its maps' bookkeeping. Every operation works from the
//! host's own [`MapDef`] (never the header in guest memory), is
//! bounds-checked against the map's storage, gives up on a lock after a
//! short spin ([`MapError::Busy`]), and lists at most `max_entries`
//! elements, walking each hash chain once under its bucket's lock
//! ([`MapError::Corrupt`] for a structure that does not add up): none can
//! hang, crash, or touch guest memory outside the map, and a listing costs
//! time linear in the map's size whatever a program wrote in it.

use crate::maps::{MapId, MapInfo, inner_mismatch};
use crate::program::ProgramId;
use crate::sandbox::Sandbox;
use shm::maps::memory::HOST_SPIN_TRIES;
use shm::maps::{
    BPF_ANY, BPF_F_ALL_CPUS, BPF_F_CPU, MapDef, MapError, MapMemory, MapType, StorageView, flags,
    lock, ops,
};

/// Times [`MapHandle::lookup`] copies a value whose element programs keep
/// moving before it gives up with `Busy`.
const LOOKUP_TRIES: u32 = 4;

// Note [Reused elements]
// A hash map's elements are preallocated: one a program deletes is reused
// at once for the next key inserted, maybe while the host copies its
// value out. Listings hold each bucket's lock while they copy its
// elements (`ops::walk_sys`), as the kernel's batch lookups do. A lookup
// takes no lock, as the kernel's: after copying, it looks the key up
// again, and if the key has moved it copies again (the value it copied
// may be another key's). What remains is the kernel's own caveat: a value
// updated in place, or deleted and stored again under the same key while
// it is copied, may be seen half old, half new.

/// A map of a sandbox, for the host to read and write.
#[derive(Clone, Copy)]
pub struct MapHandle<'a> {
    sandbox: &'a Sandbox,
    info: &'a MapInfo,
    id: MapId,
}

impl std::fmt::Debug for MapHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapHandle")
            .field("id", &self.id)
            .field("info", self.info)
            .finish()
    }
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

    /// `BPF_F_WRONLY`: the host may not read the map.
    fn check_readable(&self) -> Result<(), MapError> {
        if self.def().map_flags() & flags::WRONLY != 0 {
            return Err(MapError::WriteOnly);
        }
        Ok(())
    }

    /// `BPF_F_RDONLY`: the host may not write the map (`update_sys` and
    /// `delete_sys` check it themselves; queues need it here).
    fn check_writable(&self) -> Result<(), MapError> {
        if self.def().map_flags() & flags::RDONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        Ok(())
    }

    fn is_queue(&self) -> bool {
        matches!(self.def().map_type(), MapType::Queue | MapType::Stack)
    }

    /// Copies of each value: one per CPU in a per-CPU map, else one.
    fn copies(&self) -> usize {
        if self.def().map_type().is_percpu() {
            self.def().nr_cpus() as usize
        } else {
            1
        }
    }

    /// The value at `key`, `None` if there is none; on a queue or stack
    /// (key `&[]`), the one [`MapHandle::peek`] gives, as `bpf(2)`. Per-CPU
    /// maps have one per CPU ([`MapHandle::lookup_percpu`]); slot maps
    /// hold programs and maps ([`MapHandle::slot`]). `Busy` if programs
    /// keep deleting and reinserting the key while it is copied (Note
    /// [Reused elements]).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        if self.def().map_type().is_percpu() {
            return Err(MapError::InvalidArgument(
                "per-CPU map: look up every CPU's value",
            ));
        }
        Ok(self.lookup_percpu(key)?.and_then(|mut v| v.pop()))
    }

    /// Every CPU's copy of the value at `key` of a per-CPU map, in CPU
    /// order (for other maps, the one value), `None` if there is none.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        self.check_key(key)?;
        if self.is_queue() {
            return Ok(self.peek()?.map(|value| vec![value]));
        }
        self.check_readable()?;
        if self.def().map_type().has_slots() {
            return Err(MapError::InvalidArgument("slot map: read its slots"));
        }
        let mem = self.storage()?;
        let mut found = ops::lookup_sys(self.def(), &mem, key)?;
        for _ in 0..LOOKUP_TRIES {
            let Some(off) = found else {
                return Ok(None);
            };
            let values = self.read_values(&mem, off)?;
            // Note [Reused elements]: the key must still be where it was.
            let again = ops::lookup_sys(self.def(), &mem, key)?;
            if again == found {
                return Ok(Some(values));
            }
            found = again;
        }
        Err(MapError::Busy)
    }

    /// Every CPU's copy of the value whose CPU 0 copy is at `off`.
    fn read_values(&self, mem: &StorageView<'_>, off: usize) -> Result<Vec<Vec<u8>>, MapError> {
        let def = self.def();
        (0..self.copies() as u32)
            .map(|cpu| {
                let at = def
                    .percpu_value_off(off, cpu)
                    .ok_or(MapError::OutOfBounds)?;
                let mut value = vec![0; def.value_len()];
                lock::read_value(def, mem, at, &mut value, 0)?;
                Ok(value)
            })
            .collect()
    }

    /// Stores `value` at `key`; `flags`: [`shm::maps::BPF_ANY`],
    /// `BPF_NOEXIST`, `BPF_EXIST`, with `BPF_F_LOCK` to copy a value
    /// holding a `bpf_spin_lock` under it. Every CPU of a per-CPU map
    /// gets `value` (as with [`shm::maps::BPF_F_ALL_CPUS`]), or with
    /// [`shm::maps::BPF_F_CPU`] only CPU `flags >> 32`
    /// ([`MapHandle::update_percpu`] gives each its own). On a queue or
    /// stack (key `&[]`), pushes, as `bpf(2)` does.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let def = self.def();
        let cpu_flags = flags & (BPF_F_CPU | BPF_F_ALL_CPUS);
        let cpu = flags >> 32;
        if cpu_flags == 0 && cpu == 0 {
            return self.update_percpu(key, &vec![value; self.copies()], flags);
        }
        // As the kernel's bpf_map_check_op_flags: per-CPU maps only, one
        // of the two, and a CPU number only with BPF_F_CPU.
        if !def.map_type().is_percpu()
            || cpu_flags == BPF_F_CPU | BPF_F_ALL_CPUS
            || (cpu_flags != BPF_F_CPU && cpu != 0)
        {
            return Err(MapError::InvalidFlags);
        }
        let flags = flags & u64::from(u32::MAX) & !cpu_flags;
        if cpu_flags == BPF_F_ALL_CPUS {
            return self.update_percpu(key, &vec![value; self.copies()], flags);
        }
        if cpu >= u64::from(def.nr_cpus()) {
            return Err(MapError::InvalidArgument("BPF_F_CPU: no such CPU"));
        }
        self.check_key(key)?;
        if value.len() != def.value_len() {
            return Err(MapError::InvalidArgument("value is not value_size bytes"));
        }
        ops::update_sys_cpu(def, &self.storage()?, key, value, flags, cpu as u32)
    }

    /// Stores one value per CPU at `key` of a per-CPU map (`values[c]` for
    /// CPU `c`; exactly one value for other maps), as
    /// [`MapHandle::update`].
    pub fn update_percpu(&self, key: &[u8], values: &[&[u8]], flags: u64) -> Result<(), MapError> {
        let def = self.def();
        self.check_key(key)?;
        if def.map_type().has_slots() {
            return Err(MapError::InvalidArgument(
                "slot map: use set_program or set_inner_map",
            ));
        }
        if values.len() != self.copies() {
            return Err(MapError::InvalidArgument("one value per CPU"));
        }
        let size = def.value_len();
        if values.iter().any(|v| v.len() != size) {
            return Err(MapError::InvalidArgument("value is not value_size bytes"));
        }
        if let (true, [value]) = (self.is_queue(), values) {
            return self.push(value, flags);
        }
        // As bpf(BPF_MAP_UPDATE_ELEM) takes them: value_stride apart.
        let stride = def.value_stride();
        let mut buf = vec![0; stride * (values.len() - 1) + size];
        for (i, value) in values.iter().enumerate() {
            buf[i * stride..i * stride + size].copy_from_slice(value);
        }
        ops::update_sys(def, &self.storage()?, key, &buf, flags)
    }

    /// Deletes `key` (`NotFound` if absent; `Unsupported` for value
    /// arrays, as the kernel).
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        ops::delete_sys(self.def(), &self.storage()?, key)
    }

    /// Every key, in the kernel's `BPF_MAP_GET_NEXT_KEY` order: indices
    /// for arrays (slot arrays: filled or not), bucket order for hashes.
    /// At most `max_entries` of them: a map programs change meanwhile may
    /// show a key twice or miss one, as with the kernel; a chain that
    /// does not add up is [`MapError::Corrupt`]. Not for queues.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, MapError> {
        let keys = self.walk(|_, _| Ok(()))?;
        Ok(keys.into_iter().map(|(key, ())| key).collect())
    }

    /// Every element with its value(s), in [`MapHandle::keys`]' order and
    /// with its bounds. Not for slot maps ([`MapHandle::slots`]) or
    /// queues.
    pub fn entries(&self) -> Result<Vec<Entry>, MapError> {
        if self.def().map_type().has_slots() {
            return Err(MapError::InvalidArgument("slot map: read its slots"));
        }
        let entries = self.walk(|mem, off| self.read_values(mem, off))?;
        Ok(entries
            .into_iter()
            .map(|(key, values)| Entry { key, values })
            .collect())
    }

    /// Each element's key with what `read(storage, value offset)` (CPU
    /// 0's copy) makes of its value: the first `max_entries` elements, in
    /// [`MapHandle::keys`]' order (every index of an array, one walk of a
    /// hash's chains: [`ops::walk_sys`]).
    fn walk<T>(
        &self,
        mut read: impl FnMut(&StorageView<'a>, usize) -> Result<T, MapError>,
    ) -> Result<Vec<(Vec<u8>, T)>, MapError> {
        let def = self.def();
        self.check_readable()?;
        if self.is_queue() {
            return Err(MapError::Unsupported);
        }
        let mem = self.storage()?;
        let mut out = Vec::new();
        if def.map_type().is_array() {
            for index in 0..def.max_entries() {
                let key = index.to_le_bytes();
                let off = ops::lookup_sys(def, &mem, &key)?.ok_or(MapError::OutOfBounds)?;
                out.push((key.to_vec(), read(&mem, off)?));
            }
            return Ok(out);
        }
        // The walk goes on past max_entries elements without visiting
        // them: in a map nobody changes, it only finds more on a chain
        // that does not end, which it reports as Corrupt.
        let max = def.max_entries() as usize;
        let (mut seen, mut failed) = (0, Ok(()));
        ops::walk_sys(def, &mem, |key_off, value_off| {
            seen += 1;
            if seen <= max {
                let mut key = vec![0; def.key_size()];
                failed = mem.read(key_off, &mut key).and_then(|()| {
                    out.push((key, read(&mem, value_off)?));
                    Ok(())
                });
            }
            failed.is_ok()
        })?;
        failed.map(|()| out)
    }

    /// What slot `key` of a `PROG_ARRAY` or map of maps holds, `None` if
    /// empty.
    pub fn slot(&self, key: &[u8]) -> Result<Option<Slot>, MapError> {
        let def = self.def();
        self.check_key(key)?;
        self.check_readable()?;
        if !def.map_type().has_slots() {
            return Err(MapError::Unsupported);
        }
        let addr = ops::lookup_slot(def, &self.storage()?, key)?;
        Ok(addr.map(|addr| self.classify(addr)))
    }

    /// What a slot holding `addr` holds: a program's entry in a
    /// `PROG_ARRAY`, a map's header in a map of maps.
    fn classify(&self, addr: u64) -> Slot {
        let known = if self.def().map_type() == MapType::ProgArray {
            self.sandbox
                .programs()
                .find(|(_, p)| p.entry() == addr)
                .map(|(id, _)| Slot::Program(id))
        } else {
            self.sandbox
                .maps()
                .find(|m| m.info.header == addr)
                .map(|m| Slot::Map(m.id))
        };
        known.unwrap_or(Slot::Unknown(addr))
    }

    /// Every filled slot with its key, in [`MapHandle::keys`]' order: at
    /// most `max_entries`.
    pub fn slots(&self) -> Result<Vec<(Vec<u8>, Slot)>, MapError> {
        if !self.def().map_type().has_slots() {
            return Err(MapError::Unsupported);
        }
        // Pairs with the Release store of update_sys.
        let slots = self.walk(|mem, off| mem.load_u64(off))?;
        Ok(slots
            .into_iter()
            .filter(|&(_, addr)| addr != 0)
            .map(|(key, addr)| (key, self.classify(addr)))
            .collect())
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

    /// Puts map `inner` in slot `key` of a map of maps. It must match the
    /// outer map's inner map definition, as the kernel's
    /// `bpf_map_meta_equal` requires.
    pub fn set_inner_map(&self, key: &[u8], inner: MapId) -> Result<(), MapError> {
        let (true, Some(template)) = (
            matches!(
                self.def().map_type(),
                MapType::ArrayOfMaps | MapType::HashOfMaps
            ),
            self.info.inner.as_ref(),
        ) else {
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
        ops::update_sys(def, &self.storage()?, key, &value.to_le_bytes(), BPF_ANY)
    }

    /// Empties slot `key` of a `PROG_ARRAY` or map of maps (`NotFound`
    /// if it was empty).
    pub fn clear_slot(&self, key: &[u8]) -> Result<(), MapError> {
        if !self.def().map_type().has_slots() {
            return Err(MapError::Unsupported);
        }
        self.delete(key)
    }

    /// Pushes `value` on a queue or stack; with `BPF_EXIST` in `flags` a
    /// full one drops its oldest value to make room.
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_writable()?;
        if value.len() != self.def().value_len() {
            return Err(MapError::InvalidArgument("value is not value_size bytes"));
        }
        ops::push(self.def(), &self.storage()?, value, flags)
    }

    /// Pops the next value of a queue (the oldest) or stack (the newest),
    /// `None` when empty.
    pub fn pop(&self) -> Result<Option<Vec<u8>>, MapError> {
        self.check_readable()?;
        self.check_writable()?;
        self.take(ops::pop)
    }

    /// The value [`MapHandle::pop`] would remove, left in place.
    pub fn peek(&self) -> Result<Option<Vec<u8>>, MapError> {
        self.check_readable()?;
        self.take(ops::peek)
    }

    /// Every value of a queue or stack in the order [`MapHandle::pop`]
    /// would remove them, none removed.
    pub fn queue_values(&self) -> Result<Vec<Vec<u8>>, MapError> {
        self.check_readable()?;
        let mem = self.storage()?;
        let len = self.def().value_len();
        let mut values = Vec::new();
        ops::queue_values(self.def(), &mem, |off| {
            let mut value = vec![0; len];
            mem.read(off, &mut value)?;
            values.push(value);
            Ok(())
        })?;
        Ok(values)
    }

    fn take(
        &self,
        op: fn(&MapDef, &StorageView<'a>, &mut [u8]) -> Result<(), MapError>,
    ) -> Result<Option<Vec<u8>>, MapError> {
        let mut out = vec![0; self.def().value_len()];
        match op(self.def(), &self.storage()?, &mut out) {
            Ok(()) => Ok(Some(out)),
            Err(MapError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
