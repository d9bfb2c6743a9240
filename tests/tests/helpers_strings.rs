//! `bpf_snprintf`, `bpf_strncmp` and the `bpf_probe_read_*` family in a
//! real VM: results as the kernel's, and a pointer the program got wrong
//! gives -EFAULT (through the runtime's fault-safe routines), never a trap.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use iced_x86::code_asm::*;
use integration_tests::kvm_available;
use shm::layout::GDT_START;
use vmm::{Outcome, Sandbox, TrapKind};

const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
/// An address no x86-64 CPU accepts: accessing it raises #GP, not #PF.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

/// Scratch memory (CPU 0's 64 KiB context buffer) carved into areas.
struct Scratch {
    base: u64,
}

impl Scratch {
    fn new(sandbox: &Sandbox) -> Scratch {
        let base = scratch(sandbox, 0);
        sandbox.memory().zero(base, 0x4000).unwrap();
        Scratch { base }
    }

    /// Input strings and data.
    fn input(&self, n: u64) -> u64 {
        self.base + n * 0x400
    }

    /// Where helpers write.
    fn out(&self) -> u64 {
        self.base + 0x3000
    }
}

/// An unmapped address: CPU 0's bottom guard page.
fn unmapped(sandbox: &Sandbox) -> u64 {
    sandbox.layout().percpu_area(0)
}

/// The address `back` bytes before the end of CPU 0's context buffer,
/// which an unmapped guard page follows (then CPU 0's per-CPU data):
/// reads from there run into a fault after `back` bytes.
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

fn write_str(sandbox: &Sandbox, addr: u64, s: &[u8]) {
    sandbox.memory().write(addr, s).unwrap();
}

fn read_bytes(sandbox: &Sandbox, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    sandbox.memory().read(addr, &mut bytes).unwrap();
    bytes
}

/// `bpf_snprintf(out, size, fmt, data, data_len)` with `fmt` and the u64
/// `args` written to scratch memory; returns r0 and the `size + 4` bytes
/// at `out` (the out area is filled with 0xee first).
fn snprintf(sandbox: &Sandbox, fmt: &[u8], args: &[u64], size: u64) -> (i64, Vec<u8>) {
    let s = Scratch::new(sandbox);
    write_str(sandbox, s.input(0), fmt);
    let data: Vec<u8> = args.iter().flat_map(|a| a.to_le_bytes()).collect();
    write_str(sandbox, s.input(1), &data);
    write_str(sandbox, s.out(), &[0xee; 0x400]);
    let data_len = data.len() as u64;
    let r0 = call_helper(
        sandbox,
        0,
        "bpf_snprintf",
        &[s.out(), size, s.input(0), s.input(1), data_len],
    );
    (r0 as i64, read_bytes(sandbox, s.out(), size as usize + 4))
}

#[test]
fn snprintf_formats_into_program_memory() {
    if !kvm_available("snprintf_formats_into_program_memory") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let s = Scratch::new(&sandbox);
    let (fmt, data, string, ip) = (s.input(0), s.input(1), s.input(2), s.input(3));
    write_str(&sandbox, fmt, b"%s %d %05u %lx %c|%-4d|%pI4\0");
    write_str(&sandbox, string, b"world\0");
    write_str(&sandbox, ip, &[192, 168, 0, 1]);
    let args = [
        string,
        -7i64 as u64,
        42,
        0xdead_beef_cafe,
        u64::from(b'!'),
        3,
        ip,
    ];
    let bytes: Vec<u8> = args.iter().flat_map(|a| a.to_le_bytes()).collect();
    write_str(&sandbox, data, &bytes);
    write_str(&sandbox, s.out(), &[0xee; 0x100]);
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_snprintf",
        &[s.out(), 64, fmt, data, bytes.len() as u64],
    );
    let text = b"world -7 00042 deadbeefcafe !|3   |192.168.0.1";
    assert_eq!(r0 as i64, text.len() as i64 + 1);
    let out = read_bytes(&sandbox, s.out(), 64);
    assert_eq!(&out[..text.len()], text);
    assert_eq!(out[text.len()], 0);
    assert!(out[text.len() + 1..].iter().all(|&b| b == 0xee));
}

#[test]
fn snprintf_cuts_to_the_size_and_returns_the_whole_length() {
    if !kvm_available("snprintf_cuts_to_the_size_and_returns_the_whole_length") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let fmt = b"%d-%d-%d-%d-%d-%d-%d-%d-%d-%d-%d-%d\0";
    let args: Vec<u64> = (1..=12).collect();
    let text = b"1-2-3-4-5-6-7-8-9-10-11-12";
    let whole = text.len() as i64 + 1;
    let (r0, out) = snprintf(&sandbox, fmt, &args, 10);
    assert_eq!(r0, whole);
    assert_eq!(out, b"1-2-3-4-5\0\xee\xee\xee\xee");
    // Size 0: nothing written, NULL allowed.
    let (r0, out) = snprintf(&sandbox, fmt, &args, 0);
    assert_eq!((r0, out), (whole, vec![0xee; 4]));
    // A text longer than one chunk of the runtime's copy-out.
    let (r0, out) = snprintf(&sandbox, b"%0300d|\0", &[5], 400);
    assert_eq!(r0, 302);
    assert_eq!(&out[..299], &[b'0'; 299][..]);
    assert_eq!(&out[299..303], b"5|\0\xee");
}

#[test]
fn snprintf_refuses_bad_arguments_as_the_kernel() {
    if !kvm_available("snprintf_refuses_bad_arguments_as_the_kernel") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let s = Scratch::new(&sandbox);
    write_str(&sandbox, s.input(0), b"%d\0");
    let call = |out: u64, size: u64, fmt: u64, data: u64, len: u64| {
        call_helper(&sandbox, 0, "bpf_snprintf", &[out, size, fmt, data, len]) as i64
    };
    let (out, fmt, data) = (s.out(), s.input(0), s.input(1));
    // data_len not a multiple of 8, more than 12 u64s, NULL data.
    assert_eq!(call(out, 16, fmt, data, 4), EINVAL);
    assert_eq!(call(out, 16, fmt, data, 13 * 8), EINVAL);
    assert_eq!(call(out, 16, fmt, 0, 8), EINVAL);
    // More conversions than arguments.
    assert_eq!(call(out, 16, fmt, data, 0), EINVAL);
    // Faulting format, data or destination.
    assert_eq!(call(out, 16, unmapped(&sandbox), data, 8), EFAULT);
    assert_eq!(call(out, 16, NON_CANONICAL, data, 8), EFAULT);
    assert_eq!(call(out, 16, fmt, unmapped(&sandbox), 8), EFAULT);
    assert_eq!(call(GDT_START, 16, fmt, data, 8), EFAULT);
    let read_only = sandbox.layout().rodata_start();
    assert_eq!(call(read_only, 16, fmt, data, 8), EFAULT);
    // And a good call still works after the faults.
    assert_eq!(call(out, 16, fmt, data, 8), 2);
}

#[test]
fn strncmp_compares_like_the_kernel() {
    if !kvm_available("strncmp_compares_like_the_kernel") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let s = Scratch::new(&sandbox);
    let cases: [(&[u8], u64, &[u8], i64); 6] = [
        (b"hello\0", 6, b"hello\0", 0),
        (b"hello\0", 6, b"help\0", -1),
        (b"help\0", 5, b"hello\0", 1),
        (b"helpXX", 3, b"hello\0", 0),
        (b"\xff\0", 2, b"a\0", 1),
        (b"anything", 0, b"x\0", 0),
    ];
    for (s1, size, s2, want) in cases {
        write_str(&sandbox, s.input(0), s1);
        write_str(&sandbox, s.input(1), s2);
        let r0 = call_helper(&sandbox, 0, "bpf_strncmp", &[s.input(0), size, s.input(1)]);
        assert_eq!(r0 as i64, want, "{s1:?} {size} {s2:?}");
    }
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_strncmp",
        &[unmapped(&sandbox), 4, s.input(1)],
    );
    assert_eq!(r0 as i64, EFAULT);
}

const READS: [&str; 3] = [
    "bpf_probe_read_kernel",
    "bpf_probe_read_user",
    "bpf_probe_read",
];
const STR_READS: [&str; 3] = [
    "bpf_probe_read_kernel_str",
    "bpf_probe_read_user_str",
    "bpf_probe_read_str",
];

#[test]
fn probe_read_copies_or_zeroes_with_efault() {
    if !kvm_available("probe_read_copies_or_zeroes_with_efault") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let s = Scratch::new(&sandbox);
    let src = s.input(0);
    let bytes: Vec<u8> = (1..=100).collect();
    write_str(&sandbox, src, &bytes);
    // A source whose first 8 bytes are readable and the rest not.
    let straddling = before_guard(&sandbox, 8);
    for name in READS {
        write_str(&sandbox, s.out(), &[0xee; 128]);
        // The upper half of the size is ignored (a u32).
        assert_eq!(
            call_helper(&sandbox, 0, name, &[s.out(), (1 << 32) | 100, src]),
            0
        );
        assert_eq!(read_bytes(&sandbox, s.out(), 101)[..100], bytes[..]);
        assert_eq!(read_bytes(&sandbox, s.out(), 101)[100], 0xee);
        for bad in [0, unmapped(&sandbox), NON_CANONICAL, GDT_START, straddling] {
            write_str(&sandbox, s.out(), &[0xee; 128]);
            let r0 = call_helper(&sandbox, 0, name, &[s.out(), 64, bad]);
            assert_eq!(r0 as i64, EFAULT, "{name} from {bad:#x}");
            let out = read_bytes(&sandbox, s.out(), 65);
            assert!(out[..64].iter().all(|&b| b == 0), "{name}: zeroed");
            assert_eq!(out[64], 0xee, "{name}: only `size` bytes zeroed");
        }
        // An unwritable destination is -EFAULT too, not a trap.
        let r0 = call_helper(&sandbox, 0, name, &[GDT_START, 8, src]);
        assert_eq!(r0 as i64, EFAULT);
        assert_eq!(call_helper(&sandbox, 0, name, &[0, 0, 0]), 0, "size 0");
    }
}

#[test]
fn probe_read_str_copies_up_to_the_nul() {
    if !kvm_available("probe_read_str_copies_up_to_the_nul") {
        return;
    }
    let sandbox = setup_sandbox(2);
    let s = Scratch::new(&sandbox);
    let src = s.input(0);
    write_str(&sandbox, src, b"bpfvisor\0tail");
    // A string ending right before an unmapped page reads fine.
    let at_edge = before_guard(&sandbox, 4);
    write_str(&sandbox, at_edge, b"abc\0");
    for name in STR_READS {
        let run = |size: u64, src: u64| {
            write_str(&sandbox, s.out(), &[0xee; 32]);
            let r0 = call_helper(&sandbox, 0, name, &[s.out(), size, src]) as i64;
            (r0, read_bytes(&sandbox, s.out(), 12))
        };
        let (r0, out) = run(32, src);
        assert_eq!((r0, &out[..10]), (9, &b"bpfvisor\0\xee"[..]), "{name}");
        // Cut short: size - 1 bytes and a NUL, returning size.
        let (r0, out) = run(4, src);
        assert_eq!((r0, &out[..5]), (4, &b"bpf\0\xee"[..]), "{name}");
        let (r0, out) = run(0, src);
        assert_eq!((r0, out[0]), (0, 0xee), "{name}");
        let (r0, out) = run(32, at_edge);
        assert_eq!((r0, &out[..4]), (4, &b"abc\0"[..]), "{name}");
        // A string running into the unmapped page: -EFAULT, zeroed.
        write_str(&sandbox, at_edge, b"abcd");
        let (r0, out) = run(8, at_edge);
        assert_eq!(
            (r0, &out[..9]),
            (EFAULT, &b"\0\0\0\0\0\0\0\0\xee"[..]),
            "{name}"
        );
        write_str(&sandbox, at_edge, b"abc\0");
        let (r0, _) = run(8, NON_CANONICAL);
        assert_eq!(r0, EFAULT, "{name}");
    }
}

#[test]
fn a_programs_own_fault_after_a_probe_fault_still_traps() {
    if !kvm_available("a_programs_own_fault_after_a_probe_fault_still_traps") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let s = Scratch::new(&sandbox);
    let read = helper("bpf_probe_read_kernel");
    let entry = load(&sandbox, |a| {
        a.push(rbx).unwrap();
        emit_call(a, read, &[s.out(), 8, 0]);
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, qword_ptr(rcx)).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    let report = run_report(&sandbox, 0, entry);
    let Outcome::Trapped(trap) = report.outcome else {
        panic!("expected a trap, got {:?}", report.outcome);
    };
    assert_eq!((trap.kind, trap.fault_addr), (TrapKind::PageFault, Some(0)));
    assert!(trap.rip > entry && trap.rip < entry + 64, "{trap:?}");
}
