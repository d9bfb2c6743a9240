//! Dynptrs in a real VM: the clang-built `images/progs/dynptr.bpf.c`
//! programs get the kernel's results from `bpf_dynptr_from_mem`, `_read`,
//! `_write`, `_data` and the dynptr kfuncs, and a dynptr pointer or a
//! dynptr's data that faults gives an error code, never a trap (Note
//! [Dynptrs in program memory] in `images/guest-rt/src/helpers/dynptr.rs`).
//! Raw helper calls check what a sample cannot reach easily: overlapping
//! copies longer than the runtime's bounce buffer, copies running into an
//! unmapped page.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::{call_helper, scratch, setup_sandbox};
use integration_tests::{kvm_available, run_named, sandbox_with};
use shm::dynptr::{DYNPTR_SIZE, Dynptr, DynptrKind};
use shm::layout::PAGE_SIZE;
use shm::maps::BPF_ANY;
use vmm::{Outcome, Sandbox};

const DYNPTR: &[u8] = include_bytes!("../../images/progs/dynptr.bpf.o");

const E2BIG: i64 = -7;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ERANGE: i64 = -34;
/// `bpf_dynptr_size` of a NULL dynptr: -EINVAL as a `__u32`.
const NULL_SIZE: i64 = EINVAL as u32 as i64;
/// A NULL pointer, as the sample reports it.
const NULL: i64 = -1;
/// An address no x86-64 CPU accepts: accessing it raises #GP, not #PF.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// "dynptr!\0" as a little-endian u64.
const MSG: i64 = i64::from_le_bytes(*b"dynptr!\0");

/// Runs sample program `name` on vCPU 0 with a context of `len` u64s whose
/// first ones are `args`; checks that it returned 0 without leaving the
/// guest, and returns the context as i64s.
fn results(sandbox: &Sandbox, name: &str, args: &[u64], len: usize) -> Vec<i64> {
    let mut data = vec![0u8; len * 8];
    for (chunk, arg) in data.chunks_mut(8).zip(args) {
        chunk.copy_from_slice(&arg.to_le_bytes());
    }
    let run = run_named(sandbox, name, 0, &data);
    assert!(
        matches!(run.report.outcome, Outcome::Returned(0)),
        "{name}: {:?} at {:?}",
        run.report.outcome,
        run.trap_site
    );
    assert_eq!(run.report.exits, 1, "{name}: helpers stay in the guest");
    run.data_out
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn read_and_write_round_trip_with_the_kernel_bounds() {
    if !kvm_available("read_and_write_round_trip_with_the_kernel_bounds") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    #[rustfmt::skip]
    let want = [
        0, 64, 0, 0,            // from_mem, size, is_null, is_rdonly
        0, 0, MSG,              // write, read back, the bytes
        0, E2BIG, E2BIG, E2BIG, // read 0 at 64, 8 at 60, 0 at 65, 4G at 0
        EINVAL,                 // read with flags
        E2BIG, EINVAL, E2BIG,   // write 8 at 57, with flags, both
        MSG,                    // buf[8..16] after the run
    ];
    assert_eq!(results(&sandbox, "dynptr_rw", &[], want.len()), want);
    let buf = sandbox.find_map(".bss").unwrap();
    let bss = buf.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    assert_eq!(&bss[8..16], b"dynptr!\0", "the write reached the global");
}

#[test]
fn failed_constructors_leave_a_null_dynptr() {
    if !kvm_available("failed_constructors_leave_a_null_dynptr") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    #[rustfmt::skip]
    let want = [
        E2BIG, 1,                      // from_mem of 1 << 24 bytes, is_null
        EINVAL, 1,                     // from_mem with flags, is_null
        NULL_SIZE, 0, EINVAL, EINVAL,  // size, is_rdonly, read, write
        NULL, NULL, NULL, EINVAL,      // data, slice, slice_rdwr, adjust
        EINVAL, 1,                     // clone, the clone's is_null
        0, 0, 0, 0, E2BIG,             // a 0-byte dynptr: valid, empty
    ];
    assert_eq!(results(&sandbox, "dynptr_null", &[], want.len()), want);
}

#[test]
fn clones_adjust_and_slices_share_the_memory() {
    if !kvm_available("clones_adjust_and_slices_share_the_memory") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    #[rustfmt::skip]
    let want = [
        0, 0, 16, 64,                  // clone, adjust 16..32, sizes
        0, 0x1716_1514_1312_1110,      // read through the clone
        20, NULL, 16, 0xaa,            // slices, a store through slice_rdwr
        EINVAL, ERANGE, 16, 0, 0,      // adjusts, size, empty view
        60, NULL,                      // data
        0, 0x0605_0403_0201_0000,      // overlapping write
        0, 0x0706_0504_0302_0100,      // overlapping read
    ];
    assert_eq!(results(&sandbox, "dynptr_views", &[], want.len()), want);
}

#[test]
fn a_map_value_is_read_and_written_in_place() {
    if !kvm_available("a_map_value_is_read_and_written_in_place") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    let map = sandbox.find_map("values").unwrap();
    let key = 0u32.to_le_bytes();
    let words: Vec<u64> = (0..6).map(|i| 0x1000 + i).collect();
    let value: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    map.update(&key, &value, BPF_ANY).unwrap();
    #[rustfmt::skip]
    let want = [
        0, 0, 48, 0, 0x1000,           // lookup, from_mem, size, read w[0]
        0, 40,                         // write w[1], data at w[5]
        0, 24, 0, E2BIG,               // adjust 16..40, size, writes
    ];
    assert_eq!(results(&sandbox, "dynptr_map", &[], want.len()), want);
    let after = map.lookup(&key).unwrap().unwrap();
    let after: Vec<u64> = after
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        after,
        [
            0x1000,
            0x1122_3344_5566_7788,
            0x0000_0000_cccc_cccc,
            0x1003,
            0x1004,
            0x1006
        ]
    );
}

#[test]
fn a_read_only_dynptr_refuses_writes_and_writable_pointers() {
    if !kvm_available("a_read_only_dynptr_refuses_writes_and_writable_pointers") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    #[rustfmt::skip]
    let want = [
        1, EINVAL, EINVAL, 0,          // is_rdonly, writes, read
        NULL, 8, NULL,                 // data, slice, slice_rdwr
        0, 1, 0, 1, 4,                 // clone, adjust keep read-only
    ];
    assert_eq!(results(&sandbox, "dynptr_rdonly", &[], want.len()), want);
}

#[test]
fn faulting_dynptrs_give_error_codes_not_traps() {
    if !kvm_available("faulting_dynptrs_give_error_codes_not_traps") {
        return;
    }
    let sandbox = sandbox_with(1, &[DYNPTR]);
    // CPU 0's bottom guard page: unmapped.
    let unmapped = sandbox.layout().percpu_area(0);
    for bad in [unmapped, NON_CANONICAL, unmapped + PAGE_SIZE - 8] {
        #[rustfmt::skip]
        let want = [
            bad as i64,
            EFAULT, EFAULT, EFAULT,    // from_mem, read, write
            NULL, NULL, EFAULT,        // data, slice, adjust
            1, 0, NULL_SIZE,           // is_null, is_rdonly, size
            EFAULT, 1, EFAULT,         // clone from, its is_null, clone to
            EFAULT, EFAULT,            // forged data: read, write
            bad as i64 + 4,            // forged data: data (not touched)
            EFAULT, EFAULT,            // read into, write from the address
            EINVAL, NULL,              // kind skb: read, data
            EFAULT, EFAULT,            // kind 7: read, write
        ];
        assert_eq!(
            results(&sandbox, "dynptr_hostile", &[bad], want.len()),
            want,
            "bad address {bad:#x}"
        );
    }
    // The runtime is intact: a well-behaved program still gets its results.
    let rw = results(&sandbox, "dynptr_rw", &[], 16);
    assert_eq!(rw[..7], [0, 64, 0, 0, 0, 0, MSG]);
}

#[test]
fn a_dynptr_that_straddles_an_unmapped_page_faults_safely() {
    if !kvm_available("a_dynptr_that_straddles_an_unmapped_page_faults_safely") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let base = scratch(&sandbox, 0);
    let end = base + sandbox.layout().ctx_size();
    assert_eq!(
        end + PAGE_SIZE,
        sandbox.layout().percpu_data(0),
        "an unmapped guard page follows the context buffer"
    );
    // The 16-byte dynptr itself runs 8 bytes into the guard page.
    let half = end - 8;
    sandbox.memory().write(half, &[0x11; 8]).unwrap();
    assert_eq!(call_helper(&sandbox, 0, "bpf_dynptr_is_null", &[half]), 1);
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_dynptr_read", &[base, 8, half, 0, 0]) as i64,
        EFAULT
    );
    // A dynptr over the last 100 bytes plus 100 of the guard page: reads
    // inside the mapped part work, reads into the guard page give -EFAULT
    // (a copy longer than one bounce piece and one shorter).
    let d_addr = base;
    let out = base + 0x1000;
    let data = end - 100;
    let dynptr = Dynptr::new(data, DynptrKind::Local, 0, 100 + 4000);
    sandbox.memory().write_pod(d_addr, &dynptr).unwrap();
    let read = |len: u64, off: u64| {
        call_helper(&sandbox, 0, "bpf_dynptr_read", &[out, len, d_addr, off, 0]) as i64
    };
    assert_eq!(read(100, 0), 0);
    assert_eq!(read(101, 0), EFAULT);
    assert_eq!(read(3000, 0), EFAULT);
    assert_eq!(read(1, 100), EFAULT);
    let write = |len: u64, off: u64| {
        call_helper(&sandbox, 0, "bpf_dynptr_write", &[d_addr, off, out, len, 0]) as i64
    };
    assert_eq!(write(50, 50), 0);
    assert_eq!(write(51, 50), EFAULT);
    assert_eq!(write(1, 4099), EFAULT);
    assert_eq!(write(1, 4100), E2BIG);
}

/// Fills `len` bytes at `addr` with a pattern and returns it.
fn pattern(sandbox: &Sandbox, addr: u64, len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    sandbox.memory().write(addr, &bytes).unwrap();
    bytes
}

fn read_bytes(sandbox: &Sandbox, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    sandbox.memory().read(addr, &mut bytes).unwrap();
    bytes
}

#[test]
fn overlapping_copies_move_as_memmove() {
    if !kvm_available("overlapping_copies_move_as_memmove") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let base = scratch(&sandbox, 0);
    let d_addr = base;
    let region = base + 0x100;
    const REGION: usize = 0x2000;
    // (dynptr start, copy length, distance): both directions, shorter and
    // longer than one bounce piece (256 bytes), touching and overlapping
    // by one byte, and a copy onto itself.
    let cases: [(usize, usize, isize); 8] = [
        (0x100, 1000, 3),
        (0x100, 1000, -3),
        (0x100, 8, 1),
        (0x100, 8, -1),
        (0x100, 600, 599),
        (0x800, 600, -599),
        (0x100, 4096, 300),
        (0x100, 700, 0),
    ];
    for (start, len, distance) in cases {
        let other = start.checked_add_signed(distance).unwrap();
        // bpf_dynptr_write(d, 0, src = other, len): region[start..] =
        // region[other..]; then bpf_dynptr_read(dst = other, len, d, 0):
        // region[other..] = region[start..].
        for helper in ["bpf_dynptr_write", "bpf_dynptr_read"] {
            let mut want = pattern(&sandbox, region, REGION);
            let dynptr = Dynptr::new(region + start as u64, DynptrKind::Local, 0, len as u32);
            sandbox.memory().write_pod(d_addr, &dynptr).unwrap();
            let ptr = region + other as u64;
            let args = if helper == "bpf_dynptr_write" {
                want.copy_within(other..other + len, start);
                [d_addr, 0, ptr, len as u64, 0]
            } else {
                want.copy_within(start..start + len, other);
                [ptr, len as u64, d_addr, 0, 0]
            };
            assert_eq!(call_helper(&sandbox, 0, helper, &args), 0);
            assert!(
                read_bytes(&sandbox, region, REGION) == want,
                "{helper}: start {start:#x}, len {len}, distance {distance}"
            );
        }
    }
}

#[test]
fn the_dynptr_in_memory_is_the_kernels_layout() {
    if !kvm_available("the_dynptr_in_memory_is_the_kernels_layout") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let base = scratch(&sandbox, 0);
    let (d_addr, clone, data) = (base, base + 0x40, base + 0x100);
    let ret = call_helper(&sandbox, 0, "bpf_dynptr_from_mem", &[data, 300, 0, d_addr]);
    assert_eq!(ret, 0);
    let mut raw = [0u8; DYNPTR_SIZE];
    sandbox.memory().read(d_addr, &mut raw).unwrap();
    let mut want = data.to_le_bytes().to_vec();
    want.extend((300u32 | 1 << 28).to_le_bytes());
    want.extend(0u32.to_le_bytes());
    assert_eq!(raw.to_vec(), want, "data, size | LOCAL << 28, offset 0");
    // adjust moves the offset and keeps the kind; clone copies all 16 bytes.
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_dynptr_adjust", &[d_addr, 10, 30]),
        0
    );
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_dynptr_clone", &[d_addr, clone]),
        0
    );
    let cloned: Dynptr = sandbox.memory().read_pod(clone).unwrap();
    assert_eq!(cloned, Dynptr::new(data, DynptrKind::Local, 10, 20));
    // u32 arguments use the register's low half, as the kernel's.
    let slice = call_helper(
        &sandbox,
        0,
        "bpf_dynptr_slice",
        &[clone, 1 << 32 | 4, 0, 1 << 32 | 16],
    );
    assert_eq!(slice, data + 14);
    // A ring buffer dynptr (as bpf_ringbuf_reserve_dynptr will make) is
    // plain memory too.
    let ring = Dynptr::new(data, DynptrKind::Ringbuf, 0, 64);
    sandbox.memory().write_pod(d_addr, &ring).unwrap();
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_dynptr_data", &[d_addr, 8, 8]),
        data + 8
    );
    assert_eq!(call_helper(&sandbox, 0, "bpf_dynptr_size", &[d_addr]), 64);
}
