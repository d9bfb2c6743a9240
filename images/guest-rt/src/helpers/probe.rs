//! Fault-safe reads of any address: `bpf_probe_read_kernel` (113),
//! `bpf_probe_read_kernel_str` (115), and their user (112, 114) and legacy
//! (4, 45) forms.
//!
//! A sandbox has one address space, the program's, so the kernel and user
//! forms read the same memory (the kernel's refuse each other's addresses
//! with -ERANGE or -EFAULT; here no address is either). Every access goes
//! through the fault-safe routines of `super::nofault`: an address that
//! cannot be read gives -EFAULT and a zeroed destination, as the kernel's.
//! The destination is the program's own memory (a stack slot or map value
//! in the kernel); if it cannot be written either, the helper returns
//! -EFAULT too.

use super::nofault;
use shm::errno::EFAULT;

/// `copy_from_kernel_nofault` + the helper's zeroing on failure.
fn read(dst: u64, size: u64, src: u64) -> i64 {
    // The size is a u32 in the kernel's helpers.
    let size = u64::from(size as u32);
    if nofault::copy(dst, src, size).is_ok() {
        return 0;
    }
    // Best effort: a destination that faults stays as the fault left it.
    let _ = nofault::fill(dst, 0, size);
    EFAULT
}

/// `strncpy_from_kernel_nofault` + the helper's zeroing on failure.
fn read_str(dst: u64, size: u64, src: u64) -> i64 {
    let size = u64::from(size as u32);
    match nofault::strncpy(dst, src, size) {
        // At most `size`, a u32.
        Ok(stored) => stored as i64,
        Err(nofault::Fault) => {
            let _ = nofault::fill(dst, 0, size);
            EFAULT
        }
    }
}

/// `long bpf_probe_read_kernel(void *dst, u32 size, const void
/// *unsafe_ptr)`: copies `size` bytes; 0, or -EFAULT with `dst` zeroed.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read_kernel(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read(dst, size, unsafe_ptr)
}

/// `long bpf_probe_read_kernel_str(void *dst, u32 size, const void
/// *unsafe_ptr)`: copies the NUL-terminated string, at most `size` bytes
/// with its NUL (cut and terminated if longer); returns the bytes stored
/// including the NUL, or -EFAULT with `dst` zeroed.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read_kernel_str(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read_str(dst, size, unsafe_ptr)
}

/// `long bpf_probe_read_user(void *dst, u32 size, const void
/// __user *unsafe_ptr)`: as `bpf_probe_read_kernel` (module doc).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read_user(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read(dst, size, unsafe_ptr)
}

/// `long bpf_probe_read_user_str(void *dst, u32 size, const void
/// __user *unsafe_ptr)`: as `bpf_probe_read_kernel_str` (module doc).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read_user_str(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read_str(dst, size, unsafe_ptr)
}

/// `long bpf_probe_read(void *dst, u32 size, const void *unsafe_ptr)`, the
/// legacy form: as `bpf_probe_read_kernel`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read(dst, size, unsafe_ptr)
}

/// `long bpf_probe_read_str(void *dst, u32 size, const void *unsafe_ptr)`,
/// the legacy form: as `bpf_probe_read_kernel_str`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_probe_read_str(dst: u64, size: u64, unsafe_ptr: u64) -> i64 {
    read_str(dst, size, unsafe_ptr)
}
