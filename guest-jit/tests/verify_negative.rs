//! The bpf_conformance suite through the verifier: every `negative/` case
//! that is a verifier matter (an instruction that does not decode) is
//! refused with a clear message, the others are not the verifier's to
//! refuse; and every program of `tests/` verifies.
//!
//! `conformance.rs` checks the same files against the assembler and the
//! interpreter; this file is about `verify` alone.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;
use std::path::{Path, PathBuf};

use guest_jit::asm::assemble;
use guest_jit::conformance::{TestCase, UNWIND_HELPER_ID};
use guest_jit::insn::{DecodeError, Insn};
use guest_jit::verify::{VerifyContext, VerifyError, decode_and_verify};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");

fn data_files(dir: &str) -> Vec<PathBuf> {
    guest_jit::conformance::data_files(&Path::new(SUITE).join(dir)).unwrap()
}

/// What a negative file holds, for the verifier.
enum Verdict {
    /// Not a test file: the suite's parser refuses it.
    NoFile,
    /// The program does not assemble: the assembler's matter.
    NoProgram,
    /// Instructions to verify.
    Insns(Vec<Insn>),
}

fn insns_of(path: &Path) -> Verdict {
    let Ok(case) = TestCase::parse(&fs::read_to_string(path).unwrap()) else {
        return Verdict::NoFile;
    };
    match (&case.raw, case.asm.as_deref().map(assemble)) {
        (Some(raw), _) => Verdict::Insns(raw.clone()),
        (None, Some(Ok(insns))) => Verdict::Insns(insns),
        (None, Some(Err(_))) => Verdict::NoProgram,
        (None, None) => Verdict::Insns(Vec::new()),
    }
}

/// The conformance plugin's helper set: its "unwind" helper only.
fn conformance_helpers(id: u32) -> bool {
    id == UNWIND_HELPER_ID
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn negative_cases_that_are_verifier_matters_are_refused() {
    let files = data_files("negative");
    assert_eq!(files.len(), 60, "the suite should have 60 negative tests");
    let ctx = VerifyContext::new(&conformance_helpers);
    let mut refused = 0;
    let mut failures = Vec::new();
    for path in &files {
        let file = name(path);
        let verdict = insns_of(path);
        let outcome = match &verdict {
            Verdict::Insns(insns) => Some(decode_and_verify(insns, &ctx)),
            Verdict::NoFile | Verdict::NoProgram => None,
        };
        match (file.as_str(), outcome) {
            // Every nonzero unused field, and the unused-field cases whose
            // field selects an operation (an offset on an ALU op is how
            // signed division is spelled), stop at instruction 0 with the
            // decoder's reason and the instruction's bytes.
            (f, Some(Err(err))) if f.starts_with("unused-") => {
                let text = err.to_string();
                let decoded = matches!(
                    &err,
                    VerifyError::DecodeInstruction {
                        error: DecodeError::CheckUnusedField { index: 0, .. }
                            | DecodeError::DecodeField { index: 0, .. },
                        ..
                    }
                );
                if decoded && text.contains("\n  0: ") && text.ends_with("(raw bytes)") {
                    refused += 1;
                } else {
                    failures.push(format!("{f}: unclear refusal: {text}"));
                }
            }
            (f, Some(Ok(_))) if f.starts_with("unused-") => {
                failures.push(format!("{f}: verified, but its unused field is set"));
            }
            // Valid programs that return the wrong value: the runner's
            // matter, and the verifier must let them through.
            ("error.data" | "incorrect_return_value_high_bits.data", Some(Ok(_))) => {}
            // Files the suite's parser or the assembler refuses never
            // reach the verifier.
            ("empty.data" | "empty_instructions.data" | "invalid_unknown_directive.data", None)
                if matches!(verdict, Verdict::NoFile) => {}
            (f, None) if f.starts_with("invalid_") && matches!(verdict, Verdict::NoProgram) => {}
            (f, outcome) => failures.push(format!("{f}: unexpected {outcome:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(refused, 45, "unused-* cases refused by the verifier");
}

#[test]
fn unused_field_messages_are_pinned() {
    let ctx = VerifyContext::new(&conformance_helpers);
    let cases = [
        (
            "unused-call-dst.data",
            "error: nonzero unused field dst (1) in instruction 0 (opcode 0x85)\n  \
             0: 85 01 00 00 00 00 00 00 (raw bytes)",
        ),
        (
            "unused-add_imm-offset.data",
            "error: nonzero unused field off (1) in instruction 0 (opcode 0x04)\n  \
             0: 04 00 01 00 01 00 00 00 (raw bytes)",
        ),
        (
            "unused-stxdw-imm.data",
            "error: nonzero unused field imm (1) in instruction 0 (opcode 0x7b)\n  \
             0: 7b 0a f8 ff 01 00 00 00 (raw bytes)",
        ),
    ];
    for (file, expected) in cases {
        let Verdict::Insns(insns) = insns_of(&Path::new(SUITE).join("negative").join(file)) else {
            panic!("{file}: no program");
        };
        let err = decode_and_verify(&insns, &ctx).unwrap_err();
        assert_eq!(err.to_string(), expected, "{file}");
    }
}

#[test]
fn every_suite_program_verifies() {
    let files = data_files("tests");
    assert_eq!(files.len(), 313);
    let ctx = VerifyContext::new(&conformance_helpers);
    let mut failures = Vec::new();
    for path in &files {
        let Verdict::Insns(insns) = insns_of(path) else {
            failures.push(format!("{}: no program", name(path)));
            continue;
        };
        match (name(path).as_str(), decode_and_verify(&insns, &ctx)) {
            (_, Ok(_)) => {}
            (file, Err(err)) => failures.push(format!("{file}: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
