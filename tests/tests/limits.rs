//! Sandbox limits (`SandboxConfig::limits`) enforced with clear errors,
//! and what every invocation reports (arena pages in use, ring buffer
//! drops), with clang-built samples in real VMs.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::{kvm_available, run_named};
use std::time::{Duration, Instant};
use vmm::{
    HelperSet, Limits, LoadError, Outcome, ProgramInput, Sandbox, SandboxConfig, SandboxError,
};

const WORDCOUNT: &[u8] = include_bytes!("../../images/progs/wordcount.bpf.o");
const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");
const ARENA: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");

fn limited(limits: Limits) -> Result<Sandbox, SandboxError> {
    Sandbox::new(SandboxConfig {
        limits,
        ..SandboxConfig::default()
    })
}

fn load(sandbox: &mut Sandbox, object: &[u8]) -> Result<(), LoadError> {
    let object = Object::parse(object).unwrap();
    sandbox
        .load_object(&object, HelperSet::Standard)
        .map(|_| ())
}

#[test]
fn memory_map_and_arena_limits_refuse_with_a_clear_error() {
    if !kvm_available("memory_map_and_arena_limits_refuse_with_a_clear_error") {
        return;
    }
    let err = limited(Limits {
        max_memory: Some(1 << 20),
        ..Limits::default()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        SandboxError::Limit {
            what: "guest memory",
            limit: 1048576,
            ..
        }
    ));
    assert!(
        err.to_string().contains("above its limit of 1048576"),
        "{err}"
    );

    let mut sandbox = limited(Limits {
        max_map_bytes: Some(4096),
        ..Limits::default()
    })
    .unwrap();
    let err = load(&mut sandbox, WORDCOUNT).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Map `counts`: its storage in bytes would be"),
        "{err}"
    );
    // Nothing of the refused object was made: a ring of 16 KiB is refused
    // too, a larger limit lets both in.
    assert!(load(&mut sandbox, RINGBUF).is_err());
    let mut roomy = limited(Limits {
        max_map_bytes: Some(64 << 20),
        ..Limits::default()
    })
    .unwrap();
    load(&mut roomy, WORDCOUNT).unwrap();
    load(&mut roomy, RINGBUF).unwrap();

    let mut small_arena = limited(Limits {
        max_arena_pages: Some(100),
        ..Limits::default()
    })
    .unwrap();
    let err = load(&mut small_arena, ARENA).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Map `arena`: its pages would be 8192, above the sandbox's limit of 100"
    );
    let mut small_memory = limited(Limits {
        max_memory: Some(64 << 20),
        ..Limits::default()
    })
    .unwrap();
    let err = load(&mut small_memory, ARENA).unwrap_err();
    assert!(
        err.to_string().contains("guest memory with the arena"),
        "{err}"
    );
}

#[test]
fn the_run_time_limit_cuts_every_deadline() {
    if !kvm_available("the_run_time_limit_cuts_every_deadline") {
        return;
    }
    let mut sandbox = limited(Limits {
        max_run_time: Some(Duration::from_millis(30)),
        ..Limits::default()
    })
    .unwrap();
    load(&mut sandbox, RINGBUF).unwrap();
    let stall = sandbox.find_program("stall").unwrap();
    for timeout in [None, Some(Duration::from_secs(30))] {
        let start = Instant::now();
        let run = sandbox
            .run_program(
                stall,
                0,
                &ProgramInput {
                    data: &[0; 8],
                    repeat: 1,
                    timeout,
                },
            )
            .unwrap();
        assert_eq!(
            run.report.outcome,
            Outcome::DeadlineExceeded(Duration::from_millis(30))
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        sandbox.reset().unwrap();
    }
    // A shorter deadline of the call's own stays.
    assert_eq!(
        sandbox.limits().run_time(Some(Duration::from_millis(5))),
        Some(Duration::from_millis(5))
    );
}

#[test]
fn invocations_report_ring_drops_and_arena_pages() {
    if !kvm_available("invocations_report_ring_drops_and_arena_pages") {
        return;
    }
    let sandbox = integration_tests::sandbox_with(1, &[RINGBUF]);
    let run = run_named(&sandbox, "fill", 0, &1000u32.to_le_bytes());
    assert_eq!(run.report.outcome, Outcome::Returned(227));
    assert_eq!(run.report.ringbuf_drops, 773);
    assert_eq!(run.report.arena_pages, 0);
    let run = run_named(&sandbox, "fill", 0, &10u32.to_le_bytes());
    assert_eq!(run.report.ringbuf_drops, 10, "per invocation, not in all");

    let arena = integration_tests::sandbox_with(1, &[ARENA]);
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&1000u32.to_le_bytes());
    let run = run_named(&arena, "list_build", 0, &args);
    assert_eq!(run.report.outcome, Outcome::Returned(1000));
    let pages = u32::from_le_bytes(run.data_out[4..8].try_into().unwrap());
    // The nodes' pages and the page of the __arena globals.
    assert_eq!(run.report.arena_pages, u64::from(pages) + 1);
}
