//! Snapshots and clones of sandboxes with an arena, in real VMs with the
//! clang-built arena samples (Note [Arena clones] in `vmm::arena`): a
//! clone keeps the template's arena addresses, so pointers programs stored
//! still work, while the host reaches its arena at an address of its own
//! through the handle's translation; clones are isolated from each other
//! and from the template, a page a clone frees reads zeros when allocated
//! again while the snapshot keeps its bytes, and a reset or a pool takes a
//! clone back to the snapshot.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::{kvm_available, run_returning, sandbox_with, stall_until_deadline};
use vmm::Sandbox;

const LIST: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");
const SNAP: &[u8] = include_bytes!("../../images/progs/arena_snap.bpf.o");
const RINGBUF: &[u8] = include_bytes!("../../images/progs/ringbuf.bpf.o");

/// `struct list_args` of arena_list: n in; out pages, head, sum.
fn list_args(n: u32) -> [u8; 24] {
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&n.to_le_bytes());
    args
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

/// list_build(n): (returned, pages allocated so far, head).
fn build(sandbox: &Sandbox, n: u32) -> (u64, u32, u64) {
    let (r, out) = run_returning(sandbox, "list_build", 0, &list_args(n));
    let pages = u32::from_le_bytes(out[4..8].try_into().unwrap());
    (r, pages, u64_at(&out, 8))
}

/// list_sum: (nodes, sum of values, head).
fn sum(sandbox: &Sandbox) -> (u64, u64, u64) {
    let (count, out) = run_returning(sandbox, "list_sum", 0, &list_args(0));
    (count, u64_at(&out, 16), u64_at(&out, 8))
}

/// Reads the u64 at arena address `addr` through the handle (checked,
/// translated for a clone).
fn read_u64(sandbox: &Sandbox, addr: u64) -> u64 {
    let mut word = [0u8; 8];
    sandbox.arena().unwrap().read(addr, &mut word).unwrap();
    u64::from_le_bytes(word)
}

/// Walks the list from `head` with the host API: (nodes, sum).
fn host_walk(sandbox: &Sandbox, head: u64) -> (u64, u64) {
    let (mut node, mut n, mut total) = (head, 0, 0);
    while node != 0 && n <= 1 << 20 {
        total += read_u64(sandbox, node + 8);
        node = read_u64(sandbox, node);
        n += 1;
    }
    (n, total)
}

/// arena_list with a list of 1000 nodes built: the state snapshots are
/// taken in. With the ring buffer sample, for its `stall`.
fn list_template() -> (Sandbox, u64) {
    let sandbox = sandbox_with(1, &[LIST, RINGBUF]);
    let (built, _, head) = build(&sandbox, 1000);
    assert_eq!(built, 1000);
    (sandbox, head)
}

#[test]
fn an_arena_clone_answers_as_a_fresh_sandbox_with_the_same_history() {
    if !kvm_available("an_arena_clone_answers_as_a_fresh_sandbox_with_the_same_history") {
        return;
    }
    let (template, head) = list_template();
    let snapshot = template.snapshot().unwrap();
    assert!(snapshot.bytes() > 0);
    let clone = snapshot.sandbox().unwrap();
    let fresh = list_template().0;
    // The same answers, and the same offsets in the arena, as a sandbox
    // that lived through the same history.
    let offsets = |s: &Sandbox| {
        let base = s.arena().unwrap().base();
        let (r, pages, head) = build(s, 10);
        let (count, total, _) = sum(s);
        (r, pages, head - base, count, total)
    };
    let expected = offsets(&fresh);
    assert_eq!(
        (expected.0, expected.3, expected.4),
        (10, 1010, 500_555),
        "{expected:?}"
    );
    assert_eq!(offsets(&clone), expected);
    // The clone keeps the template's arena addresses, and its host view
    // finds the list's head in the arena's last page, as programs do.
    let arena = clone.arena().unwrap();
    assert_eq!(arena.base(), template.arena().unwrap().base());
    let last_page = arena.base() + arena.len() - 4096;
    assert_eq!(read_u64(&clone, last_page), sum(&clone).2);
    // The template goes on as it was.
    assert_eq!(sum(&template), (1000, 500_500, head));
    assert_eq!(offsets(&template), expected);
}

#[test]
fn host_reads_in_a_clone_follow_the_pointers_programs_stored() {
    if !kvm_available("host_reads_in_a_clone_follow_the_pointers_programs_stored") {
        return;
    }
    let (template, old_head) = list_template();
    let snapshot = template.snapshot().unwrap();
    let clone = snapshot.sandbox().unwrap();
    let (_, _, head) = build(&clone, 10);
    let arena = clone.arena().unwrap();
    // The template's host address is the guest's; the clone's is another,
    // by a multiple of 4 GiB (the low 32 bits of a pointer are the same).
    let t = template.arena().unwrap();
    assert_eq!(t.host_base(), t.base());
    assert_eq!(t.as_ptr() as u64, t.base());
    assert_ne!(arena.host_base(), arena.base());
    assert_eq!(arena.host_base().wrapping_sub(arena.base()) % (1 << 32), 0);
    assert_eq!(arena.as_ptr() as u64, arena.host_base());
    // Ten nodes the clone built, then the template's thousand.
    assert_eq!(host_walk(&clone, head), (1010, 500_555));
    // Plain dereferences, translated with host_ptr.
    let deref = |addr: u64| {
        let p = arena.host_ptr(addr).unwrap();
        // SAFETY: addr is a node the program built (allocated), 8-byte
        // aligned; the sandbox lives and runs nothing meanwhile.
        unsafe { p.cast::<u64>().read_volatile() }
    };
    assert_eq!(deref(head + 8), 10);
    let mut node = head;
    for _ in 0..10 {
        node = deref(node);
    }
    assert_eq!(
        node, old_head,
        "the clone's tenth node links to the snapshot's list"
    );
    assert_eq!(deref(node + 8), 1000);
    // Outside the arena there is no host address.
    assert!(arena.host_ptr(arena.base() - 1).is_none());
    assert!(arena.host_ptr(arena.base() + arena.len()).is_none());
    // A clone has no memfd of its own to share; the template has.
    assert!(arena.as_fd().is_none());
    assert!(t.as_fd().is_some());
}

#[test]
fn arena_clones_are_isolated_from_each_other_and_from_the_template() {
    if !kvm_available("arena_clones_are_isolated_from_each_other_and_from_the_template") {
        return;
    }
    let (template, head) = list_template();
    let snapshot = template.snapshot().unwrap();
    let (a, b) = (snapshot.sandbox().unwrap(), snapshot.sandbox().unwrap());
    assert_ne!(
        a.arena().unwrap().host_base(),
        b.arena().unwrap().host_base()
    );
    // Programs' writes: a builds, b and the template do not see it.
    build(&a, 5);
    assert_eq!(sum(&a).0, 1005);
    assert_eq!(sum(&b), (1000, 500_500, head));
    assert_eq!(sum(&template), (1000, 500_500, head));
    // The host's writes through the handle: the first node's value in b
    // only, and in the template only.
    b.arena()
        .unwrap()
        .write(head + 8, &2000u64.to_le_bytes())
        .unwrap();
    assert_eq!(sum(&b).1, 500_500 + 1000);
    assert_eq!(sum(&a).1, 500_500 + 15);
    template
        .arena()
        .unwrap()
        .write(head + 8, &7u64.to_le_bytes())
        .unwrap();
    assert_eq!(read_u64(&a, head + 8), 1000);
    assert_eq!(read_u64(&b, head + 8), 2000);
    // A clone made now still starts from the snapshot.
    let c = snapshot.sandbox().unwrap();
    assert_eq!(sum(&c), (1000, 500_500, head));
    assert_eq!(read_u64(&template, head + 8), 7);
}

/// `struct snap_args` of arena_snap.
fn snap_args(addr: u64, pages: u32, value: u64) -> [u8; 24] {
    let mut args = [0u8; 24];
    args[..8].copy_from_slice(&addr.to_le_bytes());
    args[8..12].copy_from_slice(&pages.to_le_bytes());
    args[16..].copy_from_slice(&value.to_le_bytes());
    args
}

/// snap_fill: (address, words that were not zero).
fn fill(sandbox: &Sandbox, addr: u64, pages: u32, value: u64) -> (u64, u32) {
    let (r, out) = run_returning(sandbox, "snap_fill", 0, &snap_args(addr, pages, value));
    assert_eq!(r, 0, "snap_fill({addr:#x}, {pages}) failed");
    let stale = u32::from_le_bytes(out[12..16].try_into().unwrap());
    (u64_at(&out, 0), stale)
}

/// snap_check: words of the pages at `addr` that are not `value`.
fn check(sandbox: &Sandbox, addr: u64, pages: u32, value: u64) -> u64 {
    run_returning(sandbox, "snap_check", 0, &snap_args(addr, pages, value)).0
}

fn free(sandbox: &Sandbox, addr: u64, pages: u32) {
    let (r, _) = run_returning(sandbox, "snap_free", 0, &snap_args(addr, pages, 0));
    assert_eq!(r, 0);
}

#[test]
fn a_page_a_clone_frees_reads_zeros_again_and_the_snapshot_keeps_its_bytes() {
    if !kvm_available("a_page_a_clone_frees_reads_zeros_again_and_the_snapshot_keeps_its_bytes") {
        return;
    }
    const OLD: u64 = 0x0dd0_0dd0_0dd0_0dd0;
    const NEW: u64 = 0x5eed;
    let template = sandbox_with(1, &[SNAP]);
    let (a_pages, stale) = fill(&template, 0, 4, OLD);
    assert_eq!(stale, 0);
    let (b_pages, _) = fill(&template, 0, 4, OLD);
    assert_eq!(b_pages, a_pages + 4 * 4096);
    let snapshot = template.snapshot().unwrap();
    let mut clone = snapshot.sandbox().unwrap();
    let sibling = snapshot.sandbox().unwrap();
    // Freed by a program (and released by the host after the run), then
    // allocated again at the same address: zeros, not the snapshot's bytes.
    free(&clone, a_pages, 4);
    assert!(!clone.arena().unwrap().is_allocated(a_pages));
    assert_eq!(fill(&clone, a_pages, 4, NEW), (a_pages, 0));
    assert_eq!(check(&clone, a_pages, 4, NEW), 0);
    // Freed, then faulted in by a host read: zeros too.
    free(&clone, b_pages, 4);
    let mut page = vec![0xffu8; 4 * 4096];
    clone.arena().unwrap().read(b_pages, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
    // Pages the snapshot never held, cycled in the clone.
    let (c_pages, stale) = fill(&clone, 0, 8, NEW);
    assert_eq!(stale, 0);
    free(&clone, c_pages, 8);
    assert_eq!(fill(&clone, c_pages, 8, OLD), (c_pages, 0));
    // The sibling, the template and a new clone keep the snapshot's bytes.
    let again = snapshot.sandbox().unwrap();
    for sandbox in [&sibling, &template, &again] {
        assert_eq!(check(sandbox, a_pages, 4, OLD), 0);
        assert_eq!(check(sandbox, b_pages, 4, OLD), 0);
        assert_eq!(check(sandbox, c_pages, 8, 0), 0);
    }
    // A reset takes the clone back to the snapshot: its frees undone.
    clone.reset().unwrap();
    assert_eq!(check(&clone, a_pages, 4, OLD), 0);
    assert_eq!(check(&clone, b_pages, 4, OLD), 0);
    assert!(!clone.arena().unwrap().is_allocated(c_pages));
    assert_eq!(read_u64(&clone, b_pages + 4088), OLD);
    // And it frees and reuses pages as before.
    free(&clone, a_pages, 4);
    assert_eq!(fill(&clone, a_pages, 4, NEW), (a_pages, 0));
}

#[test]
fn a_reset_takes_a_poisoned_arena_clone_back_to_its_snapshot() {
    if !kvm_available("a_reset_takes_a_poisoned_arena_clone_back_to_its_snapshot") {
        return;
    }
    let (template, head) = list_template();
    let snapshot = template.snapshot().unwrap();
    let mut clone = snapshot.sandbox().unwrap();
    // 4000 nodes: past the snapshot's chunk (4096 nodes), into a new one.
    let (_, _, first_head) = build(&clone, 4000);
    clone
        .arena()
        .unwrap()
        .write(head + 8, &1u64.to_le_bytes())
        .unwrap();
    stall_until_deadline(&clone, 30);
    clone.reset().unwrap();
    assert!(!clone.is_poisoned());
    assert_eq!(sum(&clone), (1000, 500_500, head));
    assert_eq!(read_u64(&clone, head + 8), 1000);
    assert!(!clone.arena().unwrap().is_allocated(first_head));
    // The same history again gives the same answers.
    assert_eq!(build(&clone, 4000).2, first_head);
    assert_eq!(host_walk(&clone, first_head), (5000, 500_500 + 8_002_000));
}

#[test]
fn a_pool_hands_out_arena_clones_in_the_snapshots_state() {
    if !kvm_available("a_pool_hands_out_arena_clones_in_the_snapshots_state") {
        return;
    }
    use vmm::{Reuse, SandboxPool};
    let (template, head) = list_template();
    let snapshot = std::sync::Arc::new(template.snapshot().unwrap());
    drop(template);
    let pool = SandboxPool::new(snapshot, 2, 2, Reuse::ResetToSnapshot).unwrap();
    for round in 0..4 {
        let sandbox = pool.get().unwrap();
        assert_eq!(sum(&sandbox), (1000, 500_500, head), "round {round}");
        build(&sandbox, 3);
        sandbox
            .arena()
            .unwrap()
            .write(head + 8, &0u64.to_le_bytes())
            .unwrap();
        assert_eq!(sum(&sandbox).1, 500_500 - 1000 + 6);
        if round % 2 == 1 {
            stall_until_deadline(&sandbox, 20);
        }
    }
    let stats = pool.stats();
    assert_eq!((stats.cold_clones, stats.discarded), (0, 0), "{stats:?}");
}
