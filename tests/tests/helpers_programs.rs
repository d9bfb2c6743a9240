//! The helpers and kfuncs through clang-built programs
//! (`images/progs/{loops,time,strings}.bpf.c`) loaded with the Sandbox
//! API: results as the kernel's, and no VM exit beyond the run's own.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::clock::monotonic_ns;
use vmm::{HelperSet, Outcome, ProgramInput, ProgramRun, Sandbox, SandboxConfig};

const LOOPS: &[u8] = include_bytes!("../../images/progs/loops.bpf.o");
const TIME: &[u8] = include_bytes!("../../images/progs/time.bpf.o");
const STRINGS: &[u8] = include_bytes!("../../images/progs/strings.bpf.o");

const E2BIG: i32 = -7;
const EINVAL: i32 = -22;
const EFAULT: i64 = -14;

fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// Loads program `name` of `object` and runs it once on `cpu` with
/// `data`; checks it returned and left the guest only once.
fn run(sandbox: &mut Sandbox, object: &[u8], name: &str, cpu: usize, data: &[u8]) -> ProgramRun {
    let object = Object::parse(object).unwrap();
    let id = match sandbox.find_program(name) {
        Some(id) => id,
        None => sandbox
            .load_object_program(&object, Some(name), HelperSet::Standard)
            .unwrap(),
    };
    let input = ProgramInput {
        data,
        repeat: 1,
        timeout: Some(Duration::from_secs(20)),
    };
    let run = sandbox.run_program(id, cpu, &input).unwrap();
    assert!(
        matches!(run.report.outcome, Outcome::Returned(_)),
        "{name}: {:?} at {:?}",
        run.report.outcome,
        run.trap_site
    );
    assert_eq!(run.report.exits, 1, "{name}: helpers stay in the guest");
    run
}

/// `struct loop_args` of loops.bpf.c.
#[derive(Debug, Default, PartialEq, Eq)]
struct LoopArgs {
    start: i32,
    end: i32,
    stop: i32,
    ret: i32,
    sum: i64,
    count: u64,
}

impl LoopArgs {
    fn bytes(&self) -> Vec<u8> {
        [self.start, self.end, self.stop, self.ret]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .chain(self.sum.to_le_bytes())
            .chain(self.count.to_le_bytes())
            .collect()
    }

    fn parse(bytes: &[u8]) -> LoopArgs {
        let i32_at = |k: usize| i32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
        let u64_at = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().unwrap());
        LoopArgs {
            start: i32_at(0),
            end: i32_at(4),
            stop: i32_at(8),
            ret: i32_at(12),
            sum: u64_at(16) as i64,
            count: u64_at(24),
        }
    }
}

fn run_loops(sandbox: &mut Sandbox, name: &str, args: LoopArgs) -> LoopArgs {
    LoopArgs::parse(&run(sandbox, LOOPS, name, 0, &args.bytes()).data_out)
}

#[test]
fn bpf_loop_sums_and_breaks_in_a_real_program() {
    if !kvm_available("bpf_loop_sums_and_breaks_in_a_real_program") {
        return;
    }
    let mut sandbox = setup_sandbox(1);
    let args = |end, stop| LoopArgs {
        end,
        stop,
        ..LoopArgs::default()
    };
    let out = run_loops(&mut sandbox, "loop_sum", args(1000, -1));
    assert_eq!((out.ret, out.sum, out.count), (1000, 499_500, 1000));
    let out = run_loops(&mut sandbox, "loop_sum", args(1000, 9));
    assert_eq!((out.ret, out.sum, out.count), (10, 45, 10));
    let out = run_loops(&mut sandbox, "loop_sum", args((1 << 23) + 1, -1));
    assert_eq!((out.ret, out.count), (E2BIG, 0));
}

#[test]
fn bpf_for_and_bpf_repeat_run_their_ranges() {
    if !kvm_available("bpf_for_and_bpf_repeat_run_their_ranges") {
        return;
    }
    let mut sandbox = setup_sandbox(1);
    let range = |start, end| LoopArgs {
        start,
        end,
        ..LoopArgs::default()
    };
    let out = run_loops(&mut sandbox, "for_sum", range(-5, 100));
    assert_eq!((out.sum, out.count), ((-5..100).sum::<i64>(), 105));
    let out = run_loops(&mut sandbox, "for_sum", range(3, 3));
    assert_eq!((out.sum, out.count), (0, 0));
    let out = run_loops(&mut sandbox, "repeat_count", range(0, 12_345));
    assert_eq!(out.count, 12_345);
    // A bpf_for inside a bpf_loop callback: rows of 1, 2, ... 100 cells.
    let out = run_loops(&mut sandbox, "triangle", range(0, 100));
    assert_eq!((out.ret, out.count), (100, 5050));
    // The iterator's own refusals.
    let out = run_loops(&mut sandbox, "iter_errors", range(10, 0));
    assert_eq!((out.ret, out.count), (EINVAL, 0));
    let out = run_loops(&mut sandbox, "iter_errors", range(0, (1 << 23) + 1));
    assert_eq!((out.ret, out.count), (E2BIG, 0));
    let out = run_loops(&mut sandbox, "iter_errors", range(i32::MIN, i32::MIN + 7));
    assert_eq!((out.ret, out.count), (0, 7));
}

#[test]
fn clocks_cpu_and_random_readings_from_a_program() {
    if !kvm_available("clocks_cpu_and_random_readings_from_a_program") {
        return;
    }
    let mut sandbox = setup_sandbox(2);
    let mut randoms = Vec::new();
    for cpu in 0..2 {
        let before = monotonic_ns();
        let out = run(&mut sandbox, TIME, "readings", cpu, &[0; 56]).data_out;
        let after = monotonic_ns();
        let u64_at = |k: usize| u64::from_le_bytes(out[k..k + 8].try_into().unwrap());
        let u32_at = |k: usize| u32::from_le_bytes(out[k..k + 4].try_into().unwrap());
        let [ns, boot, coarse, later] = [0, 8, 16, 24].map(u64_at);
        // Within the host's readings (allowing for the TSC pairing), and
        // in call order.
        // As helpers_time.rs's CLOCK_SLACK_NS explains.
        let slack = 5_000_000;
        assert!(
            ns + slack >= before && later <= after + slack,
            "{before} {ns} {later} {after}"
        );
        assert!(ns <= boot && boot <= coarse && coarse <= later);
        assert_eq!((u32_at(32), u32_at(36)), (cpu as u32, 0));
        randoms.push([40, 44, 48, 52].map(u32_at));
    }
    // Each vCPU has its own stream: eight different numbers.
    let mut all: Vec<u32> = randoms.concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 8, "{randoms:?}");
}

#[test]
fn string_helpers_from_a_program() {
    if !kvm_available("string_helpers_from_a_program") {
        return;
    }
    let mut sandbox = setup_sandbox(1);
    // An unmapped address for the failing read: CPU 0's guard page.
    let bad = sandbox.layout().percpu_area(0);
    let mut data = Vec::new();
    data.extend(12345u64.to_le_bytes());
    data.extend(bad.to_le_bytes());
    data.extend(b"bpfvisor\0\0\0\0\0\0\0\0");
    data.resize(16 + 16 + 64 + 5 * 8 + 16 + 8, 0xee);
    let run = run(&mut sandbox, STRINGS, "strings", 0, &data);
    let out = run.data_out;
    let i64_at = |k: usize| i64::from_le_bytes(out[k..k + 8].try_into().unwrap());
    let text = "n=12345 hex=3039 name=bpfvisor";
    assert_eq!(
        &out[32..32 + text.len() + 1],
        format!("{text}\0").as_bytes()
    );
    assert_eq!(run.trace, [text]);
    let rets = [96, 104, 112, 120, 128].map(i64_at);
    assert_eq!(rets, [text.len() as i64 + 1, 0, 0, 9, EFAULT]);
    assert_eq!(&out[136..152], b"bpfvisor\0\xee\xee\xee\xee\xee\xee\xee");
    assert_eq!(i64_at(152), 0, "a failed read zeroes its destination");
}
