//! Dynptr helpers: `bpf_dynptr_from_mem` (197), `bpf_dynptr_read` (201),
//! `bpf_dynptr_write` (202), `bpf_dynptr_data` (203), and the kfuncs
//! `bpf_dynptr_adjust`, `_is_null`, `_is_rdonly`, `_size`, `_clone`,
//! `_slice`, `_slice_rdwr`. The rules are `shm::dynptr`'s, the kernel's.
//!
//! Note [Dynptrs in program memory]
//! The kernel's verifier proves that a dynptr argument is an initialised
//! dynptr slot of the program's stack, and that `bpf_dynptr_read`'s
//! destination and `bpf_dynptr_write`'s source are program memory of the
//! given length. Here a program can pass any pointer and write any bytes
//! into its dynptr (Note [Dynptr layout] in `shm::dynptr`), so every
//! helper reads and writes the 16-byte dynptr, and copies data, through the
//! fault-safe routines of `super::nofault`:
//!
//! * a dynptr that cannot be read or written gives -EFAULT from the
//!   helpers that return an error code, NULL from those that return a
//!   pointer, and otherwise reads as the NULL dynptr (`bpf_dynptr_is_null`
//!   true, `_is_rdonly` false, `_size` -EINVAL);
//! * a dynptr whose `data` was forged to point at memory that faults makes
//!   `bpf_dynptr_read` / `_write` return -EFAULT (some bytes may have been
//!   copied by then, as with `bpf_probe_read_kernel`);
//! * `bpf_dynptr_data` and the slices only compute a pointer from the
//!   dynptr's fields and hand it back: the program then accesses it as its
//!   own memory, and a fault there is the program's, reported as a trap.
//!
//! Only local and ring buffer dynptrs exist in a sandbox (no skb, no XDP):
//! their memory is plain, so a slice is always a direct pointer and the
//! kfuncs' `buffer__opt` is never used.

use super::nofault::{self, Fault};
use core::mem::MaybeUninit;
use shm::dynptr::{DYNPTR_SIZE, Dynptr};
use shm::errno::EFAULT;

/// Largest piece of an overlapping copy staged on the runtime's stack
/// (Note [Small fault-safe copies] in `super::nofault`: word moves up to
/// this length).
const BOUNCE_SIZE: u64 = 256;

/// The dynptr at `ptr` in program memory, or `None` if it cannot be read.
/// For every helper taking a dynptr (the ring buffer's `*_dynptr` ones
/// too).
pub(super) fn load(ptr: u64) -> Option<Dynptr> {
    let mut dynptr = MaybeUninit::<Dynptr>::uninit();
    nofault::copy(dynptr.as_mut_ptr() as u64, ptr, DYNPTR_SIZE as u64).ok()?;
    // SAFETY: the copy filled all 16 bytes, and any bytes are a Dynptr
    // (it is Pod).
    Some(unsafe { dynptr.assume_init() })
}

/// Writes `dynptr` to `ptr` in program memory.
pub(super) fn store(ptr: u64, dynptr: &Dynptr) -> Result<(), Fault> {
    nofault::copy(ptr, core::ptr::from_ref(dynptr) as u64, DYNPTR_SIZE as u64)
}

/// Copies `len` bytes from `src` to `dst` in program memory as `memmove`
/// does: the ranges may overlap (two dynptrs over the same map value, a
/// read into the dynptr's own memory). The fault-safe copy moves words
/// forward, which an overlap would corrupt, so an overlapping copy goes
/// through a buffer on this stack, piece by piece, starting from the end
/// when `dst` lies after `src`.
fn move_bytes(dst: u64, src: u64, len: u64) -> Result<(), Fault> {
    let overlaps = dst.wrapping_sub(src) < len || src.wrapping_sub(dst) < len;
    if !overlaps {
        return nofault::copy(dst, src, len);
    }
    let backward = dst.wrapping_sub(src) < len;
    let mut buf = [MaybeUninit::<u8>::uninit(); BOUNCE_SIZE as usize];
    let buf = buf.as_mut_ptr() as u64;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(BOUNCE_SIZE);
        let at = if backward { len - done - n } else { done };
        nofault::copy(buf, src.wrapping_add(at), n)?;
        nofault::copy(dst.wrapping_add(at), buf, n)?;
        done += n;
    }
    Ok(())
}

/// `long bpf_dynptr_from_mem(void *data, u32 size, u64 flags, struct
/// bpf_dynptr *ptr)`: makes `ptr` a local dynptr over `size` bytes at
/// `data`; 0, -E2BIG (size above `DYNPTR_MAX_SIZE`) or -EINVAL (flags),
/// both leaving a NULL dynptr; -EFAULT if `ptr` cannot be written.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_from_mem(data: u64, size: u64, flags: u64, ptr: u64) -> i64 {
    // u32 arguments: the low 32 bits of the register, as BPF_CALL_4.
    let (dynptr, ret) = Dynptr::from_mem(data, size as u32, flags);
    match store(ptr, &dynptr) {
        Ok(()) => ret,
        Err(Fault) => EFAULT,
    }
}

/// `long bpf_dynptr_read(void *dst, u32 len, const struct bpf_dynptr
/// *src, u32 offset, u64 flags)`: copies `len` bytes at `offset` of `src`'s
/// view to `dst`; 0, -EINVAL (NULL dynptr, flags), -E2BIG (outside the
/// view) or -EFAULT (Note [Dynptrs in program memory]).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_read(dst: u64, len: u64, src: u64, offset: u64, flags: u64) -> i64 {
    let Some(dynptr) = load(src) else {
        return EFAULT;
    };
    let len = len as u32;
    match dynptr.read_addr(offset as u32, len, flags) {
        Ok(from) => match move_bytes(dst, from, u64::from(len)) {
            Ok(()) => 0,
            Err(Fault) => EFAULT,
        },
        Err(errno) => errno,
    }
}

/// `long bpf_dynptr_write(const struct bpf_dynptr *dst, u32 offset, void
/// *src, u32 len, u64 flags)`: copies `len` bytes from `src` to `offset`
/// of `dst`'s view; 0, -EINVAL (NULL or read-only dynptr, flags), -E2BIG
/// (outside the view) or -EFAULT (Note [Dynptrs in program memory]).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_write(dst: u64, offset: u64, src: u64, len: u64, flags: u64) -> i64 {
    let Some(dynptr) = load(dst) else {
        return EFAULT;
    };
    let len = len as u32;
    match dynptr.write_addr(offset as u32, len, flags) {
        Ok(to) => match move_bytes(to, src, u64::from(len)) {
            Ok(()) => 0,
            Err(Fault) => EFAULT,
        },
        Err(errno) => errno,
    }
}

/// `void *bpf_dynptr_data(const struct bpf_dynptr *ptr, u32 offset, u32
/// len)`: a writable pointer to `len` bytes at `offset` of the view, or
/// NULL (NULL or read-only dynptr, outside the view, unreadable dynptr).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_data(ptr: u64, offset: u64, len: u64) -> u64 {
    load(ptr)
        .and_then(|dynptr| dynptr.data_addr(offset as u32, len as u32))
        .unwrap_or(0)
}

/// kfunc `int bpf_dynptr_adjust(const struct bpf_dynptr *p, u32 start,
/// u32 end)`: narrows the view to its bytes `start..end`; 0, -EINVAL
/// (NULL dynptr, start > end), -ERANGE (beyond the view) or -EFAULT.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_adjust(p: u64, start: u64, end: u64) -> i64 {
    let Some(mut dynptr) = load(p) else {
        return EFAULT;
    };
    if let Err(errno) = dynptr.adjust(start as u32, end as u32) {
        return errno;
    }
    match store(p, &dynptr) {
        Ok(()) => 0,
        Err(Fault) => EFAULT,
    }
}

/// kfunc `bool bpf_dynptr_is_null(const struct bpf_dynptr *p)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_is_null(p: u64) -> u64 {
    u64::from(load(p).is_none_or(|dynptr| dynptr.is_null()))
}

/// kfunc `bool bpf_dynptr_is_rdonly(const struct bpf_dynptr *p)`: false
/// for a NULL dynptr.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_is_rdonly(p: u64) -> u64 {
    u64::from(load(p).is_some_and(|dynptr| dynptr.is_rdonly_result()))
}

/// kfunc `__u32 bpf_dynptr_size(const struct bpf_dynptr *p)`: the view's
/// size, or -EINVAL as a u32 for a NULL dynptr.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_size(p: u64) -> u64 {
    u64::from(load(p).unwrap_or(Dynptr::NULL).size_result())
}

/// kfunc `int bpf_dynptr_clone(const struct bpf_dynptr *p, struct
/// bpf_dynptr *clone__uninit)`: copies `p` to `clone`; 0, -EINVAL (NULL
/// `p`, leaving a NULL clone) or -EFAULT (either cannot be accessed; an
/// unreadable `p` leaves a NULL clone if it can be written).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_clone(p: u64, clone: u64) -> i64 {
    let Some(dynptr) = load(p) else {
        let _ = store(clone, &Dynptr::NULL);
        return EFAULT;
    };
    let (copy, ret) = dynptr.clone_result();
    match store(clone, &copy) {
        Ok(()) => ret,
        Err(Fault) => EFAULT,
    }
}

/// kfunc `void *bpf_dynptr_slice(const struct bpf_dynptr *p, u32 offset,
/// void *buffer__opt, u32 buffer__szk)`: a read-only pointer to
/// `buffer__szk` bytes at `offset` of the view, or NULL. Always the
/// dynptr's own memory (module doc).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_slice(p: u64, offset: u64, _buffer: u64, len: u64) -> u64 {
    load(p)
        .and_then(|dynptr| dynptr.slice_addr(offset as u32, len as u32, false))
        .unwrap_or(0)
}

/// kfunc `void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, u32
/// offset, void *buffer__opt, u32 buffer__szk)`: as `bpf_dynptr_slice`,
/// writable, so NULL for a read-only dynptr.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_dynptr_slice_rdwr(p: u64, offset: u64, _buffer: u64, len: u64) -> u64 {
    load(p)
        .and_then(|dynptr| dynptr.slice_addr(offset as u32, len as u32, true))
        .unwrap_or(0)
}
