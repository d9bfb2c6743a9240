//! The microVM core through the library API: vCPUs, traps, deadlines,
//! resets and resource cleanup, each in a real VM running raw x86-64 code.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use iced_x86::code_asm::*;
use integration_tests::{assemble, kvm_available};
use shm::layout::{BOOT_INFO_START, PAGE_SIZE, area};
use shm::percpu::CPU_ID_OFFSET;
use std::time::{Duration, Instant};
use vmm::{Call, Outcome, PageFaultAccess, RunError, Sandbox, SandboxConfig, Trap, TrapKind};

fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

/// Loads code that returns `gs:[cpu_id]` and returns its entry.
fn load_cpu_id_code(sandbox: &Sandbox) -> u64 {
    let code = assemble(sandbox.layout().code_start(), |a| {
        a.mov(rax, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap();
        a.ret().unwrap();
    });
    sandbox.write_code(0, &code).unwrap()
}

/// Loads `build`'s code at offset 0 of the code region; returns its entry.
fn load(sandbox: &Sandbox, build: impl FnOnce(&mut CodeAssembler)) -> u64 {
    let code = assemble(sandbox.layout().code_start(), build);
    sandbox.write_code(0, &code).unwrap()
}

/// Runs `build`'s code once on vCPU 0 and returns the trap it must raise,
/// with the guest address of the code.
fn trap_of(sandbox: &Sandbox, build: impl FnOnce(&mut CodeAssembler)) -> (Trap, u64) {
    let entry = load(sandbox, build);
    let report = sandbox
        .call(0, &Call::new(entry).with_timeout(Duration::from_secs(5)))
        .unwrap();
    match report.outcome {
        Outcome::Trapped(trap) => (trap, entry),
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// The sandbox still works: a fresh call returns what it should.
fn assert_runs(sandbox: &Sandbox) {
    let entry = load_cpu_id_code(sandbox);
    let report = sandbox.call(0, &Call::new(entry)).unwrap();
    assert_eq!(report.outcome, Outcome::Returned(0));
}

fn spin_loop(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.pause().unwrap();
    a.jmp(top).unwrap();
}

#[test]
fn one_vcpu_sees_its_cpu_id_through_gs() {
    if !kvm_available("one_vcpu_sees_its_cpu_id_through_gs") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let entry = load_cpu_id_code(&sandbox);
    let report = sandbox.call(0, &Call::new(entry)).unwrap();
    assert_eq!(report.outcome, Outcome::Returned(0));
    assert_eq!(
        (report.runs, report.exits),
        (1, 1),
        "one run, one exit: {report:?}"
    );
}

#[test]
fn ping_answers_from_every_vcpu_without_loaded_code() {
    if !kvm_available("ping_answers_from_every_vcpu_without_loaded_code") {
        return;
    }
    let sandbox = setup_sandbox(3);
    for cpu in 0..3 {
        let report = sandbox.ping(cpu).unwrap();
        assert_eq!(
            (report.outcome, report.exits),
            (Outcome::Returned(cpu as u64), 1)
        );
    }
}

#[test]
fn four_vcpus_run_at_once_each_with_its_own_cpu_id() {
    if !kvm_available("four_vcpus_run_at_once_each_with_its_own_cpu_id") {
        return;
    }
    let sandbox = setup_sandbox(4);
    // Each vCPU sets its bit in a shared word, then waits until all four
    // have: this returns only if the four really run at the same time.
    let flags = sandbox.layout().ctx_buffer(0);
    let entry = load(&sandbox, |a| {
        let mut wait = a.create_label();
        a.mov(rcx, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap();
        a.mov(rdx, 1u64).unwrap();
        a.shl(rdx, cl).unwrap();
        a.mov(rax, flags).unwrap();
        a.lock().or(qword_ptr(rax), rdx).unwrap();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.cmp(qword_ptr(rax), 0xf).unwrap();
        a.jne(wait).unwrap();
        a.mov(rax, rcx).unwrap();
        a.ret().unwrap();
    });
    let results = sandbox.call_on_all(&Call::new(entry).with_timeout(Duration::from_secs(10)));
    let ids: Vec<Outcome> = results.into_iter().map(|r| r.unwrap().outcome).collect();
    assert_eq!(ids, (0..4).map(Outcome::Returned).collect::<Vec<_>>());
}

#[test]
fn write_to_read_only_page_traps_with_rip_and_address() {
    if !kvm_available("write_to_read_only_page_traps_with_rip_and_address") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.mov(rax, BOOT_INFO_START + 8).unwrap(); // 10 bytes
        a.mov(qword_ptr(rax), rcx).unwrap();
        a.ret().unwrap();
    });
    assert_eq!(trap.kind, TrapKind::PageFault);
    assert_eq!(trap.page_fault_access(), Some(PageFaultAccess::Write));
    assert!(trap.page_was_present());
    assert_eq!(
        (trap.rip, trap.fault_addr),
        (entry + 10, Some(BOOT_INFO_START + 8))
    );
    assert_runs(&sandbox);
}

#[test]
fn read_of_address_zero_traps() {
    if !kvm_available("read_of_address_zero_traps") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.xor(ecx, ecx).unwrap(); // 2 bytes
        a.mov(rax, qword_ptr(rcx)).unwrap();
        a.ret().unwrap();
    });
    assert_eq!(trap.page_fault_access(), Some(PageFaultAccess::Read));
    assert!(!trap.page_was_present());
    assert_eq!((trap.rip, trap.fault_addr), (entry + 2, Some(0)));
    assert_eq!(
        trap.to_string(),
        format!(
            "Page fault reading 0x0 (not mapped) at rip {:#x}",
            entry + 2
        )
    );
    assert_runs(&sandbox);
}

#[test]
fn jump_to_non_executable_page_traps_at_the_target() {
    if !kvm_available("jump_to_non_executable_page_traps_at_the_target") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mailbox = sandbox.layout().mailbox(0);
    let (trap, _) = trap_of(&sandbox, |a| {
        a.mov(rax, mailbox).unwrap();
        a.jmp(rax).unwrap();
    });
    assert_eq!(trap.page_fault_access(), Some(PageFaultAccess::Execute));
    assert!(trap.page_was_present());
    assert_eq!((trap.rip, trap.fault_addr), (mailbox, Some(mailbox)));
    assert_runs(&sandbox);
}

#[test]
fn ud2_traps_as_invalid_opcode() {
    if !kvm_available("ud2_traps_as_invalid_opcode") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.nop().unwrap();
        a.ud2().unwrap();
    });
    assert_eq!(
        (trap.kind, trap.rip, trap.fault_addr),
        (TrapKind::InvalidOpcode, entry + 1, None)
    );
    assert_runs(&sandbox);
}

#[test]
fn privileged_instructions_trap_as_general_protection() {
    if !kvm_available("privileged_instructions_trap_as_general_protection") {
        return;
    }
    let sandbox = setup_sandbox(1);
    // Guest code runs at CPL 3: it cannot turn interrupts on or touch CR3.
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.sti().unwrap();
        a.ret().unwrap();
    });
    assert_eq!((trap.kind, trap.rip), (TrapKind::GeneralProtection, entry));
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.xor(eax, eax).unwrap(); // 2 bytes
        a.mov(cr3, rax).unwrap();
        a.ret().unwrap();
    });
    assert_eq!(
        (trap.kind, trap.rip),
        (TrapKind::GeneralProtection, entry + 2)
    );
    assert_runs(&sandbox);
}

#[test]
fn ports_other_than_ours_trap_as_general_protection() {
    if !kvm_available("ports_other_than_ours_trap_as_general_protection") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.mov(edx, 0x3f8u32).unwrap(); // 5 bytes
        a.out(dx, al).unwrap();
        a.ret().unwrap();
    });
    assert_eq!(
        (trap.kind, trap.rip),
        (TrapKind::GeneralProtection, entry + 5)
    );
    assert_runs(&sandbox);
}

#[test]
fn divide_by_zero_traps() {
    if !kvm_available("divide_by_zero_traps") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        a.xor(ecx, ecx).unwrap(); // 2 bytes
        a.div(rcx).unwrap();
        a.ret().unwrap();
    });
    assert_eq!((trap.kind, trap.rip), (TrapKind::DivideError, entry + 2));
    assert_runs(&sandbox);
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    if !kvm_available("stack_overflow_hits_the_guard_page") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let (trap, entry) = trap_of(&sandbox, |a| {
        let mut recurse = a.create_label();
        a.set_label(&mut recurse).unwrap();
        a.call(recurse).unwrap();
    });
    let stack_bottom = sandbox.layout().stack_top(0) - area::STACK_SIZE;
    assert_eq!(trap.page_fault_access(), Some(PageFaultAccess::Write));
    assert!(!trap.page_was_present());
    assert_eq!(trap.rip, entry);
    let addr = trap.fault_addr.unwrap();
    assert!(
        (stack_bottom - PAGE_SIZE..stack_bottom).contains(&addr),
        "{addr:#x}"
    );
    assert_runs(&sandbox);
}

#[test]
fn infinite_loop_hits_its_deadline_and_reset_recovers() {
    if !kvm_available("infinite_loop_hits_its_deadline_and_reset_recovers") {
        return;
    }
    let mut sandbox = setup_sandbox(2);
    let spin = load(&sandbox, spin_loop);
    let budget = Duration::from_millis(50);
    let start = Instant::now();
    let report = sandbox
        .call(1, &Call::new(spin).with_timeout(budget))
        .unwrap();
    let took = start.elapsed();
    assert_eq!(report.outcome, Outcome::DeadlineExceeded(budget));
    assert!(
        took >= budget && took < Duration::from_secs(1),
        "stopped after {took:?}"
    );
    assert!(sandbox.is_poisoned());
    let err = sandbox.call(0, &Call::new(spin)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Sandbox is poisoned by an earlier stopped or failed run; reset it first"
    );

    sandbox.reset().unwrap();
    assert!(!sandbox.is_poisoned());
    let entry = load_cpu_id_code(&sandbox);
    for cpu in 0..2 {
        assert_eq!(
            sandbox.call(cpu, &Call::new(entry)).unwrap().outcome,
            Outcome::Returned(cpu as u64)
        );
    }
}

#[test]
fn deadline_stops_every_vcpu_of_a_parallel_run() {
    if !kvm_available("deadline_stops_every_vcpu_of_a_parallel_run") {
        return;
    }
    let mut sandbox = setup_sandbox(4);
    let spin = load(&sandbox, spin_loop);
    let start = Instant::now();
    let results = sandbox.call_on_all(&Call::new(spin).with_timeout(Duration::from_millis(50)));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    for result in results {
        assert!(matches!(
            result.unwrap().outcome,
            Outcome::DeadlineExceeded(_)
        ));
    }
    sandbox.reset().unwrap();
    let entry = load_cpu_id_code(&sandbox);
    let ids: Vec<_> = sandbox
        .call_on_all(&Call::new(entry))
        .into_iter()
        .map(|r| r.unwrap().outcome)
        .collect();
    assert_eq!(ids, (0..4).map(Outcome::Returned).collect::<Vec<_>>());
}

#[test]
fn repeat_runs_inside_the_guest_with_one_exit() {
    if !kvm_available("repeat_runs_inside_the_guest_with_one_exit") {
        return;
    }
    let sandbox = setup_sandbox(1);
    // Counts its calls in the context buffer and returns the count.
    let entry = load(&sandbox, |a| {
        a.mov(rax, qword_ptr(rdi)).unwrap();
        a.inc(rax).unwrap();
        a.mov(qword_ptr(rdi), rax).unwrap();
        a.ret().unwrap();
    });
    let call = Call {
        ctx: sandbox.layout().ctx_buffer(0),
        ctx_len: 8,
        repeat: 1000,
        ..Call::new(entry)
    };
    let report = sandbox.call(0, &call).unwrap();
    assert_eq!(report.outcome, Outcome::Returned(1000));
    assert_eq!((report.runs, report.exits), (1000, 1));
    assert!(
        report.cycles > 0 && report.duration > Duration::ZERO,
        "{report:?}"
    );
}

#[test]
fn bad_cpu_numbers_are_refused() {
    if !kvm_available("bad_cpu_numbers_are_refused") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let entry = load_cpu_id_code(&sandbox);
    let err = sandbox.call(2, &Call::new(entry)).unwrap_err();
    assert_eq!(err.to_string(), "vCPU 2 does not exist; the sandbox has 2");
    let results = sandbox.call_on(&[1, 1], &Call::new(entry));
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(RunError::DuplicateCpu(1))))
    );
    let bad = Sandbox::new(SandboxConfig {
        cpus: 65,
        ..SandboxConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "Invalid sandbox configuration: CPU count 65 is not in 1..=64"
    );
}

#[test]
fn every_vcpu_starts_with_the_reset_x87_and_sse_control_words() {
    if !kvm_available("every_vcpu_starts_with_the_reset_x87_and_sse_control_words") {
        return;
    }
    // A new vCPU's FPU is KVM's reset state, which the host does not set
    // again (VcpuSetup::create): FCW 0x37f, MXCSR 0x1f80.
    let sandbox = setup_sandbox(2);
    let control_words = |sandbox: &Sandbox, cpu: usize| {
        let entry = load(sandbox, |a| {
            a.sub(rsp, 16).unwrap();
            a.fnstcw(word_ptr(rsp)).unwrap();
            a.stmxcsr(dword_ptr(rsp + 4)).unwrap();
            a.movzx(eax, word_ptr(rsp)).unwrap();
            a.mov(ecx, dword_ptr(rsp + 4)).unwrap();
            a.shl(rcx, 16).unwrap();
            a.or(rax, rcx).unwrap();
            a.add(rsp, 16).unwrap();
            a.ret().unwrap();
        });
        match sandbox.call(cpu, &Call::new(entry)).unwrap().outcome {
            Outcome::Returned(words) => words,
            other => panic!("vCPU {cpu}: {other:?}"),
        }
    };
    let expected = 0x37f | (0x1f80 << 16);
    assert_eq!(control_words(&sandbox, 0), expected);
    assert_eq!(control_words(&sandbox, 1), expected);
    let clone = sandbox.snapshot().unwrap().sandbox().unwrap();
    assert_eq!(control_words(&clone, 0), expected);
    assert_eq!(control_words(&clone, 1), expected);
}
