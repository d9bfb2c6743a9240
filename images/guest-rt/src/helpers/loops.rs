//! Bounded loops: the `bpf_loop` helper (181) and the numeric iterator
//! kfuncs behind `bpf_for` / `bpf_repeat` (`bpf_iter_num_new`, `_next`,
//! `_destroy`). The rules are `shm::loops`'s, the kernel's.

use core::ptr::addr_of;
use shm::errno::EINVAL;
use shm::layout::BOOT_INFO_START;
use shm::loops::{IterNum, loop_count};
use shm::percpu::BootInfo;

/// A BPF function as the JIT compiles it: a SysV function of five u64
/// arguments (r1..r5) returning r0.
pub(super) type BpfFunction = extern "C" fn(u64, u64, u64, u64, u64) -> u64;

/// Whether `addr` lies in the JIT code region. The kernel's verifier
/// makes a callback a subprogram of the program; here a program can pass
/// any number, and one outside JIT code (into the runtime, say) is refused
/// rather than called.
pub(super) fn in_jit_code(addr: u64) -> bool {
    let info = BOOT_INFO_START as *const BootInfo;
    // SAFETY: the boot-info page is mapped read-only at a fixed address.
    let (start, size) = unsafe {
        (
            addr_of!((*info).code_start).read_volatile(),
            addr_of!((*info).code_size).read_volatile(),
        )
    };
    addr.checked_sub(start).is_some_and(|offset| offset < size)
}

/// `long bpf_loop(u32 nr_loops, void *callback_fn, void *callback_ctx,
/// u64 flags)`: calls `callback_fn(i, callback_ctx)` for `i` in
/// `0..nr_loops` until it returns non-zero (1, "break"); returns the number
/// of calls made. More than `BPF_MAX_LOOPS` iterations is -E2BIG, any flag
/// -EINVAL, as in the kernel; a callback outside JIT code is -EINVAL.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_loop(nr_loops: u64, callback_fn: u64, callback_ctx: u64, flags: u64) -> i64 {
    let count = match loop_count(nr_loops, flags) {
        Ok(count) => count,
        Err(errno) => return errno,
    };
    if !in_jit_code(callback_fn) {
        return EINVAL;
    }
    // SAFETY: `callback_fn` is in the JIT code region, which holds only
    // JIT-compiled functions and int3 padding; the function the program
    // named follows the SysV ABI (Note on frames in guest_jit::jit). An
    // address inside a function rather than at its start can at worst
    // fault or run that program's code, which the trap path reports.
    let callback: BpfFunction = unsafe { core::mem::transmute(callback_fn as usize) };
    for i in 0..count {
        // The kernel passes r3..r5 as 0 too.
        if callback(u64::from(i), callback_ctx, 0, 0, 0) != 0 {
            return i64::from(i) + 1;
        }
    }
    i64::from(count)
}

/// The iterator a program keeps in its stack (8 bytes, `struct
/// bpf_iter_num`).
///
/// The kernel's verifier makes `it` a stack slot of the program: reads and
/// writes go straight to it (a bad pointer faults like the program's own
/// access would, and the trap path reports it).
fn load(it: u64) -> IterNum {
    // SAFETY: see above; volatile because program memory is not Rust
    // memory and another vCPU could in principle write it.
    unsafe { (it as *const IterNum).read_volatile() }
}

fn store(it: u64, value: IterNum) {
    // SAFETY: as in `load`.
    unsafe { (it as *mut IterNum).write_volatile(value) }
}

/// kfunc `int bpf_iter_num_new(struct bpf_iter_num *it, int start, int
/// end)`: starts an iteration over `start..end`; 0, -EINVAL (start > end)
/// or -E2BIG (more than `BPF_MAX_LOOPS` values).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_num_new(it: u64, start: u64, end: u64) -> i64 {
    // int arguments: the low 32 bits of r2 and r3.
    let (iter, ret) = IterNum::new(start as i32, end as i32);
    store(it, iter);
    ret
}

/// kfunc `int *bpf_iter_num_next(struct bpf_iter_num *it)`: a pointer to
/// the next value (inside `it`), or NULL when the range is done.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_num_next(it: u64) -> u64 {
    let mut iter = load(it);
    let more = iter.next();
    store(it, iter);
    // `cur` is the iterator's first field.
    if more { it } else { 0 }
}

/// kfunc `void bpf_iter_num_destroy(struct bpf_iter_num *it)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_num_destroy(it: u64) {
    store(it, IterNum::destroyed());
}
