//! The runtime's fault-safe copy (Note [Small fault-safe copies] in
//! `images/guest-rt/src/helpers/nofault.rs`) at every length it treats
//! differently — bytes, 4-byte words, 8-byte words, `rep movsb` — seen
//! through `bpf_probe_read_kernel`: a range that ends right at an unmapped
//! page is copied whole (no access past its end), one that runs a single
//! byte into the page is -EFAULT (no byte left unchecked), for the source
//! and for the destination alike.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use integration_tests::kvm_available;
use vmm::Sandbox;

const EFAULT: i64 = -14;
/// Past the largest word-by-word copy (256 bytes), into `rep movsb`.
const MAX_LEN: u64 = 300;

/// The address `back` bytes before the end of CPU 0's context buffer,
/// which an unmapped guard page follows (then CPU 0's per-CPU data).
fn before_guard(sandbox: &Sandbox, back: u64) -> u64 {
    let end = scratch(sandbox, 0) + sandbox.layout().ctx_size();
    let guard_end = end + shm::layout::PAGE_SIZE;
    assert_eq!(
        guard_end,
        sandbox.layout().percpu_data(0),
        "guard page follows"
    );
    end - back
}

fn read_bytes(sandbox: &Sandbox, addr: u64, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    sandbox.memory().read(addr, &mut bytes).unwrap();
    bytes
}

/// `bpf_probe_read_kernel(dst, len, src)`.
fn probe_read(sandbox: &Sandbox, dst: u64, len: u64, src: u64) -> i64 {
    call_helper(sandbox, 0, "bpf_probe_read_kernel", &[dst, len, src]) as i64
}

#[test]
fn copies_of_every_length_stop_exactly_at_an_unmapped_page() {
    if !kvm_available("copies_of_every_length_stop_exactly_at_an_unmapped_page") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let mem = sandbox.memory();
    // An odd address, so that no word access is aligned.
    let good = scratch(&sandbox, 0) + 0x101;
    let out = scratch(&sandbox, 0) + 0x801;
    for len in 1..=MAX_LEN {
        let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8 | 1).collect();

        // Source ending at the page: copied whole.
        let src = before_guard(&sandbox, len);
        mem.write(src, &pattern).unwrap();
        mem.write(out, &[0; MAX_LEN as usize + 1]).unwrap();
        assert_eq!(probe_read(&sandbox, out, len, src), 0, "src, {len} bytes");
        assert_eq!(read_bytes(&sandbox, out, len), pattern, "src, {len} bytes");
        assert_eq!(read_bytes(&sandbox, out + len, 1), [0], "{len}: no more");

        // Source running one byte into the page: -EFAULT, zeroed.
        let src = before_guard(&sandbox, len - 1);
        let r0 = probe_read(&sandbox, out, len, src);
        assert_eq!(r0, EFAULT, "src one byte over, {len} bytes");
        assert!(read_bytes(&sandbox, out, len).iter().all(|&b| b == 0));

        // Destination ending at the page: written whole.
        mem.write(good, &pattern).unwrap();
        let dst = before_guard(&sandbox, len);
        mem.write(dst, &vec![0; len as usize]).unwrap();
        assert_eq!(probe_read(&sandbox, dst, len, good), 0, "dst, {len} bytes");
        assert_eq!(read_bytes(&sandbox, dst, len), pattern, "dst, {len} bytes");

        // Destination running one byte into the page: -EFAULT.
        let dst = before_guard(&sandbox, len - 1);
        let r0 = probe_read(&sandbox, dst, len, good);
        assert_eq!(r0, EFAULT, "dst one byte over, {len} bytes");
    }
}
