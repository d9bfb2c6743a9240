//! BPF arenas through real VMs: clang-built samples (images/progs/arena_*)
//! whose header comments state the expected results, and the host's view
//! of the same memory at the same addresses.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::kvm_available;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramId, ProgramInput, Sandbox};

const LIST: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");
const HASH: &[u8] = include_bytes!("../../images/progs/arena_hash.bpf.o");
const CHURN: &[u8] = include_bytes!("../../images/progs/arena_churn.bpf.o");
const FAULT: &[u8] = include_bytes!("../../images/progs/arena_fault.bpf.o");
const SEGV: &[u8] = include_bytes!("../../images/progs/arena_segv.bpf.o");
const ATOMICS: &[u8] = include_bytes!("../../images/progs/arena_atomics.bpf.o");
const BIG: &[u8] = include_bytes!("../../images/progs/arena_big.bpf.o");

fn setup(cpus: usize, elf: &[u8]) -> Sandbox {
    integration_tests::sandbox_with(cpus, &[elf])
}

fn id(sandbox: &Sandbox, name: &str) -> ProgramId {
    sandbox.find_program(name).unwrap()
}

/// Runs `name` on vCPU 0 with `ctx`, returns r0 and the context after.
fn run(sandbox: &Sandbox, name: &str, ctx: &[u8]) -> (u64, Vec<u8>) {
    integration_tests::run_returning(sandbox, name, 0, ctx)
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

/// Reads a u64 at `addr` with a plain (volatile) dereference.
///
/// # Safety
/// `addr` must lie in an allocated arena page.
unsafe fn deref(addr: u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const u64).read_volatile() }
}

/// Blocks the arena's memfd holds, in 4 KiB pages.
fn arena_pages_held(sandbox: &Sandbox) -> u64 {
    use std::os::fd::AsRawFd;
    let fd = sandbox.arena().unwrap().as_fd().unwrap().as_raw_fd();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the buffer on success.
    assert_eq!(unsafe { libc::fstat(fd, st.as_mut_ptr()) }, 0);
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    st.st_blocks as u64 * 512 / 4096
}

#[test]
fn a_list_built_in_the_guest_is_summed_there_and_walked_by_the_host() {
    if !kvm_available("a_list_built_in_the_guest_is_summed_there_and_walked_by_the_host") {
        return;
    }
    let sandbox = setup(1, LIST);
    let arena = sandbox.arena().unwrap();
    assert_eq!(arena.len(), 8192 * 4096);
    assert_eq!(arena.base() % 4096, 0);
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&1000u32.to_le_bytes());
    let (built, out) = run(&sandbox, "list_build", &args);
    assert_eq!(built, 1000);
    let head = u64_at(&out, 8);
    assert!(head >= arena.base() && head < arena.base() + arena.len());
    let (count, out) = run(&sandbox, "list_sum", &[0; 24]);
    assert_eq!((count, u64_at(&out, 16)), (1000, 500_500));
    // The host follows the same pointers.
    let (mut node, mut n, mut sum) = (head, 0, 0);
    while node != 0 && n <= 1000 {
        assert!(arena.is_allocated(node));
        // SAFETY: node is an allocated arena page (checked), a node the
        // program built: { next, value }.
        unsafe {
            sum += deref(node + 8);
            node = deref(node);
        }
        n += 1;
    }
    assert_eq!((n, sum), (1000, 500_500));
    // Another process mapping the memfd sees the same bytes at the same
    // offsets (here: this process, at another address).
    {
        use std::os::fd::AsRawFd;
        let len = arena.len() as usize;
        // SAFETY: a fresh read-only shared mapping of the arena's memfd,
        // unmapped below; only the head node's allocated page is read.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                arena.as_fd().unwrap().as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let at = (p as *const u8).add((head - arena.base()) as usize);
            assert_eq!((at.add(8) as *const u64).read_volatile(), 1000);
            assert_eq!(libc::munmap(p, len), 0);
        }
    }
    // list_head lives in the arena's last page, where libbpf puts globals.
    let last_page = arena.base() + arena.len() - 4096;
    let mut head_global = [0u8; 8];
    arena.read(last_page, &mut head_global).unwrap();
    assert_eq!(u64::from_le_bytes(head_global), head);
    // A second build pushes in front.
    args[..4].copy_from_slice(&10u32.to_le_bytes());
    assert_eq!(run(&sandbox, "list_build", &args).0, 10);
    let (count, out) = run(&sandbox, "list_sum", &[0; 24]);
    assert_eq!((count, u64_at(&out, 16)), (1010, 500_555));
}

/// The arena address of `__arena` global `name` of `elf`.
fn arena_global(sandbox: &Sandbox, elf: &[u8], name: &str) -> u64 {
    let object = Object::parse(elf).unwrap();
    let var = object
        .variables()
        .iter()
        .find(|v| v.name == name)
        .unwrap()
        .clone();
    let section_len = object.data_sections()[var.data].bytes.len() as u64;
    let arena = sandbox.arena().unwrap();
    let pages = (arena.len() / 4096) as u32;
    arena.base() + guest_jit::elf::arena_globals_offset(pages, section_len).unwrap() + var.offset
}

fn hash_args(n: u32, key: u64) -> [u8; 24] {
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&n.to_le_bytes());
    args[8..16].copy_from_slice(&key.to_le_bytes());
    args
}

#[test]
fn a_hash_table_is_shared_both_ways() {
    if !kvm_available("a_hash_table_is_shared_both_ways") {
        return;
    }
    let sandbox = setup(1, HASH);
    let (added, out) = run(&sandbox, "hash_fill", &hash_args(5000, 0));
    assert_eq!((added, u64_at(&out, 16)), (5000, 5000));
    let (found, out) = run(&sandbox, "hash_lookup", &hash_args(0, 4321));
    assert_eq!((found, u64_at(&out, 16)), (1, 12964));
    assert_eq!(run(&sandbox, "hash_lookup", &hash_args(0, 5001)).0, 0);
    // The host looks keys up with plain dereferences of the same table.
    let buckets = arena_global(&sandbox, HASH, "hash_buckets");
    let host_lookup = |key: u64| {
        let b = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 10);
        // SAFETY: hash_buckets lies in the globals' pages, allocated at
        // load; entries are pages the program allocated.
        let mut e = unsafe { deref(buckets + 8 * b) };
        let mut steps = 0;
        while e != 0 && steps < 10_000 {
            // SAFETY: as above: { next, key, value }.
            unsafe {
                if deref(e + 8) == key {
                    return Some(deref(e + 16));
                }
                e = deref(e);
            }
            steps += 1;
        }
        None
    };
    assert_eq!(host_lookup(4321), Some(12964));
    assert_eq!(host_lookup(1), Some(4));
    assert_eq!(host_lookup(5001), None);
    // And writes keys the program consumes.
    let arena = sandbox.arena().unwrap();
    let keys: Vec<u8> = [7000u64, 7001, 42]
        .iter()
        .flat_map(|k| k.to_le_bytes())
        .collect();
    arena
        .write(arena_global(&sandbox, HASH, "host_keys"), &keys)
        .unwrap();
    arena
        .write(
            arena_global(&sandbox, HASH, "host_count"),
            &3u32.to_le_bytes(),
        )
        .unwrap();
    let (sum, out) = run(&sandbox, "hash_ingest", &hash_args(0, 0));
    assert_eq!((sum, u64_at(&out, 16)), (7000 + 7001 + 42, 2));
    assert_eq!(
        u64_at(&run(&sandbox, "hash_lookup", &hash_args(0, 42)).1, 16),
        43
    );
    assert_eq!(host_lookup(7001), Some(7002));
}

fn churn_args(rounds: u32, pages: u32) -> [u8; 24] {
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&rounds.to_le_bytes());
    args[4..8].copy_from_slice(&pages.to_le_bytes());
    args
}

#[test]
fn churn_keeps_memory_bounded_and_pages_zeroed_on_reuse() {
    if !kvm_available("churn_keeps_memory_bounded_and_pages_zeroed_on_reuse") {
        return;
    }
    let sandbox = setup(1, CHURN);
    for _ in 0..3 {
        let (ok, out) = run(&sandbox, "churn", &churn_args(300, 8));
        assert_eq!(ok, 300);
        assert_eq!(
            (u32_at(&out, 8), u32_at(&out, 12)),
            (0, 0),
            "(dirty, failed)"
        );
        // Every freed page was released when the run ended.
        assert_eq!(arena_pages_held(&sandbox), 0);
    }
    // Hold the whole arena: churn then gets nothing.
    for i in 0..4 {
        let (r, out) = run(&sandbox, "churn_hold", &churn_args(0, 64));
        assert_eq!(r as i32, 0, "hold {i}");
        assert!(sandbox.arena().unwrap().is_allocated(u64_at(&out, 16)));
    }
    assert_eq!(run(&sandbox, "churn_hold", &churn_args(0, 1)).0 as i32, -1);
    let (ok, out) = run(&sandbox, "churn", &churn_args(5, 1));
    assert_eq!((ok, u32_at(&out, 12)), (0, 5));
    assert!(arena_pages_held(&sandbox) <= 256);
}

#[test]
fn unallocated_pages_read_zero_and_ignore_writes_and_the_host_faults_them_in() {
    if !kvm_available("unallocated_pages_read_zero_and_ignore_writes_and_the_host_faults_them_in") {
        return;
    }
    let sandbox = setup(1, FAULT);
    for _ in 0..2 {
        let (surprises, out) = run(&sandbox, "fault_probe", &[0; 56]);
        assert_eq!(surprises, 0);
        assert_eq!(u64_at(&out, 48), 42);
    }
    let arena = sandbox.arena().unwrap();
    let page20 = arena.base() + 20 * 4096;
    assert!(!arena.is_allocated(page20));
    let mut word = [0xffu8; 8];
    arena.read(page20, &mut word).unwrap();
    assert_eq!(word, [0; 8]);
    assert!(arena.is_allocated(page20), "a host read faults the page in");
    arena.write(page20 + 8, &7u64.to_le_bytes()).unwrap();
    // SAFETY: page 20 is allocated now.
    assert_eq!(unsafe { deref(page20 + 8) }, 7);
    let err = arena
        .read(arena.base() + arena.len() - 4, &mut word)
        .unwrap_err();
    assert!(
        err.to_string().starts_with("Access of 8 bytes at "),
        "{err}"
    );
}

#[test]
fn segv_on_fault_makes_host_touches_of_unallocated_pages_errors() {
    if !kvm_available("segv_on_fault_makes_host_touches_of_unallocated_pages_errors") {
        return;
    }
    let sandbox = setup(1, SEGV);
    let (r, out) = run(&sandbox, "segv_alloc", &[0; 16]);
    assert_eq!((r, u64_at(&out, 8)), (0, 0));
    let arena = sandbox.arena().unwrap();
    let addr = u64_at(&out, 0);
    assert_eq!(addr, arena.base());
    let mut word = [0u8; 8];
    arena.read(addr, &mut word).unwrap();
    assert_eq!(u64::from_le_bytes(word), 0x5eed);
    let err = arena.read(addr + 4096, &mut word).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Arena page at {:#x} is not allocated (the arena has BPF_F_SEGV_ON_FAULT)",
            addr + 4096
        )
    );
    assert!(arena.write(addr + 4096, &word).is_err());
    assert!(!arena.is_allocated(addr + 4096));
    assert_eq!(arena_pages_held(&sandbox), 1);
}

#[test]
fn atomics_from_four_vcpus_are_exact() {
    if !kvm_available("atomics_from_four_vcpus_are_exact") {
        return;
    }
    let sandbox = setup(4, ATOMICS);
    assert_eq!(run(&sandbox, "atomic_setup", &[0; 8]).0, 0);
    let (times, repeat) = (2000u64, 3u64);
    let mut args = [0u8; 16];
    args[..4].copy_from_slice(&(times as u32).to_le_bytes());
    let runs = sandbox.run_program_on(
        id(&sandbox, "atomic_hammer"),
        &[0, 1, 2, 3],
        &ProgramInput {
            data: &args,
            repeat,
            timeout: Some(Duration::from_secs(60)),
        },
    );
    for r in runs {
        let r = r.unwrap();
        assert_eq!(r.report.outcome, Outcome::Returned(0));
        assert_eq!(u64_at(&r.data_out, 8) & !0xf, 0);
    }
    let (_, t) = run(&sandbox, "atomic_read", &[0; 48]);
    let n = 4 * times * repeat;
    assert_eq!(
        [0, 8, 16, 24, 32].map(|off| u64_at(&t, off)),
        [n, (2 * n) & 0xffff_ffff, n, 3 * n, 0xf]
    );
}

#[test]
fn a_four_gib_arena_costs_only_the_pages_touched() {
    if !kvm_available("a_four_gib_arena_costs_only_the_pages_touched") {
        return;
    }
    let sandbox = setup(1, BIG);
    let arena = sandbox.arena().unwrap();
    assert_eq!(arena.len(), 1 << 32);
    let mut args = [0u8; 16];
    args[..4].copy_from_slice(&8u32.to_le_bytes());
    args[4..8].copy_from_slice(&131_072u32.to_le_bytes());
    let (got, out) = run(&sandbox, "big_touch", &args);
    assert_eq!(got, 8);
    assert_eq!(u64_at(&out, 8), arena.base());
    assert_eq!(run(&sandbox, "big_sum", &out).0, 36);
    assert_eq!(arena_pages_held(&sandbox), 8);
    // SAFETY: page 7 * 131072 was allocated by big_touch.
    assert_eq!(unsafe { deref(arena.base() + 7 * 131_072 * 4096) }, 8);
}

#[test]
fn the_arena_survives_a_reset_and_page_zero_is_the_first_allocation() {
    if !kvm_available("the_arena_survives_a_reset_and_page_zero_is_the_first_allocation") {
        return;
    }
    let mut sandbox = setup(1, LIST);
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&5u32.to_le_bytes());
    let (_, out) = run(&sandbox, "list_build", &args);
    // The first chunk is the arena's page 0 (globals are at the end).
    let base = sandbox.arena().unwrap().base();
    assert_eq!(u64_at(&out, 8), base + 4 * 16);
    sandbox.reset().unwrap();
    let (count, out) = run(&sandbox, "list_sum", &[0; 24]);
    assert_eq!((count, u64_at(&out, 16)), (5, 15));
}

#[test]
fn a_scribbled_state_region_only_hurts_the_guest() {
    if !kvm_available("a_scribbled_state_region_only_hurts_the_guest") {
        return;
    }
    let mut sandbox = setup(1, CHURN);
    let (r, out) = run(&sandbox, "churn_hold", &churn_args(0, 8));
    assert_eq!(r, 0);
    let held = u64_at(&out, 16);
    assert_eq!(arena_pages_held(&sandbox), 1, "only the page written");
    let states = sandbox.find_map("arena").unwrap().info().data();
    // What a program could write: npages, counters and cursor garbage,
    // every state byte of the arena and far past it FREED (3).
    let memory = sandbox.memory();
    memory.write(states + 4, &u32::MAX.to_le_bytes()).unwrap();
    memory.write(states + 44, &[0xff; 12]).unwrap();
    memory.write(states + 64, &[3; 256 + 4096]).unwrap();
    // The guest's kfuncs refuse the header: churn gets no pages, no trap.
    let (ok, out) = run(&sandbox, "churn", &churn_args(3, 1));
    assert_eq!((ok, u32_at(&out, 12)), (0, 3));
    // The host released at most its own 256 pages: the guest's page is
    // gone (its own loss), nothing outside the arena was touched.
    let arena = sandbox.arena().unwrap();
    assert_eq!(arena_pages_held(&sandbox), 0);
    assert_eq!(arena.release().unwrap(), 0);
    let mut word = [0xffu8; 8];
    arena.read(held, &mut word).unwrap();
    assert_eq!(word, [0; 8]);
    // A lock left taken: the host gives up instead of hanging, and a reset
    // frees it.
    memory.write(states + 40, &1u32.to_le_bytes()).unwrap();
    let err = arena.read(held + 4096, &mut word).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Failed to fault in the arena page at {:#x}", held + 4096)
    );
    sandbox.reset().unwrap();
    sandbox
        .arena()
        .unwrap()
        .read(held + 4096, &mut word)
        .unwrap();
}

/// A program calling arena kfunc `kfunc` on the arena whose map header is
/// at `map`: r2 and r3 from the context's first two u64s; alloc also
/// passes NUMA_NO_NODE and flags 0.
fn kfunc_program(name: &str, kfunc: &str, map: u64) -> guest_jit::elf::LinkedProgram {
    let alloc_args = if kfunc == "bpf_arena_alloc_pages" {
        "mov %r4, -1\nmov %r5, 0\n"
    } else {
        ""
    };
    let source = format!(
        "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r1+8]\n{alloc_args}lddw %r1, {map:#x}\ncall kfunc 0\nexit\n"
    );
    let program =
        guest_jit::insn::Program::decode(&guest_jit::asm::assemble(&source).unwrap()).unwrap();
    let mut linked = vmm::program::unlinked(name, program);
    linked.kfuncs = vec![kfunc.to_owned()];
    linked
}

#[test]
fn reserved_pages_are_never_allocated_until_freed() {
    if !kvm_available("reserved_pages_are_never_allocated_until_freed") {
        return;
    }
    let mut sandbox = setup(1, CHURN);
    let map = sandbox.find_map("arena").unwrap().info().header();
    let not_a_map = sandbox.layout().maps_start() + 0x100;
    for (name, kfunc, map) in [
        ("reserve", "bpf_arena_reserve_pages", map),
        ("alloc", "bpf_arena_alloc_pages", map),
        ("free", "bpf_arena_free_pages", map),
        ("alloc_bad", "bpf_arena_alloc_pages", not_a_map),
    ] {
        sandbox
            .load_program(kfunc_program(name, kfunc, map), HelperSet::Standard)
            .unwrap();
    }
    let base = sandbox.arena().unwrap().base();
    let page = |i: u64| base + i * 4096;
    let call = |name: &str, addr: u64, count: u64| {
        let mut ctx = [0u8; 16];
        ctx[..8].copy_from_slice(&addr.to_le_bytes());
        ctx[8..].copy_from_slice(&count.to_le_bytes());
        run(&sandbox, name, &ctx).0
    };
    assert_eq!(call("reserve", page(3), 2), 0);
    assert_eq!(call("alloc", page(3), 1), 0, "reserved: NULL");
    assert_eq!(call("alloc", page(4), 1), 0, "reserved: NULL");
    assert_eq!(call("reserve", page(3), 1) as i64, -16, "-EBUSY");
    assert_eq!(call("reserve", page(255), 2) as i64, -22, "-EINVAL");
    assert_eq!(call("reserve", page(7) + 1, 1), 0, "unaligned: nothing");
    // Four pages anywhere: 0..3 has only three free, 3 and 4 are reserved.
    assert_eq!(call("alloc", 0, 4), page(5));
    assert_eq!(call("alloc", 0, 3), page(0));
    // Freeing a reserved range makes it allocatable.
    call("free", page(3), 2);
    assert_eq!(call("alloc", page(3), 1), page(3));
    let arena = sandbox.arena().unwrap();
    assert!(arena.is_allocated(page(3)) && !arena.is_allocated(page(4)));
    // Bad arguments give NULL, as the kernel: a zero count, a map that
    // is not an arena.
    assert_eq!(call("alloc", 0, 0), 0);
    assert_eq!(call("alloc_bad", 0, 1), 0);
}
