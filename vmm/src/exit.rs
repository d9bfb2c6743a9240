//! Why `KVM_RUN` returned, as an owned value decoded by a pure function.

use kvm_ioctls::VcpuExit;
use shm::ports::{
    ABORTED_PORT, DOORBELL_PORT, IDLE_PORT, KERNEL_FAULT_PORT, RUN_DONE_PORT, TRAP_PORT,
    WAKEUP_PORT,
};

/// One return from `KVM_RUN`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest finished a request ([`RUN_DONE_PORT`]).
    RunDone,
    /// The guest hit a CPU exception it could not fix up ([`TRAP_PORT`]).
    Trapped,
    /// The runtime's abort entry ran ([`ABORTED_PORT`]).
    Aborted,
    /// The runtime stopped waiting for requests in the mailbox
    /// ([`IDLE_PORT`]; Note [Polling invocation] in `shm::mailbox`).
    Idle,
    /// A doorbell ([`DOORBELL_PORT`]) whose id no vCPU's ioeventfd
    /// matched: the vCPU resumes.
    StrayDoorbell,
    /// The CPL 0 exception stub faulted ([`KERNEL_FAULT_PORT`]).
    KernelFault,
    /// A ring buffer wakeup ([`WAKEUP_PORT`]) whose id no ring's
    /// ioeventfd matched (a program wrote over its ring's wakeup id): the
    /// vCPU resumes.
    StrayWakeup,
    /// `KVM_RUN` was interrupted by a signal or `immediate_exit`.
    Interrupted,
    /// The guest triple-faulted.
    Shutdown,
    /// The guest executed `hlt` (the runtime never does).
    Halted,
    /// Port I/O on a port that is not ours.
    UnknownPort {
        /// The port.
        port: u16,
        /// `out` (true) or `in` (false).
        write: bool,
    },
    /// An access to guest-physical memory that is not backed.
    Mmio {
        /// Guest-physical address.
        addr: u64,
        /// Write (true) or read (false).
        write: bool,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// KVM reported an internal error.
    InternalError,
    /// Any other exit reason KVM reports; the guest has no business causing it.
    Other,
    /// `KVM_RUN` failed with this errno.
    RunFailed(i32),
}

/// Decodes the result of `VcpuFd::run`.
pub fn decode(result: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> VmExit {
    let exit = match result {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            return VmExit::Interrupted;
        }
        Err(e) => return VmExit::RunFailed(e.errno()),
    };
    match exit {
        VcpuExit::IoOut(RUN_DONE_PORT, _) => VmExit::RunDone,
        VcpuExit::IoOut(TRAP_PORT, _) => VmExit::Trapped,
        VcpuExit::IoOut(ABORTED_PORT, _) => VmExit::Aborted,
        VcpuExit::IoOut(IDLE_PORT, _) => VmExit::Idle,
        VcpuExit::IoOut(DOORBELL_PORT, _) => VmExit::StrayDoorbell,
        VcpuExit::IoOut(KERNEL_FAULT_PORT, _) => VmExit::KernelFault,
        VcpuExit::IoOut(WAKEUP_PORT, _) => VmExit::StrayWakeup,
        VcpuExit::IoOut(port, _) => VmExit::UnknownPort { port, write: true },
        VcpuExit::IoIn(port, _) => VmExit::UnknownPort { port, write: false },
        VcpuExit::MmioRead(addr, _) => VmExit::Mmio { addr, write: false },
        VcpuExit::MmioWrite(addr, _) => VmExit::Mmio { addr, write: true },
        VcpuExit::Intr => VmExit::Interrupted,
        VcpuExit::Shutdown => VmExit::Shutdown,
        VcpuExit::Hlt => VmExit::Halted,
        VcpuExit::FailEntry(reason, _) => VmExit::FailEntry { reason },
        VcpuExit::InternalError => VmExit::InternalError,
        _ => VmExit::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_decode_by_port_and_reason() {
        let mut buf = [0u8; 1];
        let cases: Vec<(Result<VcpuExit<'_>, kvm_ioctls::Error>, VmExit)> = vec![
            (Ok(VcpuExit::IoOut(RUN_DONE_PORT, &[0])), VmExit::RunDone),
            (Ok(VcpuExit::IoOut(TRAP_PORT, &[0])), VmExit::Trapped),
            (Ok(VcpuExit::IoOut(ABORTED_PORT, &[0])), VmExit::Aborted),
            (Ok(VcpuExit::IoOut(IDLE_PORT, &[0])), VmExit::Idle),
            (
                Ok(VcpuExit::IoOut(DOORBELL_PORT, &[9])),
                VmExit::StrayDoorbell,
            ),
            (
                Ok(VcpuExit::IoOut(WAKEUP_PORT, &[0; 4])),
                VmExit::StrayWakeup,
            ),
            (
                Ok(VcpuExit::IoOut(KERNEL_FAULT_PORT, &[0])),
                VmExit::KernelFault,
            ),
            (
                Ok(VcpuExit::IoOut(0x3f8, &[0])),
                VmExit::UnknownPort {
                    port: 0x3f8,
                    write: true,
                },
            ),
            (
                Ok(VcpuExit::IoIn(0x60, &mut buf)),
                VmExit::UnknownPort {
                    port: 0x60,
                    write: false,
                },
            ),
            (
                Ok(VcpuExit::MmioWrite(0xfee0_0000, &[0])),
                VmExit::Mmio {
                    addr: 0xfee0_0000,
                    write: true,
                },
            ),
            (Ok(VcpuExit::Shutdown), VmExit::Shutdown),
            (Ok(VcpuExit::Hlt), VmExit::Halted),
            (Ok(VcpuExit::Intr), VmExit::Interrupted),
            (
                Ok(VcpuExit::FailEntry(7, 0)),
                VmExit::FailEntry { reason: 7 },
            ),
            (Ok(VcpuExit::InternalError), VmExit::InternalError),
            (Ok(VcpuExit::Unknown), VmExit::Other),
            (
                Err(kvm_ioctls::Error::new(libc::EINTR)),
                VmExit::Interrupted,
            ),
            (
                Err(kvm_ioctls::Error::new(libc::EAGAIN)),
                VmExit::Interrupted,
            ),
            (
                Err(kvm_ioctls::Error::new(libc::EFAULT)),
                VmExit::RunFailed(libc::EFAULT),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input), expected);
        }
    }
}
