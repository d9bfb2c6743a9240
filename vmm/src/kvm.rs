//! The process-wide KVM handle.

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
}

/// The process's `/dev/kvm` handle, opened on first use and kept open.
pub fn kvm() -> Result<&'static Kvm, KvmError> {
    static KVM: OnceLock<Result<Kvm, KvmError>> = OnceLock::new();
    KVM.get_or_init(|| Kvm::new().map_err(|e| KvmError::OpenKvm(e.errno())))
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether `/dev/kvm` can be opened by this process.
pub fn is_available() -> bool {
    kvm().is_ok()
}
