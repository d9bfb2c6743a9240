//! Malformed objects are refused with a clear error, never a panic:
//! truncated files, wrong headers, bad relocations, bad symbols, corrupted
//! BTF, and random mutations of the sample objects; and a `.percpu`
//! section, made by renaming one in a sample.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::error::Error as _;
use std::fs;

use guest_jit::elf::{DataKind, LoadError, Object, Placed};
use guest_jit::insn::{Imm64, Op, Reg};
use guest_jit::verify::{VerifyContext, verify};
use proptest::prelude::*;

const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");
const SAMPLES: &[&str] = &[
    "callbacks.bpf.o",
    "calls.bpf.o",
    "compute.bpf.o",
    "globals.bpf.o",
    "hello.bpf.o",
    "maps.bpf.o",
    "null_read.bpf.o",
    // Maps of every kind, initial values, legacy definitions, variables.
    "tailcall.bpf.o",
    "map_in_map.bpf.o",
    "legacy_maps.bpf.o",
    "spinlock.bpf.o",
    "queue_stack.bpf.o",
    "knobs.bpf.o",
    // kfunc calls.
    "loops.bpf.o",
];

fn sample(name: &str) -> Vec<u8> {
    fs::read(format!("{PROGS}/{name}")).unwrap()
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

/// Places data section `i` at `0x1000_0000 * (i + 1)`, map `i` at
/// `0x8000_0000 + 0x1000 * i`.
fn place(what: Placed) -> Option<u64> {
    Some(match what {
        Placed::Data(i) => 0x1000_0000 * (i as u64 + 1),
        Placed::Map(i) => 0x8000_0000 + 0x1000 * i as u64,
    })
}

/// Parses, links every program and verifies it, checks every map and
/// sets every variable (to its size and to a wrong size); errors are fine,
/// panics are not.
fn load_everything(bytes: &[u8]) {
    let Ok(mut object) = Object::parse(bytes) else {
        return;
    };
    for map in object.maps() {
        let _ = map.check();
        let _ = object.find_map(&map.name);
    }
    for data in object.data_sections() {
        let _ = data.map_spec().check();
    }
    let variables = object.variables().to_vec();
    for v in &variables {
        let size = usize::try_from(v.size).unwrap_or(0).min(1 << 20);
        let _ = object.set_variable(&v.name, &vec![0xa5; size]);
        let _ = object.set_variable(&v.name, &vec![0; size + 1]);
    }
    for spec in object.programs() {
        if let Ok(linked) = object.link(spec, &place) {
            let ctx = VerifyContext {
                helper_known: &|_| true,
                kfunc_known: &|_| true,
                kfuncs: &linked.kfuncs,
                lines: Some(&linked.lines),
                functions: &linked.functions,
            };
            let _ = verify(&linked.program, &ctx);
        }
    }
}

/// Little-endian field access on a byte buffer.
fn get(bytes: &[u8], at: usize, len: usize) -> u64 {
    let mut word = [0u8; 8];
    word[..len].copy_from_slice(&bytes[at..at + len]);
    u64::from_le_bytes(word)
}

fn put(bytes: &mut [u8], at: usize, len: usize, value: u64) {
    bytes[at..at + len].copy_from_slice(&value.to_le_bytes()[..len]);
}

/// A section header of an ELF64 file: where it is and its fields.
struct Shdr {
    /// File offset of the header itself.
    at: usize,
    offset: usize,
    size: usize,
}

const SH_TYPE: usize = 4;
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;
const SH_LINK: usize = 40;
const SH_INFO: usize = 44;

/// The section header of the section named `name`.
fn section(bytes: &[u8], name: &str) -> Shdr {
    find_section(bytes, name).unwrap_or_else(|| panic!("no section {name}"))
}

fn find_section(bytes: &[u8], name: &str) -> Option<Shdr> {
    let shoff = get(bytes, 0x28, 8) as usize;
    let shnum = get(bytes, 0x3c, 2) as usize;
    let shstrndx = get(bytes, 0x3e, 2) as usize;
    let header = |i: usize| shoff + i * 64;
    let strtab = get(bytes, header(shstrndx) + SH_OFFSET, 8) as usize;
    for i in 0..shnum {
        let at = header(i);
        let name_at = strtab + get(bytes, at, 4) as usize;
        let end = name_at + bytes[name_at..].iter().position(|&b| b == 0).unwrap();
        if &bytes[name_at..end] == name.as_bytes() {
            return Some(Shdr {
                at,
                offset: get(bytes, at + SH_OFFSET, 8) as usize,
                size: get(bytes, at + SH_SIZE, 8) as usize,
            });
        }
    }
    None
}

fn section_index(bytes: &[u8], name: &str) -> u64 {
    let shoff = get(bytes, 0x28, 8) as usize;
    ((section(bytes, name).at - shoff) / 64) as u64
}

/// The symbol table entry of the symbol named `name`: its file offset.
fn symbol(bytes: &[u8], name: &str) -> usize {
    let symtab = section(bytes, ".symtab");
    let strtab = section(bytes, ".strtab");
    (0..symtab.size / 24)
        .map(|i| symtab.offset + i * 24)
        .find(|&at| {
            let name_at = strtab.offset + get(bytes, at, 4) as usize;
            bytes[name_at..].starts_with(name.as_bytes()) && bytes[name_at + name.len()] == 0
        })
        .unwrap()
}

#[test]
fn truncated_objects_are_refused_at_every_length() {
    for name in SAMPLES {
        let bytes = sample(name);
        for len in 0..bytes.len() {
            assert!(Object::parse(&bytes[..len]).is_err(), "{name} cut to {len}");
        }
        Object::parse(&bytes).unwrap();
    }
    let hello = sample("hello.bpf.o");
    assert_eq!(
        parse_err(&hello[..0]),
        "Not an ELF file (the first bytes are not \\x7fELF)"
    );
    assert_eq!(
        parse_err(&hello[..10]),
        "ELF file of 10 bytes is shorter than the 64-byte ELF header"
    );
    assert_eq!(
        parse_err(&hello[..1000]),
        "Malformed ELF section table: Invalid ELF section header offset/size/alignment"
    );
}

#[test]
fn misaligned_buffers_parse() {
    let hello = sample("hello.bpf.o");
    let mut shifted = vec![0u8];
    shifted.extend(&hello);
    let object = Object::parse(&shifted[1..]).unwrap();
    assert_eq!(object.programs()[0].name, "hello");
}

#[test]
fn wrong_headers_are_named() {
    let hello = sample("hello.bpf.o");
    let with = |at: usize, len: usize, value: u64| {
        let mut bytes = hello.clone();
        put(&mut bytes, at, len, value);
        parse_err(&bytes)
    };
    assert_eq!(
        with(4, 1, 1),
        "ELF class 1 is not 64-bit (BPF objects are ELFCLASS64)"
    );
    assert_eq!(
        with(5, 1, 2),
        "ELF data encoding 2 is not little-endian (build with --target=bpfel or bpf)"
    );
    assert_eq!(
        with(16, 2, 2),
        "ELF type 2 is not a relocatable object (ET_REL, what clang -c writes)"
    );
    assert_eq!(with(18, 2, 62), "ELF machine 62 is not BPF (EM_BPF, 247)");
    assert_eq!(
        with(0x28, 8, 1 << 40),
        "Malformed ELF section table: Invalid ELF section header offset/size/alignment"
    );
}

/// hello.bpf.o with its one relocation (`ld_imm64` of `.rodata` at offset
/// 0 of `syscall`) changed.
fn hello_with_reloc(offset: u64, sym: u64, r_type: u64) -> String {
    let mut bytes = sample("hello.bpf.o");
    let rel = section(&bytes, ".relsyscall");
    put(&mut bytes, rel.offset, 8, offset);
    put(&mut bytes, rel.offset + 8, 8, (sym << 32) | r_type);
    parse_err(&bytes)
}

#[test]
fn bad_relocations_are_refused() {
    let hello = sample("hello.bpf.o");
    let rel = section(&hello, ".relsyscall");
    let sym = get(&hello, rel.offset + 12, 4);
    assert_eq!(
        hello_with_reloc(0, sym, 3),
        "Relocation at offset 0x0 in section `syscall` has type 3; code takes only R_BPF_64_64 (1) and R_BPF_64_32 (10)"
    );
    assert_eq!(
        hello_with_reloc(4, sym, 1),
        "Relocation at offset 0x4 in section `syscall` is not at the start of an instruction (not a multiple of 8)"
    );
    assert_eq!(
        hello_with_reloc(8, sym, 1),
        "Relocation at offset 0x8 in section `syscall` is not at the start of an instruction (the second half of the ld_imm64 at instruction 0)"
    );
    assert_eq!(
        hello_with_reloc(0x1000, sym, 1),
        "Relocation at offset 0x1000 in section `syscall` is not at the start of an instruction (past the end of the section, 7 instructions)"
    );
    assert_eq!(
        hello_with_reloc(0, 999, 1),
        "Relocation at offset 0x0 in section `syscall` names symbol 999, but the symbol table has 14"
    );
    assert_eq!(
        hello_with_reloc(0, 0, 1),
        "Relocation at offset 0x0 in section `syscall` names symbol 0, but the symbol table has 14"
    );
    assert_eq!(
        hello_with_reloc(0x10, sym, 1),
        "Relocation at offset 0x10 in section `syscall` is R_BPF_64_64, which applies to an ld_imm64 (0x18), but the instruction there has opcode 0xb4"
    );
    assert_eq!(
        hello_with_reloc(0, sym, 10),
        "Relocation at offset 0x0 in section `syscall` is R_BPF_64_32, which applies to a call (0x85), but the instruction there has opcode 0x18"
    );

    // Two relocations of one instruction.
    let mut bytes = sample("calls.bpf.o");
    let rel = section(&bytes, ".relsyscall");
    let first = get(&bytes, rel.offset, 8);
    put(&mut bytes, rel.offset + 16, 8, first);
    assert_eq!(
        parse_err(&bytes),
        "Two relocations apply to the instruction at offset 0x10 in section `syscall`"
    );

    // RELA, and a relocation section that does not use the symbol table.
    let mut bytes = hello.clone();
    put(&mut bytes, rel_header(&hello) + SH_TYPE, 4, 4);
    assert_eq!(
        parse_err(&bytes),
        "Relocation section `.relsyscall` for code section `syscall` is SHT_RELA; BPF objects use SHT_REL"
    );
    let mut bytes = hello.clone();
    put(&mut bytes, rel_header(&hello) + SH_LINK, 4, 5);
    assert_eq!(
        parse_err(&bytes),
        "Relocation section `.relsyscall` for code section `syscall` links section 5, not the symbol table"
    );
    // A relocation table that runs off the file.
    let mut bytes = hello.clone();
    put(&mut bytes, rel_header(&hello) + SH_SIZE, 8, 1 << 32);
    assert_eq!(
        parse_err(&bytes),
        "Cannot read the contents of section `.relsyscall`: Invalid ELF relocation section offset or size"
    );
}

fn rel_header(bytes: &[u8]) -> usize {
    section(bytes, ".relsyscall").at
}

#[test]
fn bad_symbols_and_sections_are_refused() {
    let hello = sample("hello.bpf.o");
    let func = symbol(&hello, "hello");
    let mut bytes = hello.clone();
    put(&mut bytes, func + 8, 8, 0x1000);
    assert_eq!(
        parse_err(&bytes),
        "Function `hello` at offset 0x1000 (size 0x38) is not whole instructions inside section `syscall` (0x38 bytes)"
    );
    let mut bytes = hello.clone();
    put(&mut bytes, func + 8, 8, 8);
    assert_eq!(
        parse_err(&bytes),
        "Function `hello` at offset 0x8 (size 0x38) is not whole instructions inside section `syscall` (0x38 bytes)"
    );
    let mut bytes = hello.clone();
    put(&mut bytes, func + 6, 2, 200);
    assert_eq!(
        parse_err(&bytes),
        "Symbol `hello` is in section 200, but the object has 26 sections"
    );
    let mut bytes = hello.clone();
    put(&mut bytes, section(&hello, "syscall").at + SH_SIZE, 8, 0x37);
    assert_eq!(
        parse_err(&bytes),
        "Code section `syscall` is 55 bytes, not a whole number of 8-byte instructions"
    );
    let mut bytes = hello.clone();
    put(
        &mut bytes,
        section(&hello, ".rodata").at + SH_OFFSET,
        8,
        1 << 40,
    );
    assert_eq!(
        parse_err(&bytes),
        "Cannot read the contents of section `.rodata`: Invalid ELF section size or offset"
    );
    // A .bss the size of the address space.
    let mut bytes = sample("compute.bpf.o");
    let bss = section(&bytes, ".bss").at;
    put(&mut bytes, bss + SH_SIZE, 8, u64::MAX);
    assert_eq!(
        parse_err(&bytes),
        "Global data section `.bss` brings the data to 18446744073709551615 bytes; at most 67108864 are allowed"
    );
}

#[test]
fn pointers_in_data_are_refused() {
    // Point .rel.BTF (relocations of BTF, which clang writes) at .rodata,
    // as if .rodata held a pointer.
    let mut bytes = sample("hello.bpf.o");
    let rodata = section_index(&bytes, ".rodata");
    let rel_btf = section(&bytes, ".rel.BTF").at;
    put(&mut bytes, rel_btf + SH_INFO, 4, rodata);
    assert_eq!(
        parse_err(&bytes),
        "Data section `.rodata` holds a pointer to `.rodata` (relocation at offset 0xe0); pointers in initialised global data are not supported"
    );
}

#[test]
fn corrupted_btf_is_refused() {
    let hello = sample("hello.bpf.o");
    let btf = section(&hello, ".BTF");
    let ext = section(&hello, ".BTF.ext");
    let with = |at: usize, len: usize, value: u64| {
        let mut bytes = hello.clone();
        put(&mut bytes, at, len, value);
        parse_err(&bytes)
    };
    assert_eq!(
        with(btf.offset, 2, 0x9feb),
        "Cannot parse the object's BTF: .BTF has magic 0x9feb, not 0xeb9f (little-endian BTF)"
    );
    assert_eq!(
        with(btf.offset + 4, 4, 1000),
        "Cannot parse the object's BTF: .BTF header at offset 0 with length 1000 does not fit in the section (425 bytes)"
    );
    assert_eq!(
        with(btf.offset + 12, 4, 10_000),
        "Cannot parse the object's BTF: .BTF type section at offset 24 with length 10000 does not fit in the section (425 bytes)"
    );
    assert_eq!(
        with(btf.offset + 20, 4, u32::MAX.into()),
        "Cannot parse the object's BTF: .BTF string table at offset 256 with length 4294967295 does not fit in the section (425 bytes)"
    );
    assert_eq!(
        with(btf.offset + 31, 1, 0x1f),
        "Cannot parse the object's BTF: BTF type 1 has unknown kind 31"
    );
    assert_eq!(
        with(ext.offset + 2, 1, 2),
        "Cannot parse the object's BTF: .BTF.ext has version 2; only version 1 exists"
    );
    assert_eq!(
        with(ext.offset + 20, 4, 0x1000),
        "Cannot parse the object's BTF: .BTF.ext line_info at offset 52 with length 4096 does not fit in the section (96 bytes)"
    );
    // line_info: record size, then the `syscall` block's count.
    let line_info = ext.offset + 32 + get(&hello, ext.offset + 16, 4) as usize;
    assert_eq!(
        with(line_info, 4, 4),
        "Cannot parse the object's BTF: .BTF.ext line_info record size 4 is below the minimum 16 or not a multiple of 4"
    );
    assert_eq!(
        with(line_info + 8, 4, 0x1000_0000),
        "Cannot parse the object's BTF: .BTF.ext line_info block for section `syscall` claims 268435456 records of 16 bytes, but 32 bytes remain"
    );
    // The first record's instruction offset: unaligned, then past the end.
    assert_eq!(
        with(line_info + 12, 4, 3),
        "Cannot parse the object's BTF: Record in line_info for section `syscall` has instruction offset 3, not a multiple of 8"
    );
    assert_eq!(
        with(line_info + 12, 4, 0x800),
        "Line info for section `syscall` names instruction 256, but the section has 7 instructions"
    );
    // .BTF.ext alone has no strings to name things with.
    let mut bytes = hello.clone();
    put(&mut bytes, btf.at + SH_SIZE, 8, 0);
    assert_eq!(
        parse_err(&bytes),
        "Cannot parse the object's BTF: .BTF is 0 bytes, shorter than its 24-byte header"
    );
    let mut bytes = hello.clone();
    put(&mut bytes, btf.at, 4, 0); // the section loses its name
    assert_eq!(
        parse_err(&bytes),
        "Cannot parse the object's BTF: .BTF.ext is present without a .BTF section"
    );
}

#[test]
fn unresolvable_references_are_refused_at_link() {
    // The format string's ld_imm64 pointing past the end of .rodata.
    let mut bytes = sample("hello.bpf.o");
    let code = section(&bytes, "syscall");
    put(&mut bytes, code.offset + 4, 4, 0x1000);
    let object = Object::parse(&bytes).unwrap();
    let err = object.link(&object.programs()[0], &place).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Relocation at offset 0x0 in section `syscall` points at byte 4096 of `.rodata`, outside its 31 bytes"
    );
    // Its symbol made undefined: an extern.
    let mut bytes = sample("hello.bpf.o");
    let rel = section(&bytes, ".relsyscall");
    let sym = get(&bytes, rel.offset + 12, 4) as usize;
    let symtab = section(&bytes, ".symtab");
    put(&mut bytes, symtab.offset + sym * 24 + 6, 2, 0);
    let object = Object::parse(&bytes).unwrap();
    let err = object.link(&object.programs()[0], &place).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Program `hello` uses extern symbol `` (relocation at offset 0x0 in section `syscall`); only calls to kfuncs may name extern symbols"
    );
    // ... or in the license section.
    let mut bytes = sample("hello.bpf.o");
    let license = section_index(&bytes, "license");
    put(&mut bytes, symtab.offset + sym * 24 + 6, 2, license);
    let object = Object::parse(&bytes).unwrap();
    let err = object.link(&object.programs()[0], &place).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Relocation at offset 0x0 in section `syscall` refers to `license` in section `license`, which holds neither code nor global data bpfvisor places"
    );
    // A call into the middle of a function.
    let mut bytes = sample("calls.bpf.o");
    let code = section(&bytes, "syscall");
    put(&mut bytes, code.offset + 0x10 + 4, 4, 1);
    let object = Object::parse(&bytes).unwrap();
    let err = object.link(&object.programs()[0], &place).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Call at offset 0x10 in section `syscall` targets instruction 2 of section `.text`, which is not the start of a function"
    );
}

#[test]
fn link_errors_in_instructions_read_like_verifier_errors() {
    // An invalid opcode in the program: link decodes, and says where.
    let mut bytes = sample("null_read.bpf.o");
    let code = section(&bytes, "syscall");
    put(&mut bytes, code.offset + 8, 1, 0x8c);
    let object = Object::parse(&bytes).unwrap();
    let err = object
        .link(&object.programs()[0], &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "error: invalid opcode 0x8c at instruction 1\n  \
         1: 8c 10 00 00 00 00 00 00 (raw bytes)\n  \
         --> null_read.bpf.c:10:9\n   \
         |  return *p; /* NULL read: the trap names this line */"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A few bytes of a sample changed anywhere: loading may fail, but
    /// does not panic.
    #[test]
    fn mutated_objects_never_panic(
        which in 0..SAMPLES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = sample(SAMPLES[which]);
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        load_everything(&bytes);
    }

    /// Mutations aimed at the structures the loader reads: section
    /// headers, symbols, relocations and BTF, with values that stress
    /// bounds.
    #[test]
    fn mutated_tables_never_panic(
        which in 0..SAMPLES.len(),
        target in prop::sample::select(vec![
            "shdr", ".symtab", ".relsyscall", ".BTF", ".BTF.ext", "syscall",
            ".maps", ".rel.maps", "maps", ".rodata",
        ]),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(vec![
                0u64, 1, 7, 8, 0x18, 0x7f, 0x80, 0xff, 0xffff, 0xffff_ffff, u64::MAX, 1 << 31,
            ]), prop::sample::select(vec![1usize, 2, 4, 8])),
            1..6,
        ),
    ) {
        let mut bytes = sample(SAMPLES[which]);
        let (start, len) = if target == "shdr" {
            let shoff = get(&bytes, 0x28, 8) as usize;
            (shoff, bytes.len() - shoff)
        } else if let Some(s) = find_section(&bytes, target) {
            (s.offset, s.size)
        } else {
            return Ok(());
        };
        for (at, value, width) in edits {
            if len < width {
                continue;
            }
            let at = start + at.index(len - width + 1);
            put(&mut bytes, at, width, value);
        }
        load_everything(&bytes);
    }
}

#[test]
fn percpu_loads_are_recorded() {
    // globals.bpf.o with `.data.table` renamed `.percpu` in the string
    // table: the same bytes, now one copy per CPU.
    let mut bytes = sample("globals.bpf.o");
    let table = section(&bytes, ".data.table");
    let strtab = section(&bytes, ".strtab");
    let name_at = strtab.offset + get(&bytes, table.at, 4) as usize;
    bytes[name_at..name_at + 8].copy_from_slice(b".percpu\0");
    let object = Object::parse(&bytes).unwrap();
    let percpu = object
        .data_sections()
        .iter()
        .position(|d| d.name == ".percpu")
        .unwrap();
    assert_eq!(object.data_sections()[percpu].kind, DataKind::PerCpu);
    assert_eq!(
        object.data_sections()[percpu].bytes[..4],
        1u32.to_le_bytes()
    );
    let linked = object.link(&object.programs()[0], &place).unwrap();
    // `table[i]` is the program's first load.
    assert_eq!(linked.percpu_loads, [0]);
    assert_eq!(
        linked.program.op(0),
        Some(&Op::LdImm64 {
            dst: Reg::R2,
            value: Imm64::Value(0x1000_0000 * (percpu as u64 + 1)),
        })
    );
}
