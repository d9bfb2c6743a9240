//! Sandbox lifecycle costs, measured side by side in one run:
//!
//! * raw `KVM_CREATE_VM` + `KVM_CREATE_VCPU`, the floor any KVM sandbox
//!   pays, and closing both;
//! * `Sandbox::new` with one vCPU, and dropping it;
//! * a sandbox ready to run a clang-built object (`wordcount`): made fresh
//!   (`Sandbox::new` + `load_object`) and cloned from a snapshot of one
//!   (`Snapshot::sandbox`), and that clone's first call;
//! * invocation round trips on a warm vCPU, host → guest → host: a ping
//!   (no code runs) and a call of a function returning 7, each through a VM
//!   exit (the default) and through polling (`SandboxConfig::poll`, no
//!   exit), in alternating blocks so that machine noise hits both alike.
//!   The polling vCPU is left to go idle before each block of exit-path
//!   calls, so that its spinning does not take a host CPU from them; the
//!   first call of each polling block, which finds the vCPU idle and goes
//!   through `KVM_RUN`, is reported on its own row.
//!
//! `cargo bench -p integration-tests --bench sandbox`; prints medians and
//! the ratio of sandbox creation to the raw KVM figure.

use iced_x86::code_asm::*;
use integration_tests::assemble;
use std::time::{Duration, Instant};
use vmm::{Call, HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");

const ROUNDS: usize = 300;
/// Blocks of round trips per mode, and round trips per block.
const BLOCKS: usize = 30;
const BLOCK: usize = 200;
/// How long the polling vCPU waits for the next call.
const POLL_BUDGET: Duration = Duration::from_micros(200);

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

#[derive(Default)]
struct RoundTrips {
    exit_ping: Vec<Duration>,
    exit_call: Vec<Duration>,
    poll_ping: Vec<Duration>,
    poll_call: Vec<Duration>,
    poll_first: Vec<Duration>,
}

/// `count` ping round trips on vCPU 0; the first goes to `first` if given.
fn pings(sandbox: &Sandbox, count: usize, mut first: Option<&mut Vec<Duration>>) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let report = sandbox.ping(0).expect("ping");
        let took = start.elapsed();
        assert_eq!(report.outcome, Outcome::Returned(0));
        match first.take() {
            Some(first) => first.push(took),
            None => samples.push(took),
        }
    }
    samples
}

/// `count` call round trips of `entry` on vCPU 0.
fn calls(sandbox: &Sandbox, entry: u64, count: usize) -> Vec<Duration> {
    let call = Call::new(entry);
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let report = sandbox.call(0, &call).expect("call");
        samples.push(start.elapsed());
        assert_eq!(report.outcome, Outcome::Returned(7));
    }
    samples
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED sandbox bench: /dev/kvm is not usable");
        return;
    }
    let kvm = vmm::kvm::kvm().expect("kvm");
    let config = SandboxConfig::default();
    drop(Sandbox::new(config).expect("warm-up sandbox"));

    // Round trips first: tearing VMs down leaves the kernel work that
    // runs on after them, which would take a host CPU from the
    // polling vCPU.
    let exiting = Sandbox::new(config).expect("sandbox");
    let polling = Sandbox::new(SandboxConfig {
        poll: Some(POLL_BUDGET),
        ..config
    })
    .expect("polling sandbox");
    let entries = [&exiting, &polling].map(|sandbox| {
        let code = assemble(sandbox.layout().code_start(), |a| {
            a.mov(eax, 7).expect("mov");
            a.ret().expect("ret");
        });
        sandbox.write_code(0, &code).expect("code")
    });
    let mut rows = RoundTrips::default();
    for _ in 0..BLOCKS {
        // The polling vCPU goes idle: it does not compete with the exit path.
        std::thread::sleep(POLL_BUDGET * 5);
        rows.exit_ping.extend(pings(&exiting, BLOCK, None));
        rows.exit_call.extend(calls(&exiting, entries[0], BLOCK));
        let mut first = Vec::new();
        rows.poll_ping
            .extend(pings(&polling, BLOCK, Some(&mut first)));
        rows.poll_call.extend(calls(&polling, entries[1], BLOCK));
        rows.poll_first.extend(first);
    }

    drop(exiting);
    drop(polling);

    let object = guest_jit::elf::Object::parse(WORDCOUNT).expect("object");
    let loaded = |config: SandboxConfig| {
        let mut sandbox = Sandbox::new(config).expect("sandbox");
        sandbox
            .load_object(&object, HelperSet::Standard)
            .expect("load");
        sandbox
    };
    // Sized for the object, as `bpfvisor run` sizes it: a smaller guest
    // memory is a cheaper memslot.
    let sized = SandboxConfig {
        maps_size: vmm::maps::maps_size_needed(&object, 1).max(0x1000),
        ..config
    };
    let snapshot = loaded(sized).snapshot().expect("snapshot");
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
        let sandbox = loaded(sized);
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
    for (name, samples) in [
        ("ping round trip, through an exit", rows.exit_ping),
        ("ping round trip, polling", rows.poll_ping),
        ("call round trip, through an exit", rows.exit_call),
        ("call round trip, polling", rows.poll_call),
        (
            "first ping of a block, polling (vCPU idle)",
            rows.poll_first,
        ),
    ] {
        println!("{name:<44} {:>12.2?}", median(samples));
    }
    println!(
        "sandbox creation / raw KVM = {:.2}x; clone - raw KVM = {:.1?}; fresh / clone = {:.2}x",
        create.as_secs_f64() / raw.as_secs_f64(),
        clone.saturating_sub(raw),
        fresh.as_secs_f64() / clone.as_secs_f64()
    );
}
