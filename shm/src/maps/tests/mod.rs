//! Tests over whole maps: kernel semantics per type, a property test
//! against `std::collections`, threads standing in for vCPUs, and
//! corrupted storage.

mod concurrent;
mod corrupt;
mod hash;
mod model;

use super::{MapDef, MapType, StorageView};
use std::sync::atomic::AtomicU64;

/// A map and its storage, initialised.
pub(crate) struct Fixture {
    pub def: MapDef,
    pub words: Vec<AtomicU64>,
}

/// Guest address the fixtures' storage pretends to be at.
pub(crate) const STORAGE_ADDR: u64 = 0x4000_0000;

impl Fixture {
    /// A view of the storage as the host sees it (short lock waits).
    pub fn mem(&self) -> StorageView<'_> {
        StorageView::from_atomic(&self.words, STORAGE_ADDR)
    }

    /// A view of the storage as a vCPU sees it: locks held by a preempted
    /// thread are waited for as the guest does.
    pub fn vcpu_mem(&self) -> StorageView<'_> {
        self.mem().with_spin_tries(super::memory::GUEST_SPIN_TRIES)
    }
}

/// A `ty` map of `key`/`value` byte keys and values, for `cpus` CPUs.
pub(crate) fn setup_map(ty: MapType, key: u32, value: u32, max: u32, cpus: u32) -> Fixture {
    let def = MapDef::new(ty as u32, key, value, max, 0, cpus).unwrap();
    setup_storage(def)
}

/// Storage for `def`, initialised.
pub(crate) fn setup_storage(def: MapDef) -> Fixture {
    let words = (0..def.storage_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    let fixture = Fixture { def, words };
    super::init(&fixture.def, &fixture.mem()).unwrap();
    fixture
}

/// Every key of a map, in `next_key` order, as a host iterates: at most
/// `max_entries` of them.
pub(crate) fn keys(f: &Fixture) -> Result<Vec<Vec<u8>>, super::MapError> {
    let mem = f.mem();
    let mut out = vec![0u8; f.def.key_size()];
    let mut keys: Vec<Vec<u8>> = vec![];
    loop {
        match super::next_key(&f.def, &mem, keys.last().map(|k| &k[..]), &mut out) {
            Ok(()) => keys.push(out.clone()),
            Err(super::MapError::NotFound) => return Ok(keys),
            Err(e) => return Err(e),
        }
        // Scribbled storage can hold one key twice in a chain, which
        // sends next_key round: a host iteration stops itself.
        if keys.len() > f.def.max_entries() as usize {
            return Err(super::MapError::Corrupt);
        }
    }
}

/// The u64 value at `off`.
pub(crate) fn value_u64(f: &Fixture, off: usize) -> u64 {
    use super::MapMemory;
    f.mem().load_u64(off).unwrap()
}

#[test]
fn the_guest_opens_a_map_from_its_header() {
    use super::MapMemory;
    let f = setup_map(MapType::Hash, 4, 8, 4, 2);
    let data = f.words.as_ptr() as u64;
    let header = f.def.header(data);
    let header_addr = &header as *const super::MapHeader as u64;
    // SAFETY: the header and the storage live until the end of the test.
    let (def, mem) = unsafe { super::open_guest_map(header_addr) }.unwrap();
    assert_eq!(def, f.def);
    super::update(&def, &mem, &[1, 0, 0, 0], &[7; 8], super::BPF_ANY, 1).unwrap();
    let off = super::lookup(&def, &mem, &[1, 0, 0, 0], 0)
        .unwrap()
        .unwrap();
    assert_eq!(mem.addr(off), data + off as u64);
    let bad = super::MapHeader {
        data: data + 4,
        ..header
    };
    let bad_addr = &bad as *const super::MapHeader as u64;
    // SAFETY: as above; the misaligned data is refused before any use.
    assert!(unsafe { super::open_guest_map(bad_addr) }.is_err());
}
