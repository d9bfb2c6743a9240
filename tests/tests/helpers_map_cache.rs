//! The map helpers' per-vCPU cache of checked headers (Note [Map
//! definition cache] in `images/guest-rt/src/helpers/maps.rs`) in a real
//! VM: a header that changes after a call — scribbled, or rewritten to
//! describe another map — is what the next call works from, and more maps
//! than the cache keeps still resolve each to its own storage.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use integration_tests::kvm_available;
use shm::maps::{MapDef, MapHeader, MapType};
use vmm::Sandbox;

fn array(value: u32, max: u32) -> MapDef {
    MapDef::new(MapType::Array as u32, 4, value, max, 0, 1).unwrap()
}

/// `bpf_map_lookup_elem(map, &index)` on CPU 0.
fn lookup(sandbox: &Sandbox, map: u64, index: u32) -> u64 {
    let key = scratch(sandbox, 0);
    sandbox.memory().write(key, &index.to_le_bytes()).unwrap();
    call_helper(sandbox, 0, "bpf_map_lookup_elem", &[map, key])
}

fn write_header(sandbox: &Sandbox, at: u64, header: &MapHeader) {
    sandbox.memory().write_pod(at, header).unwrap();
}

#[test]
fn a_header_changed_after_a_call_is_what_the_next_call_uses() {
    if !kvm_available("a_header_changed_after_a_call_is_what_the_next_call_uses") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    let a = arena.create(&sandbox, array(8, 10));
    let b = arena.create(&sandbox, array(8, 10));
    let header = a.def.header(a.data);
    assert_eq!(lookup(&sandbox, a.header, 3), a.data + 24);

    // Scribbled: refused, every time, then fine again once restored.
    let scribbles = [
        MapHeader { magic: 0, ..header },
        MapHeader {
            value_stride: 16,
            ..header
        },
        MapHeader {
            reserved: [0, 1],
            ..header
        },
        MapHeader {
            data: a.data + 4,
            ..header
        },
    ];
    for scribble in scribbles {
        write_header(&sandbox, a.header, &scribble);
        assert_eq!(lookup(&sandbox, a.header, 3), 0, "{scribble:?}");
        assert_eq!(lookup(&sandbox, a.header, 3), 0, "{scribble:?}, again");
        write_header(&sandbox, a.header, &header);
        assert_eq!(lookup(&sandbox, a.header, 3), a.data + 24);
    }

    // Rewritten to describe another valid map: that map's geometry and
    // storage.
    write_header(&sandbox, a.header, &array(8, 2).header(a.data));
    assert_eq!(lookup(&sandbox, a.header, 3), 0, "past the new end");
    assert_eq!(lookup(&sandbox, a.header, 1), a.data + 8);
    write_header(&sandbox, a.header, &array(24, 10).header(a.data));
    assert_eq!(lookup(&sandbox, a.header, 3), a.data + 72, "new stride");
    write_header(&sandbox, a.header, &b.def.header(b.data));
    assert_eq!(lookup(&sandbox, a.header, 3), b.data + 24, "new storage");
    write_header(&sandbox, a.header, &header);
    assert_eq!(lookup(&sandbox, a.header, 3), a.data + 24);
}

#[test]
fn more_maps_than_the_cache_keeps_each_resolve_to_their_own() {
    if !kvm_available("more_maps_than_the_cache_keeps_each_resolve_to_their_own") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    // Different strides, so that a wrong definition shows in the address.
    let maps: Vec<TestMap> = (1..=7)
        .map(|i| arena.create(&sandbox, array(8 * i, 4)))
        .collect();
    for round in 0..3 {
        for (i, map) in maps.iter().enumerate() {
            let index = (round + i as u32) % 4;
            let stride = 8 * (i as u64 + 1);
            assert_eq!(
                lookup(&sandbox, map.header, index),
                map.data + u64::from(index) * stride,
                "map {i}, round {round}"
            );
        }
        // And one map over and over between the rounds.
        for index in 0..4 {
            assert_eq!(
                lookup(&sandbox, maps[2].header, index),
                maps[2].data + u64::from(index) * 24
            );
        }
    }
}
