//! CPU exceptions the guest reported, decoded for people.

use shm::mailbox::TrapRecord;
use std::fmt;

/// Which CPU exception stopped the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// #DE, vector 0.
    DivideError,
    /// #DB, vector 1.
    Debug,
    /// NMI, vector 2.
    Nmi,
    /// #BP (`int3`), vector 3.
    Breakpoint,
    /// #OF, vector 4.
    Overflow,
    /// #BR, vector 5.
    BoundRange,
    /// #UD, vector 6.
    InvalidOpcode,
    /// #NM, vector 7.
    DeviceNotAvailable,
    /// #DF, vector 8.
    DoubleFault,
    /// #TS, vector 10.
    InvalidTss,
    /// #NP, vector 11.
    SegmentNotPresent,
    /// #SS, vector 12.
    StackSegmentFault,
    /// #GP, vector 13.
    GeneralProtection,
    /// #PF, vector 14.
    PageFault,
    /// #MF, vector 16.
    X87FloatingPoint,
    /// #AC, vector 17.
    AlignmentCheck,
    /// #MC, vector 18.
    MachineCheck,
    /// #XM, vector 19.
    SimdFloatingPoint,
    /// #VE, vector 20.
    Virtualization,
    /// #CP, vector 21.
    ControlProtection,
    /// A reserved vector, or a vector number the guest made up.
    Other(u64),
}

impl TrapKind {
    /// Decodes an exception vector.
    pub fn from_vector(vector: u64) -> TrapKind {
        match vector {
            0 => TrapKind::DivideError,
            1 => TrapKind::Debug,
            2 => TrapKind::Nmi,
            3 => TrapKind::Breakpoint,
            4 => TrapKind::Overflow,
            5 => TrapKind::BoundRange,
            6 => TrapKind::InvalidOpcode,
            7 => TrapKind::DeviceNotAvailable,
            8 => TrapKind::DoubleFault,
            10 => TrapKind::InvalidTss,
            11 => TrapKind::SegmentNotPresent,
            12 => TrapKind::StackSegmentFault,
            13 => TrapKind::GeneralProtection,
            14 => TrapKind::PageFault,
            16 => TrapKind::X87FloatingPoint,
            17 => TrapKind::AlignmentCheck,
            18 => TrapKind::MachineCheck,
            19 => TrapKind::SimdFloatingPoint,
            20 => TrapKind::Virtualization,
            21 => TrapKind::ControlProtection,
            other => TrapKind::Other(other),
        }
    }

    /// What the exception is called, in lower case ("page fault").
    pub fn name(&self) -> &'static str {
        match self {
            TrapKind::DivideError => "divide error",
            TrapKind::Debug => "debug exception",
            TrapKind::Nmi => "non-maskable interrupt",
            TrapKind::Breakpoint => "breakpoint",
            TrapKind::Overflow => "overflow",
            TrapKind::BoundRange => "bound range exceeded",
            TrapKind::InvalidOpcode => "invalid opcode",
            TrapKind::DeviceNotAvailable => "device not available",
            TrapKind::DoubleFault => "double fault",
            TrapKind::InvalidTss => "invalid TSS",
            TrapKind::SegmentNotPresent => "segment not present",
            TrapKind::StackSegmentFault => "stack-segment fault",
            TrapKind::GeneralProtection => "general protection fault",
            TrapKind::PageFault => "page fault",
            TrapKind::X87FloatingPoint => "x87 floating-point exception",
            TrapKind::AlignmentCheck => "alignment check",
            TrapKind::MachineCheck => "machine check",
            TrapKind::SimdFloatingPoint => "SIMD floating-point exception",
            TrapKind::Virtualization => "virtualization exception",
            TrapKind::ControlProtection => "control protection exception",
            TrapKind::Other(_) => "exception",
        }
    }
}

/// What the access that page-faulted was trying to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFaultAccess {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// A CPU exception that stopped a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trap {
    /// Which exception.
    pub kind: TrapKind,
    /// Guest address of the faulting instruction.
    pub rip: u64,
    /// The address a page fault was about (CR2); `None` for other exceptions.
    pub fault_addr: Option<u64>,
    /// The error code the CPU pushed (0 for vectors without one).
    pub error_code: u64,
    /// Guest stack pointer when the exception hit.
    pub rsp: u64,
}

const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

impl Trap {
    /// Decodes the record the guest wrote. Every field is taken as data; a
    /// made-up vector becomes [`TrapKind::Other`].
    pub fn from_record(record: &TrapRecord) -> Trap {
        let kind = TrapKind::from_vector(record.vector);
        Trap {
            kind,
            rip: record.rip,
            fault_addr: (kind == TrapKind::PageFault).then_some(record.cr2),
            error_code: record.error_code,
            rsp: record.rsp,
        }
    }

    /// For a page fault: what the access was.
    pub fn page_fault_access(&self) -> Option<PageFaultAccess> {
        let access = if self.error_code & PF_FETCH != 0 {
            PageFaultAccess::Execute
        } else if self.error_code & PF_WRITE != 0 {
            PageFaultAccess::Write
        } else {
            PageFaultAccess::Read
        };
        (self.kind == TrapKind::PageFault).then_some(access)
    }

    /// For a page fault: whether the page was mapped (a protection violation)
    /// rather than absent.
    pub fn page_was_present(&self) -> bool {
        self.error_code & PF_PRESENT != 0
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.fault_addr, self.page_fault_access()) {
            (TrapKind::PageFault, Some(addr), Some(access)) => {
                let what = match access {
                    PageFaultAccess::Read => "reading",
                    PageFaultAccess::Write => "writing",
                    PageFaultAccess::Execute => "executing",
                };
                let why = if self.page_was_present() {
                    "not permitted"
                } else {
                    "not mapped"
                };
                write!(
                    f,
                    "Page fault {what} {addr:#x} ({why}) at rip {:#x}",
                    self.rip
                )
            }
            (TrapKind::Other(vector), _, _) => {
                write!(f, "CPU exception {vector} at rip {:#x}", self.rip)
            }
            (kind, _, _) => {
                let name = kind.name();
                let mut chars = name.chars();
                let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or(' ');
                write!(f, "{first}{} at rip {:#x}", chars.as_str(), self.rip)?;
                if self.error_code != 0 {
                    write!(f, " (error code {:#x})", self.error_code)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(vector: u64, error_code: u64, cr2: u64) -> TrapRecord {
        TrapRecord {
            vector,
            error_code,
            rip: 0x60_0010,
            cr2,
            rsp: 0x40_8000,
        }
    }

    #[test]
    fn page_faults_say_what_access_failed_and_why() {
        let t = Trap::from_record(&record(14, 0, 0));
        assert_eq!(
            t.to_string(),
            "Page fault reading 0x0 (not mapped) at rip 0x600010"
        );
        let t = Trap::from_record(&record(14, PF_PRESENT | PF_WRITE, 0x1000));
        assert_eq!(t.page_fault_access(), Some(PageFaultAccess::Write));
        assert_eq!(
            t.to_string(),
            "Page fault writing 0x1000 (not permitted) at rip 0x600010"
        );
        let t = Trap::from_record(&record(14, PF_PRESENT | PF_FETCH, 0x41_1000));
        assert_eq!(t.page_fault_access(), Some(PageFaultAccess::Execute));
    }

    #[test]
    fn other_vectors_name_the_exception() {
        let t = Trap::from_record(&record(6, 0, 0xdead));
        assert_eq!(t.kind, TrapKind::InvalidOpcode);
        assert_eq!(t.fault_addr, None);
        assert_eq!(t.to_string(), "Invalid opcode at rip 0x600010");
        let t = Trap::from_record(&record(13, 0x18, 0));
        assert_eq!(
            t.to_string(),
            "General protection fault at rip 0x600010 (error code 0x18)"
        );
        let t = Trap::from_record(&record(u64::MAX, 0, 0));
        assert_eq!(t.kind, TrapKind::Other(u64::MAX));
        assert_eq!(
            t.to_string(),
            "CPU exception 18446744073709551615 at rip 0x600010"
        );
    }

    #[test]
    fn every_architectural_vector_decodes() {
        for vector in 0..32 {
            let kind = TrapKind::from_vector(vector);
            let reserved = matches!(vector, 9 | 15 | 22..=31);
            assert_eq!(
                matches!(kind, TrapKind::Other(_)),
                reserved,
                "vector {vector}"
            );
        }
    }
}
