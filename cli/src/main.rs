//! `bpfvisor`: run eBPF programs inside KVM micro-VMs.

mod bench;
mod check;
mod conformance;
mod disasm;
mod failure;
mod jobs;
mod run;

use clap::{Parser, Subcommand};
use failure::{Failure, FailureKind};
use std::process::ExitCode;

/// Run eBPF programs inside KVM micro-VMs.
///
/// Each sandbox is a KVM virtual machine with no guest OS: its vCPUs boot
/// straight into a small runtime that runs JIT-compiled BPF code, and leave
/// to the host only to report a result, a trap or a deadline.
#[derive(Debug, Parser)]
#[command(name = "bpfvisor", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a program of a BPF object (or a sequence of calls, some on
    /// several vCPUs at once) in a fresh sandbox and print return values,
    /// trace output, data and maps.
    Run(run::RunArgs),
    /// Run a JSON-lines file of jobs, each in a sandbox of its own,
    /// several at once, and print one JSON result line per job.
    Jobs(jobs::JobsArgs),
    /// Show a program's BPF instructions with their C source lines, or the
    /// x86-64 code the JIT makes of them.
    Disasm(disasm::DisasmArgs),
    /// Run bpf_conformance `.data` tests in the VM or the interpreter.
    Conformance(conformance::ConformanceArgs),
    /// Check that this machine can run sandboxes: boot one and ping every vCPU.
    Check(check::CheckArgs),
    /// Time the benchmark suite side by side: bpfvisor's VM and
    /// interpreter, the host kernel's BPF, rbpf and native code.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Output piped into something that stops reading (`| head`) ends the
    // process quietly, as it does other Unix tools, instead of making
    // every later print panic on EPIPE.
    // SAFETY: setting a signal's disposition to the default has no memory
    // effects; no other thread exists yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Jobs(args) => jobs::run(&args),
        Command::Disasm(args) => disasm::run(&args),
        Command::Conformance(args) => conformance::run(&args),
        Command::Check(args) => check::run(&args).map_err(|e| Failure::new(FailureKind::Host, e)),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
