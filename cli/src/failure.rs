//! How a command fails: an error with its cause chain, and the exit code
//! that tells scripts what kind of failure it was (docs/cli.md lists them).

use std::error::Error;
use std::process::ExitCode;

/// What kind of failure ended a command; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The host could not do its part: no KVM, an unreadable file...
    Host,
    /// The object or program was refused: malformed ELF, link or verifier
    /// error, JIT error.
    Load,
    /// The program stopped on a CPU exception.
    Trap,
    /// The program ran past its deadline.
    Deadline,
    /// Some conformance tests failed.
    TestsFailed,
    /// Some jobs of `bpfvisor jobs` did not return.
    JobsFailed,
    /// Some cells of `bpfvisor bench` failed.
    BenchFailed,
}

impl FailureKind {
    /// The process exit code. 2 is clap's usage error.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Host => 1,
            FailureKind::Load => 3,
            FailureKind::Trap => 4,
            FailureKind::Deadline => 5,
            FailureKind::TestsFailed => 6,
            FailureKind::JobsFailed => 7,
            FailureKind::BenchFailed => 8,
        }
    }
}

/// A failed command: what kind, and why (printed with its causes).
#[derive(Debug)]
pub struct Failure {
    /// The kind, for the exit code.
    pub kind: FailureKind,
    /// The error; `None` when the command already reported it.
    pub error: Option<Box<dyn Error>>,
}

impl Failure {
    /// A failure of `kind` caused by `error`.
    pub fn new(kind: FailureKind, error: impl Into<Box<dyn Error>>) -> Failure {
        Failure {
            kind,
            error: Some(error.into()),
        }
    }

    /// A failure the command has already explained on its output.
    pub fn reported(kind: FailureKind) -> Failure {
        Failure { kind, error: None }
    }

    /// Prints the error (if any) and returns the exit code.
    pub fn report(self) -> ExitCode {
        if let Some(error) = &self.error {
            eprintln!("error: {}", render_chain(error.as_ref()));
        }
        ExitCode::from(self.kind.exit_code())
    }
}

/// An error and its causes: "A: B: C" while each is one line; a cause that
/// spans several lines (a verifier diagnostic) starts on a line of its own.
pub fn render_chain(err: &(dyn Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains('\n') {
            message.push('\n');
        } else {
            message.push_str(": ");
        }
        message.push_str(&text);
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Inner(&'static str);

    #[test]
    fn chains_are_joined_and_multiline_causes_get_their_own_line() {
        assert_eq!(render_chain(&Outer(Inner("inner"))), "Outer: inner");
        assert_eq!(
            render_chain(&Outer(Inner("first\n  second"))),
            "Outer\nfirst\n  second"
        );
    }

    #[test]
    fn exit_codes_are_distinct_and_avoid_usage_errors() {
        let kinds = [
            FailureKind::Host,
            FailureKind::Load,
            FailureKind::Trap,
            FailureKind::Deadline,
            FailureKind::TestsFailed,
            FailureKind::JobsFailed,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0) && !codes.contains(&2));
    }
}
