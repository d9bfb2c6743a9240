//! `bpfvisor run --engine kernel`: the same object and program, loaded
//! into the host kernel with raw bpf() calls (`kernel-bpf`) instead of a
//! sandbox, run once (or `--repeat` times) with `BPF_PROG_TEST_RUN`, and
//! reported like the VM engine's run.

use super::{RunArgs, RunCommandError, prepare};
use crate::failure::{Failure, FailureKind};
use kernel_bpf::{KernelError, KernelObject, LoadOptions, TestRunOutput};
use serde_json::json;

/// Why the kernel engine cannot do what the arguments ask.
#[derive(Debug, thiserror::Error)]
pub enum KernelRunError {
    /// An option only the VM engine has.
    #[error("--engine kernel runs one program once (or --repeat times): {0} is for --engine vm")]
    Option(&'static str),
    /// Loading or running in the kernel failed.
    #[error("Cannot load {} into the kernel", .0.display())]
    Load(std::path::PathBuf, #[source] KernelError),
    /// The run failed.
    #[error("Cannot run the program in the kernel")]
    Run(#[source] KernelError),
    /// `--repeat` beyond what the kernel takes.
    #[error("--repeat {0} is more than the kernel's BPF_PROG_TEST_RUN takes (u32)")]
    Repeat(u64),
}

/// Options of `bpfvisor run` the kernel engine has no use for: the first
/// one given.
fn vm_only_option(args: &RunArgs) -> Option<&'static str> {
    [
        (!args.calls.is_empty(), "--call"),
        (args.all_cpus, "--all-cpus"),
        (args.cpu != 0, "--cpu"),
        (args.cpus.is_some(), "--cpus"),
        (args.follow, "--follow"),
        (args.dump_maps, "--dump-maps"),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
}

/// Exit code of a kernel engine error: the host's when bpf() is not
/// usable here, the object's otherwise.
fn kind(e: &KernelError) -> FailureKind {
    if e.is_unavailable() {
        FailureKind::Host
    } else {
        FailureKind::Load
    }
}

/// Loads and runs the program in the host kernel and prints the result.
pub(super) fn run(args: &RunArgs) -> Result<(), Failure> {
    let usage = |e: KernelRunError| Failure::new(FailureKind::Host, e);
    if let Some(option) = vm_only_option(args) {
        return Err(usage(KernelRunError::Option(option)));
    }
    let repeat =
        u32::try_from(args.repeat).map_err(|_| usage(KernelRunError::Repeat(args.repeat)))?;
    let (object, invocations, indices) = prepare(args)?;
    let (Some(invocation), Some(&index)) = (invocations.first(), indices.first()) else {
        return Err(Failure::new(
            FailureKind::Load,
            RunCommandError::LoadProgram(args.object.clone(), Box::new(super::no_program())),
        ));
    };
    let spec = &object.programs()[index];
    // Only the program asked for: an object's other programs may use what
    // the kernel refuses, and need not stop this one.
    let options = LoadOptions {
        programs: vec![spec.name.clone()],
        ..LoadOptions::default()
    };
    let loaded = KernelObject::load(&object, &options).map_err(|e| {
        let kind = kind(&e);
        Failure::new(kind, KernelRunError::Load(args.object.clone(), e))
    })?;
    let program = loaded
        .program(&spec.name)
        .map_err(|e| Failure::new(kind(&e), KernelRunError::Run(e)))?;
    let run = program
        .test_run(&invocation.data, repeat)
        .map_err(|e| Failure::new(kind(&e), KernelRunError::Run(e)))?;
    if args.json {
        println!("{}", to_json(&spec.name, &spec.section, &run));
    } else {
        print_text(&spec.name, !invocation.data.is_empty(), &run);
    }
    Ok(())
}

fn timed_by(run: &TestRunOutput) -> &'static str {
    if run.timed_by_kernel {
        "kernel"
    } else {
        "host"
    }
}

fn print_text(name: &str, had_input: bool, run: &TestRunOutput) {
    let value = run.retval;
    println!("{name} returned {value} ({value:#x})");
    println!(
        "duration: {:?} per run ({} run{}, timed by the {})",
        run.duration,
        run.runs,
        if run.runs == 1 { "" } else { "s" },
        timed_by(run)
    );
    if had_input && !run.output.is_empty() {
        println!("data: {}", hex::encode(&run.output));
    }
}

fn to_json(name: &str, section: &str, run: &TestRunOutput) -> serde_json::Value {
    json!({
        "engine": "kernel",
        "program": name,
        "section": section,
        "outcome": "returned",
        "retval": run.retval,
        "runs": run.runs,
        "duration_ns": u64::try_from(run.duration.as_nanos()).unwrap_or(u64::MAX),
        "timed_by": timed_by(run),
        "data_out": hex::encode(&run.output),
    })
}
