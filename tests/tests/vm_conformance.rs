//! The bpf_conformance suite in real VMs: every program in `tests/` is
//! verified, JIT-compiled and run on a vCPU, and must return what the file
//! says; every file in `negative/` must fail in the VM the way it was
//! written to fail. The suite is read in place from the shared directory.
#![allow(clippy::unwrap_used, reason = "tests")]

use guest_jit::conformance::{CheckError, Expected, TestCase, error_chain};
use integration_tests::kvm_available;
use std::fs;
use std::path::{Path, PathBuf};
use vmm::conformance::{VmCaseError, check_case_in_vm, run_case_in_vm};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");

fn data_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(SUITE).join(dir);
    guest_jit::conformance::data_files(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_suite_test_passes_in_the_vm() {
    if !kvm_available("every_suite_test_passes_in_the_vm") {
        return;
    }
    let files = data_files("tests");
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        let outcome = match TestCase::parse(&text) {
            Ok(case) => check_case_in_vm(&case).map_err(|e| error_chain(&e)),
            Err(e) => Err(error_chain(&e)),
        };
        if let Err(message) = outcome {
            failures.push(format!("{}: {message}", name(path)));
        }
    }
    println!(
        "conformance in the VM: {} of {} tests passed",
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

/// Negative files that parse fail in the VM as in the interpreter: the two
/// that run are judged mismatches, every other one is refused before any
/// code is loaded (assembler or decoder), with the same message.
#[test]
fn every_negative_test_fails_in_the_vm() {
    if !kvm_available("every_negative_test_fails_in_the_vm") {
        return;
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &data_files("negative") {
        let file = name(path);
        let Ok(case) = TestCase::parse(&fs::read_to_string(path).unwrap()) else {
            continue; // Not a valid test file: no engine is involved.
        };
        match (file.as_str(), run_case_in_vm(&case)) {
            ("error.data", Ok(_)) => {
                ran += 1;
                if !matches!(check_case_in_vm(&case), Err(CheckError::ExpectError { .. })) {
                    failures.push(format!("{file}: not judged a mismatch"));
                }
            }
            ("incorrect_return_value_high_bits.data", Ok(actual)) => {
                ran += 1;
                assert_eq!(actual, 0x8877665544332211, "{file}");
                assert!(matches!(
                    case.expected,
                    Expected::Return(0x8977665544332211)
                ));
            }
            (_, Err(VmCaseError::Program(_))) => {}
            (_, other) => {
                failures.push(format!("{file}: {:?}", other.map_err(|e| error_chain(&e))))
            }
        }
    }
    assert_eq!(ran, 2);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
