//! The register state every vCPU boots with: long mode, CPL 0, interrupts
//! off, SSE on, GS on the vCPU's per-CPU block.

use super::gdt::{
    TSS_LIMIT, TSS_TYPE_BUSY, USER_CODE_SELECTOR, USER_DATA_SELECTOR, gdt_limit, idt_limit,
    tss_selector,
};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use shm::layout::{GDT_START, IDT_START, Layout};
use shm::percpu::USER_RFLAGS;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// Special registers for `cpu`: CPL 3 (Note [Guest privilege levels] in
/// `shm::layout`), paging on with `cr3`, write protection enforced at CPL 0
/// too (CR0.WP), NX enabled, flat segments, GS on the per-CPU block, TR on
/// the vCPU's TSS.
pub fn boot_sregs(layout: &Layout, cpu: usize, cr3: u64) -> kvm_sregs {
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: USER_CODE_SELECTOR,
        type_: 0xb,
        present: 1,
        dpl: 3,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: USER_DATA_SELECTOR,
        type_: 0x3,
        present: 1,
        dpl: 3,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    };
    let tr = kvm_segment {
        base: layout.tss(cpu),
        limit: TSS_LIMIT,
        selector: tss_selector(cpu),
        type_: TSS_TYPE_BUSY,
        present: 1,
        s: 0,
        ..Default::default()
    };
    let ldt = kvm_segment {
        type_: 0x2,
        unusable: 1,
        ..Default::default()
    };
    let mut sregs = kvm_sregs {
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: kvm_segment {
            base: layout.percpu_block(cpu),
            ..data
        },
        ss: data,
        tr,
        ldt,
        cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
        cr3,
        cr4: CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
        efer: EFER_LME | EFER_LMA | EFER_NXE,
        ..Default::default()
    };
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = gdt_limit(layout);
    sregs.idt.base = IDT_START;
    sregs.idt.limit = idt_limit();
    sregs
}

/// General registers to start executing at `rip` on stack `rsp`, with
/// interrupts off.
pub fn entry_regs(rip: u64, rsp: u64) -> kvm_regs {
    kvm_regs {
        rip,
        rsp,
        rflags: USER_RFLAGS,
        ..Default::default()
    }
}

/// FPU and SSE state after `fninit` with all SSE exceptions masked.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm::layout::LayoutConfig;

    #[test]
    fn sregs_put_gs_on_the_percpu_block_and_tr_on_the_tss() {
        let layout = Layout::new(LayoutConfig {
            nr_cpus: 4,
            ..LayoutConfig::default()
        })
        .unwrap();
        let sregs = boot_sregs(&layout, 3, 0x1_0000);
        assert_eq!(sregs.gs.base, layout.percpu_block(3));
        assert_eq!(sregs.tr.base, layout.tss(3));
        assert_eq!(sregs.tr.selector, 0x28 + 3 * 16);
        assert_eq!(
            (sregs.cs.dpl, sregs.cs.selector & 3, sregs.ss.dpl),
            (3, 3, 3)
        );
        assert_eq!(sregs.cr3, 0x1_0000);
        assert_ne!(sregs.cr0 & CR0_WP, 0);
        assert_ne!(sregs.efer & EFER_NXE, 0);
    }
}
