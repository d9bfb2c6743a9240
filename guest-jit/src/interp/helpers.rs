//! The interface through which the interpreter calls helper functions.

use thiserror::Error;

use super::mem::{MemError, Memory};

/// Why a helper call did not return a value.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HelperError {
    /// No helper has this id.
    #[error("No helper with id {id}")]
    FindHelper {
        /// The id called.
        id: u32,
    },
    /// The helper touched memory the program may not reach.
    #[error("Helper accessed memory out of bounds")]
    AccessMemory(#[source] MemError),
    /// Not a failure: the helper ends the whole program, all frames at
    /// once, with this return value (what ubpf calls unwinding; later also
    /// `bpf_throw`-like exits). The interpreter turns it into a normal
    /// return.
    #[error("Helper ended the program with return value {return_value:#x}")]
    UnwindProgram {
        /// The program's return value.
        return_value: u64,
    },
}

impl From<MemError> for HelperError {
    fn from(err: MemError) -> Self {
        HelperError::AccessMemory(err)
    }
}

/// Helper functions a program may call (RFC 9669 §4.3.1).
///
/// `args` are r1 to r5; the returned value goes to r0. Pointers in `args`
/// are guest addresses, to be resolved through `mem` only.
pub trait Helpers {
    /// Calls helper `id`.
    fn call(&mut self, id: u32, args: [u64; 5], mem: &mut Memory) -> Result<u64, HelperError>;
}

/// No helpers at all: every call fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHelpers;

impl Helpers for NoHelpers {
    fn call(&mut self, id: u32, _args: [u64; 5], _mem: &mut Memory) -> Result<u64, HelperError> {
        Err(HelperError::FindHelper { id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_helpers_refuses_every_id() {
        let err = NoHelpers.call(1, [0; 5], &mut Memory::new()).unwrap_err();
        assert_eq!(err.to_string(), "No helper with id 1");
    }
}
