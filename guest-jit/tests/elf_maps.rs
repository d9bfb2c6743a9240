//! Maps, kfuncs and global variables of the sample objects come out as
//! their C source writes them; map references link to the placed map
//! headers; malformed map definitions (made by patching the samples' BTF,
//! map sections and their relocations) are refused with messages that name
//! the map and what is wrong.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::error::Error as _;
use std::fs;

use guest_jit::elf::{
    DataKind, LinkedProgram, LoadError, MapInit, MapSpec, MapType, Object, Pinning, Placed,
    map_flags,
};
use guest_jit::insn::{Imm64, Op};
use guest_jit::interp::{Memory, NoHelpers, Region, RegionKind, RunOptions, run};

const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");

fn sample(name: &str) -> Vec<u8> {
    fs::read(format!("{PROGS}/{name}")).unwrap()
}

fn object(name: &str) -> Object {
    Object::parse(&sample(name)).unwrap()
}

fn data_at(i: usize) -> u64 {
    0x4000_0000 + (i as u64) * 0x10_0000
}

fn map_at(i: usize) -> u64 {
    0x5000_0000 + (i as u64) * 0x1000
}

fn placement(what: Placed) -> Option<u64> {
    Some(match what {
        Placed::Data(i) => data_at(i),
        Placed::Map(i) => map_at(i),
    })
}

fn link(object: &Object, name: &str) -> LinkedProgram {
    object
        .link(object.find_program(Some(name)).unwrap(), &placement)
        .unwrap()
}

/// The message and its causes, `: `-separated, as the CLI prints them.
fn chain(err: &LoadError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn parse_err(bytes: &[u8]) -> String {
    chain(&Object::parse(bytes).unwrap_err())
}

/// A map with the given geometry and nothing else.
fn spec(name: &str, t: MapType, key: u32, value: u32, max: u32) -> MapSpec {
    MapSpec::new(name, t, key, value, max)
}

/// `spec` without its key and value BTF types.
fn without_types(spec: &MapSpec) -> MapSpec {
    let mut spec = spec.clone();
    spec.btf_key_type_id = None;
    spec.btf_value_type_id = None;
    spec.inner = spec.inner.map(|inner| Box::new(without_types(&inner)));
    spec
}

fn with_values(mut s: MapSpec, values: &[(u32, MapInit)]) -> MapSpec {
    s.values = values.to_vec();
    s
}

fn program(name: &str) -> MapInit {
    MapInit::Program(name.into())
}

fn map(name: &str) -> MapInit {
    MapInit::Map(name.into())
}

#[test]
fn maps_come_out_as_written_in_c() {
    use MapType::*;
    // The definitions; their BTF types are checked in btf_format.rs.
    let maps = |name: &str| {
        object(name)
            .maps()
            .iter()
            .map(without_types)
            .collect::<Vec<_>>()
    };
    assert_eq!(maps("wordcount.bpf.o"), [spec("counts", Hash, 16, 8, 1024)]);
    assert_eq!(maps("lru.bpf.o"), [spec("recent", LruHash, 4, 8, 4)]);
    assert_eq!(
        maps("queue_stack.bpf.o"),
        [spec("fifo", Queue, 0, 4, 4), spec("lifo", Stack, 0, 4, 4)]
    );
    assert_eq!(
        maps("tailcall.bpf.o"),
        [with_values(
            spec("jump", ProgArray, 4, 4, 4),
            &[
                (0, program("second")),
                (1, program("third")),
                (2, program("forever"))
            ]
        )]
    );
    let inner = |outer: &str| Some(Box::new(spec(&format!("{outer}.inner"), Array, 4, 8, 4)));
    let mut by_index = with_values(
        spec("by_index", ArrayOfMaps, 4, 4, 2),
        &[(0, map("first")), (1, map("second"))],
    );
    by_index.inner = inner("by_index");
    let mut by_id = with_values(
        spec("by_id", HashOfMaps, 4, 4, 8),
        &[(7, map("second")), (9, map("first"))],
    );
    by_id.inner = inner("by_id");
    assert_eq!(
        maps("map_in_map.bpf.o"),
        [
            spec("first", Array, 4, 8, 4),
            spec("second", Array, 4, 8, 4),
            by_index,
            by_id
        ]
    );
    assert_eq!(
        maps("percpu.bpf.o"),
        [
            spec("hits", PercpuArray, 4, 8, 1),
            spec("per_key", PercpuHash, 4, 8, 16)
        ]
    );
    assert_eq!(
        maps("for_each.bpf.o"),
        [
            spec("squares", Array, 4, 8, 8),
            spec("scores", Hash, 4, 8, 16)
        ]
    );
    let mut counter = spec("counter", Array, 4, 16, 1);
    counter.spin_lock_offset = Some(0);
    assert_eq!(maps("spinlock.bpf.o"), [counter]);
    let mut totals = spec("totals", Hash, 4, 8, 32);
    totals.map_flags = map_flags::NO_PREALLOC;
    assert_eq!(
        maps("legacy_maps.bpf.o"),
        [totals, spec("calls", Array, 4, 8, 1)]
    );
    assert_eq!(maps("maps.bpf.o"), [spec("counters", Array, 4, 8, 16)]);
    for name in ["hello.bpf.o", "globals.bpf.o", "knobs.bpf.o", "loops.bpf.o"] {
        assert_eq!(maps(name), [], "{name}");
    }
    let tailcall = object("tailcall.bpf.o");
    assert_eq!(tailcall.find_map("jump"), Some(0));
    assert_eq!(tailcall.find_map("nope"), None);
    assert_eq!(tailcall.maps()[0].pinning, Pinning::None);
}

/// The maps an `ld_imm64` of each program loads, by name, in program
/// order.
fn maps_loaded(object: &Object, program: &str) -> Vec<String> {
    let linked = link(object, program);
    linked
        .program
        .iter()
        .filter_map(|(_, op)| match op {
            Op::LdImm64 {
                value: Imm64::Value(v),
                ..
            } => Some(*v),
            _ => None,
        })
        .map(|v| {
            let i = (0..object.maps().len())
                .find(|&i| map_at(i) == v)
                .unwrap_or_else(|| panic!("{program}: {v:#x} is not a map header"));
            object.maps()[i].name.clone()
        })
        .collect()
}

#[test]
fn map_references_load_the_placed_header() {
    let mim = object("map_in_map.bpf.o");
    assert_eq!(maps_loaded(&mim, "store_by_index"), ["by_index"]);
    assert_eq!(maps_loaded(&mim, "load_by_id"), ["by_id"]);
    assert_eq!(maps_loaded(&mim, "load_second"), ["second"]);
    let legacy = object("legacy_maps.bpf.o");
    let mut names = maps_loaded(&legacy, "legacy_add");
    names.sort();
    names.dedup();
    assert_eq!(names, ["calls", "totals"]);
    assert_eq!(maps_loaded(&legacy, "legacy_calls"), ["calls"]);
    let tailcall = object("tailcall.bpf.o");
    for prog in ["chain", "second", "third", "forever"] {
        assert_eq!(maps_loaded(&tailcall, prog), ["jump"], "{prog}");
    }
    let qs = object("queue_stack.bpf.o");
    let mut names = maps_loaded(&qs, "queue_stack");
    names.dedup();
    assert_eq!(names, ["fifo", "lifo"]);

    // Each map asked for once per reference, by its index.
    let asked = std::cell::RefCell::new(Vec::new());
    let spec = mim.find_program(Some("store_by_index")).unwrap();
    mim.link(spec, &|what| {
        asked.borrow_mut().push(what);
        placement(what)
    })
    .unwrap();
    assert_eq!(asked.into_inner(), [Placed::Map(2)]);
}

#[test]
fn kfunc_calls_index_their_names() {
    let loops = object("loops.bpf.o");
    let linked = link(&loops, "for_sum");
    assert_eq!(
        linked.kfuncs,
        [
            "bpf_iter_num_new",
            "bpf_iter_num_next",
            "bpf_iter_num_destroy"
        ]
    );
    let ids: Vec<i32> = linked
        .program
        .iter()
        .filter_map(|(_, op)| match op {
            Op::CallKfunc { btf_id, module: 0 } => Some(*btf_id),
            _ => None,
        })
        .collect();
    // new, then next in the loop, then destroy on the way out.
    assert_eq!(ids.first(), Some(&0));
    assert!(ids.contains(&1) && ids.contains(&2), "{ids:?}");
    assert!(ids.iter().all(|&id| (0..3).contains(&id)), "{ids:?}");
    // A program without kfuncs has none.
    assert!(link(&loops, "loop_sum").kfuncs.is_empty());
}

#[test]
fn extern_calls_must_be_declared_kfuncs() {
    // calls.bpf.o with `gcd` made undefined: a call to an extern function
    // that BTF does not declare `__ksym`.
    let mut bytes = sample("calls.bpf.o");
    let gcd = elf::symbol(&bytes, "gcd");
    elf::put(&mut bytes, gcd + 6, 2, 0);
    let object = Object::parse(&bytes).unwrap();
    let spec = object.find_program(Some("common_divisor")).unwrap();
    let err = object.link(spec, &placement).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Program `common_divisor` calls extern function `gcd` (relocation at offset 0x30 in section `syscall`), which BTF does not declare a kfunc (`extern ... __ksym`)"
    );
    // Without BTF (built without -g) the name is all there is: a kfunc.
    for name in [".BTF", ".BTF.ext"] {
        elf::rename_section(&mut bytes, name, "x");
    }
    let object = Object::parse(&bytes).unwrap();
    let linked = object.link(spec, &placement).unwrap();
    assert_eq!(linked.kfuncs, ["gcd"]);
    assert!(linked.program.iter().any(|(_, op)| *op
        == Op::CallKfunc {
            btf_id: 0,
            module: 0
        }));
}

#[test]
fn variables_are_listed_and_set_before_load() {
    let mut knobs = object("knobs.bpf.o");
    let listed: Vec<(&str, &str, u64, u64)> = knobs
        .variables()
        .iter()
        .map(|v| (v.name.as_str(), v.section.as_str(), v.offset, v.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("multiplier", ".rodata", 0, 4),
            ("bias", ".rodata", 8, 8),
            ("negate", ".rodata", 16, 1),
            ("runs", ".data.stats", 0, 8),
            ("last", ".bss", 0, 8),
        ]
    );
    for v in knobs.variables() {
        assert_eq!(knobs.data_sections()[v.data].name, v.section);
    }
    assert_eq!(run_scale(&knobs, 21), 42);
    knobs
        .set_variable("multiplier", &5u32.to_le_bytes())
        .unwrap();
    knobs.set_variable("bias", &(-3i64).to_le_bytes()).unwrap();
    assert_eq!(run_scale(&knobs, 21), 102);
    knobs.set_variable("negate", &[1]).unwrap();
    assert_eq!(run_scale(&knobs, 21) as i64, -102);
    assert_eq!(knobs.data_sections()[0].bytes[..4], 5u32.to_le_bytes());

    assert_eq!(
        knobs
            .set_variable("scale", &[0; 4])
            .unwrap_err()
            .to_string(),
        "No global variable is named `scale`; the object has: multiplier (.rodata, 4 bytes), bias (.rodata, 8 bytes), negate (.rodata, 1 bytes), runs (.data.stats, 8 bytes), last (.bss, 8 bytes)"
    );
    assert_eq!(
        knobs
            .set_variable("multiplier", &[1; 8])
            .unwrap_err()
            .to_string(),
        "Global variable `multiplier` is 4 bytes, but the value given is 8 bytes"
    );
    let mut hello = object("hello.bpf.o");
    assert_eq!(
        hello.set_variable("x", &[0]).unwrap_err().to_string(),
        "No global variable is named `x`; the object has: hello.____fmt (.rodata, 31 bytes)"
    );
    // The format string of bpf_printk is a function-scope static.
    assert_eq!(hello.variables()[0].name, "hello.____fmt");
}

/// Runs knobs' `scale` in the interpreter with `x` as its context.
fn run_scale(object: &Object, x: u64) -> u64 {
    let linked = link(object, "scale");
    let mut memory = Memory::with_context(x.to_le_bytes().to_vec());
    for (i, data) in object.data_sections().iter().enumerate() {
        let writable = data.kind != DataKind::ReadOnly;
        let region = Region::new(RegionKind::Other, data_at(i), data.bytes.clone(), writable);
        memory.map(region).unwrap();
    }
    let start = memory.region(RegionKind::Context).unwrap().start();
    let exit = run(
        &linked.program,
        &mut memory,
        &mut NoHelpers,
        [start, 0, 0, 0, 0],
        &RunOptions::default(),
    )
    .unwrap();
    exit.return_value
}

#[test]
fn data_sections_are_libbpf_internal_maps() {
    let knobs = object("knobs.bpf.o");
    let internal: Vec<(&str, MapType, u32, u32)> = knobs
        .data_sections()
        .iter()
        .map(|d| {
            let s = d.map_spec();
            assert_eq!((s.key_size, s.max_entries), (4, 1));
            assert_eq!(s.name, d.map_name());
            (d.map_name(), s.map_type, s.value_size, s.map_flags)
        })
        .collect();
    let rw = map_flags::MMAPABLE;
    let ro = map_flags::RDONLY_PROG | map_flags::MMAPABLE;
    assert_eq!(
        internal,
        [
            (".rodata", MapType::Array, 17, ro),
            (".data.stats", MapType::Array, 8, rw),
            (".bss", MapType::Array, 8, rw),
        ]
    );
    for d in knobs.data_sections() {
        d.map_spec().check().unwrap();
    }
}

/// Byte-level access to the samples: section headers, symbols, and BTF
/// types, to make malformed variants.
mod elf {
    pub fn get(bytes: &[u8], at: usize, len: usize) -> u64 {
        let mut word = [0u8; 8];
        word[..len].copy_from_slice(&bytes[at..at + len]);
        u64::from_le_bytes(word)
    }

    pub fn put(bytes: &mut [u8], at: usize, len: usize, value: u64) {
        bytes[at..at + len].copy_from_slice(&value.to_le_bytes()[..len]);
    }

    /// A section: its header's file offset, and its contents' offset and
    /// size.
    pub struct Shdr {
        pub at: usize,
        pub offset: usize,
        pub size: usize,
    }

    fn name_at(bytes: &[u8], at: usize) -> &[u8] {
        let end = at + bytes[at..].iter().position(|&b| b == 0).unwrap();
        &bytes[at..end]
    }

    fn shstrtab(bytes: &[u8]) -> usize {
        let shoff = get(bytes, 0x28, 8) as usize;
        let shstrndx = get(bytes, 0x3e, 2) as usize;
        get(bytes, shoff + shstrndx * 64 + 24, 8) as usize
    }

    pub fn section(bytes: &[u8], name: &str) -> Shdr {
        let shoff = get(bytes, 0x28, 8) as usize;
        let shnum = get(bytes, 0x3c, 2) as usize;
        let strtab = shstrtab(bytes);
        (0..shnum)
            .map(|i| shoff + i * 64)
            .find(|&at| name_at(bytes, strtab + get(bytes, at, 4) as usize) == name.as_bytes())
            .map(|at| Shdr {
                at,
                offset: get(bytes, at + 24, 8) as usize,
                size: get(bytes, at + 32, 8) as usize,
            })
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// Renames section `name` by overwriting its name in place with `new`
    /// (no longer than the old one).
    pub fn rename_section(bytes: &mut [u8], name: &str, new: &str) {
        let at = shstrtab(bytes) + get(bytes, section(bytes, name).at, 4) as usize;
        bytes[at..at + new.len()].copy_from_slice(new.as_bytes());
        bytes[at + new.len()] = 0;
    }

    /// The file offset of the symbol table entry named `name`.
    pub fn symbol(bytes: &[u8], name: &str) -> usize {
        let symtab = section(bytes, ".symtab");
        let strtab = section(bytes, ".strtab");
        (0..symtab.size / 24)
            .map(|i| symtab.offset + i * 24)
            .find(|&at| {
                name_at(bytes, strtab.offset + get(bytes, at, 4) as usize) == name.as_bytes()
            })
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }

    pub fn symbol_index(bytes: &[u8], name: &str) -> u64 {
        ((symbol(bytes, name) - section(bytes, ".symtab").offset) / 24) as u64
    }

    /// One BTF type: where its head is in the file, its kind, name and
    /// `size_or_type`, and where its kind data starts.
    #[derive(Clone, Debug)]
    pub struct Type {
        pub head: usize,
        pub kind: u32,
        pub name: String,
        pub vlen: usize,
        pub size_or_type: u32,
        pub data: usize,
    }

    /// Every type of the `.BTF` section, by id (index 0 is a stand-in for
    /// void).
    pub fn btf_types(bytes: &[u8]) -> Vec<Type> {
        let btf = section(bytes, ".BTF").offset;
        let hdr_len = get(bytes, btf + 4, 4) as usize;
        let types = btf + hdr_len + get(bytes, btf + 8, 4) as usize;
        let types_end = types + get(bytes, btf + 12, 4) as usize;
        let strings = btf + hdr_len + get(bytes, btf + 16, 4) as usize;
        let mut out = vec![Type {
            head: 0,
            kind: 0,
            name: String::new(),
            vlen: 0,
            size_or_type: 0,
            data: 0,
        }];
        let mut at = types;
        while at < types_end {
            let info = get(bytes, at + 4, 4) as u32;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let name = name_at(bytes, strings + get(bytes, at, 4) as usize);
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
            out.push(Type {
                head: at,
                kind,
                name: String::from_utf8_lossy(name).into_owned(),
                vlen,
                size_or_type: get(bytes, at + 8, 4) as u32,
                data: at + 12,
            });
            at += 12 + extra;
        }
        out
    }

    /// The string table offset of `s` in `.BTF`.
    pub fn btf_string(bytes: &[u8], s: &str) -> u64 {
        let btf = section(bytes, ".BTF").offset;
        let hdr_len = get(bytes, btf + 4, 4) as usize;
        let strings = btf + hdr_len + get(bytes, btf + 16, 4) as usize;
        let len = get(bytes, btf + 20, 4) as usize;
        let mut needle = s.as_bytes().to_vec();
        needle.push(0);
        let table = &bytes[strings..strings + len];
        (0..len)
            .find(|&i| (i == 0 || table[i - 1] == 0) && table[i..].starts_with(&needle))
            .unwrap() as u64
    }

    /// The file offset of member `member` (its 12-byte record) of the
    /// struct that defines BTF map `map`, and the types.
    pub fn map_member(bytes: &[u8], map: &str, member: &str) -> (usize, Vec<Type>) {
        let types = btf_types(bytes);
        let var = types
            .iter()
            .find(|t| t.kind == 14 && t.name == map)
            .unwrap();
        let def = &types[var.size_or_type as usize];
        let strings_of = |at: usize| get(bytes, at, 4);
        let want = btf_string(bytes, member);
        let record = (0..def.vlen)
            .map(|i| def.data + 12 * i)
            .find(|&at| strings_of(at) == want)
            .unwrap_or_else(|| panic!("{map} has no member {member}"));
        (record, types)
    }

    /// The file offset of the `nelems` that `__uint(member, n)` of map
    /// `map` writes.
    pub fn map_uint(bytes: &[u8], map: &str, member: &str) -> usize {
        let (record, types) = map_member(bytes, map, member);
        let ptr = &types[get(bytes, record + 4, 4) as usize];
        let array = &types[ptr.size_or_type as usize];
        array.data + 8
    }
}

/// `name` with the `__uint(member, n)` of map `map` changed to `value`:
/// the parse error.
fn with_uint(name: &str, map: &str, member: &str, value: u64) -> String {
    let mut bytes = sample(name);
    let at = elf::map_uint(&bytes, map, member);
    elf::put(&mut bytes, at, 4, value);
    parse_err(&bytes)
}

#[test]
fn unsupported_map_types_are_refused_by_name() {
    // Ring buffers are parsed; a hash retyped to one is checked against
    // the ring buffer's rules.
    assert_eq!(
        with_uint("lru.bpf.o", "recent", "type", 27),
        "Map `recent` in section `.maps` cannot be created: key_size 4 is invalid for RINGBUF maps: it must be 0 (no keys)"
    );
    // Arenas are parsed (arena_* samples); a hash retyped to one is
    // checked against the arena's rules.
    assert_eq!(
        with_uint("lru.bpf.o", "recent", "type", 33),
        "Map `recent` in section `.maps` cannot be created: key_size 4 is invalid for ARENA maps: it must be 0 (no keys)"
    );
    assert_eq!(
        with_uint("lru.bpf.o", "recent", "type", 11),
        "Map `recent` in section `.maps` cannot be created: LPM_TRIE maps (11) are not supported by bpfvisor"
    );
    assert_eq!(
        with_uint("lru.bpf.o", "recent", "type", 4242),
        "Map `recent` in section `.maps` cannot be created: Map type 4242 is not a kernel map type"
    );
    let mut bytes = sample("legacy_maps.bpf.o");
    let maps = elf::section(&bytes, "maps").offset;
    elf::put(&mut bytes, maps, 4, 18);
    assert_eq!(
        parse_err(&bytes),
        "Map `totals` in section `maps` cannot be created: SOCKHASH maps (18) are not supported by bpfvisor"
    );
}

#[test]
fn bad_sizes_and_flags_are_refused() {
    assert_eq!(
        with_uint("lru.bpf.o", "recent", "max_entries", 0),
        "Map `recent` in section `.maps` cannot be created: max_entries 0 is invalid for LRU_HASH maps: it must be at least 1"
    );
    assert_eq!(
        with_uint("tailcall.bpf.o", "jump", "key_size", 8),
        "Map `jump` in section `.maps` cannot be created: key_size 8 is invalid for PROG_ARRAY maps: array indices are 4 bytes"
    );
    assert_eq!(
        with_uint("spinlock.bpf.o", "counter", "type", 9),
        "Map `counter` in section `.maps` cannot be created: A struct bpf_spin_lock in the value needs a HASH or ARRAY map, not LRU_HASH"
    );
    // Legacy definitions: value_size 0, then map_flags an LRU cannot take.
    let mut bytes = sample("legacy_maps.bpf.o");
    let maps = elf::section(&bytes, "maps").offset;
    elf::put(&mut bytes, maps + 8, 4, 0);
    assert_eq!(
        parse_err(&bytes),
        "Map `totals` in section `maps` cannot be created: value_size 0 is invalid for HASH maps: it must be 1 to 4194304"
    );
    let mut bytes = sample("legacy_maps.bpf.o");
    elf::put(&mut bytes, maps, 4, 9);
    assert_eq!(
        parse_err(&bytes),
        "Map `totals` in section `maps` cannot be created: map_flags 0x1 sets 0x1, which LRU_HASH maps do not take"
    );
    // A legacy section that does not split into one definition per map.
    let mut bytes = sample("legacy_maps.bpf.o");
    let header = elf::section(&bytes, "maps").at;
    elf::put(&mut bytes, header + 32, 8, 0x27);
    assert_eq!(
        parse_err(&bytes),
        "Legacy map section `maps` (39 bytes) does not divide into 2 definitions, one per symbol"
    );
}

/// `name` with the type of member `member` of map `map` replaced by
/// `int`: the parse error.
fn with_member_int(name: &str, map: &str, member: &str) -> String {
    let mut bytes = sample(name);
    let (record, types) = elf::map_member(&bytes, map, member);
    let int = types
        .iter()
        .position(|t| t.kind == 1 && t.name == "int")
        .unwrap();
    elf::put(&mut bytes, record + 4, 4, int as u64);
    parse_err(&bytes)
}

/// `name` with member `member` of map `map` renamed `new` (a string the
/// BTF already has).
fn with_member_renamed(name: &str, map: &str, member: &str, new: &str) -> String {
    let mut bytes = sample(name);
    let (record, _) = elf::map_member(&bytes, map, member);
    let string = elf::btf_string(&bytes, new);
    elf::put(&mut bytes, record, 4, string);
    parse_err(&bytes)
}

#[test]
fn malformed_btf_definitions_are_refused() {
    let prefix = "Map `recent` in section `.maps` cannot be created: ";
    let lru = |e: String| e.strip_prefix(prefix).unwrap_or(&e).to_owned();
    assert_eq!(
        lru(with_member_int("lru.bpf.o", "recent", "max_entries")),
        "Field `max_entries` is INT; it should be a pointer to an array, as `__uint(name, value)` declares"
    );
    assert_eq!(
        lru(with_member_int("lru.bpf.o", "recent", "key")),
        "Field `key` is INT; it should be a pointer to the type, as `__type(name, type)` declares"
    );
    assert_eq!(
        lru(with_member_renamed(
            "lru.bpf.o",
            "recent",
            "max_entries",
            "pad"
        )),
        "The definition has an unknown field `pad`"
    );
    // `type` renamed `max_entries`: no type (the later max_entries wins).
    assert_eq!(
        lru(with_member_renamed(
            "lru.bpf.o",
            "recent",
            "type",
            "max_entries"
        )),
        "The definition has no `type`"
    );
    // lifo's `max_entries` renamed `value`: a 16-byte value type (`int
    // (*)[4]` read as `__type`) against `__uint(value_size, 4)`.
    assert_eq!(
        with_member_renamed("queue_stack.bpf.o", "lifo", "max_entries", "value"),
        "Map `lifo` in section `.maps` cannot be created: `value_size` is 4, but `__type(value, ...)` is 16 bytes"
    );
    assert_eq!(
        with_member_int("tailcall.bpf.o", "jump", "values"),
        "Map `jump` in section `.maps` cannot be created: Field `values` is INT; it should be an empty array of pointers, as `__array(values, type)` declares"
    );
    // values on a map that is neither a program array nor a map of maps.
    assert_eq!(
        with_uint("map_in_map.bpf.o", "by_index", "type", 2),
        "Map `by_index` in section `.maps` cannot be created: `values` is only for PROG_ARRAY, ARRAY_OF_MAPS and HASH_OF_MAPS maps, not ARRAY"
    );
    // A program array's values must be functions.
    assert_eq!(
        with_uint("map_in_map.bpf.o", "by_index", "type", 3),
        "Map `by_index` in section `.maps` cannot be created: Field `values` is STRUCT; it should be an array of pointers to functions, as `__array(values, int (void *))` declares"
    );
    // The definition itself replaced by an int.
    let mut bytes = sample("lru.bpf.o");
    let types = elf::btf_types(&bytes);
    let var = types
        .iter()
        .find(|t| t.kind == 14 && t.name == "recent")
        .unwrap();
    let int = types
        .iter()
        .position(|t| t.kind == 1 && t.name == "int")
        .unwrap();
    elf::put(&mut bytes, var.head + 8, 4, int as u64);
    assert_eq!(lru(parse_err(&bytes)), "The definition is INT, not STRUCT");
    // BTF-defined maps without BTF.
    let mut bytes = sample("lru.bpf.o");
    for name in [".BTF", ".BTF.ext"] {
        elf::rename_section(&mut bytes, name, "x");
    }
    assert_eq!(
        parse_err(&bytes),
        "Section `.maps` holds BTF-defined maps, but the object has no .BTF section (build with -g)"
    );
    // A map whose symbol is gone.
    let mut bytes = sample("lru.bpf.o");
    let recent = elf::symbol(&bytes, "recent");
    let other = elf::get(&bytes, elf::symbol(&bytes, "lru_fill"), 4);
    elf::put(&mut bytes, recent, 4, other);
    assert_eq!(
        lru(parse_err(&bytes)),
        "The map has no symbol in section `.maps`"
    );
}

/// tailcall.bpf.o with relocation `i` of `.rel.maps` changed: offset,
/// symbol and type as given (`None`: unchanged).
fn tailcall_with_init(
    i: usize,
    offset: Option<u64>,
    sym: Option<u64>,
    r_type: Option<u64>,
) -> String {
    let mut bytes = sample("tailcall.bpf.o");
    let rel = elf::section(&bytes, ".rel.maps").offset + 16 * i;
    if let Some(offset) = offset {
        elf::put(&mut bytes, rel, 8, offset);
    }
    if let Some(sym) = sym {
        elf::put(&mut bytes, rel + 12, 4, sym);
    }
    if let Some(r_type) = r_type {
        elf::put(&mut bytes, rel + 8, 4, r_type);
    }
    parse_err(&bytes)
}

#[test]
fn bad_initial_values_are_refused() {
    let bytes = sample("tailcall.bpf.o");
    let jump = elf::symbol_index(&bytes, "jump");
    let prefix = "Map `jump` in section `.maps` cannot be created: ";
    let jump_err = |e: String| e.strip_prefix(prefix).unwrap_or(&e).to_owned();
    assert_eq!(
        jump_err(tailcall_with_init(0, None, Some(jump), None)),
        "Initial value [0] `jump` is not a program (a global function in a section other than .text)"
    );
    assert_eq!(
        jump_err(tailcall_with_init(0, Some(0x8), None, None)),
        "Initial value at byte 8 of the definition is not a slot of `values`"
    );
    assert_eq!(
        jump_err(tailcall_with_init(1, Some(0x18), None, None)),
        "Initial value [0] is given twice"
    );
    assert_eq!(
        tailcall_with_init(0, Some(0x30), None, None),
        "Relocation at offset 0x30 in section `.maps` is not inside any map's definition"
    );
    assert_eq!(
        tailcall_with_init(0, None, None, Some(10)),
        "Relocation at offset 0x18 in section `.maps` has type 10; initial values take R_BPF_64_ABS64 (2)"
    );
    assert_eq!(
        tailcall_with_init(0, None, Some(999), None),
        "Relocation at offset 0x18 in section `.maps` names symbol 999, but the symbol table has 17"
    );
    // `second` in slot 1 of a map array shrunk to 1 entry. (clang shares
    // `int (*)[2]` with the inner maps' `type`, which become HASH maps.)
    assert_eq!(
        with_uint("map_in_map.bpf.o", "by_index", "max_entries", 1),
        "Map `by_index` in section `.maps` cannot be created: Initial value [1] is outside max_entries 1"
    );
    // A map of maps naming a program.
    let mut bytes = sample("map_in_map.bpf.o");
    let program = elf::symbol_index(&bytes, "load_second");
    let rel = elf::section(&bytes, ".rel.maps").offset;
    elf::put(&mut bytes, rel + 12, 4, program);
    assert_eq!(
        parse_err(&bytes),
        "Map `by_index` in section `.maps` cannot be created: Initial value [0] `load_second` is not a map defined in a `.maps` section"
    );
    // A hash of maps may use any key, but no more than max_entries of them.
    assert_eq!(
        with_uint("map_in_map.bpf.o", "by_id", "max_entries", 1),
        "Map `by_id` in section `.maps` cannot be created: The map has more initial values than its max_entries 1"
    );
}
