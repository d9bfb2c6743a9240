//! `SandboxConfig::vcpu_affinity`: a sandbox's vCPU threads run only on
//! the CPUs asked for while it lives, give them back when it is dropped
//! (the pooled worker serves the next sandbox from where it started), and
//! a set of CPUs this process cannot use is refused.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use integration_tests::{kvm_available, run_named};
use vmm::{CpuSet, HelperSet, Sandbox, SandboxConfig, SandboxError};

const HELLO: &[u8] = include_bytes!("../../images/progs/hello.bpf.o");

/// `Cpus_allowed_list` of every vCPU worker thread of this process.
fn vcpu_threads_allowed() -> Vec<String> {
    let mut lists = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("bpfvisor-vcpu") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            lists.push(list.trim().to_owned());
        }
    }
    lists
}

#[test]
fn vcpus_run_where_they_are_told_and_give_the_cpus_back() {
    if !kvm_available("vcpus_run_where_they_are_told_and_give_the_cpus_back") {
        return;
    }
    let allowed = CpuSet::allowed().unwrap();
    let last = allowed.cpus().last().unwrap();
    let all: Vec<usize> = allowed.cpus().collect();
    let mut sandbox = Sandbox::new(SandboxConfig {
        cpus: 2,
        vcpu_affinity: Some(CpuSet::of([last])),
        ..SandboxConfig::default()
    })
    .unwrap();
    let object = guest_jit::elf::Object::parse(HELLO).unwrap();
    sandbox.load_object(&object, HelperSet::Standard).unwrap();
    // A vCPU's thread pins itself when it starts serving: once each has
    // answered a call, all have.
    run_named(&sandbox, "hello", 0, &[]);
    run_named(&sandbox, "hello", 1, &[]);
    if all.len() == 1 {
        // Every thread runs on the one CPU: nothing to tell apart.
        return;
    }
    let pinned = vcpu_threads_allowed();
    let last_list = last.to_string();
    assert_eq!(
        pinned.iter().filter(|l| **l == last_list).count(),
        2,
        "both vCPUs on CPU {last}: {pinned:?}"
    );
    // A clone of a snapshot keeps the set.
    let snapshot = sandbox.snapshot().unwrap();
    let clone = snapshot.sandbox().unwrap();
    run_named(&clone, "hello", 0, &[]);
    run_named(&clone, "hello", 1, &[]);
    assert_eq!(
        vcpu_threads_allowed()
            .iter()
            .filter(|l| **l == last_list)
            .count(),
        4
    );
    drop(clone);
    drop(sandbox);
    // The workers are idle again, on every CPU they had.
    let lists = vcpu_threads_allowed();
    assert!(!lists.contains(&last_list), "{lists:?}");
}

#[test]
fn a_set_of_cpus_this_process_cannot_use_is_refused() {
    if !kvm_available("a_set_of_cpus_this_process_cannot_use_is_refused") {
        return;
    }
    let allowed = CpuSet::allowed().unwrap();
    let outside = (0..CpuSet::MAX).find(|&c| !allowed.contains(c)).unwrap();
    for set in [CpuSet::of([outside]), CpuSet::default()] {
        let err = Sandbox::new(SandboxConfig {
            vcpu_affinity: Some(set),
            ..SandboxConfig::default()
        })
        .err()
        .unwrap();
        assert!(matches!(err, SandboxError::Affinity(_)), "{err}");
    }
}
