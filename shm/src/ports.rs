//! The I/O ports through which the guest leaves to the host.
//!
//! The guest never exits any other way on purpose: every `out` to one of
//! these ports is one VM exit, named here and decoded by the host's pure exit
//! decoder. The byte written carries nothing the host relies on; details are
//! in the vCPU's mailbox.
//!
//! Note [Port permissions]
//! The runtime runs at CPL 3 with RFLAGS.IOPL 0, so `out` is allowed only to
//! the ports the I/O permission bitmap in each vCPU's TSS grants: exactly
//! [`USER_PORTS`]. IOPL 3 would be simpler, but some KVM hosts (PVM) consult
//! the bitmap whatever IOPL says and drop IOPL on an emulated `iretq`. The
//! ports are low numbers so the bitmap stays a few bytes long and the TSS
//! fits its [`crate::layout::TSS_STRIDE`].

/// First port of the range.
const PORT_BASE: u16 = 0x40;
/// The requested call returned; the response is in the mailbox.
pub const RUN_DONE_PORT: u16 = PORT_BASE;
/// The program hit a CPU exception; the trap record is in the mailbox.
pub const TRAP_PORT: u16 = PORT_BASE + 1;
/// The runtime's abort entry ran after the host stopped a program.
pub const ABORTED_PORT: u16 = PORT_BASE + 2;
/// The CPL 0 exception stub itself faulted: the guest machine is broken and
/// must be reset. Nothing is in the mailbox. Used at CPL 0 only.
pub const KERNEL_FAULT_PORT: u16 = PORT_BASE + 3;

/// A ring buffer's consumer should wake up: the runtime writes the ring's
/// wakeup id (4 bytes). The host registers an ioeventfd for each ring's
/// id, so KVM signals the ring's eventfd and resumes the vCPU without
/// returning to the VMM (Note [Ring buffer wakeups] in `vmm::ringbuf`);
/// only an id no ring has reaches the vCPU loop, which resumes.
pub const WAKEUP_PORT: u16 = PORT_BASE + 4;

/// The runtime stopped waiting for requests in the mailbox (Note [Polling
/// invocation] in `crate::mailbox`): the vCPU thread may block; the next
/// request comes through `KVM_RUN`. Past the wakeup port's four.
pub const IDLE_PORT: u16 = PORT_BASE + 8;

/// An answer is in the mailbox and the host sleeps waiting for it: the
/// runtime writes its CPU id (1 byte). The host registers an ioeventfd per
/// vCPU for its id, so KVM signals the waiting host and resumes the vCPU
/// without returning to the VMM; only an id no vCPU has reaches the vCPU
/// loop, which resumes.
pub const DOORBELL_PORT: u16 = PORT_BASE + 9;

/// The ports CPL 3 code may write (Note [Port permissions]): a 4-byte
/// `out` needs all four of its ports granted, so the wakeup port takes
/// four.
pub const USER_PORTS: [u16; 9] = [
    RUN_DONE_PORT,
    TRAP_PORT,
    ABORTED_PORT,
    WAKEUP_PORT,
    WAKEUP_PORT + 1,
    WAKEUP_PORT + 2,
    WAKEUP_PORT + 3,
    IDLE_PORT,
    DOORBELL_PORT,
];

/// Bytes of I/O permission bitmap that cover every port up to the highest of
/// [`USER_PORTS`], plus the all-ones byte the CPU requires after it.
pub const IO_BITMAP_SIZE: usize = (DOORBELL_PORT as usize / 8) + 2;

/// The I/O permission bitmap: a clear bit grants its port.
pub const fn io_bitmap() -> [u8; IO_BITMAP_SIZE] {
    let mut bitmap = [0xff; IO_BITMAP_SIZE];
    let mut i = 0;
    while i < USER_PORTS.len() {
        let port = USER_PORTS[i] as usize;
        bitmap[port / 8] &= !(1 << (port % 8));
        i += 1;
    }
    bitmap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_grants_exactly_the_user_ports() {
        let bitmap = io_bitmap();
        for port in 0..(IO_BITMAP_SIZE * 8) {
            let granted = bitmap[port / 8] & (1 << (port % 8)) == 0;
            assert_eq!(
                granted,
                USER_PORTS.contains(&(port as u16)),
                "port {port:#x}"
            );
        }
        assert_eq!(bitmap[IO_BITMAP_SIZE - 1], 0xff);
    }
}
