//! Fixtures shared by the integration tests.

pub mod progen;

use iced_x86::code_asm::CodeAssembler;

/// Whether KVM tests can run here. Without `/dev/kvm` they print a loud
/// skip message and pass, unless `BPFVISOR_REQUIRE_KVM=1` (as in CI), where
/// they fail.
pub fn kvm_available(test: &str) -> bool {
    if vmm::kvm::is_available() {
        return true;
    }
    let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: /dev/kvm is not usable and BPFVISOR_REQUIRE_KVM=1"
    );
    eprintln!(
        "SKIPPED {test}: /dev/kvm is not usable (set BPFVISOR_REQUIRE_KVM=1 to fail instead)"
    );
    false
}

/// Whether bpf() tests can run here (root, bpf() permitted). Otherwise
/// they print a loud skip message and pass, unless
/// `BPFVISOR_REQUIRE_KVM=1` (as in CI, which runs as root), where they
/// fail.
pub fn bpf_available(test: &str) -> bool {
    let why = match kernel_bpf::probe() {
        Ok(()) => return true,
        Err(e) => e,
    };
    let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: bpf() is not usable ({why}) and BPFVISOR_REQUIRE_KVM=1"
    );
    eprintln!(
        "SKIPPED {test}: bpf() is not usable: {why} (set BPFVISOR_REQUIRE_KVM=1 to fail instead)"
    );
    false
}

/// Assembles x86-64 code for guest address `addr`.
pub fn assemble(addr: u64, build: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut asm = CodeAssembler::new(64).expect("64-bit assembler");
    build(&mut asm);
    asm.assemble(addr).expect("test code assembles")
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of memory mappings of this process.
pub fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// Runs the loaded program `name` once on vCPU `cpu` with `data` as its
/// context, under a 20 s deadline; panics if it cannot run. The tests'
/// common way to run a sample's program by name.
pub fn run_named(sandbox: &vmm::Sandbox, name: &str, cpu: usize, data: &[u8]) -> vmm::ProgramRun {
    let id = sandbox
        .find_program(name)
        .unwrap_or_else(|| panic!("no program {name}"));
    let input = vmm::ProgramInput::new(data).with_timeout(std::time::Duration::from_secs(20));
    sandbox
        .run_program(id, cpu, &input)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs the sample `ringbuf.bpf.o`'s `stall` (loaded in `sandbox`) on vCPU
/// 0 until its deadline of `ms` milliseconds, which it never meets: checks
/// that it was stopped and the sandbox is poisoned.
pub fn stall_until_deadline(sandbox: &vmm::Sandbox, ms: u64) {
    let id = sandbox.find_program("stall").expect("the stall program");
    let input = vmm::ProgramInput::new(&[0; 8]).with_timeout(std::time::Duration::from_millis(ms));
    let run = sandbox.run_program(id, 0, &input).expect("stall");
    assert!(
        matches!(run.report.outcome, vmm::Outcome::DeadlineExceeded(_)),
        "{:?}",
        run.report.outcome
    );
    assert!(sandbox.is_poisoned());
}

/// [`run_named`] for a program that must return: r0 and the context
/// after the run.
pub fn run_returning(
    sandbox: &vmm::Sandbox,
    name: &str,
    cpu: usize,
    data: &[u8],
) -> (u64, Vec<u8>) {
    let run = run_named(sandbox, name, cpu, data);
    match run.report.outcome {
        vmm::Outcome::Returned(r0) => (r0, run.data_out),
        other => panic!(
            "{name}: expected a return, got {other:?} at {:?}",
            run.trap_site
        ),
    }
}

/// A sandbox of `cpus` vCPUs with every object of `objects` (clang-built
/// ELF bytes) loaded as a user loads them; panics on any error.
pub fn sandbox_with(cpus: usize, objects: &[&[u8]]) -> vmm::Sandbox {
    let mut sandbox = vmm::Sandbox::new(vmm::SandboxConfig {
        cpus,
        ..vmm::SandboxConfig::default()
    })
    .expect("sandbox");
    for object in objects {
        let object = guest_jit::elf::Object::parse(object).expect("object");
        sandbox
            .load_object(&object, vmm::HelperSet::Standard)
            .expect("load");
    }
    sandbox
}
