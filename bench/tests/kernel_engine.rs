//! The `kernel` column on real objects in the host kernel: a workload's
//! checksum and the kernel's own time per run, and a program the kernel
//! refuses shown as unsupported with the verifier's reason.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use bench::engines::kernel::KernelEngine;
use bench::{BenchError, Engine, Group, Workload};
use integration_tests::bpf_available;

fn workload(object: &'static [u8], program: &'static str) -> Workload {
    Workload {
        name: program,
        group: Group::Compute,
        what: "test",
        object,
        program,
        native: None,
    }
}

#[test]
fn a_workload_runs_repeat_times_in_the_kernel_with_its_checksum() {
    if !bpf_available("a_workload_runs_repeat_times_in_the_kernel_with_its_checksum") {
        return;
    }
    let sum = workload(include_bytes!("../../images/progs/xdp_sum.bpf.o"), "sum");
    let mut prepared = KernelEngine.prepare(&sum).unwrap();
    for repeat in [1, 1000] {
        let sample = prepared.run(repeat).unwrap();
        // The sum of i * i for i < 1000.
        assert_eq!(sample.result, 332_833_500);
        assert!(sample.per_run.as_nanos() > 0, "{sample:?}");
    }
}

#[test]
fn programs_the_kernel_refuses_are_unsupported_with_the_reason() {
    if !bpf_available("programs_the_kernel_refuses_are_unsupported_with_the_reason") {
        return;
    }
    let object = include_bytes!("../../images/progs/xdp_sum.bpf.o");
    match KernelEngine.prepare(&workload(object, "refused")) {
        Err(BenchError::Unsupported(why)) => assert_eq!(
            why.0,
            "the kernel's verifier refuses it: R1 invalid mem access 'scalar'"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the kernel loaded a NULL read"),
    }
    // An object without the checksum global is an error, not a column.
    let hello = include_bytes!("../../images/progs/hello.bpf.o");
    match KernelEngine.prepare(&workload(hello, "hello")) {
        Err(BenchError::Failed(why)) => {
            assert_eq!(why, "hello: the object has no 8-byte global `result`");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("hello has no result"),
    }
}
