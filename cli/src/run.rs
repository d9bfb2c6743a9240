//! `bpfvisor run`: run programs of an object in a fresh sandbox, the way
//! `bpftool prog run` does in the kernel: one program once (or N times),
//! or a sequence of `--call`s, each on one vCPU or several at once; then
//! the records of its ring buffers (as they come, with `--follow`) and,
//! with `--dump-maps`, every map's contents.

mod dump;
mod kernel;
pub(crate) mod ringbufs;
mod values;

use crate::failure::{Failure, FailureKind};
use clap::Args;
use guest_jit::elf::Object;
use serde_json::{Map, Value, json};
use shm::layout::PAGE_SIZE;
use std::path::PathBuf;
use std::time::Duration;
use values::{CallSpec, EncodeError, SetVariable, VariableValue};
use vmm::{HelperSet, Outcome, ProgramId, ProgramInput, ProgramRun, Sandbox, SandboxConfig, Trap};

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
    /// Times to run the program (each --call) inside the VM without
    /// leaving it; the duration is the average.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// vCPU to run on (the sandbox gets this many plus one, or --cpus).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..64))]
    cpu: u16,
    /// vCPUs in the sandbox (default: enough for the vCPUs named).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    cpus: Option<u16>,
    /// Run the program on every vCPU of the sandbox (--cpus) at the same
    /// time, each with its own copy of the input, and report each.
    #[arg(long, conflicts_with = "cpu")]
    all_cpus: bool,
    /// Run program PROG on the vCPUs CPUS ("2", "0-3", "0,2"; default 0)
    /// at the same time, each with its own copy of the input bytes HEX.
    /// Repeat for a sequence of calls in the same sandbox, in order.
    #[arg(
        long = "call",
        value_name = "PROG[@CPUS][=HEX]",
        value_parser = values::parse_call,
        conflicts_with_all = ["prog", "data", "data_file", "cpu", "all_cpus"],
    )]
    calls: Vec<CallSpec>,
    /// Set global variable NAME (a `const volatile` knob, say) before
    /// loading: an integer (decimal or 0x hex, may be negative) stored at
    /// the variable's size, or hex:BYTES. Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = values::parse_set)]
    sets: Vec<SetVariable>,
    /// After the last call, print every map and its contents.
    #[arg(long)]
    dump_maps: bool,
    /// Print ring buffer records as they come, while the programs run
    /// (without it, each ring's records are printed after the last call).
    #[arg(long)]
    follow: bool,
    /// Most records printed per ring buffer; the others are consumed and
    /// counted.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_records: u64,
    /// Wall-clock budget for all runs of one call ("10s", "250ms").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of text (schema in docs/cli.md).
    #[arg(long)]
    json: bool,
    /// Where to run: `vm`, a fresh sandbox; `kernel`, the host kernel
    /// through bpf() and BPF_PROG_TEST_RUN (needs root), for comparison.
    #[arg(long, value_enum, default_value_t = Engine::Vm)]
    engine: Engine,
}

/// Where `bpfvisor run` runs the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// A fresh KVM sandbox.
    Vm,
    /// The host kernel (raw bpf() calls, BPF_PROG_TEST_RUN).
    Kernel,
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
    ParseObject(PathBuf, #[source] Box<guest_jit::elf::LoadError>),
    /// A `--set` does not fit the object.
    #[error("Cannot set global variable `{0}`")]
    SetVariable(String, #[source] SetValueError),
    /// No sandbox could be built.
    #[error("Cannot create a sandbox")]
    CreateSandbox(#[source] vmm::SandboxError),
    /// The program was refused.
    #[error("Cannot load {}", .0.display())]
    LoadProgram(PathBuf, #[source] Box<vmm::LoadError>),
    /// The run could not happen.
    #[error("Cannot run the program")]
    RunProgram(#[source] vmm::RunError),
    /// The ring buffers could not be read.
    #[error(transparent)]
    RingBufs(#[from] ringbufs::RingBufsError),
    /// A vCPU named is not in a sandbox of `--cpus` vCPUs.
    #[error("vCPU {cpu} is not in a sandbox of --cpus {cpus}")]
    NoSuchCpu {
        /// The vCPU named.
        cpu: usize,
        /// `--cpus`.
        cpus: usize,
    },
}

/// Why a `--set` value cannot be given to its variable.
#[derive(Debug, thiserror::Error)]
pub enum SetValueError {
    /// The integer does not fit.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// No such variable, or a value of the wrong size.
    #[error(transparent)]
    Object(Box<guest_jit::elf::LoadError>),
}

/// One invocation: a program on some vCPUs at once, with its input.
struct Invocation {
    /// Function or section name; `None`: the object's only program.
    program: Option<String>,
    /// vCPUs, each running the program with its own copy of `data`.
    cpus: Vec<usize>,
    data: Vec<u8>,
}

/// One vCPU's run of an invocation.
struct CpuRun {
    call: usize,
    cpu: usize,
    name: String,
    section: String,
    result: ProgramRun,
}

/// Runs the programs and prints what they did.
pub fn run(args: &RunArgs) -> Result<(), Failure> {
    if args.engine == Engine::Kernel {
        return kernel::run(args);
    }
    let (object, invocations, indices) = prepare(args)?;
    let mut sandbox = create_sandbox(&object, &invocations, args.cpus)
        .map_err(|e| Failure::new(FailureKind::Host, e))?;
    let ids = sandbox
        .load_object(&object, HelperSet::Standard)
        .map_err(|e| load_error(args, e))?;
    // Ids in the order of the invocations.
    let programs: Vec<ProgramId> = indices
        .iter()
        .map(|&i| ids.get(i).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| load_error(args, no_program()))?;
    let host =
        |e: ringbufs::RingBufsError| Failure::new(FailureKind::Host, RunCommandError::RingBufs(e));
    // Consumers before the first call, as a loader attaches them: with
    // `--follow`, records print from the first one committed.
    let consumers = ringbufs::attach(&sandbox).map_err(host)?;
    let (runs, rings, follow_error) = if args.follow {
        let (runs, followed) = ringbufs::follow(consumers, args.max_records, args.json, |drain| {
            run_calls(args, &sandbox, &invocations, &programs, drain)
        })
        .map_err(host)?;
        (runs?, followed.rings, followed.error)
    } else {
        let runs = run_calls(args, &sandbox, &invocations, &programs, &mut || {})?;
        (runs, ringbufs::collect(consumers, args.max_records), None)
    };
    let maps = args.dump_maps.then(|| dump::collect(&sandbox, &object));
    if args.json {
        println!("{}", run_json(&runs, &rings, maps.as_deref()));
    } else {
        print!("{}", ringbufs::to_text(&rings, args.max_records));
        if let Some(maps) = &maps {
            print!("{}", dump::to_text(maps));
        }
    }
    let worst = worst_failure(&runs);
    match (worst, follow_error) {
        (None, None) => Ok(()),
        (Some(kind), None) => Err(Failure::reported(kind)),
        (kind, Some(e)) => Err(Failure::new(
            kind.unwrap_or(FailureKind::Host),
            RunCommandError::RingBufs(e),
        )),
    }
}

fn load_error(args: &RunArgs, e: vmm::LoadError) -> Failure {
    let e = RunCommandError::LoadProgram(args.object.clone(), Box::new(e));
    Failure::new(FailureKind::Load, e)
}

/// The error of a program index that [`Object::programs`] does not have
/// (which `program_index` never returns).
fn no_program() -> vmm::LoadError {
    vmm::LoadError::SelectProgram(Box::new(guest_jit::elf::LoadError::FindAnyProgram))
}

/// Reads the object, sets the `--set` variables, and finds the program of
/// each invocation (its index in [`Object::programs`]), before any VM is
/// built.
fn prepare(args: &RunArgs) -> Result<(Object, Vec<Invocation>, Vec<usize>), Failure> {
    let host = |e: RunCommandError| Failure::new(FailureKind::Host, e);
    let load = |e: RunCommandError| Failure::new(FailureKind::Load, e);
    let invocations = invocations(args).map_err(host)?;
    let bytes = std::fs::read(&args.object)
        .map_err(|e| host(RunCommandError::ReadFile(args.object.clone(), e)))?;
    let mut object = Object::parse(&bytes).map_err(|e| {
        load(RunCommandError::ParseObject(
            args.object.clone(),
            Box::new(e),
        ))
    })?;
    for set in &args.sets {
        set_variable(&mut object, set)
            .map_err(|e| load(RunCommandError::SetVariable(set.name.clone(), e)))?;
    }
    let indices = invocations
        .iter()
        .map(|inv| program_index(&object, inv.program.as_deref()))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|e| load_error(args, e))?;
    Ok((object, invocations, indices))
}

/// Runs each invocation in turn (`programs[i]` for `invocations[i]`),
/// printing each vCPU's run in text mode, until one does not return.
/// `after_call` runs after each call, before its runs are printed (with
/// `--follow`, it prints the call's last ring buffer records).
fn run_calls(
    args: &RunArgs,
    sandbox: &Sandbox,
    invocations: &[Invocation],
    programs: &[ProgramId],
    after_call: &mut dyn FnMut(),
) -> Result<Vec<CpuRun>, Failure> {
    let mut runs: Vec<CpuRun> = Vec::new();
    for (call, (invocation, &id)) in invocations.iter().zip(programs).enumerate() {
        let input = ProgramInput {
            data: &invocation.data,
            repeat: args.repeat,
            timeout: Some(args.timeout),
        };
        let results = sandbox.run_program_on(id, &invocation.cpus, &input);
        let (name, section) = sandbox
            .program(id)
            .map(|p| (p.name().to_owned(), p.section().to_owned()))
            .unwrap_or_default();
        after_call();
        let first = runs.len();
        for (&cpu, result) in invocation.cpus.iter().zip(results) {
            let result = result
                .map_err(|e| Failure::new(FailureKind::Host, RunCommandError::RunProgram(e)))?;
            runs.push(CpuRun {
                call,
                cpu,
                name: name.clone(),
                section: section.clone(),
                result,
            });
        }
        let these = &runs[first..];
        if !args.json {
            let several = these.len() > 1;
            for run in these {
                let prefix = if several {
                    format!("cpu {}: ", run.cpu)
                } else {
                    String::new()
                };
                print_text(&prefix, &run.name, &run.result);
            }
        }
        // A call that trapped or was stopped ends the sequence: later
        // calls would build on a state it did not finish (and a stopped
        // vCPU leaves the sandbox unusable).
        if worst_failure(these).is_some() {
            break;
        }
    }
    Ok(runs)
}

/// What the arguments ask to run: the `--call`s, or the one program of
/// `--prog`, `--data` and `--cpu`.
fn invocations(args: &RunArgs) -> Result<Vec<Invocation>, RunCommandError> {
    if !args.calls.is_empty() {
        return Ok(args
            .calls
            .iter()
            .map(|call| Invocation {
                program: Some(call.program.clone()),
                cpus: call.cpus.clone(),
                data: call.data.clone(),
            })
            .collect());
    }
    let cpus = if args.all_cpus {
        (0..usize::from(args.cpus.unwrap_or(1))).collect()
    } else {
        vec![usize::from(args.cpu)]
    };
    Ok(vec![Invocation {
        program: args.prog.clone(),
        cpus,
        data: input_data(args)?,
    }])
}

fn input_data(args: &RunArgs) -> Result<Vec<u8>, RunCommandError> {
    if let Some(path) = &args.data_file {
        return std::fs::read(path).map_err(|e| RunCommandError::ReadFile(path.clone(), e));
    }
    let Some(text) = &args.data else {
        return Ok(Vec::new());
    };
    parse_hex(text).map_err(RunCommandError::ParseData)
}

/// Bytes written in hex, pairs of digits optionally separated by
/// whitespace ("01 02 ff" or "0102ff").
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, hex::FromHexError> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(digits)
}

fn set_variable(object: &mut Object, set: &SetVariable) -> Result<(), SetValueError> {
    let bytes = match &set.value {
        VariableValue::Bytes(bytes) => bytes.clone(),
        VariableValue::Int(value) => {
            // An unknown name is reported by set_variable, with the list.
            let size = object
                .variables()
                .iter()
                .find(|v| v.name == set.name)
                .map(|v| v.size);
            match size {
                Some(size) => values::encode_int(*value, size)?,
                None => Vec::new(),
            }
        }
    };
    object
        .set_variable(&set.name, &bytes)
        .map_err(|e| SetValueError::Object(Box::new(e)))
}

/// The index in [`Object::programs`] of the program `name` selects.
pub(crate) fn program_index(object: &Object, name: Option<&str>) -> Result<usize, vmm::LoadError> {
    let spec = object
        .find_program(name)
        .map_err(|e| vmm::LoadError::SelectProgram(Box::new(e)))?;
    Ok(object
        .programs()
        .iter()
        .position(|p| std::ptr::eq(p, spec))
        .unwrap_or_default())
}

/// A sandbox with a vCPU for the highest CPU named, a context buffer for
/// the largest input, and a maps region for every map of `object`.
fn create_sandbox(
    object: &Object,
    invocations: &[Invocation],
    sandbox_cpus: Option<u16>,
) -> Result<Sandbox, RunCommandError> {
    let needed = invocations
        .iter()
        .flat_map(|inv| inv.cpus.iter().copied())
        .max()
        .unwrap_or_default()
        + 1;
    let cpus = match sandbox_cpus.map(usize::from) {
        Some(cpus) if needed > cpus => {
            return Err(RunCommandError::NoSuchCpu {
                cpu: needed - 1,
                cpus,
            });
        }
        Some(cpus) => cpus,
        None => needed,
    };
    let largest = invocations
        .iter()
        .map(|inv| inv.data.len() as u64)
        .max()
        .unwrap_or_default();
    Sandbox::new(sandbox_config(object, cpus, largest)).map_err(RunCommandError::CreateSandbox)
}

/// The configuration of a sandbox of `cpus` vCPUs for `object`: a context
/// buffer for an input of `largest` bytes, and a maps region for every map.
pub(crate) fn sandbox_config(object: &Object, cpus: usize, largest: u64) -> SandboxConfig {
    let defaults = SandboxConfig::default();
    SandboxConfig {
        cpus,
        ctx_size: largest
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(u64::MAX)
            .max(MIN_CTX_SIZE),
        // Far too large a region is refused by the layout, by name.
        maps_size: vmm::maps::maps_size_needed(object, cpus)
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(u64::MAX)
            .max(defaults.maps_size),
        ..defaults
    }
}

/// The failure the worst of `runs` stands for: a deadline over a trap.
fn worst_failure(runs: &[CpuRun]) -> Option<FailureKind> {
    runs.iter()
        .filter_map(|run| match run.result.report.outcome {
            Outcome::Returned(_) => None,
            Outcome::Trapped(_) => Some(FailureKind::Trap),
            Outcome::DeadlineExceeded(_) => Some(FailureKind::Deadline),
        })
        .max_by_key(|kind| kind.exit_code())
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

pub(crate) fn per_run(result: &ProgramRun) -> Duration {
    let runs = u32::try_from(result.report.runs.max(1)).unwrap_or(u32::MAX);
    result.report.duration / runs
}

/// One vCPU's run as text, each line after `prefix` (the CPU, when a call
/// ran on several).
fn print_text(prefix: &str, name: &str, result: &ProgramRun) {
    for line in &result.trace {
        println!("{prefix}trace: {}", printable(line));
    }
    if result.trace_dropped > 0 {
        println!(
            "{prefix}trace: ({} lines dropped: the trace buffer was full)",
            result.trace_dropped
        );
    }
    match result.report.outcome {
        Outcome::Returned(value) => {
            println!("{prefix}{name} returned {value} ({value:#x})");
        }
        Outcome::Trapped(trap) => {
            eprintln!("{prefix}error: {name} trapped: {trap}");
            if let Some(site) = &result.trap_site {
                eprintln!("{prefix}  at {site}");
            }
        }
        Outcome::DeadlineExceeded(limit) => {
            eprintln!(
                "{prefix}error: {name} ran past its deadline of {} and was stopped",
                humantime::format_duration(limit)
            );
        }
    }
    if result.report.runs > 0 {
        println!(
            "{prefix}duration: {:?} per run ({} run{})",
            per_run(result),
            result.report.runs,
            if result.report.runs == 1 { "" } else { "s" }
        );
    }
    if !result.data_out.is_empty() {
        println!("{prefix}data: {}", hex::encode(&result.data_out));
    }
}

/// The `--json` object: the last vCPU run's fields at the top (all there
/// is for the single-program form), every run in `calls`, the ring
/// buffers and the maps.
fn run_json(
    runs: &[CpuRun],
    rings: &[ringbufs::RingDump],
    maps: Option<&[dump::MapDump]>,
) -> Value {
    let mut top = runs.last().map(cpu_run_json).unwrap_or_default();
    let calls: Vec<Value> = runs
        .iter()
        .map(|run| {
            let mut fields = cpu_run_json(run);
            fields.insert("call".into(), json!(run.call));
            Value::Object(fields)
        })
        .collect();
    top.insert("calls".into(), Value::Array(calls));
    // Each vCPU's result of the last call (every vCPU's, with --all-cpus).
    let last = runs.last().map_or(0, |run| run.call);
    let results: Vec<Value> = runs
        .iter()
        .filter(|run| run.call == last)
        .map(|run| {
            let retval = match run.result.report.outcome {
                Outcome::Returned(value) => json!(value),
                _ => Value::Null,
            };
            json!({
                "cpu": run.cpu,
                "retval": retval,
                "duration_ns": u64::try_from(per_run(&run.result).as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    top.insert("results".into(), Value::Array(results));
    if !rings.is_empty() {
        let (records, summary) = ringbufs::to_json(rings);
        if let Some(records) = records {
            top.insert("ringbufs".into(), records);
        }
        top.insert("ringbuf_summary".into(), summary);
    }
    if let Some(maps) = maps {
        top.insert("maps".into(), dump::to_json(maps));
    }
    Value::Object(top)
}

fn cpu_run_json(run: &CpuRun) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Value::Object(base) = to_json(&run.name, &run.section, &run.result) {
        fields = base;
    }
    fields.insert("cpu".into(), json!(run.cpu));
    fields.insert("exits".into(), json!(run.result.report.exits));
    fields
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

pub(crate) fn trap_json(trap: &Trap, result: &ProgramRun) -> Value {
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
