//! The columns of the table: one [`Engine`](crate::Engine) per way of
//! running a workload.

pub mod interp;
pub mod kernel;
pub mod native;
pub mod rbpf;
pub mod vm;

use crate::engine::BenchError;
use std::error::Error;

/// XDP_PASS: what every benchmark program returns.
pub const XDP_PASS: u64 = 2;

/// A failure of `what`, with `error` and its chain of causes.
pub(crate) fn failed(what: &str, error: &dyn Error) -> BenchError {
    BenchError::Failed(format!("{what}: {}", error_chain(error)))
}

/// `error` and its causes, joined by ": ".
pub(crate) fn error_chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The error for a run that returned `value` instead of XDP_PASS.
pub(crate) fn check_returned(workload: &str, value: u64) -> Result<(), BenchError> {
    if value == XDP_PASS {
        Ok(())
    } else {
        Err(BenchError::Failed(format!(
            "{workload} returned {value}, not XDP_PASS ({XDP_PASS})"
        )))
    }
}
