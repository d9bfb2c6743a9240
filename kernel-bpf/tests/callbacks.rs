//! Programs that take a function's address — `bpf_loop` and
//! `bpf_for_each_map_elem` callbacks, which the kernel loads only with BTF
//! func_info — in the host kernel and in bpfvisor's VM: the same return
//! value and the same context after the run. Skipped loudly without bpf()
//! or KVM, failed then under BPFVISOR_REQUIRE_KVM=1.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::{bpf_available, kvm_available, run_returning, sandbox_with};
use kernel_bpf::{KernelError, KernelObject, LoadOptions};

fn sample_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../images/progs/{name}.bpf.o",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

/// `struct loop_args` of loops.bpf.c: start, end, stop; the outputs zero.
fn loop_args(start: i32, end: i32, stop: i32) -> Vec<u8> {
    let mut args = Vec::new();
    for word in [start, end, stop, 0] {
        args.extend(word.to_le_bytes());
    }
    args.extend([0; 16]);
    args
}

/// Runs `program` of sample `name` on `input` in the kernel and in the VM;
/// asserts both give the same r0 and context, and returns r0.
fn same_in_kernel_and_vm(name: &str, program: &str, input: &[u8]) -> u64 {
    let bytes = sample_bytes(name);
    let object = Object::parse(&bytes).unwrap();
    let options = LoadOptions {
        programs: vec![program.to_owned()],
        ..LoadOptions::default()
    };
    let loaded =
        KernelObject::load(&object, &options).unwrap_or_else(|e| panic!("{name}/{program}: {e}"));
    let kernel = loaded.program(program).unwrap().test_run(input, 1).unwrap();
    let sandbox = sandbox_with(1, &[&bytes]);
    let (r0, vm_context) = run_returning(&sandbox, program, 0, input);
    assert_eq!(u64::from(kernel.retval), r0, "{name}/{program}: r0");
    assert_eq!(kernel.output, vm_context, "{name}/{program}: context");
    r0
}

fn available(test: &str) -> bool {
    bpf_available(test) && kvm_available(test)
}

#[test]
fn bpf_loop_callbacks_run_as_in_the_vm() {
    if !available("bpf_loop_callbacks_run_as_in_the_vm") {
        return;
    }
    // One static callback, one global one (made static in the BTF the
    // kernel gets): sum of i + 2i for i < 10.
    let r0 = same_in_kernel_and_vm("callbacks", "loops", &10u32.to_le_bytes());
    assert_eq!(r0, 135);
    // bpf_loop with a callback that breaks at `stop`, and nested in a
    // triangle; the iterator kfuncs beside them.
    let r0 = same_in_kernel_and_vm("loops", "loop_sum", &loop_args(0, 10, -1));
    assert_eq!(r0, 10);
    let r0 = same_in_kernel_and_vm("loops", "loop_sum", &loop_args(0, 10, 3));
    assert_eq!(r0, 4);
    let r0 = same_in_kernel_and_vm("loops", "triangle", &loop_args(0, 10, -1));
    assert_eq!(r0, 55);
    for program in ["for_sum", "repeat_count", "iter_errors"] {
        same_in_kernel_and_vm("loops", program, &loop_args(2, 10, -1));
    }
}

#[test]
fn for_each_map_elem_callbacks_run_as_in_the_vm() {
    if !available("for_each_map_elem_callbacks_run_as_in_the_vm") {
        return;
    }
    // struct sums: seven 8-byte fields; 140 + 14 + 1500.
    let r0 = same_in_kernel_and_vm("for_each", "for_each_sums", &[0; 56]);
    assert_eq!(r0, 1654);
}

/// Sample `name` with its `int` made 200 bits wide in `.BTF`: our loader
/// takes it, the kernel's BTF checker does not.
fn with_btf_the_kernel_refuses(name: &str) -> Object {
    let mut bytes = sample_bytes(name);
    // INT, size 4, signed, 32 bits: info, size, encoding|offset|bits.
    let int = [0, 0, 0, 1, 4, 0, 0, 0, 32, 0, 0, 1];
    let at = bytes.windows(int.len()).position(|w| w == int).unwrap();
    bytes[at + 8] = 200;
    Object::parse(&bytes).unwrap()
}

#[test]
fn without_btf_programs_load_as_before_and_refusals_say_why() {
    if !bpf_available("without_btf_programs_load_as_before_and_refusals_say_why") {
        return;
    }
    // hello needs no BTF: it loads without.
    let hello = with_btf_the_kernel_refuses("hello");
    let loaded = KernelObject::load(&hello, &LoadOptions::default()).unwrap();
    let run = loaded.program("hello").unwrap().test_run(&[], 1).unwrap();
    assert_eq!(run.retval, 42);
    // A callback needs func_info: the refusal names the BTF's.
    let callbacks = with_btf_the_kernel_refuses("callbacks");
    let e = KernelObject::load(&callbacks, &LoadOptions::default()).unwrap_err();
    let KernelError::LoadProgram { reason, .. } = &e else {
        panic!("{e:?}");
    };
    let expected =
        "missing btf func_info (loaded without BTF: The kernel refused the object's BTF: ";
    assert!(reason.starts_with(expected), "{reason}");
    assert!(reason.contains("nr_bits"), "{reason}");
}
