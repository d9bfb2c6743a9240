use iced_x86::code_asm::*;
use integration_tests::{assemble, kvm_available};
use vmm::{Call, Outcome, Sandbox, SandboxConfig};

#[test]
fn returns_cpu_id() {
    if !kvm_available("returns_cpu_id") {
        return;
    }
    let sandbox = Sandbox::new(SandboxConfig { cpus: 2, ..SandboxConfig::default() }).unwrap();
    let code = assemble(sandbox.layout().code_start(), |a| {
        a.mov(rax, qword_ptr(0x10).gs()).unwrap();
        a.ret().unwrap();
    });
    let entry = sandbox.write_code(0, &code).unwrap();
    let r = sandbox.call(1, &Call::new(entry)).unwrap();
    assert_eq!(r.outcome, Outcome::Returned(1), "{r:?}");
}

#[test]
fn probe_speed_and_sse() {
    if !kvm_available("probe") {
        return;
    }
    let sandbox = Sandbox::new(SandboxConfig { cpus: 1, ..SandboxConfig::default() }).unwrap();
    for (n, sse) in [(1000u64, false), (10_000_000, false), (100, true), (5000, true)] {
        let code = assemble(sandbox.layout().code_start(), |a| {
            let mut l = a.create_label();
            a.mov(rcx, n).unwrap();
            a.xor(eax, eax).unwrap();
            a.set_label(&mut l).unwrap();
            a.add(rax, 3i32).unwrap();
            a.dec(rcx).unwrap();
            a.jnz(l).unwrap();
            if sse {
                a.xorps(xmm0, xmm0).unwrap();
                a.movq(rax, xmm0).unwrap();
            }
            a.ret().unwrap();
        });
        let entry = sandbox.write_code(0, &code).unwrap();
        let t = std::time::Instant::now();
        let r = sandbox.call(0, &Call::new(entry));
        eprintln!("n={n} sse={sse}: {:?} in {:?}", r.as_ref().map(|r| (r.outcome, r.duration, r.exits)), t.elapsed());
    }
}
