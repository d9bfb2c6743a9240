//! `bpf_ktime_get_ns` (5), `bpf_ktime_get_boot_ns` (125) and
//! `bpf_ktime_get_coarse_ns` (160): the host's `CLOCK_MONOTONIC`, computed
//! from the TSC with `shm::time` (no VM exit).
//!
//! The boot-info page pairs one guest TSC value with the host's clock and
//! gives the TSC frequency; the conversion factor depends only on the
//! frequency and costs a 128-bit division to compute, so the runtime keeps
//! the last one in [`SCALE`], shared by the vCPUs.
//!
//! Departures from the kernel: the boot clock (`CLOCK_BOOTTIME`) is the
//! monotonic clock, as they are on a host that has not been suspended since
//! it booted (the boot-info page carries no suspend offset); the coarse
//! clock is the precise one (the kernel's lags up to one tick behind; a
//! program may only rely on it being monotonic and cheap).

use core::ptr::addr_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shm::layout::BOOT_INFO_START;
use shm::percpu::BootInfo;
use shm::time::{TscClock, TscScale};

/// The conversion factor for one TSC frequency, computed once.
struct ScaleCache {
    /// Frequency the factor is for; 0 until one is stored. Written last
    /// (Release), read first (Acquire), so a reader that sees a frequency
    /// sees the factor stored before it.
    khz: AtomicU64,
    mult: AtomicU64,
    shift: AtomicU32,
}

/// Every vCPU computes the same factor from the same read-only boot-info
/// page, so concurrent stores write equal values and the race is benign.
static SCALE: ScaleCache = ScaleCache {
    khz: AtomicU64::new(0),
    mult: AtomicU64::new(0),
    shift: AtomicU32::new(0),
};

fn scale(tsc_khz: u64) -> TscScale {
    // Pairs with the Release store below.
    if tsc_khz != 0 && SCALE.khz.load(Ordering::Acquire) == tsc_khz {
        return TscScale {
            mult: SCALE.mult.load(Ordering::Relaxed),
            shift: SCALE.shift.load(Ordering::Relaxed),
        };
    }
    let scale = TscScale::new(tsc_khz);
    SCALE.mult.store(scale.mult, Ordering::Relaxed);
    SCALE.shift.store(scale.shift, Ordering::Relaxed);
    SCALE.khz.store(tsc_khz, Ordering::Release);
    scale
}

/// The TSC, read after every earlier instruction completed (the kernel's
/// `rdtsc_ordered`): a time stamp is never taken before the work it
/// follows.
fn rdtsc_ordered() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence; rdtsc` reads the time-stamp counter, which CPL 3
    // may (CR4.TSD is clear); it touches no memory.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Host monotonic time now, in nanoseconds.
fn monotonic_ns() -> u64 {
    let info = BOOT_INFO_START as *const BootInfo;
    // SAFETY: the boot-info page is mapped read-only at a fixed address and
    // written by the host only while no vCPU runs.
    let (tsc, ns, khz) = unsafe {
        (
            addr_of!((*info).clock_tsc).read_volatile(),
            addr_of!((*info).clock_ns).read_volatile(),
            addr_of!((*info).tsc_khz).read_volatile(),
        )
    };
    TscClock::new(tsc, ns, scale(khz)).ns_at(rdtsc_ordered())
}

/// `u64 bpf_ktime_get_ns(void)`: the host's `CLOCK_MONOTONIC`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ktime_get_ns() -> u64 {
    monotonic_ns()
}

/// `u64 bpf_ktime_get_boot_ns(void)`: `CLOCK_BOOTTIME`, here the monotonic
/// clock (module doc).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ktime_get_boot_ns() -> u64 {
    monotonic_ns()
}

/// `u64 bpf_ktime_get_coarse_ns(void)`: `CLOCK_MONOTONIC_COARSE`, here the
/// precise clock (module doc).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_ktime_get_coarse_ns() -> u64 {
    monotonic_ns()
}
