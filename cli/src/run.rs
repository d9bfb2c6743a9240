//! `bpfvisor run`: run one program of an object once (or N times) in a
//! fresh sandbox, the way `bpftool prog run` does in the kernel.

use crate::failure::{Failure, FailureKind};
use clap::Args;
use guest_jit::elf::Object;
use serde_json::{Value, json};
use shm::layout::PAGE_SIZE;
use std::path::PathBuf;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, ProgramRun, Sandbox, SandboxConfig, Trap};

/// Default context buffer: room for a packet or a small struct.
const MIN_CTX_SIZE: u64 = 0x1_0000;

/// Arguments of `bpfvisor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The BPF object (clang --target=bpf -O2 -g output).
    object: PathBuf,
    /// Program to run, by function or section name; needed when the object
    /// has several.
    #[arg(long)]
    prog: Option<String>,
    /// Input bytes in hex ("01 02 ff" or "0102ff"); r1 points at a writable
    /// copy, r2 holds its length.
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Input bytes from a file.
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// Times to run the program inside the VM without leaving it; the
    /// duration is the average.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// vCPU to run on (the sandbox gets this many plus one).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..64))]
    cpu: u16,
    /// Wall-clock budget for all runs ("10s", "250ms").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of text (schema in docs/cli.md).
    #[arg(long)]
    json: bool,
}

/// Why `bpfvisor run` could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RunCommandError {
    /// A file could not be read.
    #[error("Cannot read {}", .0.display())]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// `--data` is not hex.
    #[error("--data is not a hex string")]
    ParseData(#[source] hex::FromHexError),
    /// The object is malformed.
    #[error("Cannot load {}", .0.display())]
    ParseObject(PathBuf, #[source] guest_jit::elf::LoadError),
    /// No sandbox could be built.
    #[error("Cannot create a sandbox")]
    CreateSandbox(#[source] vmm::SandboxError),
    /// The program was refused.
    #[error("Cannot load {}", .0.display())]
    LoadProgram(PathBuf, #[source] Box<vmm::LoadError>),
    /// The run could not happen.
    #[error("Cannot run the program")]
    RunProgram(#[source] vmm::RunError),
}

/// Runs the program and prints what it did.
pub fn run(args: &RunArgs) -> Result<(), Failure> {
    let host = |e: RunCommandError| Failure::new(FailureKind::Host, e);
    let load = |e: RunCommandError| Failure::new(FailureKind::Load, e);
    let data = input_data(args).map_err(|e| match e {
        RunCommandError::ParseData(_) => Failure::new(FailureKind::Host, e),
        e => host(e),
    })?;
    let bytes = std::fs::read(&args.object)
        .map_err(|e| host(RunCommandError::ReadFile(args.object.clone(), e)))?;
    let object = Object::parse(&bytes)
        .map_err(|e| load(RunCommandError::ParseObject(args.object.clone(), e)))?;
    let cpu = usize::from(args.cpu);
    let ctx_size = (data.len() as u64)
        .next_multiple_of(PAGE_SIZE)
        .max(MIN_CTX_SIZE);
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: cpu + 1,
        ctx_size,
        ..SandboxConfig::default()
    })
    .map_err(|e| host(RunCommandError::CreateSandbox(e)))?;
    let id = sandbox
        .load_object_program(&object, args.prog.as_deref(), HelperSet::Standard)
        .map_err(|e| {
            load(RunCommandError::LoadProgram(
                args.object.clone(),
                Box::new(e),
            ))
        })?;
    let input = ProgramInput {
        data: &data,
        repeat: args.repeat,
        timeout: Some(args.timeout),
    };
    let result = sandbox
        .run_program(id, cpu, &input)
        .map_err(|e| host(RunCommandError::RunProgram(e)))?;
    let program = sandbox.program(id).map(|p| (p.name(), p.section()));
    let (name, section) = program.unwrap_or_default();
    if args.json {
        println!("{}", to_json(name, section, &result));
    } else {
        print_text(name, &result);
    }
    match result.report.outcome {
        Outcome::Returned(_) => Ok(()),
        Outcome::Trapped(_) => Err(Failure::reported(FailureKind::Trap)),
        Outcome::DeadlineExceeded(_) => Err(Failure::reported(FailureKind::Deadline)),
    }
}

fn input_data(args: &RunArgs) -> Result<Vec<u8>, RunCommandError> {
    if let Some(path) = &args.data_file {
        return std::fs::read(path).map_err(|e| RunCommandError::ReadFile(path.clone(), e));
    }
    let Some(text) = &args.data else {
        return Ok(Vec::new());
    };
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(digits).map_err(RunCommandError::ParseData)
}

/// A trace line as a terminal can show it: a program may print any byte
/// but NUL, so control characters (escape sequences among them) are shown
/// escaped, and the rest as it is.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn per_run(result: &ProgramRun) -> Duration {
    let runs = u32::try_from(result.report.runs.max(1)).unwrap_or(u32::MAX);
    result.report.duration / runs
}

fn print_text(name: &str, result: &ProgramRun) {
    for line in &result.trace {
        println!("trace: {}", printable(line));
    }
    if result.trace_dropped > 0 {
        println!(
            "trace: ({} lines dropped: the trace buffer was full)",
            result.trace_dropped
        );
    }
    match result.report.outcome {
        Outcome::Returned(value) => {
            println!("{name} returned {value} ({value:#x})");
        }
        Outcome::Trapped(trap) => {
            eprintln!("error: {name} trapped: {trap}");
            if let Some(site) = &result.trap_site {
                eprintln!("  at {site}");
            }
        }
        Outcome::DeadlineExceeded(limit) => {
            eprintln!(
                "error: {name} ran past its deadline of {} and was stopped",
                humantime::format_duration(limit)
            );
        }
    }
    if result.report.runs > 0 {
        println!(
            "duration: {:?} per run ({} run{})",
            per_run(result),
            result.report.runs,
            if result.report.runs == 1 { "" } else { "s" }
        );
    }
    if !result.data_out.is_empty() {
        println!("data: {}", hex::encode(&result.data_out));
    }
}

fn to_json(name: &str, section: &str, result: &ProgramRun) -> Value {
    let (outcome, retval, trap) = match result.report.outcome {
        Outcome::Returned(value) => ("returned", json!(value), Value::Null),
        Outcome::Trapped(trap) => ("trapped", Value::Null, trap_json(&trap, result)),
        Outcome::DeadlineExceeded(_) => ("deadline_exceeded", Value::Null, Value::Null),
    };
    json!({
        "program": name,
        "section": section,
        "outcome": outcome,
        "retval": retval,
        "runs": result.report.runs,
        "duration_ns": u64::try_from(per_run(result).as_nanos()).unwrap_or(u64::MAX),
        "data_out": hex::encode(&result.data_out),
        "trace": result.trace,
        "trace_dropped": result.trace_dropped,
        "trap": trap,
    })
}

fn trap_json(trap: &Trap, result: &ProgramRun) -> Value {
    let site = result.trap_site.as_ref().map(|site| {
        let line = site.line.as_ref();
        json!({
            "slot": site.slot,
            "insn": site.insn,
            "function": site.function,
            "file": line.map(|l| l.file.clone()),
            "line": line.map(|l| l.line),
            "column": line.map(|l| l.column),
            "source": line.map(|l| l.text.trim().to_owned()),
        })
    });
    json!({
        "message": trap.to_string(),
        "kind": trap.kind.name(),
        "rip": format!("{:#x}", trap.rip),
        "fault_addr": trap.fault_addr.map(|a| format!("{a:#x}")),
        "site": site,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_in_text_output() {
        assert_eq!(printable("plain\ttab é"), "plain\ttab é");
        assert_eq!(printable("\u{1b}[31mred\r"), "\\u{1b}[31mred\\r");
    }
}
