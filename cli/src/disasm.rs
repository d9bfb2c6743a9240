//! `bpfvisor disasm`: a program's BPF with its C source lines, or the x86
//! code the JIT makes of it.

use crate::failure::{Failure, FailureKind};
use clap::Args;
use guest_jit::elf::Object;
use std::fmt::Write as _;
use std::path::PathBuf;
use vmm::program::{LoadedProgram, compile_offline};
use vmm::{HelperSet, SandboxConfig};

/// Arguments of `bpfvisor disasm`.
#[derive(Debug, Args)]
pub struct DisasmArgs {
    /// The BPF object.
    object: PathBuf,
    /// Only this program, by function or section name (default: all).
    #[arg(long)]
    prog: Option<String>,
    /// Show the x86-64 code the JIT emits, at the guest addresses it would
    /// run at, under each BPF instruction.
    #[arg(long)]
    jit: bool,
}

/// Why `bpfvisor disasm` failed.
#[derive(Debug, thiserror::Error)]
pub enum DisasmError {
    /// The file could not be read.
    #[error("Cannot read {}", .0.display())]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// The object is malformed.
    #[error("Cannot load {}", .0.display())]
    ParseObject(PathBuf, #[source] guest_jit::elf::LoadError),
    /// A program was refused.
    #[error("Cannot compile {}", .0.display())]
    Compile(PathBuf, #[source] vmm::program::OfflineError),
}

/// Prints the disassembly.
pub fn run(args: &DisasmArgs) -> Result<(), Failure> {
    let bytes = std::fs::read(&args.object).map_err(|e| {
        Failure::new(
            FailureKind::Host,
            DisasmError::ReadFile(args.object.clone(), e),
        )
    })?;
    let load = |e| Failure::new(FailureKind::Load, e);
    let object = Object::parse(&bytes)
        .map_err(|e| load(DisasmError::ParseObject(args.object.clone(), e)))?;
    let programs = compile_offline(
        &object,
        args.prog.as_deref(),
        &SandboxConfig::default(),
        HelperSet::Standard,
    )
    .map_err(|e| load(DisasmError::Compile(args.object.clone(), e)))?;
    for (i, program) in programs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let text = if args.jit {
            jit_listing(program)
        } else {
            bpf_listing(program)
        };
        print!("{text}");
    }
    Ok(())
}

fn header(program: &LoadedProgram) -> String {
    format!(
        "program {} (section {}), {} instructions:\n",
        program.name(),
        program.section(),
        program.program().len()
    )
}

/// BPF instructions by slot, with each function's name and a comment with
/// the C source line wherever it changes.
fn bpf_listing(program: &LoadedProgram) -> String {
    let linked = program.linked();
    let mut out = header(program);
    let mut last_line = None;
    for (slot, op) in linked.program.iter() {
        if let Some(function) = linked.functions.iter().find(|f| f.start == slot) {
            let _ = writeln!(out, "{}:", function.name);
        }
        if let Some(line) = linked.lines.get(slot) {
            let key = (line.file.as_str(), line.line);
            if last_line != Some(key) {
                let _ = writeln!(out, "; {}:{}: {}", line.file, line.line, line.text.trim());
                last_line = Some(key);
            }
        }
        let _ = write!(out, "{slot:>6}: {op}");
        if let Some(off) = op.branch_offset() {
            let target = slot as i64 + op.slots() as i64 + off;
            let _ = write!(out, "  ; -> {target}");
        }
        out.push('\n');
    }
    out
}

fn jit_listing(program: &LoadedProgram) -> String {
    let mut out = header(program);
    let _ = writeln!(
        out,
        "entry {:#x}, {} bytes of x86-64:",
        program.entry(),
        program.jit().code.len()
    );
    out.push_str(&program.disassemble());
    out
}
