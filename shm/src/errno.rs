//! The kernel's error numbers, negated as helpers return them.
//!
//! BPF helpers report failure as a negative errno in r0; the values are
//! Linux's x86-64 ones (`include/uapi/asm-generic/errno-base.h`, `errno.h`),
//! which programs compare against.

/// Operation not permitted.
pub const EPERM: i64 = -1;
/// No such entry.
pub const ENOENT: i64 = -2;
/// Argument list too long; helpers use it for "too many" (`bpf_loop`).
pub const E2BIG: i64 = -7;
/// Try again: a full ring buffer (`bpf_ringbuf_output`).
pub const EAGAIN: i64 = -11;
/// Bad address: a pointer that cannot be read or written.
pub const EFAULT: i64 = -14;
/// Resource busy.
pub const EBUSY: i64 = -16;
/// Entry exists.
pub const EEXIST: i64 = -17;
/// Invalid argument.
pub const EINVAL: i64 = -22;
/// No space left.
pub const ENOSPC: i64 = -28;
/// Result out of range.
pub const ERANGE: i64 = -34;
