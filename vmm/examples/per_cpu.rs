//! Per-CPU data: a program run on several vCPUs at once, each counting in
//! its own copy of a `PERCPU_ARRAY`, a `PERCPU_HASH` and `.percpu` globals,
//! with no atomics and no sharing; the host reads every CPU's copy and
//! writes them back (`images/progs/percpu.bpf.c`,
//! `images/progs/percpu_data.bpf.c`).
//!
//! Run it with `cargo run -p vmm --example per_cpu`. It checks every
//! result against the samples' header comments and exits non-zero if one
//! differs.

use guest_jit::elf::Object;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, ProgramRun, Sandbox, SandboxConfig};

const PERCPU: &[u8] = include_bytes!("../../images/progs/percpu.bpf.o");
const PERCPU_DATA: &[u8] = include_bytes!("../../images/progs/percpu_data.bpf.o");

const CPUS: usize = 4;

/// The example; an error if a result is not what the samples say.
fn run() -> Result<(), Box<dyn Error>> {
    // Four vCPUs; each has its own copy of every per-CPU value.
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: CPUS,
        ..SandboxConfig::default()
    })?;
    for bytes in [PERCPU, PERCPU_DATA] {
        sandbox.load_object(&Object::parse(bytes)?, HelperSet::Standard)?;
    }
    let all: Vec<usize> = (0..CPUS).collect();

    // percpu_hit counts a hit in `hits[0]` and in `per_key[key]`.
    // struct hit_args { u32 key; u32 cpu; u64 mine; u64 key_mine; }
    let key = 7u32;
    let mut hit_args = [0u8; 24];
    hit_args[0..4].copy_from_slice(&key.to_le_bytes());
    let percpu_hit = sandbox
        .find_program("percpu_hit")
        .ok_or("no program `percpu_hit`")?;

    // The first hit of a key creates its PERCPU_HASH element (an update
    // with BPF_NOEXIST). Were two vCPUs to race to create it, one insert
    // would fail and that hit be lost, as in the kernel: the sample does
    // not retry. So the first hit runs on vCPU 0 alone.
    let first = sandbox.run_program(percpu_hit, 0, &input(&hit_args, 1))?;
    ensure(returned(&first)?.0 == 1, "vCPU 0 counts its first hit")?;

    // Then on every vCPU at once, then 10 more times on vCPUs 2 and 3
    // (`repeat` runs it again inside the guest, without leaving).
    let runs = sandbox.run_program_on(percpu_hit, &all, &input(&hit_args, 1));
    for (cpu, run) in all.iter().zip(runs) {
        // Each vCPU has its own context buffer, so its own answer.
        let run = run?;
        let (r0, out) = returned(&run)?;
        let reported_cpu = u32::from_le_bytes(out[4..8].try_into()?);
        let expected = if *cpu == 0 { 2 } else { 1 };
        ensure(
            reported_cpu as usize == *cpu && r0 == expected,
            "each vCPU counts in its own hits[0]",
        )?;
    }
    for run in sandbox.run_program_on(percpu_hit, &[2, 3], &input(&hit_args, 10)) {
        ensure(returned(&run?)?.0 == 11, "vCPUs 2 and 3 reach 11")?;
    }

    // The host reads every CPU's copy: one value per vCPU, in CPU order.
    let hits = sandbox.find_map("hits").ok_or("no map `hits`")?;
    let per_cpu = u64_values(hits.lookup_percpu(&0u32.to_le_bytes())?)?;
    println!("hits[0] per CPU: {per_cpu:?}");
    ensure(per_cpu == [2, 1, 11, 11], "hits[0] is 2, 1, 11, 11")?;
    let per_key = sandbox.find_map("per_key").ok_or("no map `per_key`")?;
    let key_per_cpu = u64_values(per_key.lookup_percpu(&key.to_le_bytes())?)?;
    println!("per_key[{key}] per CPU: {key_per_cpu:?}");
    ensure(key_per_cpu == per_cpu, "per_key[7] counts the same")?;

    // percpu_sum adds the CPUs' values up inside the guest, as the host
    // just did.
    // struct sum_args { u32 nr_cpus; u32 key; u64 total; u64 key_total; }
    let mut sum_args = [0u8; 24];
    sum_args[0..4].copy_from_slice(&(CPUS as u32).to_le_bytes());
    sum_args[4..8].copy_from_slice(&key.to_le_bytes());
    let percpu_sum = sandbox
        .find_program("percpu_sum")
        .ok_or("no program `percpu_sum`")?;
    let run = sandbox.run_program(percpu_sum, 0, &input(&sum_args, 1))?;
    let (total, out) = returned(&run)?;
    println!("percpu_sum: {total} hits in all");
    ensure(
        total == per_cpu.iter().sum::<u64>() && out[16..24] == out[8..16],
        "percpu_sum adds up every CPU's hits",
    )?;

    // The host writes each CPU's copy: back to zero on every CPU but 1.
    let zero = 0u64.to_le_bytes();
    let five = 5u64.to_le_bytes();
    hits.update_percpu(
        &0u32.to_le_bytes(),
        &[&zero, &five, &zero, &zero],
        shm::maps::BPF_ANY,
    )?;
    let run = sandbox.run_program(percpu_sum, 0, &input(&sum_args, 1))?;
    ensure(returned(&run)?.0 == 5, "the program sees the host's values")?;

    // `.percpu` globals: every CPU starts from the section's initial image;
    // the section is a PERCPU_ARRAY map of one value named `.percpu`.
    // percpu_bump adds cpu + 1 to this CPU's `counter`.
    let percpu_bump = sandbox
        .find_program("percpu_bump")
        .ok_or("no program `percpu_bump`")?;
    for (cpu, run) in all
        .iter()
        .zip(sandbox.run_program_on(percpu_bump, &all, &input(&[0; 24], 1)))
    {
        ensure(
            returned(&run?)?.0 == *cpu as u64 + 1,
            "percpu_bump returns cpu + 1",
        )?;
    }
    let section = sandbox.find_map(".percpu").ok_or("no map `.percpu`")?;
    let copies = section
        .lookup_percpu(&0u32.to_le_bytes())?
        .ok_or("`.percpu` has no value")?;
    for (cpu, copy) in copies.iter().enumerate() {
        // counter @ 0, tag @ 8, arr[3] @ 12, pt @ 24
        let counter = u64::from_le_bytes(copy[0..8].try_into()?);
        let arr0 = u32::from_le_bytes(copy[12..16].try_into()?);
        println!(
            "CPU {cpu}: counter {counter}, tag {}, arr[0] {arr0}",
            copy[8]
        );
        ensure(
            counter == cpu as u64 + 1 && arr0 == 8,
            "CPU c's counter is c + 1 and arr[0] is 8",
        )?;
    }
    Ok(())
}

fn input(data: &[u8], repeat: u64) -> ProgramInput<'_> {
    ProgramInput {
        data,
        repeat,
        timeout: Some(Duration::from_secs(5)),
    }
}

/// Each CPU's u64 of a per-CPU lookup.
fn u64_values(values: Option<Vec<Vec<u8>>>) -> Result<Vec<u64>, Box<dyn Error>> {
    let values = values.ok_or("no such key")?;
    values
        .iter()
        .map(|v| Ok(u64::from_le_bytes(v.as_slice().try_into()?)))
        .collect()
}

fn returned(run: &ProgramRun) -> Result<(u64, &[u8]), Box<dyn Error>> {
    match run.report.outcome {
        Outcome::Returned(r0) => Ok((r0, &run.data_out)),
        other => Err(format!("{other:?} at {:?}", run.trap_site).into()),
    }
}

/// An error saying which expectation failed, unless `ok`.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}").into())
    }
}

/// Runs the example, or says why not. (`pub`: vmm/tests/examples.rs runs
/// it, with KVM and without.)
pub fn main() -> ExitCode {
    if !vmm::kvm::is_available() {
        println!("Skipped: /dev/kvm is not usable here, and bpfvisor needs KVM.");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
