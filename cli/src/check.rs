//! `bpfvisor check`: can this machine run sandboxes, and how fast?

use clap::Args;
use std::time::Instant;
use vmm::{Outcome, Sandbox, SandboxConfig};

/// Arguments of `bpfvisor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Number of vCPUs to boot (1..=64).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    cpus: u16,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The sandbox could not be built.
    #[error("Cannot create a sandbox")]
    CreateSandbox(#[source] vmm::SandboxError),
    /// A vCPU did not answer.
    #[error("vCPU {0} did not answer its ping")]
    Ping(usize, #[source] vmm::RunError),
    /// A vCPU answered with the wrong id.
    #[error("vCPU {cpu} answered {outcome:?}, expected its own id")]
    WrongAnswer {
        /// The vCPU.
        cpu: usize,
        /// What it answered.
        outcome: Outcome,
    },
}

/// Boots a sandbox with `args.cpus` vCPUs and pings each one.
pub fn run(args: &CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cpus = usize::from(args.cpus);
    let start = Instant::now();
    let sandbox = Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .map_err(CheckError::CreateSandbox)?;
    println!(
        "sandbox with {cpus} vCPU(s) created in {:.1?}",
        start.elapsed()
    );
    for cpu in 0..cpus {
        let report = sandbox.ping(cpu).map_err(|e| CheckError::Ping(cpu, e))?;
        if report.outcome != Outcome::Returned(cpu as u64) {
            return Err(CheckError::WrongAnswer {
                cpu,
                outcome: report.outcome,
            }
            .into());
        }
        println!(
            "vCPU {cpu}: answered in {:.1?} ({} VM exit)",
            report.wall, report.exits
        );
    }
    println!("ok");
    Ok(())
}
