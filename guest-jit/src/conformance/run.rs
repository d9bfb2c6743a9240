//! Running a [`TestCase`] in the interpreter and judging the outcome.
//!
//! The suite was written against ubpf's conformance plugin, so the run
//! mirrors it: r1 points to the `-- mem` bytes and r2 holds their length
//! (both 0 without memory), and helper 5 is ubpf's "unwind" helper.

use std::error::Error as StdError;

use thiserror::Error;

use super::{Expected, TestCase};
use crate::asm::{AsmError, assemble};
use crate::insn::{DecodeError, Program};
use crate::interp::mem::CTX_START;
use crate::interp::{self, ExecError, HelperError, Helpers, Memory, RunOptions};

/// Id of the suite's unwind helper.
pub const UNWIND_HELPER_ID: u32 = 5;

/// Instructions a suite program may execute; the largest needs a few
/// hundred.
pub const CONFORMANCE_STEP_LIMIT: u64 = 1_000_000;

/// The helpers the suite's programs call, and nothing else: not a general
/// helper set.
///
/// ubpf's plugin registers `unwind(a) { return a; }` as helper 5 and makes
/// it ubpf's "unwind function": when it returns 0, ubpf ends the program at
/// once with return value 0; otherwise the call returns `a` as usual
/// (`call_unwind_fail.data` passes -1 and carries on).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConformanceHelpers;

impl Helpers for ConformanceHelpers {
    fn call(&mut self, id: u32, args: [u64; 5], _mem: &mut Memory) -> Result<u64, HelperError> {
        match (id, args[0]) {
            (UNWIND_HELPER_ID, 0) => Err(HelperError::UnwindProgram { return_value: 0 }),
            (UNWIND_HELPER_ID, a) => Ok(a),
            _ => Err(HelperError::FindHelper { id }),
        }
    }
}

/// Why a test's program did not return a value.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CaseError {
    /// The `-- asm` section does not assemble.
    #[error("Assembling the program failed")]
    Assemble(#[from] AsmError),
    /// The program does not decode.
    #[error("Decoding the program failed")]
    Decode(#[from] DecodeError),
    /// The program stopped with an error.
    #[error("Running the program failed")]
    Execute(#[from] ExecError),
    /// `-- asm` and `-- raw` describe different programs.
    #[error("Sections `asm` and `raw` differ from slot {slot} on")]
    CompareRaw {
        /// First slot that differs.
        slot: usize,
    },
}

/// Why a test failed; `E` is why the engine that ran it failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckError<E: StdError + 'static = CaseError> {
    /// The program returned the wrong value.
    #[error("Returned {actual:#x}, expected {expected:#x}")]
    CompareResult {
        /// Expected value.
        expected: u64,
        /// Returned value.
        actual: u64,
    },
    /// The program returned where an error was expected.
    #[error("Returned {actual:#x}, expected an error{}", containing(.expected))]
    ExpectError {
        /// Expected error text.
        expected: String,
        /// Returned value.
        actual: u64,
    },
    /// The program failed where a value was expected.
    #[error("Failed, expected to return {expected:#x}")]
    ExpectReturn {
        /// Expected value.
        expected: u64,
        /// The failure.
        #[source]
        source: E,
    },
    /// The program failed, but not with the expected error.
    #[error("Failed with an error not containing `{expected}`")]
    MatchError {
        /// Expected error text.
        expected: String,
        /// The failure.
        #[source]
        source: E,
    },
}

fn containing(expected: &str) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" containing `{expected}`")
    }
}

/// An error and its sources, joined by ": ".
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The test's program: `-- raw` if present, else `-- asm`, decoded.
pub fn program_of(case: &TestCase) -> Result<Program, CaseError> {
    let assembled = case.asm.as_deref().map(assemble).transpose()?;
    let insns = match (&case.raw, assembled) {
        (Some(raw), Some(asm)) => {
            if let Some(slot) = (0..raw.len().max(asm.len())).find(|&i| raw.get(i) != asm.get(i)) {
                return Err(CaseError::CompareRaw { slot });
            }
            asm
        }
        (Some(raw), None) => raw.clone(),
        (None, Some(asm)) => asm,
        (None, None) => Vec::new(),
    };
    Ok(Program::decode(&insns)?)
}

/// Runs the test's program and returns its return value.
pub fn run_case(case: &TestCase) -> Result<u64, CaseError> {
    let program = program_of(case)?;
    let (mut memory, args) = if case.mem.is_empty() {
        (Memory::new(), [0; 5])
    } else {
        let len = case.mem.len() as u64;
        (
            Memory::with_context(case.mem.clone()),
            [CTX_START, len, 0, 0, 0],
        )
    };
    let options = RunOptions {
        step_limit: CONFORMANCE_STEP_LIMIT,
        ..RunOptions::default()
    };
    let exit = interp::run(
        &program,
        &mut memory,
        &mut ConformanceHelpers,
        args,
        &options,
    )?;
    Ok(exit.return_value)
}

/// Runs the test in the interpreter and compares the outcome with its
/// expectation.
pub fn check_case(case: &TestCase) -> Result<(), CheckError> {
    judge(&case.expected, run_case(case))
}

/// Compares what an engine made of a test with the test's expectation.
pub fn judge<E: StdError + 'static>(
    expected: &Expected,
    outcome: Result<u64, E>,
) -> Result<(), CheckError<E>> {
    match (expected, outcome) {
        (Expected::Return(expected), Ok(actual)) if *expected == actual => Ok(()),
        (Expected::Return(expected), Ok(actual)) => Err(CheckError::CompareResult {
            expected: *expected,
            actual,
        }),
        (Expected::Return(expected), Err(source)) => Err(CheckError::ExpectReturn {
            expected: *expected,
            source,
        }),
        (Expected::Error(expected), Ok(actual)) => Err(CheckError::ExpectError {
            expected: expected.clone(),
            actual,
        }),
        (Expected::Error(expected), Err(source)) => {
            if error_chain(&source).contains(expected.as_str()) {
                Ok(())
            } else {
                Err(CheckError::MatchError {
                    expected: expected.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> TestCase {
        TestCase::parse(text).unwrap()
    }

    #[test]
    fn unwind_helper() {
        let mut h = ConformanceHelpers;
        let mut mem = Memory::new();
        assert_eq!(h.call(5, [7, 0, 0, 0, 0], &mut mem), Ok(7));
        assert_eq!(
            h.call(5, [0; 5], &mut mem),
            Err(HelperError::UnwindProgram { return_value: 0 })
        );
        assert_eq!(
            h.call(1, [0; 5], &mut mem),
            Err(HelperError::FindHelper { id: 1 })
        );
        // Unwinding ends the program with 0 even from a local call.
        let c = case(
            "-- asm\ncall local f\nmov %r0, 3\nexit\nf:\nmov %r1, 0\ncall 5\nmov %r0, 2\nexit\n\
             -- result\n0x0\n",
        );
        assert_eq!(check_case(&c), Ok(()));
    }

    #[test]
    fn memory_is_r1_and_its_length_r2() {
        let c =
            case("-- asm\nldxb %r0, [%r1+2]\nadd %r0, %r2\nexit\n-- mem\n01 02 03\n-- result\n6\n");
        assert_eq!(check_case(&c), Ok(()));
        let c = case("-- asm\nmov %r0, %r1\nadd %r0, %r2\nexit\n-- result\n0\n");
        assert_eq!(check_case(&c), Ok(()));
    }

    #[test]
    fn verdicts() {
        let c = case("-- asm\nmov %r0, 1\nexit\n-- result\n0x2\n");
        let err = check_case(&c).unwrap_err();
        assert_eq!(err.to_string(), "Returned 0x1, expected 0x2");
        let c = case("-- asm\nmov %r0, 1\nexit\n-- error\nInvalid\n");
        let err = check_case(&c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Returned 0x1, expected an error containing `Invalid`"
        );
        let c = case("-- asm\nmov %r0, 1\nexit\n-- error\n");
        assert_eq!(
            check_case(&c).unwrap_err().to_string(),
            "Returned 0x1, expected an error"
        );
        let c = case("-- asm\nor %r0, %r50\nexit\n-- error\nInvalid register\n");
        assert_eq!(check_case(&c), Ok(()));
        let c = case("-- asm\nor %r0, %r50\nexit\n-- error\nInvalid label\n");
        let err = check_case(&c).unwrap_err();
        assert_eq!(
            error_chain(&err),
            "Failed with an error not containing `Invalid label`: Assembling the program \
             failed: Invalid register `%r50` on line 1"
        );
        let c = case("-- asm\nmov %r0, 0\n-- result\n0\n");
        let err = check_case(&c).unwrap_err();
        assert_eq!(
            error_chain(&err),
            "Failed, expected to return 0x0: Running the program failed: No instruction \
             starts at slot 1"
        );
    }

    #[test]
    fn asm_and_raw_must_agree() {
        let c = case("-- asm\nmov %r0, 1\nexit\n-- raw\n0x00000001000000b7\n-- result\n1\n");
        assert_eq!(run_case(&c), Err(CaseError::CompareRaw { slot: 1 }));
        let c = case("-- asm\nmov %r0, 1\nexit\n-- raw\n0x00000001000000b7\n0x95\n-- result\n1\n");
        assert_eq!(run_case(&c), Ok(1));
        let raw_only =
            case("-- raw\nb7 00 00 00 05 00 00 00\n95 00 00 00 00 00 00 00\n-- result\n5\n");
        assert_eq!(run_case(&raw_only), Ok(5));
        assert_eq!(raw_only.raw.map(|r| r.len()), Some(2));
    }
}
