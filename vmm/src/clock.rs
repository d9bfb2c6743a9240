//! The guest's view of the host's monotonic clock, without exits.
//!
//! `bpf_ktime_get_ns` must return the host's `CLOCK_MONOTONIC`. The guest can
//! read its TSC cheaply; the host pairs one guest TSC reading with one
//! monotonic clock reading when the sandbox is built, and the guest converts:
//! `clock_ns + (rdtsc - clock_tsc) * 1e6 / tsc_khz` (`shm::percpu::BootInfo`).

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;

/// `IA32_TIME_STAMP_COUNTER`.
const MSR_IA32_TSC: u32 = 0x10;

/// One guest TSC value and the host monotonic time it corresponds to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockSync {
    /// Guest TSC.
    pub tsc: u64,
    /// Host `CLOCK_MONOTONIC`, nanoseconds.
    pub ns: u64,
    /// Guest TSC frequency, kHz (0: unknown).
    pub tsc_khz: u64,
}

impl ClockSync {
    /// Reads `vcpu`'s TSC between two monotonic clock readings and keeps
    /// their midpoint. `None` if KVM cannot read the MSR.
    pub fn measure(vcpu: &VcpuFd, tsc_khz: u32) -> Option<ClockSync> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .ok()?;
        let before = monotonic_ns();
        let read = vcpu.get_msrs(&mut msrs).ok()?;
        let after = monotonic_ns();
        if read != 1 {
            return None;
        }
        Some(ClockSync {
            tsc: msrs.as_slice()[0].data,
            ns: before + (after - before) / 2,
            tsc_khz: u64::from(tsc_khz),
        })
    }
}

/// The host's `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
