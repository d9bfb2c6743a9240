//! The process-wide KVM handle.

use kvm_ioctls::Kvm;
use std::sync::OnceLock;

/// The only KVM API version there has ever been (`KVM_GET_API_VERSION`).
const KVM_API_VERSION: i32 = 12;

/// Why KVM is unusable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` could not be opened.
    #[error(
        "Cannot open /dev/kvm (errno {0}); bpfvisor needs KVM and read-write access to /dev/kvm"
    )]
    OpenKvm(i32),
    /// `/dev/kvm` opened but does not answer as KVM does.
    #[error(
        "/dev/kvm is not a KVM device (KVM_GET_API_VERSION gave {0}, expected {KVM_API_VERSION})"
    )]
    NotKvm(i32),
}

/// The process's `/dev/kvm` handle, opened and checked on first use and
/// kept open.
pub fn kvm() -> Result<&'static Kvm, KvmError> {
    static KVM: OnceLock<Result<Kvm, KvmError>> = OnceLock::new();
    KVM.get_or_init(|| {
        let kvm = Kvm::new().map_err(|e| KvmError::OpenKvm(e.errno()))?;
        // Opening succeeds on whatever sits at the path (a bind-mounted
        // /dev/null, say); the first ioctl tells whether it is KVM.
        match kvm.get_api_version() {
            KVM_API_VERSION => Ok(kvm),
            other => Err(KvmError::NotKvm(other)),
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether `/dev/kvm` can be opened by this process and is KVM.
pub fn is_available() -> bool {
    kvm().is_ok()
}
