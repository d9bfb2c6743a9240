//! `bpfvisor conformance`: run bpf_conformance `.data` files in the VM or
//! in the reference interpreter.

use crate::failure::{Failure, FailureKind, render_chain};
use clap::{Args, ValueEnum};
use guest_jit::conformance::{TestCase, check_case};
use std::path::{Path, PathBuf};
use vmm::conformance::check_case_in_vm;

/// Which engine runs the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Verifier + JIT, in a fresh KVM sandbox per test.
    Vm,
    /// The reference interpreter.
    Interp,
}

/// Arguments of `bpfvisor conformance`.
#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// A directory of `.data` files (or one file).
    path: PathBuf,
    /// Where to run them.
    #[arg(long, value_enum, default_value_t = Engine::Vm)]
    engine: Engine,
}

/// Why the suite could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The directory or a file could not be read.
    #[error("Cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// The path holds no `.data` file.
    #[error("No .data files in {}", .0.display())]
    FindTests(PathBuf),
}

/// Runs every test, prints each failure and a final count.
pub fn run(args: &ConformanceArgs) -> Result<(), Failure> {
    let files = data_files(&args.path).map_err(|e| Failure::new(FailureKind::Host, e))?;
    let (mut passed, mut failed) = (0, 0);
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(FailureKind::Host, ConformanceError::Read(path.clone(), e))
        })?;
        let verdict = match TestCase::parse(&text) {
            Err(e) => Err(render_chain(&e)),
            Ok(case) => match args.engine {
                Engine::Vm => check_case_in_vm(&case).map_err(|e| render_chain(&e)),
                Engine::Interp => check_case(&case).map_err(|e| render_chain(&e)),
            },
        };
        match verdict {
            Ok(()) => passed += 1,
            Err(message) => {
                failed += 1;
                println!("FAIL {name}: {message}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::reported(FailureKind::TestsFailed))
    }
}

fn data_files(path: &Path) -> Result<Vec<PathBuf>, ConformanceError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let files = guest_jit::conformance::data_files(path)
        .map_err(|e| ConformanceError::Read(path.to_owned(), e))?;
    if files.is_empty() {
        return Err(ConformanceError::FindTests(path.to_owned()));
    }
    Ok(files)
}
