//! The exception table: which faulting instructions may be resumed.
//!
//! The JIT records one entry per memory access it emits. When a page fault
//! hits, the guest runtime's handler asks [`decide`] what to do: a faulting
//! access listed here whose address lies in the fixup window (the arena)
//! behaves as in the kernel's `PROBE_MEM32` — a load gives 0, a store is
//! dropped — and execution resumes after it. Any other fault is a trap.

use crate::pod::Pod;

/// One memory-access instruction in JIT code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExTableEntry {
    /// Offset of the instruction from the start of the code region.
    pub offset: u32,
    /// Length of the instruction in bytes.
    pub len: u8,
    /// x86 register (0 = rax … 15 = r15) a load writes, or [`NO_DST`].
    pub dst: u8,
    /// Reserved, zero.
    pub reserved: u16,
}

/// [`ExTableEntry::dst`] of a store or atomic: nothing to zero.
pub const NO_DST: u8 = 0xff;

// SAFETY: repr(C), u32 + u8 + u8 + u16 = 8 bytes, no padding.
unsafe impl Pod for ExTableEntry {}

/// The entry for the instruction at `offset`, in a table sorted by offset.
pub fn lookup(entries: &[ExTableEntry], offset: u32) -> Option<&ExTableEntry> {
    entries
        .binary_search_by_key(&offset, |e| e.offset)
        .ok()
        .map(|i| &entries[i])
}

/// What the page-fault handler should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixup {
    /// Continue at `rip`, after setting register `zero_reg` (if any) to 0.
    Resume {
        /// Where to continue: just past the faulting instruction.
        rip: u64,
        /// The load's destination register.
        zero_reg: Option<u8>,
    },
    /// Not a recoverable access: report a trap.
    Trap,
}

/// Decides how to handle a page fault at `rip` on `fault_addr`.
///
/// `code_start` is where the table's offsets count from; `window` is the
/// half-open range of addresses whose faults are fixed up.
pub fn decide(
    entries: &[ExTableEntry],
    code_start: u64,
    rip: u64,
    fault_addr: u64,
    window: (u64, u64),
) -> Fixup {
    if fault_addr < window.0 || fault_addr >= window.1 {
        return Fixup::Trap;
    }
    let Some(offset) = rip
        .checked_sub(code_start)
        .and_then(|o| u32::try_from(o).ok())
    else {
        return Fixup::Trap;
    };
    match lookup(entries, offset) {
        Some(entry) => Fixup::Resume {
            rip: rip + u64::from(entry.len),
            zero_reg: (entry.dst < 16).then_some(entry.dst),
        },
        None => Fixup::Trap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_table() -> [ExTableEntry; 3] {
        [
            ExTableEntry {
                offset: 0x10,
                len: 3,
                dst: 0,
                reserved: 0,
            },
            ExTableEntry {
                offset: 0x20,
                len: 4,
                dst: NO_DST,
                reserved: 0,
            },
            ExTableEntry {
                offset: 0x30,
                len: 7,
                dst: 13,
                reserved: 0,
            },
        ]
    }

    #[test]
    fn lookup_finds_exact_offsets_only() {
        let table = setup_table();
        assert_eq!(lookup(&table, 0x20).map(|e| e.len), Some(4));
        assert_eq!(lookup(&table, 0x21), None);
        assert_eq!(lookup(&[], 0), None);
    }

    #[test]
    fn loads_in_window_resume_with_zeroed_register() {
        let table = setup_table();
        let window = (0x1_0000_0000, 0x2_0000_0000);
        let code = 0x60_0000;
        assert_eq!(
            decide(&table, code, code + 0x30, 0x1_0000_0008, window),
            Fixup::Resume {
                rip: code + 0x37,
                zero_reg: Some(13)
            }
        );
        assert_eq!(
            decide(&table, code, code + 0x20, 0x1_0000_0008, window),
            Fixup::Resume {
                rip: code + 0x24,
                zero_reg: None
            }
        );
    }

    #[test]
    fn faults_outside_window_or_table_trap() {
        let table = setup_table();
        let window = (0x1_0000_0000, 0x2_0000_0000);
        let code = 0x60_0000;
        assert_eq!(decide(&table, code, code + 0x30, 0, window), Fixup::Trap);
        assert_eq!(
            decide(&table, code, code + 0x31, 0x1_0000_0000, window),
            Fixup::Trap
        );
        assert_eq!(
            decide(&table, code, 0x1000, 0x1_0000_0000, window),
            Fixup::Trap
        );
        assert_eq!(
            decide(&table, code, code + 0x30, 0x1_0000_0000, (0, 0)),
            Fixup::Trap
        );
    }
}
