//! Polling invocation (`SandboxConfig::poll`; Note [Polling invocation] in
//! `shm::mailbox`): the same results as calls through exits, no exit per
//! warm call, deadlines and traps, the race with the idle transition,
//! several vCPUs, a program scribbling on the mailboxes, and dropping a
//! sandbox whose vCPU spins.
//!
//! The machine has two cores and a waiting vCPU keeps one busy: budgets
//! are short except where a test needs the vCPU to stay warm.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use iced_x86::code_asm::*;
use integration_tests::progen::{program, run_in_interpreter};
use integration_tests::{assemble, kvm_available};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shm::mailbox::{POLL_CLAIMED, POLL_STATE_OFFSET, POLL_WAITING};
use shm::percpu::CPU_ID_OFFSET;
use std::cell::RefCell;
use std::time::{Duration, Instant};
use vmm::program::unlinked;
use vmm::{Call, HelperSet, Outcome, ProgramInput, RunError, Sandbox, SandboxConfig, TrapKind};

const CALLS: &[u8] = include_bytes!("../../images/progs/calls.bpf.o");
const COMPUTE: &[u8] = include_bytes!("../../images/progs/compute.bpf.o");
const GLOBALS: &[u8] = include_bytes!("../../images/progs/globals.bpf.o");
const HELLO: &[u8] = include_bytes!("../../images/progs/hello.bpf.o");
const LOOPS: &[u8] = include_bytes!("../../images/progs/loops.bpf.o");
const MAPS: &[u8] = include_bytes!("../../images/progs/maps.bpf.o");
const NULL_READ: &[u8] = include_bytes!("../../images/progs/null_read.bpf.o");
const QUEUE_STACK: &[u8] = include_bytes!("../../images/progs/queue_stack.bpf.o");
const SPIN: &[u8] = include_bytes!("../../images/progs/spin.bpf.o");
const TAILCALL: &[u8] = include_bytes!("../../images/progs/tailcall.bpf.o");

/// Long enough to stay warm between the calls of a test.
const WARM: Duration = Duration::from_millis(50);

fn sandbox(cpus: usize, poll: Option<Duration>) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        poll,
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// Where tests put raw code: the last page of the code region, clear of
/// the programs loaded from its start.
fn raw_code_offset(sandbox: &Sandbox) -> u64 {
    sandbox.layout().code_size() - 0x1000
}

/// Writes `mov rax, gs:[cpu_id]; ret` and returns its address.
fn cpu_id_code(sandbox: &Sandbox) -> u64 {
    let offset = raw_code_offset(sandbox);
    let code = assemble(sandbox.layout().code_start() + offset, |a| {
        a.mov(rax, qword_ptr(CPU_ID_OFFSET as u64).gs()).unwrap();
        a.ret().unwrap();
    });
    sandbox.write_code(offset, &code).unwrap()
}

fn input(data: &[u8]) -> ProgramInput<'_> {
    ProgramInput {
        data,
        repeat: 1,
        timeout: Some(Duration::from_secs(10)),
    }
}

/// What a user sees of a run, without its costs.
#[derive(Debug, PartialEq)]
struct Seen {
    outcome: Outcome,
    runs: u64,
    data_out: Vec<u8>,
    trace: Vec<String>,
    trap_line: Option<u32>,
}

/// The programs an object loaded, by name.
type Names = Vec<(String, vmm::ProgramId)>;

/// Runs the samples' programs, in one sequence (state carries over: maps,
/// global data), on `sandbox`; returns what each run showed and its exits.
fn run_samples(sandbox: &mut Sandbox) -> Vec<(Seen, u64)> {
    let mut limit = [0u8; 8];
    limit[..4].copy_from_slice(&1000u32.to_le_bytes());
    let mut hash = vec![0u8; 16 + 4096];
    hash[..4].copy_from_slice(&300u32.to_le_bytes());
    hash[4..8].copy_from_slice(&3u32.to_le_bytes());
    for (i, b) in hash[16..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut loop_args = [0u8; 32];
    loop_args[..4].copy_from_slice(&(-3i32).to_le_bytes());
    loop_args[4..8].copy_from_slice(&10i32.to_le_bytes());
    loop_args[8..12].copy_from_slice(&(-1i32).to_le_bytes());
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&3u64.to_le_bytes());
    pair[8..].copy_from_slice(&4u64.to_le_bytes());
    let runs: Vec<(&[u8], &str, Vec<u8>, u64)> = vec![
        (HELLO, "hello", vec![], 1),
        (CALLS, "pythagoras", pair.to_vec(), 1),
        (COMPUTE, "sieve", limit.to_vec(), 1),
        (COMPUTE, "fnv1a", hash, 2),
        (GLOBALS, "", 1u32.to_le_bytes().to_vec(), 1),
        (GLOBALS, "", 2u32.to_le_bytes().to_vec(), 3),
        (LOOPS, "loop_sum", loop_args.to_vec(), 1),
        (LOOPS, "for_sum", loop_args.to_vec(), 1),
        (MAPS, "", 5u32.to_le_bytes().to_vec(), 4),
        (MAPS, "", 5u32.to_le_bytes().to_vec(), 1),
        (NULL_READ, "", vec![0; 8], 1),
        (QUEUE_STACK, "", vec![0; 128], 1),
        (TAILCALL, "chain", vec![0; 128], 1),
        (TAILCALL, "forever", vec![0; 128], 1),
        (HELLO, "hello", vec![], 5),
    ];
    let mut loaded: Vec<(&[u8], Names)> = Vec::new();
    let mut seen = Vec::new();
    for (bytes, name, data, repeat) in runs {
        if !loaded.iter().any(|(b, _)| std::ptr::eq(*b, bytes)) {
            let object = Object::parse(bytes).unwrap();
            let ids = sandbox.load_object(&object, HelperSet::Standard).unwrap();
            let names = ids
                .iter()
                .map(|&id| (sandbox.program(id).unwrap().name().to_owned(), id))
                .collect();
            loaded.push((bytes, names));
        }
        let (_, names) = loaded
            .iter()
            .find(|(b, _)| std::ptr::eq(*b, bytes))
            .unwrap();
        let id = names
            .iter()
            .find(|(n, _)| name.is_empty() || n == name)
            .unwrap()
            .1;
        let run = sandbox
            .run_program(
                id,
                0,
                &ProgramInput {
                    repeat,
                    ..input(&data)
                },
            )
            .unwrap();
        seen.push((
            Seen {
                outcome: run.report.outcome,
                runs: run.report.runs,
                data_out: run.data_out,
                trace: run.trace,
                trap_line: run.trap_site.and_then(|s| s.line.map(|l| l.line)),
            },
            run.report.exits,
        ));
    }
    seen
}

#[test]
fn samples_give_the_same_results_polling_as_through_exits_with_no_exit_when_warm() {
    if !kvm_available(
        "samples_give_the_same_results_polling_as_through_exits_with_no_exit_when_warm",
    ) {
        return;
    }
    let through_exits = run_samples(&mut sandbox(1, None));
    let polling = run_samples(&mut sandbox(1, Some(WARM)));
    assert_eq!(through_exits.len(), polling.len());
    for (i, ((exit_seen, exit_exits), (poll_seen, poll_exits))) in
        through_exits.iter().zip(&polling).enumerate()
    {
        assert_eq!(poll_seen, exit_seen, "run {i}");
        let trapped = matches!(exit_seen.outcome, Outcome::Trapped(_));
        assert_eq!(*exit_exits, 1, "run {i} through exits");
        // A trap leaves through its port in both modes.
        assert_eq!(*poll_exits, u64::from(trapped), "run {i} polling");
    }
    // The samples did what their headers say (so the comparison compared
    // something): hello's line, the trap's source line, 5 runs.
    assert_eq!(polling[0].0.trace, ["Hello from bpfvisor, answer=42"]);
    assert_eq!(polling[1].0.outcome, Outcome::Returned(25));
    assert_eq!(polling[2].0.outcome, Outcome::Returned(168));
    assert!(matches!(polling[10].0.outcome, Outcome::Trapped(_)));
    assert!(polling[10].0.trap_line.is_some());
    assert_eq!(polling[13].0.outcome, Outcome::Returned(34));
    assert_eq!(polling[14].0.runs, 5);
}

#[test]
fn random_programs_agree_with_the_interpreter_when_polling() {
    if !kvm_available("random_programs_agree_with_the_interpreter_when_polling") {
        return;
    }
    let vm = RefCell::new((sandbox(1, Some(WARM)), 0));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&program(true), |generated| {
            let (sandbox, loaded) = &mut *vm.borrow_mut();
            if *loaded == 200 {
                *sandbox = self::sandbox(1, Some(WARM));
                *loaded = 0;
            }
            *loaded += 1;
            let lowered = generated.lower();
            let expected = run_in_interpreter(&lowered, &generated.ctx)
                .map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
            let id = sandbox
                .load_program(unlinked("generated", lowered), HelperSet::Conformance)
                .map_err(|e| TestCaseError::fail(format!("load: {e}")))?;
            let run = sandbox
                .run_program(id, 0, &input(&generated.ctx))
                .map_err(|e| TestCaseError::fail(format!("run: {e}")))?;
            let Outcome::Returned(r0) = run.report.outcome else {
                return Err(TestCaseError::fail(format!("{:?}", run.report.outcome)));
            };
            if (r0, run.data_out) != expected {
                return Err(TestCaseError::fail("polling VM != interpreter"));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn pings_and_calls_on_a_warm_vcpu_take_no_exit() {
    if !kvm_available("pings_and_calls_on_a_warm_vcpu_take_no_exit") {
        return;
    }
    let sandbox = sandbox(1, Some(WARM));
    let entry = cpu_id_code(&sandbox);
    for _ in 0..200 {
        let ping = sandbox.ping(0).unwrap();
        assert_eq!((ping.outcome, ping.exits), (Outcome::Returned(0), 0));
        let call = sandbox
            .call(
                0,
                &Call {
                    repeat: 3,
                    ..Call::new(entry)
                },
            )
            .unwrap();
        assert_eq!(
            (call.outcome, call.runs, call.exits),
            (Outcome::Returned(0), 3, 0)
        );
    }
}

#[test]
fn a_deadline_stops_a_polled_call_and_reset_makes_the_sandbox_usable() {
    if !kvm_available("a_deadline_stops_a_polled_call_and_reset_makes_the_sandbox_usable") {
        return;
    }
    let mut sandbox = sandbox(1, Some(WARM));
    let object = Object::parse(SPIN).unwrap();
    let spin = sandbox
        .load_object_program(&object, None, HelperSet::Standard)
        .unwrap();
    let entry = cpu_id_code(&sandbox);
    // Warm: the spinning program is claimed in place. Cold: the vCPU went
    // idle and the call goes through KVM_RUN. Both stop at the deadline.
    for warm in [true, false] {
        sandbox.ping(0).unwrap();
        if !warm {
            std::thread::sleep(WARM * 3);
        }
        let start = Instant::now();
        let run = sandbox
            .run_program(
                spin,
                0,
                &ProgramInput {
                    timeout: Some(Duration::from_millis(30)),
                    ..input(&[])
                },
            )
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(
            run.report.outcome,
            Outcome::DeadlineExceeded(Duration::from_millis(30)),
            "warm: {warm}"
        );
        assert!(run.report.exits >= 1, "the kick returned from KVM_RUN");
        assert!(sandbox.is_poisoned());
        assert!(matches!(
            sandbox.call(0, &Call::new(entry)),
            Err(RunError::Poisoned)
        ));
        sandbox.reset().unwrap();
        for _ in 0..3 {
            let call = sandbox.call(0, &Call::new(entry)).unwrap();
            assert_eq!(call.outcome, Outcome::Returned(0));
        }
        assert_eq!(sandbox.ping(0).unwrap().exits, 0, "warm again");
    }
}

#[test]
fn a_trap_in_polling_mode_exits_once_and_the_next_call_is_polled_again() {
    if !kvm_available("a_trap_in_polling_mode_exits_once_and_the_next_call_is_polled_again") {
        return;
    }
    let mut sandbox = sandbox(1, Some(WARM));
    let object = Object::parse(NULL_READ).unwrap();
    let null_read = sandbox
        .load_object_program(&object, None, HelperSet::Standard)
        .unwrap();
    let entry = cpu_id_code(&sandbox);
    for _ in 0..20 {
        sandbox.ping(0).unwrap();
        let run = sandbox.run_program(null_read, 0, &input(&[])).unwrap();
        let Outcome::Trapped(trap) = run.report.outcome else {
            panic!("{:?}", run.report.outcome);
        };
        assert!(matches!(trap.kind, TrapKind::PageFault), "{trap:?}");
        assert!(run.trap_site.is_some());
        assert_eq!(run.report.exits, 1);
        assert!(!sandbox.is_poisoned());
        // The trap ended the waiting: this one goes through KVM_RUN...
        let call = sandbox.call(0, &Call::new(entry)).unwrap();
        assert_eq!(call.outcome, Outcome::Returned(0));
        // ...and the next is answered in place.
        assert_eq!(sandbox.ping(0).unwrap().exits, 0);
    }
}

#[test]
fn calls_racing_the_idle_transition_are_all_answered() {
    if !kvm_available("calls_racing_the_idle_transition_are_all_answered") {
        return;
    }
    // A budget of a few microseconds: calls spaced by 0..8 µs land before,
    // during and after the runtime's decision to go idle.
    let sandbox = sandbox(1, Some(Duration::from_micros(3)));
    let entry = cpu_id_code(&sandbox);
    let (mut warm, mut exits) = (0, 0);
    for i in 0..3000u32 {
        let pause = Instant::now();
        while pause.elapsed() < Duration::from_nanos(u64::from(i % 9) * 1000) {
            std::hint::spin_loop();
        }
        let report = if i % 2 == 0 {
            sandbox.ping(0).unwrap()
        } else {
            sandbox
                .call(0, &Call::new(entry).with_timeout(Duration::from_secs(5)))
                .unwrap()
        };
        assert_eq!(report.outcome, Outcome::Returned(0), "call {i}");
        warm += u32::from(report.exits == 0);
        exits += report.exits;
    }
    assert!(!sandbox.is_poisoned());
    // Both sides of the race happened: some calls found the vCPU idle
    // (its idle exit fell inside them), most did not.
    assert!(exits > 0, "no call met an idle exit");
    assert!(warm > 0);
}

#[test]
fn several_vcpus_poll_independently() {
    if !kvm_available("several_vcpus_poll_independently") {
        return;
    }
    let sandbox = sandbox(2, Some(Duration::from_millis(2)));
    let entry = cpu_id_code(&sandbox);
    for round in 0..300 {
        let reports = sandbox.call_on_all(&Call::new(entry).with_timeout(Duration::from_secs(5)));
        for (cpu, report) in reports.into_iter().enumerate() {
            let report = report.unwrap();
            assert_eq!(
                report.outcome,
                Outcome::Returned(cpu as u64),
                "round {round}"
            );
        }
        // One vCPU at a time, too, while the other may still wait.
        let cpu = round % 2;
        let report = sandbox.call(cpu, &Call::new(entry)).unwrap();
        assert_eq!(report.outcome, Outcome::Returned(cpu as u64));
    }
}

/// Code that stores `value` at guest address `addr` and returns 0.
fn store_code(sandbox: &Sandbox, offset: u64, addr: u64, value: u64) -> u64 {
    let offset = raw_code_offset(sandbox) + offset;
    let code = assemble(sandbox.layout().code_start() + offset, |a| {
        a.mov(rax, addr).unwrap();
        a.mov(rcx, value).unwrap();
        a.mov(qword_ptr(rax), rcx).unwrap();
        a.xor(eax, eax).unwrap();
        a.ret().unwrap();
    });
    sandbox.write_code(offset, &code).unwrap()
}

#[test]
fn a_program_scribbling_on_a_mailbox_never_hangs_the_host() {
    if !kvm_available("a_program_scribbling_on_a_mailbox_never_hangs_the_host") {
        return;
    }
    let mut sandbox = sandbox(2, Some(Duration::from_secs(2)));
    let entry = cpu_id_code(&sandbox);
    let state = sandbox.layout().mailbox(0) + POLL_STATE_OFFSET;
    let claim = store_code(&sandbox, 0x100, state, POLL_CLAIMED);
    let deadline = Duration::from_millis(50);

    // vCPU 1 marks vCPU 0, which waits, as claimed: vCPU 0's runtime then
    // waits for a request that never comes, and the host's claim fails.
    // The call is bounded by its deadline, and reset recovers.
    sandbox.ping(0).unwrap();
    assert_eq!(
        sandbox.call(1, &Call::new(claim)).unwrap().outcome,
        Outcome::Returned(0)
    );
    let report = sandbox
        .call(0, &Call::new(entry).with_timeout(deadline))
        .unwrap();
    assert_eq!(report.outcome, Outcome::DeadlineExceeded(deadline));
    sandbox.reset().unwrap();
    assert_eq!(sandbox.ping(0).unwrap().outcome, Outcome::Returned(0));

    // A forged "waiting" on a vCPU whose thread is not in KVM_RUN is not
    // believed: the call goes through KVM_RUN and is answered.
    let mut sandbox = self::sandbox(2, Some(Duration::from_millis(1)));
    let entry = cpu_id_code(&sandbox);
    let waiting_code = store_code(&sandbox, 0x200, state, POLL_WAITING);
    sandbox.ping(0).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        sandbox.call(1, &Call::new(waiting_code)).unwrap().outcome,
        Outcome::Returned(0)
    );
    std::thread::sleep(Duration::from_millis(20));
    let report = sandbox
        .call(0, &Call::new(entry).with_timeout(deadline))
        .unwrap();
    assert_eq!(report.outcome, Outcome::Returned(0));
    assert!(!sandbox.is_poisoned());
    sandbox.reset().unwrap();
    assert_eq!(sandbox.ping(0).unwrap().outcome, Outcome::Returned(0));
}

#[test]
fn dropping_a_sandbox_whose_vcpus_wait_in_the_guest_does_not_hang() {
    if !kvm_available("dropping_a_sandbox_whose_vcpus_wait_in_the_guest_does_not_hang") {
        return;
    }
    for _ in 0..5 {
        let sandbox = sandbox(2, Some(Duration::from_secs(30)));
        let entry = cpu_id_code(&sandbox);
        for report in sandbox.call_on_all(&Call::new(entry)) {
            assert_eq!(report.unwrap().exits, 0);
        }
        // Both vCPUs now wait for 30 s in the guest.
        let start = Instant::now();
        drop(sandbox);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
