//! Which guest runtime function a program's `call N` reaches.
//!
//! The runtime exports each helper under its kernel name
//! (`bpf_trace_printk`), so the table of ids is the kernel's own
//! ([`guest_jit::helpers::helper_name`]) and a helper exists exactly when
//! the runtime has a function by that name.

use crate::runtime::RuntimeImage;
use guest_jit::helpers::helper_name;

/// Id of the bpf_conformance suite's "unwind" helper.
pub const CONFORMANCE_UNWIND_ID: u32 = 5;

/// The helpers a program may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HelperSet {
    /// The kernel's helpers that the runtime implements, by kernel id.
    #[default]
    Standard,
    /// Only the bpf_conformance suite's helper 5, ubpf's "unwind": returns
    /// its argument, except that 0 ends the program with return value 0.
    /// For running the suite; not a kernel helper set.
    Conformance,
}

impl HelperSet {
    /// Guest address of helper `id`, if the set has it.
    pub fn address(self, runtime: &RuntimeImage, id: u32) -> Option<u64> {
        match self {
            HelperSet::Standard => runtime.symbol(helper_name(id)?),
            HelperSet::Conformance if id == CONFORMANCE_UNWIND_ID => {
                runtime.symbol("bpfvisor_conformance_unwind")
            }
            HelperSet::Conformance => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_set_has_only_unwind() {
        let runtime = RuntimeImage::embedded().unwrap();
        let unwind = HelperSet::Conformance.address(runtime, CONFORMANCE_UNWIND_ID);
        assert_eq!(unwind, runtime.symbol("bpfvisor_conformance_unwind"));
        assert!(unwind.is_some());
        assert_eq!(HelperSet::Conformance.address(runtime, 6), None);
    }

    #[test]
    fn standard_set_resolves_by_kernel_name() {
        let runtime = RuntimeImage::embedded().unwrap();
        // Helper 5 is bpf_ktime_get_ns in the kernel, not the suite's unwind.
        assert_ne!(
            HelperSet::Standard.address(runtime, CONFORMANCE_UNWIND_ID),
            runtime.symbol("bpfvisor_conformance_unwind")
        );
        assert_eq!(HelperSet::Standard.address(runtime, u32::MAX), None);
    }
}
