//! Dropping a sandbox releases everything it held. This test has its own
//! file, hence its own process: other tests' vCPU threads and descriptors
//! would blur the counts.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use iced_x86::code_asm::*;
use integration_tests::{assemble, kvm_available, mappings, open_fds, threads};
use shm::percpu::CPU_ID_OFFSET;
use vmm::{Call, Outcome, Sandbox, SandboxConfig};

fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

fn load_cpu_id_code(sandbox: &Sandbox) -> u64 {
    let code = assemble(sandbox.layout().code_start(), |a| {
        a.mov(rax, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap();
        a.ret().unwrap();
    });
    sandbox.write_code(0, &code).unwrap()
}

#[test]
fn a_thousand_sandboxes_leave_no_fd_mapping_or_thread_behind() {
    if !kvm_available("a_thousand_sandboxes_leave_no_fd_mapping_or_thread_behind") {
        return;
    }
    // Warm up process-wide state: the KVM handle, the runtime image, and
    // glibc's per-thread malloc arenas and thread-stack cache, which stay
    // mapped (bounded) after the threads that made them are gone.
    create_run_and_drop(100);
    let before = (open_fds(), threads(), mappings());
    create_run_and_drop(1000);
    assert_eq!(
        (open_fds(), threads(), mappings()),
        before,
        "(fds, threads, mappings)"
    );
    arenas_leave_no_fd_or_mapping_behind();
    polling_sandboxes_leave_nothing_behind();
}

/// A polling sandbox adds a doorbell eventfd per vCPU, registered with
/// KVM; each sandbox is dropped while its vCPUs wait in the guest.
fn polling_sandboxes_leave_nothing_behind() {
    let build_and_drop = |count: usize| {
        for i in 0..count {
            let sandbox = Sandbox::new(SandboxConfig {
                cpus: 1 + i % 2,
                poll: Some(std::time::Duration::from_secs(10)),
                ..SandboxConfig::default()
            })
            .unwrap();
            let entry = load_cpu_id_code(&sandbox);
            for _ in 0..2 {
                let report = sandbox.call(0, &Call::new(entry)).unwrap();
                assert_eq!((report.outcome, report.exits), (Outcome::Returned(0), 0));
            }
        }
    };
    build_and_drop(20);
    let before = (open_fds(), threads(), mappings());
    build_and_drop(200);
    assert_eq!(
        (open_fds(), threads(), mappings()),
        before,
        "(fds, threads, mappings) after polling sandboxes"
    );
}

fn create_run_and_drop(count: usize) {
    for i in 0..count {
        let sandbox = setup_sandbox(1 + i % 2);
        let entry = load_cpu_id_code(&sandbox);
        let cpu = i % sandbox.nr_cpus();
        assert_eq!(
            sandbox.call(cpu, &Call::new(entry)).unwrap().outcome,
            Outcome::Returned(cpu as u64)
        );
    }
}

const ARENA_LIST: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");

/// An arena adds a memfd, a 4 GiB window reservation with the memfd
/// mapped inside it, and a memslot: all of them go with the sandbox; a
/// snapshot's copy of the arena and its clones' windows (reset once) go
/// with them too. Run from the test above, not beside it: counts of a
/// whole process.
fn arenas_leave_no_fd_or_mapping_behind() {
    let object = guest_jit::elf::Object::parse(ARENA_LIST).unwrap();
    let build = |sandbox: &Sandbox| {
        let id = sandbox.find_program("list_build").unwrap();
        let mut args = [0u8; 24];
        args[..4].copy_from_slice(&100u32.to_le_bytes());
        let run = sandbox
            .run_program(
                id,
                0,
                &vmm::ProgramInput {
                    data: &args,
                    repeat: 1,
                    timeout: None,
                },
            )
            .unwrap();
        assert_eq!(run.report.outcome, Outcome::Returned(100));
    };
    let build_and_drop = |count: usize| {
        for i in 0..count {
            let mut sandbox = setup_sandbox(1);
            sandbox
                .load_object(&object, vmm::HelperSet::Standard)
                .unwrap();
            build(&sandbox);
            if i % 5 == 0 {
                let snapshot = sandbox.snapshot().unwrap();
                let mut clone = snapshot.sandbox().unwrap();
                build(&clone);
                clone.reset().unwrap();
                build(&clone);
            }
        }
    };
    build_and_drop(5);
    let before = (open_fds(), threads(), mappings());
    build_and_drop(50);
    assert_eq!(
        (open_fds(), threads(), mappings()),
        before,
        "(fds, threads, mappings)"
    );
}
