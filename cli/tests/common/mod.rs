//! What every CLI test file needs: the real binary and the samples.
#![allow(
    dead_code,
    reason = "each test file is its own crate and uses part of this"
)]

use std::process::{Command, Output};

/// The sample programs' directory.
pub const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");

/// Runs the `bpfvisor` binary this package built with `args`.
pub fn bpfvisor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bpfvisor"))
        .args(args)
        .output()
        .expect("run bpfvisor")
}

/// The path of sample object `name` (`hello` → `.../hello.bpf.o`).
pub fn sample(name: &str) -> String {
    format!("{PROGS}/{name}.bpf.o")
}
