//! `bpf_trace_printk` in a real VM: raw x86 code calls the runtime's helper
//! the way JIT code does (SysV registers, one call), and the host reads the
//! vCPU's trace buffer afterwards.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use iced_x86::code_asm::*;
use integration_tests::{assemble, kvm_available};
use shm::layout::{GDT_START, area};
use shm::percpu::CPU_ID_OFFSET;
use shm::trace::{TraceHeader, read_trace};
use std::time::Duration;
use vmm::runtime::RuntimeImage;
use vmm::{Call, Outcome, Sandbox, SandboxConfig, TrapKind};

const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
/// An address no x86-64 CPU accepts: loading from it raises #GP, not #PF.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

fn helper_address() -> u64 {
    RuntimeImage::embedded()
        .unwrap()
        .symbol("bpf_trace_printk")
        .expect("the runtime exports bpf_trace_printk")
}

/// Where `setup_strings` puts its strings: CPU 0's context buffer.
fn strings_base(sandbox: &Sandbox) -> u64 {
    sandbox.layout().ctx_buffer(0)
}

/// Writes NUL-terminated `strings` one after another; returns their
/// addresses.
fn setup_strings(sandbox: &Sandbox, strings: &[&str]) -> Vec<u64> {
    let mut addr = strings_base(sandbox);
    strings
        .iter()
        .map(|s| {
            let mut bytes = s.as_bytes().to_vec();
            bytes.push(0);
            sandbox.memory().write(addr, &bytes).unwrap();
            let at = addr;
            addr += bytes.len() as u64;
            at
        })
        .collect()
}

/// An argument for the helper: a constant, or this vCPU's id.
#[derive(Clone, Copy)]
enum Arg {
    Value(u64),
    CpuId,
}

/// Loads code that calls `bpf_trace_printk(fmt, size, args...)` `times`
/// times, as JIT code would, and returns the last result.
fn load_printk_calls(sandbox: &Sandbox, fmt: u64, size: u64, args: [Arg; 3], times: u32) -> u64 {
    let helper = helper_address();
    let code = assemble(sandbox.layout().code_start(), |a| {
        let mut top = a.create_label();
        // Entered with rsp 8 off 16-byte alignment; the push realigns it
        // for the helper, which may use SSE.
        a.push(rbx).unwrap();
        a.mov(ebx, times).unwrap();
        a.set_label(&mut top).unwrap();
        a.mov(rdi, fmt).unwrap();
        a.mov(rsi, size).unwrap();
        for (reg, arg) in [rdx, rcx, r8].into_iter().zip(args) {
            match arg {
                Arg::Value(v) => a.mov(reg, v).unwrap(),
                Arg::CpuId => a.mov(reg, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap(),
            }
        }
        a.mov(rax, helper).unwrap();
        a.call(rax).unwrap();
        a.dec(ebx).unwrap();
        a.jnz(top).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    sandbox.write_code(0, &code).unwrap()
}

/// Empties `cpu`'s trace buffer, as the host does before a run.
fn reset_trace(sandbox: &Sandbox, cpu: usize) {
    let addr = sandbox.layout().trace_buffer(cpu);
    sandbox
        .memory()
        .write_pod(addr, &TraceHeader::default())
        .unwrap();
}

/// The lines in `cpu`'s trace buffer and how many were dropped.
fn trace_of(sandbox: &Sandbox, cpu: usize) -> (Vec<String>, u64) {
    let mut bytes = vec![0; area::TRACE_SIZE as usize];
    let addr = sandbox.layout().trace_buffer(cpu);
    sandbox.memory().read(addr, &mut bytes).unwrap();
    let log = read_trace(&bytes);
    let lines = log
        .lines()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    (lines, log.dropped())
}

/// Runs the printk code once on `cpu` and returns the helper's result.
fn run_on(sandbox: &Sandbox, cpu: usize, entry: u64) -> i64 {
    reset_trace(sandbox, cpu);
    let call = Call::new(entry).with_timeout(Duration::from_secs(10));
    let report = sandbox.call(cpu, &call).unwrap();
    assert_eq!(
        report.exits, 1,
        "printing leaves the guest only at the end: {report:?}"
    );
    match report.outcome {
        Outcome::Returned(r0) => r0 as i64,
        other => panic!("expected a return, got {other:?}"),
    }
}

fn values(args: [u64; 3]) -> [Arg; 3] {
    args.map(Arg::Value)
}

#[test]
fn hello_line_lands_in_the_vcpus_trace_buffer() {
    if !kvm_available("hello_line_lands_in_the_vcpus_trace_buffer") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let fmt = "Hello from bpfvisor, answer=%d";
    let [addr] = setup_strings(&sandbox, &[fmt])[..] else {
        unreachable!()
    };
    let entry = load_printk_calls(&sandbox, addr, fmt.len() as u64 + 1, values([42, 0, 0]), 1);
    assert_eq!(run_on(&sandbox, 0, entry), 30);
    assert_eq!(
        trace_of(&sandbox, 0),
        (vec!["Hello from bpfvisor, answer=42".to_owned()], 0)
    );
}

#[test]
fn bad_string_pointers_print_empty_and_the_program_goes_on() {
    if !kvm_available("bad_string_pointers_print_empty_and_the_program_goes_on") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let fmt = "[%s][%s][%s]";
    let addrs = setup_strings(&sandbox, &[fmt, "ok"]);
    let (fmt, ok) = (addrs[0], addrs[1]);
    let size = 13;
    // Unmapped page (#PF, not present), kernel-only page (#PF, present),
    // non-canonical address (#GP): every one is read through the probe.
    let guard_page = sandbox.layout().percpu_area(0);
    for (args, line, ret) in [
        ([ok, 0, NON_CANONICAL], "[ok][][]", 8),
        ([GDT_START, guard_page, ok], "[][][ok]", 8),
        ([NON_CANONICAL - 1, ok, ok], "[][ok][ok]", 10),
    ] {
        let entry = load_printk_calls(&sandbox, fmt, size, values(args), 1);
        assert_eq!(run_on(&sandbox, 0, entry), ret, "{line}");
        assert_eq!(trace_of(&sandbox, 0), (vec![line.to_owned()], 0));
    }
}

#[test]
fn a_bad_format_pointer_is_efault_and_prints_nothing() {
    if !kvm_available("a_bad_format_pointer_is_efault_and_prints_nothing") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let guard_page = sandbox.layout().percpu_area(0);
    for fmt in [0, NON_CANONICAL, guard_page, GDT_START] {
        let entry = load_printk_calls(&sandbox, fmt, 16, values([1, 2, 3]), 1);
        assert_eq!(run_on(&sandbox, 0, entry), EFAULT, "fmt at {fmt:#x}");
        assert_eq!(trace_of(&sandbox, 0), (vec![], 0));
    }
}

#[test]
fn formats_the_kernel_refuses_are_einval_and_print_nothing() {
    if !kvm_available("formats_the_kernel_refuses_are_einval_and_print_nothing") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let addrs = setup_strings(&sandbox, &["%d %d %d %d", "%.2d", "no nul"]);
    for (fmt, size) in [(addrs[0], 12), (addrs[1], 5), (addrs[2], 6)] {
        let entry = load_printk_calls(&sandbox, fmt, size, values([1, 2, 3]), 1);
        assert_eq!(run_on(&sandbox, 0, entry), EINVAL);
        assert_eq!(trace_of(&sandbox, 0), (vec![], 0));
    }
}

#[test]
fn a_full_buffer_keeps_what_fits_and_counts_the_rest() {
    if !kvm_available("a_full_buffer_keeps_what_fits_and_counts_the_rest") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let fmt = "line of twenty-nine bytes %03d";
    let [addr] = setup_strings(&sandbox, &[fmt])[..] else {
        unreachable!()
    };
    let calls = 1000;
    let entry = load_printk_calls(&sandbox, addr, 31, values([7, 0, 0]), calls);
    assert_eq!(run_on(&sandbox, 0, entry), 29);
    let (lines, dropped) = trace_of(&sandbox, 0);
    // 30 bytes per record in 16 KiB less the 16-byte header.
    let kept = (area::TRACE_SIZE as usize - 16) / 30;
    assert_eq!(
        (lines.len(), dropped),
        (kept, u64::from(calls) - kept as u64)
    );
    assert!(lines.iter().all(|l| l == "line of twenty-nine bytes 007"));
}

#[test]
fn each_vcpu_writes_its_own_buffer() {
    if !kvm_available("each_vcpu_writes_its_own_buffer") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let [addr] = setup_strings(&sandbox, &["cpu %d"])[..] else {
        unreachable!()
    };
    let entry = load_printk_calls(
        &sandbox,
        addr,
        7,
        [Arg::CpuId, Arg::Value(0), Arg::Value(0)],
        1,
    );
    for cpu in 0..2 {
        reset_trace(&sandbox, cpu);
    }
    let call = Call::new(entry).with_timeout(Duration::from_secs(10));
    for report in sandbox.call_on_all(&call) {
        assert_eq!(report.unwrap().outcome, Outcome::Returned(5));
    }
    for cpu in 0..2 {
        assert_eq!(trace_of(&sandbox, cpu), (vec![format!("cpu {cpu}")], 0));
    }
}

#[test]
fn faults_outside_the_probe_still_trap() {
    if !kvm_available("faults_outside_the_probe_still_trap") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let [fmt] = setup_strings(&sandbox, &["%s"])[..] else {
        unreachable!()
    };
    // A probe fixup first, then a NULL read in the program itself.
    let helper = helper_address();
    let code = assemble(sandbox.layout().code_start(), |a| {
        a.push(rbx).unwrap();
        a.mov(rdi, fmt).unwrap();
        a.mov(rsi, 3u64).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(rax, helper).unwrap();
        a.call(rax).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, qword_ptr(rcx)).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    let entry = sandbox.write_code(0, &code).unwrap();
    let report = sandbox
        .call(0, &Call::new(entry).with_timeout(Duration::from_secs(10)))
        .unwrap();
    let Outcome::Trapped(trap) = report.outcome else {
        panic!("expected a trap, got {:?}", report.outcome);
    };
    assert_eq!((trap.kind, trap.fault_addr), (TrapKind::PageFault, Some(0)));
    assert!(
        trap.rip > entry && trap.rip < entry + code.len() as u64,
        "{trap:?}"
    );
    // The helper had run: its (empty) line is there.
    assert_eq!(trace_of(&sandbox, 0), (vec![String::new()], 0));
}
