//! Loading and running clang-built programs through the `Sandbox` API, the
//! way an embedding platform does: global data, repeated invocations,
//! several vCPUs, trap sites, and what the guest can and cannot write.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::asm::assemble;
use guest_jit::elf::Object;
use guest_jit::insn::Program;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::program::unlinked;
use vmm::{
    HelperSet, LoadError, Outcome, PageFaultAccess, ProgramInput, Sandbox, SandboxConfig, TrapKind,
};

const GLOBALS: &[u8] = include_bytes!("../../images/progs/globals.bpf.o");
const CALLS: &[u8] = include_bytes!("../../images/progs/calls.bpf.o");
const NULL_READ: &[u8] = include_bytes!("../../images/progs/null_read.bpf.o");

fn input(data: &[u8]) -> ProgramInput<'_> {
    ProgramInput {
        data,
        repeat: 1,
        timeout: Some(Duration::from_secs(10)),
    }
}

fn returned(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Returned(value) => value,
        other => panic!("expected a return, got {other:?}"),
    }
}

#[test]
fn global_data_persists_across_invocations_and_is_shared_by_cpus() {
    if !kvm_available("global_data_persists_across_invocations_and_is_shared_by_cpus") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let object = Object::parse(GLOBALS).unwrap();
    let id = sandbox
        .load_object_program(&object, None, HelperSet::Standard)
        .unwrap();
    // total += x * scale (3, from .rodata) + sum(table[i] * weights[i]) (300).
    let one = 1u32.to_le_bytes();
    let first = sandbox.run_program(id, 0, &input(&one)).unwrap();
    assert_eq!(returned(first.report.outcome), 303);
    assert_eq!(first.trace, ["calls=101 total=303"]);
    // The other vCPU sees what the first one left in .data and .bss.
    let second = sandbox.run_program(id, 1, &input(&one)).unwrap();
    assert_eq!(returned(second.report.outcome), 606);
    assert_eq!(second.trace, ["calls=102 total=606"]);
    // A reset keeps loaded programs and their data.
    sandbox.reset().unwrap();
    let third = sandbox.run_program(id, 0, &input(&one)).unwrap();
    assert_eq!(returned(third.report.outcome), 909);
}

#[test]
fn every_program_of_an_object_loads_and_runs() {
    if !kvm_available("every_program_of_an_object_loads_and_runs") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let object = Object::parse(CALLS).unwrap();
    let ids = sandbox.load_object(&object, HelperSet::Standard).unwrap();
    assert_eq!(ids.len(), 3);
    let pair = [12u64.to_le_bytes(), 18u64.to_le_bytes()].concat();
    let expect = [
        ("pythagoras", 144 + 324),
        ("common_divisor", 6),
        ("both", 468 + 6),
    ];
    for (name, value) in expect {
        let id = sandbox.find_program(name).unwrap();
        let run = sandbox.run_program(id, 0, &input(&pair)).unwrap();
        assert_eq!(returned(run.report.outcome), value, "{name}");
    }
    assert_eq!(sandbox.find_program("socket"), sandbox.find_program("both"));
    assert_eq!(sandbox.find_program("nope"), None);
}

#[test]
fn traps_name_the_instruction_and_source_line() {
    if !kvm_available("traps_name_the_instruction_and_source_line") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let object = Object::parse(NULL_READ).unwrap();
    let id = sandbox
        .load_object_program(&object, Some("null_read"), HelperSet::Standard)
        .unwrap();
    let run = sandbox.run_program(id, 0, &input(&[])).unwrap();
    let Outcome::Trapped(trap) = run.report.outcome else {
        panic!("{:?}", run.report.outcome);
    };
    assert_eq!(trap.kind, TrapKind::PageFault);
    assert_eq!(trap.fault_addr, Some(0));
    let site = run.trap_site.unwrap();
    assert_eq!(site.function.as_deref(), Some("null_read"));
    let line = site.line.as_ref().unwrap();
    assert_eq!((line.file.as_str(), line.line), ("null_read.bpf.c", 10));
    assert_eq!(
        site.to_string(),
        format!(
            "instruction {} in null_read: {}\n  --> null_read.bpf.c:10:9\n   | return *p; /* NULL read: the trap names this line */",
            site.slot, site.insn
        )
    );
    // The sandbox is not poisoned by a trap: the next run works.
    let again = sandbox.run_program(id, 0, &input(&[])).unwrap();
    assert!(matches!(again.report.outcome, Outcome::Trapped(_)));
}

/// A program given as assembler text, loaded with the conformance helpers.
fn load_asm(sandbox: &mut Sandbox, source: &str) -> vmm::ProgramId {
    let program = Program::decode(&assemble(source).unwrap()).unwrap();
    sandbox
        .load_program(unlinked("test", program), HelperSet::Conformance)
        .unwrap()
}

#[test]
fn programs_cannot_write_code_rodata_or_the_exception_table() {
    if !kvm_available("programs_cannot_write_code_rodata_or_the_exception_table") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let object = Object::parse(GLOBALS).unwrap();
    sandbox.load_object(&object, HelperSet::Standard).unwrap();
    let layout = *sandbox.layout();
    for target in [
        layout.code_start(),
        layout.extable_start(),
        layout.rodata_start(),
    ] {
        let id = load_asm(
            &mut sandbox,
            &format!("lddw %r1, {target:#x}\nstdw [%r1], 7\nmov %r0, 1\nexit"),
        );
        let run = sandbox.run_program(id, 0, &input(&[])).unwrap();
        let Outcome::Trapped(trap) = run.report.outcome else {
            panic!("write to {target:#x}: {:?}", run.report.outcome);
        };
        assert_eq!(trap.page_fault_access(), Some(PageFaultAccess::Write));
        assert!(trap.page_was_present(), "{trap}");
        assert_eq!(trap.fault_addr, Some(target));
        assert_eq!(run.trap_site.unwrap().slot, 2);
    }
    // Writable globals are writable.
    let id = load_asm(
        &mut sandbox,
        &format!(
            "lddw %r1, {:#x}\nstdw [%r1], 7\nldxdw %r0, [%r1]\nexit",
            layout.data_start()
        ),
    );
    let run = sandbox.run_program(id, 0, &input(&[])).unwrap();
    assert_eq!(returned(run.report.outcome), 7);
}

#[test]
fn oversized_input_and_full_regions_are_refused() {
    if !kvm_available("oversized_input_and_full_regions_are_refused") {
        return;
    }
    let mut sandbox = Sandbox::new(SandboxConfig {
        code_size: 0x1000,
        ..SandboxConfig::default()
    })
    .unwrap();
    let id = load_asm(&mut sandbox, "mov %r0, %r2\nexit");
    let big = vec![0; sandbox.layout().ctx_size() as usize + 1];
    let err = sandbox.run_program(id, 0, &input(&big)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Input of 65537 bytes does not fit the context buffer of 65536 bytes"
    );
    let exact = vec![0; sandbox.layout().ctx_size() as usize];
    let run = sandbox.run_program(id, 0, &input(&exact)).unwrap();
    assert_eq!(returned(run.report.outcome), 65536);
    // 4 KiB of code fills up: the load is refused, nothing is half-placed.
    let long = "mov %r0, 1\n".repeat(1000) + "exit";
    let program = Program::decode(&assemble(&long).unwrap()).unwrap();
    let err = sandbox
        .load_program(unlinked("long", program), HelperSet::Conformance)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Fit {
                region: "JIT code",
                ..
            }
        ),
        "{err}"
    );
    let run = sandbox.run_program(id, 0, &input(&[1, 2, 3])).unwrap();
    assert_eq!(returned(run.report.outcome), 3);
}
