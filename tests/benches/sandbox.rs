//! Sandbox lifecycle costs, measured side by side in one run:
//!
//! * raw `KVM_CREATE_VM` + `KVM_CREATE_VCPU`, the floor any KVM sandbox
//!   pays, and closing both;
//! * `Sandbox::new` with one vCPU, and dropping it;
//! * a sandbox ready to run a clang-built object (`wordcount`): made fresh
//!   (`Sandbox::new` + `load_object`) and cloned from a snapshot of one
//!   (`Snapshot::sandbox`), and that clone's first call;
//! * one invocation round trip: host → guest → host through the mailbox.
//!
//! `cargo bench -p integration-tests --bench sandbox`; prints medians and
//! the ratio of sandbox creation to the raw KVM figure.

use iced_x86::code_asm::*;
use integration_tests::assemble;
use std::time::{Duration, Instant};
use vmm::{Call, HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");

const ROUNDS: usize = 300;
const ROUND_TRIPS: usize = 3000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Time to create a VM with one vCPU, and time to close both.
fn raw_kvm_vm_and_vcpu(kvm: &kvm_ioctls::Kvm) -> (Duration, Duration) {
    let start = Instant::now();
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let created = start.elapsed();
    let start = Instant::now();
    drop(vcpu);
    drop(vm);
    (created, start.elapsed())
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED sandbox bench: /dev/kvm is not usable");
        return;
    }
    let kvm = vmm::kvm::kvm().expect("kvm");
    let config = SandboxConfig::default();
    drop(Sandbox::new(config).expect("warm-up sandbox"));

    let object = guest_jit::elf::Object::parse(WORDCOUNT).expect("object");
    let loaded = |config: SandboxConfig| {
        let mut sandbox = Sandbox::new(config).expect("sandbox");
        sandbox
            .load_object(&object, HelperSet::Standard)
            .expect("load");
        sandbox
    };
    let snapshot = loaded(config).snapshot().expect("snapshot");
    let words = {
        let mut ctx = 7u32.to_le_bytes().to_vec();
        ctx.extend(b"a b c d");
        ctx.resize(4 + 4096, 0);
        ctx
    };
    let first_call = |sandbox: &Sandbox| {
        let input = ProgramInput {
            data: &words,
            repeat: 1,
            timeout: Some(Duration::from_secs(5)),
        };
        let id = sandbox.find_program("count_words").expect("program");
        let run = sandbox.run_program(id, 0, &input).expect("run");
        assert_eq!(run.report.outcome, Outcome::Returned(4));
    };

    // Interleave them all so that machine noise hits each alike.
    let (mut raw, mut raw_close) = (Vec::new(), Vec::new());
    let (mut create, mut destroy) = (Vec::new(), Vec::new());
    let (mut fresh, mut clone, mut clone_call) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let sandbox = loaded(config);
        fresh.push(start.elapsed());
        drop(sandbox);
        let start = Instant::now();
        let sandbox = snapshot.sandbox().expect("clone");
        clone.push(start.elapsed());
        let start = Instant::now();
        first_call(&sandbox);
        clone_call.push(start.elapsed());
        drop(sandbox);
        let (created, closed) = raw_kvm_vm_and_vcpu(kvm);
        raw.push(created);
        raw_close.push(closed);
        let start = Instant::now();
        let sandbox = Sandbox::new(config).expect("sandbox");
        create.push(start.elapsed());
        let start = Instant::now();
        drop(sandbox);
        destroy.push(start.elapsed());
    }

    let sandbox = Sandbox::new(config).expect("sandbox");
    let code = assemble(sandbox.layout().code_start(), |a| {
        a.mov(eax, 7).expect("mov");
        a.ret().expect("ret");
    });
    let entry = sandbox.write_code(0, &code).expect("code");
    let call = Call::new(entry);
    let mut round_trip = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        let report = sandbox.call(0, &call).expect("call");
        round_trip.push(start.elapsed());
        assert_eq!(report.outcome, Outcome::Returned(7));
    }

    let (raw, create) = (median(raw), median(create));
    println!("{:<44} {:>12}", "benchmark (median)", "time");
    println!(
        "{:<44} {:>12.1?}",
        "raw KVM_CREATE_VM + KVM_CREATE_VCPU", raw
    );
    println!(
        "{:<44} {:>12.1?}",
        "raw close of that VM and vCPU",
        median(raw_close)
    );
    println!("{:<44} {:>12.1?}", "Sandbox::new (1 vCPU)", create);
    println!("{:<44} {:>12.1?}", "drop(Sandbox)", median(destroy));
    let (fresh, clone) = (median(fresh), median(clone));
    println!(
        "{:<44} {:>12.1?}",
        "fresh: Sandbox::new + load_object(wordcount)", fresh
    );
    println!(
        "{:<44} {:>12.1?}",
        "clone: Snapshot::sandbox (wordcount loaded)", clone
    );
    println!(
        "{:<44} {:>12.1?}",
        "first call in the clone (count_words)",
        median(clone_call)
    );
    println!(
        "{:<44} {:>12.1?}",
        "call round trip (host -> guest -> host)",
        median(round_trip)
    );
    println!(
        "sandbox creation / raw KVM = {:.2}x; clone - raw KVM = {:.1?}; fresh / clone = {:.2}x",
        create.as_secs_f64() / raw.as_secs_f64(),
        clone.saturating_sub(raw),
        fresh.as_secs_f64() / clone.as_secs_f64()
    );
}
