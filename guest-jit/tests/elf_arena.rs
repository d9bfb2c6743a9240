//! The arena samples (`images/progs/arena_*.bpf.o`): their ARENA maps and
//! `.addr_space.1` globals as the loader reads them, globals linked to the
//! user address the caller gives, and clang's arena code run in the
//! reference interpreter over an arena the test builds at a host-like
//! address (Note [Arena pointers]).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;

use guest_jit::elf::{
    ARENA_DATA_SECTION, DataKind, LinkedProgram, MapType, Object, Placed, arena_globals_offset,
    map_flags,
};
use guest_jit::insn::{CastKind, Imm64, Op};
use guest_jit::interp::{Memory, NoHelpers, Region, RegionKind, RunOptions, run};

const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");

/// Where the tests' arenas start: 4 GiB-aligned, as a host window is.
const ARENA_START: u64 = 0x7f12_0000_0000;
/// The arena's map "header" (what `&arena` loads for the kfuncs).
const ARENA_MAP_AT: u64 = 0x5000_0000;

fn object(name: &str) -> Object {
    let bytes = fs::read(format!("{PROGS}/{name}")).unwrap();
    Object::parse(&bytes).unwrap()
}

/// Places the arena's globals in its last pages, as libbpf 1.7 does, other
/// data at 0x4000_0000 + i MiB, and every map at ARENA_MAP_AT.
fn placement(object: &Object) -> impl Fn(Placed) -> Option<u64> + '_ {
    move |what| match what {
        Placed::Data(i) => {
            let data = &object.data_sections()[i];
            if data.kind == DataKind::Arena {
                let pages = object.maps()[object.arena()?].max_entries;
                Some(ARENA_START + arena_globals_offset(pages, data.bytes.len() as u64)?)
            } else {
                Some(0x4000_0000 + (i as u64) * 0x10_0000)
            }
        }
        Placed::Map(_) => Some(ARENA_MAP_AT),
    }
}

fn link(object: &Object, name: &str) -> LinkedProgram {
    let spec = object.find_program(Some(name)).unwrap();
    object.link(spec, &placement(object)).unwrap()
}

/// Every `ld_imm64` value of a linked program.
fn imm64s(linked: &LinkedProgram) -> Vec<u64> {
    (0..linked.program.len())
        .filter_map(|pc| match linked.program.op(pc) {
            Some(Op::LdImm64 {
                value: Imm64::Value(v),
                ..
            }) => Some(*v),
            _ => None,
        })
        .collect()
}

#[test]
fn arena_maps_and_globals_are_read() {
    let mmap = map_flags::MMAPABLE;
    // (sample, pages, flags, bytes of __arena globals)
    let samples = [
        ("arena_list.bpf.o", 8192, mmap, 16),
        (
            "arena_hash.bpf.o",
            4096,
            mmap,
            8 * 1024 + 8 + 4 + 4 + 8 * 1024,
        ),
        ("arena_churn.bpf.o", 256, mmap, 0),
        ("arena_fault.bpf.o", 64, mmap, 0),
        ("arena_segv.bpf.o", 16, mmap | map_flags::SEGV_ON_FAULT, 0),
        ("arena_atomics.bpf.o", 16, mmap, 48),
        ("arena_big.bpf.o", 1 << 20, mmap, 0),
    ];
    for (name, pages, flags, globals) in samples {
        let object = object(name);
        let arena = &object.maps()[object.arena().unwrap()];
        assert_eq!(arena.name, "arena", "{name}");
        assert_eq!(arena.map_type, MapType::Arena, "{name}");
        assert_eq!(
            (arena.key_size, arena.value_size, arena.max_entries),
            (0, 0, pages),
            "{name}"
        );
        assert_eq!((arena.map_flags, arena.map_extra), (flags, 0), "{name}");
        let sections: Vec<(&str, u64)> = object
            .data_sections()
            .iter()
            .filter(|d| d.kind == DataKind::Arena)
            .map(|d| (d.name.as_str(), d.bytes.len() as u64))
            .collect();
        let expected: &[(&str, u64)] = if globals == 0 {
            &[]
        } else {
            &[(ARENA_DATA_SECTION, globals)]
        };
        assert_eq!(sections, expected, "{name}");
    }
    // __arena globals are variables like any other, found by name.
    let hash = object("arena_hash.bpf.o");
    let offsets: Vec<(&str, u64, u64)> = hash
        .variables()
        .iter()
        .filter(|v| v.section == ARENA_DATA_SECTION)
        .map(|v| (v.name.as_str(), v.offset, v.size))
        .collect();
    assert_eq!(
        offsets,
        [
            ("hash_count", 0, 8),
            ("host_count", 8, 4),
            ("host_keys", 16, 8192),
            ("hash_buckets", 8208, 8192),
        ]
    );
    // Its spec, as the other sections' internal maps have one: an ARENA of
    // the pages it needs, which map storage refuses.
    let spec = hash.data_sections()[0].map_spec();
    assert_eq!((spec.map_type, spec.max_entries), (MapType::Arena, 5));
}

#[test]
fn arena_globals_link_to_their_user_address() {
    let list = object("arena_list.bpf.o");
    let globals = ARENA_START + 8191 * 4096;
    // list_head at 0 and list_len at 8 of .addr_space.1; chunk_next and
    // friends in .bss; the arena map for the kfunc's first argument.
    let build = imm64s(&link(&list, "list_build"));
    assert!(build.contains(&ARENA_MAP_AT), "{build:x?}");
    assert!(build.contains(&globals), "{build:x?}");
    assert!(build.contains(&(globals + 8)), "{build:x?}");
    let sum = link(&list, "list_sum");
    assert_eq!(imm64s(&sum), [globals, globals]);
    assert_eq!(sum.kfuncs, Vec::<String>::new());
    assert!(
        link(&list, "list_build")
            .kfuncs
            .contains(&"bpf_arena_alloc_pages".to_owned())
    );
    // clang casts every arena pointer before it dereferences it.
    let casts = (0..sum.program.len())
        .filter(|&pc| {
            matches!(
                sum.program.op(pc),
                Some(Op::AddrSpaceCast {
                    kind: CastKind::ToKern,
                    ..
                })
            )
        })
        .count();
    assert!(casts >= 2, "{casts}");
}

/// A list of `values` built at the start of an arena at [`ARENA_START`],
/// nodes `{ next, value }` of 16 bytes in front-to-back order, and the
/// arena's last page holding `list_head` (the first node) and `list_len`.
fn setup_list_arena(values: &[u64]) -> Memory {
    let mut nodes = vec![0u8; 4096];
    for (i, &value) in values.iter().enumerate() {
        let next = if i + 1 < values.len() {
            ARENA_START + 16 * (i as u64 + 1)
        } else {
            0
        };
        nodes[16 * i..16 * i + 8].copy_from_slice(&next.to_le_bytes());
        nodes[16 * i + 8..16 * i + 16].copy_from_slice(&value.to_le_bytes());
    }
    let mut globals = vec![0u8; 4096];
    globals[..8].copy_from_slice(&ARENA_START.to_le_bytes());
    globals[8..16].copy_from_slice(&(values.len() as u64).to_le_bytes());
    let mut memory = Memory::with_context(vec![0; 24]);
    for (start, bytes) in [(ARENA_START, nodes), (ARENA_START + 8191 * 4096, globals)] {
        memory
            .map(Region::new(RegionKind::Other, start, bytes, true))
            .unwrap();
    }
    memory
}

#[test]
fn interpreter_walks_an_arena_list_clang_built() {
    let list = object("arena_list.bpf.o");
    let sum = link(&list, "list_sum");
    let values = [5, 7, 11, 13];
    let walk = |arena_upper| {
        let mut memory = setup_list_arena(&values);
        let ctx = memory.region(RegionKind::Context).unwrap().start();
        let options = RunOptions {
            arena_upper,
            ..RunOptions::default()
        };
        let exit = run(
            &sum.program,
            &mut memory,
            &mut NoHelpers,
            [ctx, 0, 0, 0, 0],
            &options,
        );
        let ctx = memory.region(RegionKind::Context).unwrap().bytes().to_vec();
        (exit, ctx)
    };
    let (exit, ctx) = walk((ARENA_START >> 32) as u32);
    assert_eq!(exit.unwrap().return_value, 4);
    // args->sum, and args->head read back as the user address.
    assert_eq!(ctx[16..24], 36u64.to_le_bytes());
    assert_eq!(ctx[8..16], ARENA_START.to_le_bytes());
    // Without the window's upper half, cast_kern gives a low address the
    // interpreter has no memory at: the run stops instead of reading the
    // arena.
    let (exit, _) = walk(0);
    assert!(exit.is_err(), "{exit:?}");
}

/// arena_hash's bucket of `key` (its header comment's hash).
fn hash_bucket(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 10)
}

#[test]
fn interpreter_looks_up_a_host_built_arena_hash() {
    let hash = object("arena_hash.bpf.o");
    let lookup = link(&hash, "hash_lookup");
    // Globals (16 400 bytes, 5 pages) at the end of the 4096-page arena;
    // hash_buckets at 8208 in them. Entries { next, key, value } on page 0,
    // two keys chained in one bucket when they collide.
    let globals_at = ARENA_START + arena_globals_offset(4096, 16400).unwrap();
    let mut globals = vec![0u8; 5 * 4096];
    let mut entries = vec![0u8; 4096];
    let keys = [3u64, 1000, 77, 4321];
    for (i, &key) in keys.iter().enumerate() {
        let at = ARENA_START + 24 * i as u64;
        let slot = 8208 + 8 * hash_bucket(key) as usize;
        let next: [u8; 8] = globals[slot..slot + 8].try_into().unwrap();
        entries[24 * i..24 * i + 8].copy_from_slice(&next);
        entries[24 * i + 8..24 * i + 16].copy_from_slice(&key.to_le_bytes());
        entries[24 * i + 16..24 * i + 24].copy_from_slice(&(key * 3 + 1).to_le_bytes());
        globals[slot..slot + 8].copy_from_slice(&at.to_le_bytes());
    }
    let find = |key: u64| {
        let mut memory = Memory::with_context([[0; 8], key.to_le_bytes(), [0; 8]].concat());
        for (start, bytes) in [
            (ARENA_START, entries.clone()),
            (globals_at, globals.clone()),
        ] {
            memory
                .map(Region::new(RegionKind::Other, start, bytes, true))
                .unwrap();
        }
        let ctx = memory.region(RegionKind::Context).unwrap().start();
        let options = RunOptions {
            arena_upper: (ARENA_START >> 32) as u32,
            ..RunOptions::default()
        };
        let exit = run(
            &lookup.program,
            &mut memory,
            &mut NoHelpers,
            [ctx, 0, 0, 0, 0],
            &options,
        )
        .unwrap();
        let ctx = memory.region(RegionKind::Context).unwrap().bytes().to_vec();
        let value = u64::from_le_bytes(ctx[16..24].try_into().unwrap());
        (exit.return_value, value)
    };
    for key in keys {
        assert_eq!(find(key), (1, key * 3 + 1), "{key}");
    }
    assert_eq!(find(5001), (0, 0));
    assert_eq!(find(0), (0, 0));
}
