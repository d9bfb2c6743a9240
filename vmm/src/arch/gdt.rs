//! Descriptor tables: GDT, IDT and the per-vCPU task state segments.
//!
//! All three are built by the host and mapped read-only in the guest. Every
//! segment descriptor has its accessed bit preset and every TSS descriptor is
//! already busy, so the CPU never needs to write these pages.

use crate::runtime::{EXCEPTION_VECTORS, RuntimeImage};
use shm::layout::{Layout, PAGE_SIZE, TSS_STRIDE};
use shm::ports::{IO_BITMAP_SIZE, io_bitmap};

/// Selector of the CPL 0 code segment (exception entry only).
pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
/// Selector of the CPL 0 data segment.
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;
/// Selector (RPL 3) of the CPL 3 code segment the runtime runs in.
pub const USER_CODE_SELECTOR: u16 = 0x18 | 3;
/// Selector (RPL 3) of the CPL 3 data segment (DS, ES, FS, GS, SS).
pub const USER_DATA_SELECTOR: u16 = 0x20 | 3;
/// Selector of vCPU 0's TSS descriptor; vCPU i's is 16 bytes further per i.
pub const FIRST_TSS_SELECTOR: u16 = 0x28;

/// Present, DPL 0, code, execute/read, accessed; L=1 (64-bit), G=1.
const KERNEL_CODE_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
/// Present, DPL 0, data, read/write, accessed; D/B=1, G=1.
const KERNEL_DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;
/// As the kernel code descriptor, with DPL 3.
const USER_CODE_DESCRIPTOR: u64 = 0x00af_fb00_0000_ffff;
/// As the kernel data descriptor, with DPL 3.
const USER_DATA_DESCRIPTOR: u64 = 0x00cf_f300_0000_ffff;
/// Type of a busy 64-bit TSS.
pub const TSS_TYPE_BUSY: u8 = 0xb;
/// Size of the TSS proper, where the I/O permission bitmap starts.
const TSS_BASE_SIZE: usize = 104;
/// Size of a TSS with its I/O permission bitmap.
const TSS_SIZE: usize = TSS_BASE_SIZE + IO_BITMAP_SIZE;
/// Limit of a TSS segment (its size minus one).
pub const TSS_LIMIT: u32 = TSS_SIZE as u32 - 1;
const _: () = assert!(TSS_SIZE as u64 <= TSS_STRIDE);

/// Interrupt-stack-table slot for ordinary exceptions.
pub const IST_EXCEPTION: u8 = 1;
/// Interrupt-stack-table slot for #DF, NMI and #MC.
pub const IST_FATAL: u8 = 2;

/// Selector of `cpu`'s TSS.
pub fn tss_selector(cpu: usize) -> u16 {
    FIRST_TSS_SELECTOR + 16 * cpu as u16
}

/// The GDT: null, kernel code and data, user code and data, then one
/// 16-byte TSS descriptor per vCPU.
pub fn build_gdt(layout: &Layout) -> Vec<u8> {
    let mut gdt = Vec::with_capacity(PAGE_SIZE as usize);
    for descriptor in [
        0,
        KERNEL_CODE_DESCRIPTOR,
        KERNEL_DATA_DESCRIPTOR,
        USER_CODE_DESCRIPTOR,
        USER_DATA_DESCRIPTOR,
    ] {
        gdt.extend_from_slice(&u64::to_le_bytes(descriptor));
    }
    for cpu in 0..layout.nr_cpus() {
        gdt.extend_from_slice(&tss_descriptor(layout.tss(cpu)));
    }
    gdt
}

/// Limit of the GDT as loaded into GDTR.
pub fn gdt_limit(layout: &Layout) -> u16 {
    tss_selector(layout.nr_cpus()) - 1
}

/// A 64-bit system-segment descriptor for a busy TSS at `base`.
fn tss_descriptor(base: u64) -> [u8; 16] {
    let limit = u64::from(TSS_LIMIT);
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (u64::from(TSS_TYPE_BUSY) << 40)
        | (1 << 47) // present
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let high = base >> 32;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&low.to_le_bytes());
    out[8..].copy_from_slice(&high.to_le_bytes());
    out
}

/// The IDT: an interrupt gate per exception vector into the runtime's stubs.
pub fn build_idt(runtime: &RuntimeImage) -> Vec<u8> {
    let mut idt = Vec::with_capacity(PAGE_SIZE as usize);
    for vector in 0..EXCEPTION_VECTORS {
        let ist = match vector {
            2 | 8 | 18 => IST_FATAL,
            _ => IST_EXCEPTION,
        };
        idt.extend_from_slice(&interrupt_gate(runtime.exception_stub(vector), ist));
    }
    idt
}

/// Limit of the IDT as loaded into IDTR.
pub fn idt_limit() -> u16 {
    (EXCEPTION_VECTORS * 16 - 1) as u16
}

/// A present, DPL 0, 64-bit interrupt gate to `handler` on stack `ist`.
fn interrupt_gate(handler: u64, ist: u8) -> [u8; 16] {
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&KERNEL_CODE_SELECTOR.to_le_bytes());
    gate[4] = ist;
    gate[5] = 0x8e; // present, DPL 0, type 0xe (interrupt gate: IF cleared)
    gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    gate
}

/// `cpu`'s task state segment: every gate uses an IST stack, so only the IST
/// pointers matter (RSP0 points at the kernel stack too, for safety), and
/// the I/O permission bitmap grants CPL 3 our ports and nothing else
/// (Note [Port permissions] in `shm::ports`).
pub fn build_tss(layout: &Layout, cpu: usize) -> [u8; TSS_SIZE] {
    let mut tss = [0u8; TSS_SIZE];
    tss[4..12].copy_from_slice(&layout.kernel_stack_top(cpu).to_le_bytes());
    let ist_offset = |slot: u8| 0x24 + 8 * (usize::from(slot) - 1);
    let ist1 = ist_offset(IST_EXCEPTION);
    tss[ist1..ist1 + 8].copy_from_slice(&layout.kernel_stack_top(cpu).to_le_bytes());
    let ist2 = ist_offset(IST_FATAL);
    tss[ist2..ist2 + 8].copy_from_slice(&layout.fatal_stack_top(cpu).to_le_bytes());
    tss[102..104].copy_from_slice(&(TSS_BASE_SIZE as u16).to_le_bytes());
    tss[TSS_BASE_SIZE..].copy_from_slice(&io_bitmap());
    tss
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm::layout::{LayoutConfig, TSS_START};

    #[test]
    fn tss_descriptor_encodes_base_limit_and_busy_type() {
        let d = tss_descriptor(0x1234_5678_9abc_def0);
        let low = u64::from_le_bytes(d[..8].try_into().unwrap());
        let high = u64::from_le_bytes(d[8..].try_into().unwrap());
        assert_eq!(low & 0xffff, u64::from(TSS_LIMIT));
        assert_eq!((low >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((low >> 56) & 0xff, 0x9a);
        assert_eq!((low >> 40) & 0xf, 0xb);
        assert_eq!((low >> 47) & 1, 1);
        assert_eq!(high, 0x1234_5678);
    }

    #[test]
    fn gdt_fits_its_page_for_the_most_cpus() {
        let layout = Layout::new(LayoutConfig {
            nr_cpus: 64,
            ..LayoutConfig::default()
        })
        .unwrap();
        let gdt = build_gdt(&layout);
        assert!(gdt.len() as u64 <= PAGE_SIZE);
        assert_eq!(usize::from(gdt_limit(&layout)) + 1, gdt.len());
        assert_eq!(layout.tss(63), TSS_START + 63 * 128);
    }

    #[test]
    fn interrupt_gate_splits_handler_address() {
        let g = interrupt_gate(0x1122_3344_5566_7788, 2);
        assert_eq!(&g[0..2], &[0x88, 0x77]);
        assert_eq!(&g[6..8], &[0x66, 0x55]);
        assert_eq!(&g[8..12], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!((g[4], g[5]), (2, 0x8e));
    }

    #[test]
    fn tss_points_ist_slots_at_stack_tops() {
        let layout = Layout::new(LayoutConfig {
            nr_cpus: 2,
            ..LayoutConfig::default()
        })
        .unwrap();
        let tss = build_tss(&layout, 1);
        let ist1 = u64::from_le_bytes(tss[0x24..0x2c].try_into().unwrap());
        let ist2 = u64::from_le_bytes(tss[0x2c..0x34].try_into().unwrap());
        assert_eq!(ist1, layout.kernel_stack_top(1));
        assert_eq!(ist2, layout.fatal_stack_top(1));
        let io_map_base = usize::from(u16::from_le_bytes([tss[102], tss[103]]));
        assert_eq!(&tss[io_map_base..], &io_bitmap());
    }
}
