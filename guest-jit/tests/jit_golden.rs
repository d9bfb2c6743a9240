//! Golden tests of the JIT: every instruction form with every register
//! combination, compiled alone and disassembled by iced-x86, compared with
//! the listings in `tests/golden/`.
//!
//! A register-allocation slip (a shift whose count register is also its
//! destination, a division whose operand is rdx, a byte store from sil)
//! changes these listings, so a change to the emitters shows up here as a
//! diff to read. After an intended change, regenerate them with
//! `BLESS=1 cargo test -p guest-jit --test jit_golden` and review the diff.

#![allow(clippy::unwrap_used, reason = "tests")]

mod jit_forms;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use guest_jit::asm::assemble;
use guest_jit::insn::Program;
use guest_jit::jit::{JitConfig, compile, disassemble};
use jit_forms::{CODE_ADDR, SLOT, cases, helper_addr, kfunc_addr};

/// Guest address of the instruction under test in the listings.
const SLOT_ADDR: u64 = 0x60_1000;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The x86 lines of slot [`SLOT`] in a `jit::disassemble` listing, without
/// their address column (the golden files are about code, not placement).
fn slot_code(listing: &str) -> Vec<String> {
    let header = format!("; {SLOT}: ");
    listing
        .lines()
        .skip_while(|line| !line.starts_with(&header))
        .skip(1)
        .take_while(|line| !line.starts_with("; "))
        .map(|line| {
            line.split_once("  ")
                .map_or(line, |(_, rest)| rest)
                .to_string()
        })
        .collect()
}

/// Whole programs, listed with their prologues and epilogues: the frame
/// layout, calls and the `may_goto` counter.
const PROGRAMS: [(&str, &str); 2] = [
    (
        "program_calls",
        "mov %r6, %r1\ncall 1\ncall local f\nadd %r0, %r6\nexit\n\
         f:\nmov %r0, 0\nloop:\nmay_goto done\nadd %r0, 1\nja loop\ndone:\nexit",
    ),
    // A tail call from a subprogram: its frame, not the entry's, is torn
    // down before the jump.
    (
        "program_tail_call",
        "mov %r6, 7\ncall local f\nadd %r0, %r6\nexit\n\
         f:\nlddw %r2, 0x800000\nmov %r3, 1\ncall 12\nmov %r0, 0\nexit",
    ),
];

/// Every golden file's expected text, by file name.
fn listings() -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for (name, src) in PROGRAMS {
        let program = Program::decode(&assemble(src).unwrap()).unwrap();
        let config = JitConfig {
            code_addr: CODE_ADDR,
            helper_addr: &helper_addr,
            kfunc_addr: &kfunc_addr,
            percpu_loads: &[],
            arena_upper: 0,
            may_goto_budget: guest_jit::interp::MAY_GOTO_BUDGET,
            map_headers: 0..0,
        };
        let output = compile(&program, &config).unwrap();
        files.insert(
            format!("{name}.txt"),
            disassemble(&program, &output, CODE_ADDR),
        );
    }
    for case in cases() {
        let program = case.program();
        // Compiled where the instruction under test starts at SLOT_ADDR,
        // so that its listing does not move when the prologue changes.
        let prologue = case.compile().insn_offsets[SLOT];
        let code_addr = SLOT_ADDR - u64::from(prologue);
        let output = case.compile_at(code_addr);
        let listing = disassemble(&program, &output, code_addr);
        let text = files.entry(format!("{}.txt", case.group)).or_default();
        let op = program.op(SLOT).unwrap();
        writeln!(text, "{op}").unwrap();
        for line in slot_code(&listing) {
            writeln!(text, "    {line}").unwrap();
        }
    }
    files
}

/// The first differing lines of two texts, with a little context.
fn first_difference(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let at = (0..expected.len().max(actual.len()))
        .find(|&i| expected.get(i) != actual.get(i))
        .unwrap_or(0);
    let from = at.saturating_sub(3);
    let mut out = String::new();
    for i in from..(at + 8) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => writeln!(out, "  {:>6} {e}", i + 1).unwrap(),
            (e, a) => {
                if let Some(e) = e {
                    writeln!(out, "- {:>6} {e}", i + 1).unwrap();
                }
                if let Some(a) = a {
                    writeln!(out, "+ {:>6} {a}", i + 1).unwrap();
                }
            }
        }
    }
    out
}

#[test]
fn every_form_matches_its_golden_listing() {
    let files = listings();
    let dir = golden_dir();
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "txt") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let mut failures = Vec::new();
    for (name, actual) in &files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == *actual => {}
            Ok(expected) => failures.push(format!(
                "{name} differs (- golden, + now):\n{}",
                first_difference(&expected, actual)
            )),
            Err(err) => failures.push(format!("{name}: cannot read {}: {err}", path.display())),
        }
    }
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".txt") && !files.contains_key(name))
        .collect();
    if !stale.is_empty() {
        failures.push(format!("golden files no form produces: {stale:?}"));
    }
    assert!(
        failures.is_empty(),
        "{}\nIf the change is intended: BLESS=1 cargo test -p guest-jit --test jit_golden",
        failures.join("\n")
    );
}

#[test]
fn forms_cover_every_register_combination() {
    // 10 writable destinations x 11 sources for a register-register form,
    // so a filtering slip in the case list cannot silently shrink a file.
    let files = listings();
    let count = |name: &str| {
        files[name]
            .lines()
            .filter(|line| !line.starts_with(' '))
            .count()
    };
    assert_eq!(count("alu64_add.txt"), 10 * 11 + 10 * 3);
    assert_eq!(count("load8.txt"), 10 * 11);
    // Stores write memory, not registers: r10 is a valid base and source.
    assert_eq!(count("store64.txt"), 11 * 11 + 11 * 2);
    assert_eq!(count("jmp32_sgt.txt"), 11 * 11 + 11 * 3);
}
