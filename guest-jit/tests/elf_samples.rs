//! The sample objects in `images/progs`: each parses, lists its programs,
//! links (unless it uses maps) and verifies; linked programs run in the
//! reference interpreter with the results their C source promises; errors
//! name the C source line.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;
use std::path::PathBuf;

use guest_jit::elf::{DataKind, LinkedProgram, Object, Placed};
use guest_jit::insn::{Imm64, Op, Reg};
use guest_jit::interp::{Memory, NoHelpers, Region, RegionKind, RunOptions, run};
use guest_jit::verify::{VerifyContext, verify};

const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");

/// Where the tests place data section `i`.
fn data_at(i: usize) -> u64 {
    0x4000_0000 + (i as u64) * 0x10_0000
}

/// Where the tests place map `i`'s header.
fn map_at(i: usize) -> u64 {
    0x5000_0000 + (i as u64) * 0x1000
}

fn placement(what: Placed) -> Option<u64> {
    Some(match what {
        Placed::Data(i) => data_at(i),
        Placed::Map(i) => map_at(i),
    })
}

fn sample_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(PROGS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
        .collect();
    paths.sort();
    paths
}

fn object(name: &str) -> Object {
    let bytes = fs::read(format!("{PROGS}/{name}")).unwrap();
    Object::parse(&bytes).unwrap()
}

fn link(object: &Object, name: &str) -> LinkedProgram {
    let spec = object.find_program(Some(name)).unwrap();
    object.link(spec, &placement).unwrap()
}

fn verify_all_helpers(linked: &LinkedProgram) -> guest_jit::verify::VerifyInfo {
    let ctx = VerifyContext {
        helper_known: &|_| true,
        kfunc_known: &|_| true,
        kfuncs: &linked.kfuncs,
        lines: Some(&linked.lines),
        functions: &linked.functions,
    };
    verify(&linked.program, &ctx).unwrap()
}

/// Runs a linked program in the interpreter with `ctx` as its context and
/// data sections mapped where [`placement`] put them.
fn run_with(object: &Object, linked: &LinkedProgram, ctx: Vec<u8>) -> (u64, Vec<u8>) {
    let mut memory = Memory::with_context(ctx);
    for (i, data) in object.data_sections().iter().enumerate() {
        let writable = data.kind != DataKind::ReadOnly;
        memory
            .map(Region::new(
                RegionKind::Other,
                data_at(i),
                data.bytes.clone(),
                writable,
            ))
            .unwrap();
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
    let ctx = memory.region(RegionKind::Context).unwrap().bytes().to_vec();
    (exit.return_value, ctx)
}

#[test]
fn every_sample_parses_links_and_verifies() {
    let paths = sample_paths();
    assert!(paths.len() >= 7, "samples: {paths:?}");
    for path in paths {
        let bytes = fs::read(&path).unwrap();
        let object = Object::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!object.programs().is_empty(), "{}", path.display());
        for spec in object.programs() {
            let linked = object
                .link(spec, &placement)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), spec.name));
            assert_eq!(linked.name, spec.name);
            assert_eq!(linked.functions[0].start, 0);
            assert_eq!(linked.functions[0].name, spec.name);
            assert!(!linked.lines.is_empty(), "{}: no line info", spec.name);
            if !linked.kfuncs.is_empty() {
                // The verifier refuses kfunc calls until it learns which
                // exist (kfunc_known, issue 4).
                continue;
            }
            let info = verify_all_helpers(&linked);
            let starts: Vec<usize> = info.functions.iter().map(|f| f.start).collect();
            let linked_starts: Vec<usize> = linked.functions.iter().map(|f| f.start).collect();
            let mut sorted = linked_starts.clone();
            sorted.sort_unstable();
            assert_eq!(starts, sorted, "{}", spec.name);
        }
    }
}

#[test]
fn programs_are_listed_by_function_and_section() {
    let calls = object("calls.bpf.o");
    let listed: Vec<(&str, &str)> = calls
        .programs()
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("pythagoras", "syscall"),
            ("common_divisor", "syscall"),
            ("both", "socket")
        ]
    );
    assert_eq!(calls.find_program(Some("socket")).unwrap().name, "both");
    assert_eq!(
        calls.find_program(Some("gcd")).unwrap_err().to_string(),
        "No program or section is named `gcd`; the object has: pythagoras (syscall), common_divisor (syscall), both (socket)"
    );
    assert_eq!(
        calls.find_program(Some("syscall")).unwrap_err().to_string(),
        "Section `syscall` has 2 programs; choose one by function name: pythagoras (syscall), common_divisor (syscall)"
    );
    assert_eq!(
        calls.find_program(None).unwrap_err().to_string(),
        "The object has 3 programs; choose one by function name: pythagoras (syscall), common_divisor (syscall), both (socket)"
    );
    let hello = object("hello.bpf.o");
    assert_eq!(hello.find_program(None).unwrap().name, "hello");
    assert_eq!(hello.find_program(Some("syscall")).unwrap().name, "hello");
}

#[test]
fn subprograms_are_linked_once_each_and_run() {
    let calls = object("calls.bpf.o");
    let linked = link(&calls, "both");
    let names: Vec<&str> = linked.functions.iter().map(|f| f.name.as_str()).collect();
    // Breadth first from the entry; square is called twice, copied once.
    assert_eq!(names, ["both", "sum_of_squares", "gcd", "square"]);
    let info = verify_all_helpers(&linked);
    assert_eq!(info.max_frames, 3);

    let pair = |a: u64, b: u64| [a.to_le_bytes(), b.to_le_bytes()].concat();
    let (pythagoras, gcd) = (link(&calls, "pythagoras"), link(&calls, "common_divisor"));
    assert_eq!(run_with(&calls, &pythagoras, pair(3, 4)).0, 25);
    assert_eq!(run_with(&calls, &gcd, pair(84, 36)).0, 12);
    assert_eq!(run_with(&calls, &linked, pair(6, 8)).0, 100 + 2);
}

#[test]
fn global_data_is_placed_and_addressed() {
    let globals = object("globals.bpf.o");
    let sections: Vec<(&str, DataKind, usize)> = globals
        .data_sections()
        .iter()
        .map(|d| (d.name.as_str(), d.kind, d.bytes.len()))
        .collect();
    assert_eq!(
        sections,
        [
            (".rodata", DataKind::ReadOnly, 26),
            (".data", DataKind::ReadWrite, 8),
            (".data.table", DataKind::ReadWrite, 16),
            (".rodata.weights", DataKind::ReadOnly, 16),
            (".bss", DataKind::Zeroed, 8),
        ]
    );
    let data = &globals.data_sections()[1];
    assert_eq!(data.bytes, 100u64.to_le_bytes(), "`calls = 100`");
    assert_eq!(data.align, 8);
    let table = &globals.data_sections()[2];
    assert_eq!(table.bytes[4..8], 2u32.to_le_bytes());

    let linked = link(&globals, "globals");
    let mut loads: Vec<u64> = linked
        .program
        .iter()
        .filter_map(|(_, op)| match op {
            Op::LdImm64 {
                value: Imm64::Value(v),
                ..
            } => Some(*v),
            _ => None,
        })
        .collect();
    loads.sort_unstable();
    // scale (.rodata+0), the format string (.rodata+4, a section symbol
    // with the offset in imm), calls, table and total.
    assert_eq!(
        loads,
        [
            data_at(0),
            data_at(0) + 4,
            data_at(1),
            data_at(2),
            data_at(4)
        ]
    );
    assert!(linked.percpu_loads.is_empty());
    let format = &globals.data_sections()[0].bytes[4..];
    assert!(format.starts_with(b"calls=%llu total=%llu"), "{format:?}");
}

#[test]
fn bss_is_zeroed_and_the_sieve_counts_primes() {
    let compute = object("compute.bpf.o");
    let bss = &compute.data_sections()[0];
    assert_eq!((bss.name.as_str(), bss.kind), (".bss", DataKind::Zeroed));
    assert_eq!(bss.bytes, vec![0; 1 << 16]);
    let sieve = link(&compute, "sieve");
    let args = [100u32.to_le_bytes(), [0; 4]].concat();
    let (count, ctx) = run_with(&compute, &sieve, args);
    assert_eq!(count, 25, "primes below 100");
    assert_eq!(ctx[4..8], 25u32.to_le_bytes());
}

#[test]
fn null_read_names_its_source_line() {
    let null_read = object("null_read.bpf.o");
    let linked = link(&null_read, "null_read");
    let (slot, _) = linked
        .program
        .iter()
        .find(|(_, op)| matches!(op, Op::Load { .. }))
        .unwrap();
    let line = linked.lines.get(slot).unwrap();
    assert_eq!(line.file, "null_read.bpf.c");
    assert_eq!(line.line, 10);
    assert_eq!(
        line.text,
        "\treturn *p; /* NULL read: the trap names this line */"
    );
    assert_eq!(line.to_string(), "null_read.bpf.c:10:9");
}

#[test]
fn function_addresses_point_at_their_functions() {
    let callbacks = object("callbacks.bpf.o");
    let linked = link(&callbacks, "loops");
    let names: Vec<(&str, usize)> = linked
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start))
        .collect();
    assert_eq!(names, [("loops", 0), ("add_index", 18), ("add_twice", 24)]);
    let targets: Vec<usize> = linked
        .program
        .iter()
        .filter_map(|(pc, op)| match op {
            Op::LdImm64 {
                value: Imm64::Func { off },
                ..
            } => Some((pc as i64 + 1 + i64::from(*off)) as usize),
            _ => None,
        })
        .collect();
    // The static callback is relocated against `.text` + 0x38, the global
    // one against its own symbol.
    assert_eq!(targets, [18, 24]);
    verify_all_helpers(&linked);

    // With bpfvisor's helpers, the verifier names the one missing.
    let ctx = VerifyContext {
        helper_known: &|id| id == 6,
        kfunc_known: &|_| true,
        kfuncs: &linked.kfuncs,
        lines: Some(&linked.lines),
        functions: &linked.functions,
    };
    let err = verify(&linked.program, &ctx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: helper 181 (bpf_loop) is not available in bpfvisor\n  \
         9: call 181\n  \
         --> callbacks.bpf.c:29:2\n   \
         |  bpf_loop(*count, add_index, &sum, 0);"
    );
}

#[test]
fn map_references_load_the_map_header_address() {
    let maps = object("maps.bpf.o");
    let spec = maps.find_program(None).unwrap();
    let linked = maps.link(spec, &placement).unwrap();
    assert_eq!(
        linked.program.op(5),
        Some(&Op::LdImm64 {
            dst: Reg::R1,
            value: Imm64::Value(map_at(0)),
        })
    );
    // Not placed: refused, naming the map.
    let err = maps
        .link(spec, &|what| match what {
            Placed::Data(i) => Some(data_at(i)),
            Placed::Map(_) => None,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Program `count` uses map `counters` (relocation at offset 0x28 in section `syscall`), which was not placed in guest memory"
    );
    assert!(
        maps.data_sections().iter().all(|d| d.name != ".maps"),
        "maps are not data"
    );
}

#[test]
fn a_program_from_another_object_is_refused() {
    let calls = object("calls.bpf.o");
    let hello = object("hello.bpf.o");
    let spec = calls.find_program(Some("both")).unwrap();
    let err = hello.link(spec, &placement).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Program `both` is not one of this object's programs"
    );
}
