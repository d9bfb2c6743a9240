//! The bpf_conformance suite in the reference interpreter: every test in
//! `tests/` must pass, and every file in `negative/` must fail the way it
//! was written to fail.
//!
//! The suite is read in place from the shared directory beside the
//! repository; it is not copied.

use std::fs;
use std::path::{Path, PathBuf};

use guest_jit::asm::{AsmError, assemble};
use guest_jit::conformance::{
    CaseError, CheckError, Expected, TestCase, TestFileError, check_case, error_chain, program_of,
    run_case,
};
use guest_jit::disasm::{disassemble, disassemble_labeled};
use guest_jit::insn::DecodeError;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");

/// The `.data` files of a suite directory, sorted by name.
fn data_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(SUITE).join(dir);
    guest_jit::conformance::data_files(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the conformance suite at {}: {e}",
            dir.display()
        )
    })
}

fn name(path: &Path) -> String {
    path.file_name()
        .expect("a file path")
        .to_string_lossy()
        .into_owned()
}

fn parse(path: &Path) -> Result<TestCase, TestFileError> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    TestCase::parse(&text)
}

#[test]
fn every_suite_test_passes() {
    let files = data_files("tests");
    let mut failures = Vec::new();
    for path in &files {
        let outcome = match parse(path) {
            Ok(case) => check_case(&case).map_err(|e| error_chain(&e)),
            Err(e) => Err(error_chain(&e)),
        };
        if let Err(message) = outcome {
            failures.push(format!("{}: {message}", name(path)));
        }
    }
    println!(
        "conformance: {} of {} tests passed",
        files.len() - failures.len(),
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(files.len(), 313, "the suite should have 313 tests");
}

#[test]
fn suite_programs_survive_disassembly() {
    let mut failures = Vec::new();
    for path in &data_files("tests") {
        let program = parse(path)
            .map_err(|e| error_chain(&e))
            .and_then(|case| program_of(&case).map_err(|e| error_chain(&e)));
        let program = match program {
            Ok(program) => program,
            Err(e) => {
                failures.push(format!("{}: {e}", name(path)));
                continue;
            }
        };
        for text in [disassemble(&program), disassemble_labeled(&program)] {
            if assemble(&text).as_deref() != Ok(program.insns()) {
                failures.push(format!("{}: does not reassemble from\n{text}", name(path)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How a negative file is meant to fail.
enum Meant {
    /// The file is not a valid test.
    BadFile(fn(&TestFileError) -> bool),
    /// The assembler rejects the program.
    Assembler(fn(&AsmError) -> bool),
    /// The decoder rejects instruction 0 (an unused field, or an offset
    /// that selects no operation).
    Decoder,
    /// The program runs, and the runner reports the mismatch.
    Mismatch(fn(&CheckError) -> bool),
}

fn meant(file: &str) -> Option<Meant> {
    use Meant::*;
    Some(match file {
        "empty.data" => BadFile(|e| *e == TestFileError::FindExpectation),
        "empty_instructions.data" => BadFile(|e| *e == TestFileError::FindProgram),
        // `-- error Invalid`, yet the program is valid and returns r10.
        "error.data" => Mismatch(|e| matches!(e, CheckError::ExpectError { .. })),
        "incorrect_return_value_high_bits.data" => Mismatch(|e| {
            *e == CheckError::CompareResult {
                expected: 0x8977665544332211,
                actual: 0x8877665544332211,
            }
        }),
        "invalid_imm32_dec_range.data" | "invalid_imm32_hex_range.data" => {
            Assembler(|e| matches!(e, AsmError::ParseNumber { line: 2, .. }))
        }
        "invalid_label.data" => Assembler(|e| matches!(e, AsmError::ResolveLabel { line: 1, .. })),
        "invalid_lock.data" | "invalid_lock2.data" => {
            Assembler(|e| matches!(e, AsmError::CountOperands { line: 1, .. }))
        }
        "invalid_mnemonic.data" => {
            Assembler(|e| matches!(e, AsmError::ParseMnemonic { line: 2, .. }))
        }
        "invalid_offset.data" => Assembler(|e| matches!(e, AsmError::ParseMemory { line: 1, .. })),
        "invalid_offset_range.data" => {
            Assembler(|e| matches!(e, AsmError::ParseNumber { line: 2, .. }))
        }
        "invalid_operand_count.data" => {
            Assembler(|e| matches!(e, AsmError::CountOperands { line: 1, .. }))
        }
        "invalid_register.data" => {
            Assembler(|e| matches!(e, AsmError::ParseRegister { line: 1, .. }))
        }
        "invalid_unknown_directive.data" => {
            BadFile(|e| matches!(e, TestFileError::ReadSection { line: 4, .. }))
        }
        f if f.starts_with("unused-") => Decoder,
        _ => return None,
    })
}

/// Checks that `path` fails as meant; returns why not.
fn check_negative(path: &Path) -> Result<(), String> {
    let file = name(path);
    let Some(meant) = meant(&file) else {
        return Err("no expectation for this file in the test".to_owned());
    };
    let case = match (parse(path), &meant) {
        (Err(e), Meant::BadFile(ok)) if ok(&e) => return Ok(()),
        (Err(e), _) => return Err(format!("unexpected file error: {}", error_chain(&e))),
        (Ok(_), Meant::BadFile(_)) => return Err("parsed, expected a file error".to_owned()),
        (Ok(case), _) => case,
    };
    let run = run_case(&case);
    match (&meant, run) {
        (Meant::Assembler(ok), Err(CaseError::Assemble(e))) if ok(&e) => {
            // Where the file names the error, our message contains it.
            match (&case.expected, check_case(&case)) {
                (Expected::Error(_), Ok(())) => Ok(()),
                (Expected::Return(_), Err(CheckError::ExpectReturn { .. })) => Ok(()),
                (_, other) => Err(format!("assembler error, but the verdict is {other:?}")),
            }
        }
        (
            Meant::Decoder,
            Err(CaseError::Decode(
                DecodeError::CheckUnusedField { index: 0, .. }
                | DecodeError::DecodeField { index: 0, .. },
            )),
        ) => Ok(()),
        (Meant::Mismatch(ok), Ok(_)) => match check_case(&case) {
            Err(e) if ok(&e) => Ok(()),
            other => Err(format!("ran, but the verdict is {other:?}")),
        },
        (_, Err(e)) => Err(format!("failed the wrong way: {}", error_chain(&e))),
        (_, Ok(value)) => Err(format!("returned {value:#x} instead of failing")),
    }
}

#[test]
fn every_negative_test_fails_as_meant() {
    let files = data_files("negative");
    let mut failures = Vec::new();
    for path in &files {
        if let Err(message) = check_negative(path) {
            failures.push(format!("{}: {message}", name(path)));
        }
    }
    println!(
        "conformance negative: {} of {} failed as meant",
        files.len() - failures.len(),
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} did not fail as meant:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(files.len(), 60, "the suite should have 60 negative tests");
}
