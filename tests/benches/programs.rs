//! Program run time, measured side by side in one run: the compute samples
//! (`images/progs/compute.bpf.o`) JIT-compiled in the VM against the same
//! linked program in the reference interpreter, and the cost of loading
//! (verify + JIT + place) a program into a sandbox.
//!
//! `cargo bench -p integration-tests --bench programs`; prints the time per
//! run of each engine and their ratio.

use guest_jit::conformance::ConformanceHelpers;
use guest_jit::elf::{DataKind, Object, Placed};
use guest_jit::interp::{self, Memory, Region, RegionKind, RunOptions, mem::CTX_START};
use std::time::{Duration, Instant};
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const COMPUTE: &[u8] = include_bytes!("../../images/progs/compute.bpf.o");
/// Where the interpreter maps the object's data sections.
const INTERP_DATA_START: u64 = 0x4000_0000;
const ROUNDS: usize = 5;

struct Case {
    prog: &'static str,
    data: Vec<u8>,
    /// Runs per VM invocation, so one exit is spread over many runs.
    vm_repeat: u64,
}

fn cases() -> Vec<Case> {
    // sieve: primes below 65536.
    let sieve = [65536u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
    // fnv1a: 4096 bytes, 4 rounds.
    let mut fnv = Vec::new();
    fnv.extend(4096u32.to_le_bytes());
    fnv.extend(4u32.to_le_bytes());
    fnv.extend(0u64.to_le_bytes());
    fnv.extend((0..4096).map(|i| (i * 7) as u8));
    vec![
        Case {
            prog: "sieve",
            data: sieve,
            vm_repeat: 20,
        },
        Case {
            prog: "fnv1a",
            data: fnv,
            vm_repeat: 20,
        },
    ]
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One run in the interpreter, with the object's data sections mapped
/// where `link` placed them; returns r0 and the time taken.
fn interp_run(object: &Object, prog: &str, data: &[u8]) -> (u64, Duration) {
    let mut addrs = Vec::new();
    let mut next = INTERP_DATA_START;
    for section in object.data_sections() {
        addrs.push(next);
        next += (section.bytes.len() as u64).next_multiple_of(0x1000) + 0x1000;
    }
    let spec = object.find_program(Some(prog)).expect("program");
    let linked = object
        .link(spec, &|what| match what {
            Placed::Data(i) => addrs.get(i).copied(),
            Placed::Map(_) => None,
        })
        .expect("link");
    let mut memory = Memory::with_context(data.to_vec());
    for (section, &addr) in object.data_sections().iter().zip(&addrs) {
        let writable = section.kind != DataKind::ReadOnly;
        let region = Region::new(RegionKind::Other, addr, section.bytes.clone(), writable);
        memory.map(region).expect("map data section");
    }
    let options = RunOptions {
        step_limit: u64::MAX,
        ..RunOptions::default()
    };
    let args = [CTX_START, data.len() as u64, 0, 0, 0];
    let start = Instant::now();
    let exit = interp::run(
        &linked.program,
        &mut memory,
        &mut ConformanceHelpers,
        args,
        &options,
    )
    .expect("interpreter run");
    (exit.return_value, start.elapsed())
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED programs bench: /dev/kvm is not usable");
        return;
    }
    let object = Object::parse(COMPUTE).expect("compute.bpf.o");

    // Load cost: a fresh sandbox, then verify + JIT + place one program.
    let mut load = Vec::new();
    for _ in 0..50 {
        let mut sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let start = Instant::now();
        sandbox
            .load_object_program(&object, Some("sieve"), HelperSet::Standard)
            .expect("load");
        load.push(start.elapsed());
    }

    let mut sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let ids = sandbox
        .load_object(&object, HelperSet::Standard)
        .expect("load compute.bpf.o");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "compute sample", "VM (JIT)", "interpreter", "speedup"
    );
    for case in cases() {
        let id = sandbox.find_program(case.prog).expect("program id");
        assert!(ids.contains(&id));
        let (mut vm, mut interp) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            // Interleaved, so machine noise hits both engines alike.
            let input = ProgramInput {
                data: &case.data,
                repeat: case.vm_repeat,
                timeout: Some(Duration::from_secs(60)),
            };
            let run = sandbox.run_program(id, 0, &input).expect("vm run");
            let Outcome::Returned(vm_value) = run.report.outcome else {
                panic!("{} did not return: {:?}", case.prog, run.report.outcome);
            };
            vm.push(run.report.duration / case.vm_repeat as u32);
            let (value, took) = interp_run(&object, case.prog, &case.data);
            assert_eq!(value, vm_value, "{}: engines disagree", case.prog);
            interp.push(took);
        }
        let (vm, interp) = (median(vm), median(interp));
        println!(
            "{:<28} {:>14.1?} {:>14.1?} {:>9.0}x",
            case.prog,
            vm,
            interp,
            interp.as_secs_f64() / vm.as_secs_f64()
        );
    }
    println!(
        "{:<28} {:>14.1?}",
        "load sieve (verify+JIT+place)",
        median(load)
    );
}
