//! Experiment: does CPL3 guest code run natively on this host?
use kvm_bindings::{kvm_segment, kvm_userspace_memory_region};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

fn main() {
    let cpl: u8 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(3);
    let iters: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(10_000_000);
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
    unsafe {
        vm.set_user_memory_region(kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: 4 << 20,
            userspace_addr: host,
        })
        .unwrap()
    };
    // page tables at 0x10000: PML4, PDPT, PD with 2 MiB pages, US|RW|P
    let pml4 = 0x10000u64;
    let pdpt = 0x11000u64;
    let pd = 0x12000u64;
    mem.write_obj(pdpt | 7, GuestAddress(pml4)).unwrap();
    mem.write_obj(pd | 7, GuestAddress(pdpt)).unwrap();
    mem.write_obj(0x0u64 | 0x87, GuestAddress(pd)).unwrap();
    mem.write_obj(0x200000u64 | 0x87, GuestAddress(pd + 8))
        .unwrap();
    // GDT at 0x1000: null, kcode 0x8, kdata 0x10, ucode 0x1b(0x18), udata 0x23(0x20)
    let gdt: [u64; 5] = [
        0,
        0x00af9b000000ffff,
        0x00cf93000000ffff,
        0x00affb000000ffff,
        0x00cff3000000ffff,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(0x1000 + 8 * i as u64))
            .unwrap();
    }
    // code at 0x100000: mov rcx, iters; xor eax,eax; l: add rax,3; dec rcx; jnz l; xorps xmm0,xmm0; rdtsc; mov dx, 0x3f0; out dx, al; hlt
    let mut code = vec![0x48, 0xb9];
    code.extend_from_slice(&iters.to_le_bytes());
    code.extend_from_slice(&[
        0x31, 0xc0, 0x48, 0x83, 0xc0, 0x03, 0x48, 0xff, 0xc9, 0x75, 0xf7, 0x0f, 0x57, 0xc0, 0x0f,
        0x31, 0x66, 0xba, 0xf0, 0x03, 0xee, 0xf4,
    ]);
    mem.write_slice(&code, GuestAddress(0x100000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    let mut s = vcpu.get_sregs().unwrap();
    let (csel, dsel, dpl, ctype) = if cpl == 3 {
        (0x1b, 0x23, 3, 0xb)
    } else {
        (0x8, 0x10, 0, 0xb)
    };
    let code_seg = kvm_segment {
        base: 0,
        limit: 0xffffffff,
        selector: csel,
        type_: ctype,
        present: 1,
        dpl,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data_seg = kvm_segment {
        base: 0,
        limit: 0xffffffff,
        selector: dsel,
        type_: 3,
        present: 1,
        dpl,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    };
    s.cs = code_seg;
    s.ds = data_seg;
    s.es = data_seg;
    s.fs = data_seg;
    s.gs = data_seg;
    s.ss = data_seg;
    s.gdt.base = 0x1000;
    s.gdt.limit = 39;
    s.cr0 = 0x80050033;
    s.cr3 = pml4;
    s.cr4 = 0x620;
    s.efer = 0xd00;
    vcpu.set_sregs(&s).unwrap();
    let rflags = if cpl == 3 { 0x3002 } else { 2 };
    vcpu.set_regs(&kvm_bindings::kvm_regs {
        rip: 0x100000,
        rsp: 0x180000,
        rflags,
        ..Default::default()
    })
    .unwrap();
    let t = std::time::Instant::now();
    let exit = vcpu.run();
    println!(
        "cpl={cpl} iters={iters}: {:?} in {:?}",
        exit.map(|e| format!("{e:?}")),
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let exit = vcpu.run();
    println!(
        "after out: {:?} in {:?} rax={:x}",
        exit.map(|e| format!("{e:?}")),
        t.elapsed(),
        vcpu.get_regs().unwrap().rax
    );
}
