//! The process-wide KVM handle and what it tells once.

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;
use std::sync::OnceLock;

/// Why KVM is unusable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` could not be opened.
    #[error(
        "Cannot open /dev/kvm (errno {0}); bpfvisor needs KVM and read-write access to /dev/kvm"
    )]
    OpenKvm(i32),
    /// `KVM_GET_SUPPORTED_CPUID` failed.
    #[error("Failed to query supported CPUID (errno {0})")]
    GetSupportedCpuid(i32),
}

struct KvmSystem {
    kvm: Kvm,
    cpuid: CpuId,
}

fn system() -> Result<&'static KvmSystem, KvmError> {
    static SYSTEM: OnceLock<Result<KvmSystem, KvmError>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let kvm = Kvm::new().map_err(|e| KvmError::OpenKvm(e.errno()))?;
            let cpuid = kvm
                .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                .map_err(|e| KvmError::GetSupportedCpuid(e.errno()))?;
            Ok(KvmSystem { kvm, cpuid })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The process's `/dev/kvm` handle, opened on first use and kept open.
pub fn kvm() -> Result<&'static Kvm, KvmError> {
    system().map(|s| &s.kvm)
}

/// The CPUID entries KVM supports on this host.
pub fn supported_cpuid() -> Result<&'static CpuId, KvmError> {
    system().map(|s| &s.cpuid)
}

/// Whether `/dev/kvm` can be opened by this process.
pub fn is_available() -> bool {
    kvm().is_ok()
}
