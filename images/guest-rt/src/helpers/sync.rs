//! Critical sections: the `bpf_spin_lock` / `bpf_spin_unlock` helpers (93,
//! 94), and kfuncs that need nothing here, `bpf_rcu_read_lock/unlock` and
//! `bpf_preempt_disable/enable`.
//!
//! Note [Spin locks]
//! A `struct bpf_spin_lock` is a u32 in a map value, shared by the vCPUs
//! (the kernel's is an arch spinlock taken with interrupts off). Here it is
//! a test-and-test-and-set lock: 0 free, 1 held; taking it is an Acquire
//! compare-exchange, releasing it a Release store, so everything written
//! under the lock is seen by the next vCPU to take it. The kernel's
//! verifier proves every lock is released and that no helper is called
//! while one is held; bpfvisor does not, so a program that never unlocks
//! makes the next taker spin until the run's deadline stops it — inside
//! the sandbox, like any other endless loop. A lock that is not 4-byte
//! aligned (the verifier would refuse it) is not taken: the helpers
//! return -EINVAL and do nothing.
//!
//! A vCPU runs one program at a time with interrupts off and nothing is
//! freed under it (RCU's job in the kernel), and there is no scheduler to
//! preempt it; the kfuncs exist so that programs written for the kernel
//! load, and do nothing.

use core::sync::atomic::{AtomicU32, Ordering};
use shm::errno::EINVAL;

/// The lock at `addr`, if it is aligned.
fn lock_at<'a>(addr: u64) -> Option<&'a AtomicU32> {
    if addr == 0 || !addr.is_multiple_of(4) {
        return None;
    }
    // SAFETY: the address is non-null and aligned for a u32; the program
    // hands it as its lock, which it and other vCPUs only ever access
    // atomically (the kernel's verifier forbids plain accesses to a
    // bpf_spin_lock). A bad address faults like the program's own access
    // would, and the trap path reports it.
    Some(unsafe { AtomicU32::from_ptr(addr as *mut u32) })
}

/// `long bpf_spin_lock(struct bpf_spin_lock *lock)`: spins until it
/// takes the lock (Note [Spin locks]); 0.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_spin_lock(lock: u64) -> i64 {
    let Some(lock) = lock_at(lock) else {
        return EINVAL;
    };
    loop {
        // Pairs with the Release store in bpf_spin_unlock.
        if lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return 0;
        }
        // Wait reading, not writing, so the holder's cache line is not
        // stolen on every try.
        while lock.load(Ordering::Relaxed) != 0 {
            core::hint::spin_loop();
        }
    }
}

/// `long bpf_spin_unlock(struct bpf_spin_lock *lock)`: releases the lock
/// (whoever holds it, as the kernel's); 0.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_spin_unlock(lock: u64) -> i64 {
    let Some(lock) = lock_at(lock) else {
        return EINVAL;
    };
    // Pairs with the Acquire compare-exchange in bpf_spin_lock.
    lock.store(0, Ordering::Release);
    0
}

/// kfunc `void bpf_rcu_read_lock(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_rcu_read_lock() {}

/// kfunc `void bpf_rcu_read_unlock(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_rcu_read_unlock() {}

/// kfunc `void bpf_preempt_disable(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_preempt_disable() {}

/// kfunc `void bpf_preempt_enable(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_preempt_enable() {}
