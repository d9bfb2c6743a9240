//! Arena costs, measured side by side in one run:
//!
//! * loading an object whose arena is 1 MiB (arena_churn) and one whose
//!   arena is 4 GiB (arena_big): memfd, window, memslot, tables;
//! * in the guest, per page: `bpf_arena_alloc_pages` + three stores +
//!   `bpf_arena_free_pages` (arena_churn's `churn`, pages reused within
//!   the run, so taken back from FREED and zeroed by the kfunc);
//! * in the guest, arena_list's `list_build` of 1M nodes in a fresh
//!   sandbox (4096 pages allocated and first touched), then `list_sum`
//!   walking them;
//! * on the host, per invocation: wall time minus guest time of a `churn`
//!   run that frees 64 pages (released, i.e. punched, before the report)
//!   next to one of a run that frees none (`churn_hold` of one page);
//! * snapshots and clones (Note [Arena clones]): a sandbox with arena_list
//!   and a 1000-node list made fresh (load + `list_build`) next to a clone
//!   of a snapshot of one, a reset of such a clone after it built 4000
//!   more nodes, and the host part of an arena_snap run freeing 16 pages
//!   that hold data, in a sandbox of its own (released by a punch) and in
//!   a clone whose snapshot holds them (`MADV_DONTNEED` and zeroing).
//!
//! `cargo bench -p integration-tests --bench arena`; prints medians.

use guest_jit::elf::Object;
use std::time::{Duration, Instant};
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const CHURN: &[u8] = include_bytes!("../../images/progs/arena_churn.bpf.o");
const BIG: &[u8] = include_bytes!("../../images/progs/arena_big.bpf.o");
const LIST: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");
const SNAP: &[u8] = include_bytes!("../../images/progs/arena_snap.bpf.o");
/// Nodes in the list benchmark.
const LIST_NODES: u32 = 1 << 20;
/// Rounds of the list benchmark: each builds a fresh sandbox.
const LIST_ROUNDS: usize = 5;
const ROUNDS: usize = 30;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn churn_args(rounds: u32, pages: u32) -> [u8; 24] {
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&rounds.to_le_bytes());
    args[4..8].copy_from_slice(&pages.to_le_bytes());
    args
}

/// Runs `name` once; returns (guest time, wall time).
fn run(sandbox: &Sandbox, name: &str, ctx: &[u8]) -> (Duration, Duration) {
    let id = sandbox.find_program(name).expect("program");
    let run = sandbox
        .run_program(
            id,
            0,
            &ProgramInput {
                data: ctx,
                repeat: 1,
                timeout: Some(Duration::from_secs(30)),
            },
        )
        .expect("run");
    assert!(matches!(run.report.outcome, Outcome::Returned(_)), "{name}");
    (run.report.duration, run.report.wall)
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED arena bench: /dev/kvm is not usable");
        return;
    }
    let churn = Object::parse(CHURN).expect("churn");
    let big = Object::parse(BIG).expect("big");
    let load = |object: &Object| {
        let mut sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let start = Instant::now();
        sandbox
            .load_object(object, HelperSet::Standard)
            .expect("load");
        (start.elapsed(), sandbox)
    };
    drop(load(&churn));

    let (mut small, mut large) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        small.push(load(&churn).0);
        large.push(load(&big).0);
    }

    let (_, sandbox) = load(&churn);
    const PAGES: u32 = 8;
    const CHURNS: u32 = 2000;
    run(&sandbox, "churn", &churn_args(CHURNS, PAGES));
    let (mut per_page, mut with_release, mut without) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (guest, _) = run(&sandbox, "churn", &churn_args(CHURNS, PAGES));
        per_page.push(guest / (CHURNS * PAGES));
        let (guest, wall) = run(&sandbox, "churn", &churn_args(1, 64));
        with_release.push(wall.saturating_sub(guest));
        let (guest, wall) = run(&sandbox, "churn", &churn_args(1, 0));
        without.push(wall.saturating_sub(guest));
    }

    // struct list_args { n, pages, head, sum }.
    let list = Object::parse(LIST).expect("list");
    let mut list_args = [0u8; 24];
    list_args[..4].copy_from_slice(&LIST_NODES.to_le_bytes());
    let (mut build, mut sum) = (Vec::new(), Vec::new());
    for _ in 0..LIST_ROUNDS {
        let (_, sandbox) = load(&list);
        build.push(run(&sandbox, "list_build", &list_args).0);
        sum.push(run(&sandbox, "list_sum", &list_args).0);
    }

    // Snapshots and clones.
    let list_n = |n: u32| {
        let mut args = [0u8; 24];
        args[..4].copy_from_slice(&n.to_le_bytes());
        args
    };
    let built = || {
        let (_, sandbox) = load(&list);
        run(&sandbox, "list_build", &list_n(1000));
        sandbox
    };
    let snapshot = built().snapshot().expect("snapshot");
    let (mut fresh, mut clone, mut reset) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let sandbox = built();
        fresh.push(start.elapsed());
        drop(sandbox);
        let start = Instant::now();
        let mut sandbox = snapshot.sandbox().expect("clone");
        clone.push(start.elapsed());
        run(&sandbox, "list_build", &list_n(4000));
        let start = Instant::now();
        sandbox.reset().expect("reset");
        reset.push(start.elapsed());
    }
    // struct snap_args { addr, pages, stale, value }: 16 pages at page 0.
    let snap = Object::parse(SNAP).expect("snap");
    let snap_args = |sandbox: &Sandbox| {
        let mut args = [0u8; 24];
        let base = sandbox.arena().expect("arena").base();
        args[..8].copy_from_slice(&base.to_le_bytes());
        args[8..12].copy_from_slice(&16u32.to_le_bytes());
        args[16..].copy_from_slice(&7u64.to_le_bytes());
        args
    };
    let (_, own) = load(&snap);
    let snap_template = load(&snap).1;
    let (own_args, snap_args) = (snap_args(&own), snap_args(&snap_template));
    run(&snap_template, "snap_fill", &snap_args);
    let snap_snapshot = snap_template.snapshot().expect("snapshot");
    let (mut punched, mut discarded) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        run(&own, "snap_fill", &own_args);
        let (guest, wall) = run(&own, "snap_free", &own_args);
        punched.push(wall.saturating_sub(guest));
        let sandbox = snap_snapshot.sandbox().expect("clone");
        run(&sandbox, "snap_check", &snap_args);
        let (guest, wall) = run(&sandbox, "snap_free", &snap_args);
        discarded.push(wall.saturating_sub(guest));
    }

    println!("benchmark (median)                                   time");
    let row = |name: &str, d: Duration| println!("{name:<48}{d:>9.1?}");
    row("load_object, 1 MiB arena (arena_churn)", median(small));
    row("load_object, 4 GiB arena (arena_big)", median(large));
    row("guest: alloc + 3 stores + free, per page", median(per_page));
    row("guest: list_build of 1M nodes (fresh arena)", median(build));
    row("guest: list_sum over 1M nodes", median(sum));
    row("host part of a run freeing 64 pages", median(with_release));
    row("host part of a run freeing none", median(without));
    row("fresh: load arena_list + list_build(1000)", median(fresh));
    row("clone of a snapshot of that", median(clone));
    row("reset of that clone after list_build(4000)", median(reset));
    row("host part, freeing 16 pages, own memfd", median(punched));
    row(
        "host part, freeing 16 snapshot pages, clone",
        median(discarded),
    );
}
