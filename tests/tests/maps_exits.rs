//! Helpers make no VM exit: every program of every map and helper sample,
//! run 100 times in one invocation, leaves the guest exactly as often as
//! a program that calls no helper at all.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, RunReport, Sandbox, SandboxConfig};

const REPEAT: u64 = 100;

/// The samples that call helpers, kfuncs or tail calls, by name.
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "wordcount",
        include_bytes!("../../images/progs/wordcount.bpf.o"),
    ),
    ("lru", include_bytes!("../../images/progs/lru.bpf.o")),
    (
        "queue_stack",
        include_bytes!("../../images/progs/queue_stack.bpf.o"),
    ),
    (
        "tailcall",
        include_bytes!("../../images/progs/tailcall.bpf.o"),
    ),
    (
        "map_in_map",
        include_bytes!("../../images/progs/map_in_map.bpf.o"),
    ),
    ("percpu", include_bytes!("../../images/progs/percpu.bpf.o")),
    (
        "for_each",
        include_bytes!("../../images/progs/for_each.bpf.o"),
    ),
    (
        "spinlock",
        include_bytes!("../../images/progs/spinlock.bpf.o"),
    ),
    (
        "legacy_maps",
        include_bytes!("../../images/progs/legacy_maps.bpf.o"),
    ),
    ("knobs", include_bytes!("../../images/progs/knobs.bpf.o")),
    ("maps", include_bytes!("../../images/progs/maps.bpf.o")),
    (
        "globals",
        include_bytes!("../../images/progs/globals.bpf.o"),
    ),
    ("hello", include_bytes!("../../images/progs/hello.bpf.o")),
    (
        "callbacks",
        include_bytes!("../../images/progs/callbacks.bpf.o"),
    ),
    ("loops", include_bytes!("../../images/progs/loops.bpf.o")),
    ("flows", include_bytes!("../../images/progs/flows.bpf.o")),
    ("time", include_bytes!("../../images/progs/time.bpf.o")),
    (
        "strings",
        include_bytes!("../../images/progs/strings.bpf.o"),
    ),
    (
        "scribble",
        include_bytes!("../../images/progs/scribble.bpf.o"),
    ),
];

const COMPUTE: &[u8] = include_bytes!("../../images/progs/compute.bpf.o");

/// Loads `object` into a new sandbox and runs each of its programs
/// [`REPEAT`] times in one invocation, with a zeroed context (every
/// sample accepts one); their names and reports.
fn run_all(object: &[u8]) -> Vec<(String, RunReport)> {
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 1,
        ..SandboxConfig::default()
    })
    .unwrap();
    let ids = sandbox
        .load_object(&Object::parse(object).unwrap(), HelperSet::Standard)
        .unwrap();
    let data = [0u8; 4200];
    ids.into_iter()
        .map(|id| {
            let name = sandbox.program(id).unwrap().name().to_owned();
            let input = ProgramInput {
                data: &data,
                repeat: REPEAT,
                timeout: Some(Duration::from_secs(20)),
            };
            let run = sandbox.run_program(id, 0, &input).unwrap();
            assert!(
                matches!(run.report.outcome, Outcome::Returned(_)),
                "{name}: {:?} at {:?}",
                run.report.outcome,
                run.trap_site
            );
            assert_eq!(run.report.runs, REPEAT, "{name}");
            (name, run.report)
        })
        .collect()
}

#[test]
fn helpers_make_no_vm_exit() {
    if !kvm_available("helpers_make_no_vm_exit") {
        return;
    }
    let baseline = run_all(COMPUTE);
    let exits = baseline[0].1.exits;
    assert!(baseline.iter().all(|(_, r)| r.exits == exits));
    let mut programs = 0;
    for (sample, object) in SAMPLES {
        for (name, report) in run_all(object) {
            assert_eq!(
                report.exits, exits,
                "{sample}/{name}: {} exits for {REPEAT} runs, a helper-free program takes {exits}",
                report.exits
            );
            programs += 1;
        }
    }
    assert!(programs >= 30, "only {programs} programs ran");
    eprintln!("{programs} programs, {REPEAT} runs each: {exits} exit(s) per invocation");
}
