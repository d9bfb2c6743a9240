//! Fixtures for the helper tests: raw x86 code in a real VM calls the
//! runtime's helpers the way JIT code does (SysV registers, one `call`).
#![allow(dead_code, reason = "each test file uses part of the fixtures")]

use iced_x86::code_asm::*;
use integration_tests::assemble;
use std::time::Duration;
use vmm::runtime::RuntimeImage;
use vmm::{Call, Outcome, RunReport, Sandbox, SandboxConfig};

/// A sandbox with `cpus` vCPUs and default sizes.
pub fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

/// Guest address of the runtime function `name`.
pub fn helper(name: &str) -> u64 {
    RuntimeImage::embedded()
        .unwrap()
        .symbol(name)
        .unwrap_or_else(|| panic!("the runtime exports {name}"))
}

/// Writable guest memory for test data: `cpu`'s context buffer.
pub fn scratch(sandbox: &Sandbox, cpu: usize) -> u64 {
    sandbox.layout().ctx_buffer(cpu)
}

/// Assembles `build` at the start of the code region and loads it;
/// returns its entry. `build` is the body of a function entered with rsp
/// 8 off 16-byte alignment, as JIT code is.
pub fn load(sandbox: &Sandbox, build: impl FnOnce(&mut CodeAssembler)) -> u64 {
    let code = assemble(sandbox.layout().code_start(), build);
    sandbox.write_code(0, &code).unwrap()
}

/// Moves `args` into the SysV argument registers and calls `addr`; the
/// stack must be 16-byte aligned here.
pub fn emit_call(a: &mut CodeAssembler, addr: u64, args: &[u64]) {
    let regs = [rdi, rsi, rdx, rcx, r8];
    assert!(args.len() <= regs.len());
    for (&reg, &arg) in regs.iter().zip(args) {
        a.mov(reg, arg).unwrap();
    }
    a.mov(rax, addr).unwrap();
    a.call(rax).unwrap();
}

/// Loads code that calls helper `name` with `args` `times` times and
/// returns the last result.
pub fn load_helper_calls(sandbox: &Sandbox, name: &str, args: &[u64], times: u32) -> u64 {
    let addr = helper(name);
    load(sandbox, |a| {
        let mut top = a.create_label();
        // The push realigns the stack for the helper, which may use SSE.
        a.push(rbx).unwrap();
        a.mov(ebx, times).unwrap();
        a.set_label(&mut top).unwrap();
        emit_call(a, addr, args);
        a.dec(ebx).unwrap();
        a.jnz(top).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    })
}

/// Runs `entry` once on `cpu` and returns its report.
pub fn run_report(sandbox: &Sandbox, cpu: usize, entry: u64) -> RunReport {
    let call = Call::new(entry).with_timeout(Duration::from_secs(20));
    sandbox.call(cpu, &call).unwrap()
}

/// Runs `entry` once on `cpu`, checks that the helpers it called made no
/// VM exit (the run's own is the only one), and returns r0.
pub fn run(sandbox: &Sandbox, cpu: usize, entry: u64) -> u64 {
    let report = run_report(sandbox, cpu, entry);
    assert_eq!(report.exits, 1, "helpers stay in the guest: {report:?}");
    match report.outcome {
        Outcome::Returned(r0) => r0,
        other => panic!("expected a return, got {other:?}"),
    }
}

/// Calls helper `name` once with `args` on `cpu`; returns r0.
pub fn call_helper(sandbox: &Sandbox, cpu: usize, name: &str, args: &[u64]) -> u64 {
    let entry = load_helper_calls(sandbox, name, args, 1);
    run(sandbox, cpu, entry)
}
