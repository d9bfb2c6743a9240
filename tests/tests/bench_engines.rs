//! The benchmark suite's rows and engines (the `bench` crate): every
//! workload is found and well-formed, its inputs are what the native code
//! generates, and every engine that can run a workload ends with the same
//! checksum as the native code and as bpfvisor's VM, whatever the batch.

use bench::engines::{interp::InterpEngine, native::NativeEngine, rbpf::RbpfEngine, vm::VmEngine};
use bench::native::generated;
use bench::object::WorkloadObject;
use bench::{BenchError, Engine, Group, Workload, workloads};
use guest_jit::elf::Object;
use integration_tests::kvm_available;

fn workload(name: &str) -> Workload {
    workloads()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
}

/// The checksum after a batch of 1 and after a batch of 3 more: equal,
/// since it depends on the inputs only. `None` when unsupported.
fn checksum(engine: &dyn Engine, workload: &Workload) -> Option<u64> {
    let mut prepared = match engine.prepare(workload) {
        Ok(p) => p,
        Err(BenchError::Unsupported(_)) => return None,
        Err(e) => panic!("{} on {}: {e}", engine.name(), workload.name),
    };
    let first = prepared.run(1).expect("first batch").result;
    let again = prepared.run(3).expect("second batch").result;
    assert_eq!(
        first,
        again,
        "{} on {}: the checksum changed with the runs before",
        engine.name(),
        workload.name
    );
    Some(first)
}

#[test]
fn every_workload_is_an_xdp_program_with_a_result() {
    let all = workloads();
    let names: Vec<&str> = all.iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "hash",
            "sort",
            "sieve",
            "matmul",
            "array_map",
            "hash_map",
            "percpu_counter",
            "arena_list"
        ]
    );
    for w in &all {
        let parsed = WorkloadObject::parse(w).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        assert_eq!(parsed.program.section, "xdp", "{}", w.name);
        assert_eq!(
            w.native.is_some(),
            w.group == Group::Compute,
            "{}: exactly the compute rows have native code",
            w.name
        );
    }
}

#[test]
fn the_objects_inputs_are_what_the_native_generator_makes() {
    // (object, variable, seed, bytes per element), seeds as in the sources.
    let inputs = [
        ("hash", "hash_input", 1, 1),
        ("sort", "sort_input", 2, 4),
        ("matmul", "mat_a", 3, 4),
        ("matmul", "mat_b", 4, 4),
        ("array_map", "array_input", 5, 4),
        ("hash_map", "hash_keys", 6, 4),
        ("hash_map", "hash_values", 7, 4),
        ("percpu_counter", "counter_input", 8, 4),
        ("arena_list", "list_input", 9, 4),
    ];
    for (name, variable, seed, size) in inputs {
        let object = Object::parse(workload(name).object).expect("parse");
        let var = object
            .variables()
            .iter()
            .find(|v| v.name == variable)
            .unwrap_or_else(|| panic!("{name}: no {variable}"));
        let section = &object.data_sections()[var.data].bytes;
        let start = var.offset as usize;
        let bytes = &section[start..start + var.size as usize];
        let expected: Vec<u8> = generated(seed, bytes.len() / size)
            .into_iter()
            .flat_map(|v| v.to_le_bytes().into_iter().take(size))
            .collect();
        assert_eq!(bytes, expected.as_slice(), "{name}: {variable}");
    }
}

#[test]
fn interp_rbpf_and_native_agree_on_every_compute_row() {
    for w in workloads().iter().filter(|w| w.group == Group::Compute) {
        let native = checksum(&NativeEngine, w).expect("compute rows have native code");
        assert_eq!(
            checksum(&InterpEngine, w),
            Some(native),
            "interp on {}",
            w.name
        );
        assert_eq!(checksum(&RbpfEngine, w), Some(native), "rbpf on {}", w.name);
    }
}

#[test]
fn the_vm_agrees_with_every_other_engine_on_every_row() {
    if !kvm_available("the_vm_agrees_with_every_other_engine_on_every_row") {
        return;
    }
    let others: [&dyn Engine; 3] = [&InterpEngine, &RbpfEngine, &NativeEngine];
    for w in workloads() {
        let vm = checksum(&VmEngine, &w).unwrap_or_else(|| panic!("the VM runs {}", w.name));
        for engine in others {
            if let Some(other) = checksum(engine, &w) {
                assert_eq!(other, vm, "{} on {}", engine.name(), w.name);
            }
        }
    }
}

#[test]
fn engines_without_a_bpf_runtime_say_why_they_cannot_run_a_row() {
    let reason = |engine: &dyn Engine, name: &str| match engine.prepare(&workload(name)) {
        Err(BenchError::Unsupported(why)) => why.to_string(),
        Err(e) => panic!("{}: {e}", engine.name()),
        Ok(_) => panic!("{} runs {name}", engine.name()),
    };
    assert_eq!(
        reason(&RbpfEngine, "hash_map"),
        "uses maps (table): rbpf has no BPF runtime"
    );
    assert_eq!(
        reason(&InterpEngine, "arena_list"),
        "uses maps (arena): the interpreter has no BPF runtime"
    );
    assert_eq!(
        reason(&NativeEngine, "percpu_counter"),
        "no native equivalent: only compute rows have one"
    );
}
