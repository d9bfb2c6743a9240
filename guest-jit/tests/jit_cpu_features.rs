//! The JIT emits nothing that depends on the guest's CPUID: vCPUs get none
//! (Note [Guest CPUID] in `vmm::vcpu`). Every instruction form, with every
//! register combination the golden tests use, is compiled as a whole
//! program (prologue and epilogue too) and decoded; each x86 instruction
//! must need no more than the x86-64 baseline with SSE2.

#![allow(clippy::unwrap_used, reason = "tests")]

mod jit_forms;

use guest_jit::jit::{JitOutput, beyond_baseline};
use jit_forms::{CODE_ADDR, cases};

/// The program code of `output` (not its helper table or padding).
fn program_code(output: &JitOutput) -> &[u8] {
    let end = *output.insn_offsets.last().unwrap() as usize;
    &output.code[..end]
}

#[test]
fn every_form_uses_only_baseline_instructions() {
    let mut found = Vec::new();
    let cases = cases();
    assert!(cases.len() > 100, "only {} forms", cases.len());
    for case in &cases {
        let output = case.compile();
        for line in beyond_baseline(program_code(&output), CODE_ADDR) {
            found.push(format!("{}: {line}", case.group));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_instruction_kvm_gates() {
    // rdtscp, then rdrand eax: both depend on the guest's CPUID.
    let code = [0x0f, 0x01, 0xf9, 0x0f, 0xc7, 0xf0];
    assert_eq!(beyond_baseline(&code, 0).len(), 2);
    // rdtsc, pause, a movdqu: baseline.
    let code = [0x0f, 0x31, 0xf3, 0x90, 0xf3, 0x0f, 0x6f, 0x00];
    assert!(beyond_baseline(&code, 0).is_empty());
}
