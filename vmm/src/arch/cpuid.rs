//! CPUID as the guest sees it: what KVM supports, with each vCPU's APIC ID.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_EXTENDED_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXTENDED_TOPOLOGY: u32 = 0x1f;

/// `supported` with the APIC ID fields set to `cpu`, so the guest can tell
/// vCPUs apart by CPUID as well as through GS.
pub fn for_cpu(supported: &CpuId, cpu: usize) -> CpuId {
    let mut cpuid = supported.clone();
    let apic_id = cpu as u32;
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => entry.ebx = (entry.ebx & 0x00ff_ffff) | ((apic_id & 0xff) << 24),
            LEAF_EXTENDED_TOPOLOGY | LEAF_V2_EXTENDED_TOPOLOGY => entry.edx = apic_id,
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn apic_id_lands_in_leaf_1_and_topology_leaves() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xaabb_ccdd,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                ..Default::default()
            },
        ];
        let cpuid = CpuId::from_entries(&entries).unwrap();
        let patched = for_cpu(&cpuid, 5);
        assert_eq!(patched.as_slice()[0].ebx, 0x05bb_ccdd);
        assert_eq!(patched.as_slice()[1].edx, 5);
    }
}
