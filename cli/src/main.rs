//! `bpfvisor`: run eBPF programs inside KVM micro-VMs.

mod check;

use clap::{Parser, Subcommand};
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
    /// Check that this machine can run sandboxes: boot one and ping every vCPU.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, outermost first: "A: B: C".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
