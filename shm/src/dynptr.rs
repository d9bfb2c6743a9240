//! Dynamic pointers (`struct bpf_dynptr`): the kernel's layout and rules
//! (kernel/bpf/helpers.c, `struct bpf_dynptr_kern`), shared by the guest
//! runtime's dynptr helpers and kfuncs and by the ring buffer's
//! `bpf_ringbuf_reserve_dynptr`.
//!
//! Note [Dynptr layout]
//! A program keeps a dynptr in 16 opaque bytes of its stack. The kernel
//! fills them as
//!
//! ```text
//!   0        8                        12        16
//!   +--------+------------------------+---------+
//!   |  data  | size word              | offset  |
//!   +--------+------------------------+---------+
//!   size word: bit 31     read-only
//!              bits 28-30 kind (DynptrKind)
//!              bits 24-27 unused
//!              bits 0-23  size (at most DYNPTR_MAX_SIZE)
//! ```
//!
//! The view is `size` bytes starting `offset` bytes into the memory at
//! `data`; `data == 0` is the NULL dynptr that failed constructors leave.
//!
//! The kernel's verifier tracks every dynptr slot of a program's stack
//! and rejects a program that writes one; here a program may write any
//! bytes there. Every function below therefore accepts any 16 bytes: a
//! forged dynptr can at worst name memory the program could name itself,
//! and the runtime reaches that memory only through its fault-safe
//! routines.

use crate::errno::{E2BIG, EFAULT, EINVAL, ERANGE};
use crate::pod::Pod;

/// Largest size a dynptr can hold: the size word keeps 24 bits for it
/// (the kernel's `DYNPTR_MAX_SIZE`).
pub const DYNPTR_MAX_SIZE: u32 = (1 << 24) - 1;

/// The size bits of the size word (`DYNPTR_SIZE_MASK`).
pub const DYNPTR_SIZE_MASK: u32 = DYNPTR_MAX_SIZE;

/// Where the kind sits in the size word (`DYNPTR_TYPE_SHIFT`).
pub const DYNPTR_TYPE_SHIFT: u32 = 28;

/// The size word's read-only bit (`DYNPTR_RDONLY_BIT`).
pub const DYNPTR_RDONLY_BIT: u32 = 1 << 31;

/// What a dynptr points at (`enum bpf_dynptr_type`, numbered as the
/// kernel numbers it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DynptrKind {
    /// No kind: a NULL dynptr, or a kind number the kernel does not define.
    Invalid = 0,
    /// Program memory: a stack buffer, global data, a map value
    /// (`bpf_dynptr_from_mem`).
    Local = 1,
    /// A ring buffer sample (`bpf_ringbuf_reserve_dynptr`).
    Ringbuf = 2,
    /// A socket buffer (`bpf_dynptr_from_skb`); a sandbox has none.
    Skb = 3,
    /// An XDP buffer (`bpf_dynptr_from_xdp`); a sandbox has none.
    Xdp = 4,
}

impl DynptrKind {
    /// The kind numbered `bits` (the three bits above `DYNPTR_TYPE_SHIFT`);
    /// numbers the kernel does not define are `Invalid`.
    pub const fn from_bits(bits: u32) -> DynptrKind {
        match bits {
            1 => DynptrKind::Local,
            2 => DynptrKind::Ringbuf,
            3 => DynptrKind::Skb,
            4 => DynptrKind::Xdp,
            _ => DynptrKind::Invalid,
        }
    }

    /// Whether the dynptr's memory is plain memory the runtime can copy to
    /// and from (local and ring buffer dynptrs, the kernel's `memmove`
    /// cases).
    pub const fn is_plain_memory(self) -> bool {
        matches!(self, DynptrKind::Local | DynptrKind::Ringbuf)
    }
}

/// `struct bpf_dynptr_kern`: what a program's `struct bpf_dynptr` holds
/// (Note [Dynptr layout]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dynptr {
    /// Guest address of the memory; 0 for a NULL dynptr.
    pub data: u64,
    /// The size word: size, kind and read-only bit.
    pub size: u32,
    /// Where the view starts in the memory at `data`.
    pub offset: u32,
}

/// Size of `struct bpf_dynptr` in the program's memory.
pub const DYNPTR_SIZE: usize = core::mem::size_of::<Dynptr>();

const _: () = assert!(DYNPTR_SIZE == 16);
const _: () = assert!(core::mem::align_of::<Dynptr>() == 8);

// SAFETY: repr(C), integer fields only (8 + 4 + 4 bytes, no padding), and
// every bit pattern is a dynptr, if a meaningless one.
unsafe impl Pod for Dynptr {}

impl Dynptr {
    /// The NULL dynptr (`bpf_dynptr_set_null`): all zeros.
    pub const NULL: Dynptr = Dynptr {
        data: 0,
        size: 0,
        offset: 0,
    };

    /// A writable dynptr of `kind` over `size` bytes starting `offset`
    /// bytes into the memory at `data` (`bpf_dynptr_init`). The caller
    /// checks `size` with [`Dynptr::check_size`] first, as the kernel's
    /// constructors do; bits of a larger size beyond the 24 kept are
    /// dropped rather than let into the kind.
    pub const fn new(data: u64, kind: DynptrKind, offset: u32, size: u32) -> Dynptr {
        Dynptr {
            data,
            size: (size & DYNPTR_SIZE_MASK) | ((kind as u32) << DYNPTR_TYPE_SHIFT),
            offset,
        }
    }

    /// `bpf_dynptr_from_mem(data, size, flags, ptr)`: the local dynptr
    /// over `size` bytes at `data` and the helper's return value. A size
    /// above [`DYNPTR_MAX_SIZE`] is -E2BIG, any flag -EINVAL (checked in
    /// that order, as the kernel); both leave a NULL dynptr.
    pub const fn from_mem(data: u64, size: u32, flags: u64) -> (Dynptr, i64) {
        if let Err(errno) = Dynptr::check_size(size) {
            return (Dynptr::NULL, errno);
        }
        if flags != 0 {
            return (Dynptr::NULL, EINVAL);
        }
        (Dynptr::new(data, DynptrKind::Local, 0, size), 0)
    }

    /// Whether this is the NULL dynptr (`bpf_dynptr_is_null`): no memory.
    pub const fn is_null(&self) -> bool {
        self.data == 0
    }

    /// The kind (`bpf_dynptr_get_type`).
    pub const fn kind(&self) -> DynptrKind {
        DynptrKind::from_bits((self.size & !DYNPTR_RDONLY_BIT) >> DYNPTR_TYPE_SHIFT)
    }

    /// The size of the view (`__bpf_dynptr_size`).
    pub const fn size(&self) -> u32 {
        self.size & DYNPTR_SIZE_MASK
    }

    /// Whether writes through the dynptr are refused
    /// (`__bpf_dynptr_is_rdonly`).
    pub const fn is_rdonly(&self) -> bool {
        self.size & DYNPTR_RDONLY_BIT != 0
    }

    /// Makes writes through the dynptr refused (`bpf_dynptr_set_rdonly`).
    pub const fn set_rdonly(&mut self) {
        self.size |= DYNPTR_RDONLY_BIT;
    }

    /// Sets the size of the view, keeping kind and read-only bit
    /// (`bpf_dynptr_set_size`); `size` must fit 24 bits.
    const fn set_size(&mut self, size: u32) {
        self.size = (size & DYNPTR_SIZE_MASK) | (self.size & !DYNPTR_SIZE_MASK);
    }

    /// Whether a dynptr may be `size` bytes (`bpf_dynptr_check_size`).
    pub const fn check_size(size: u32) -> Result<(), i64> {
        if size > DYNPTR_MAX_SIZE {
            Err(E2BIG)
        } else {
            Ok(())
        }
    }

    /// Whether `len` bytes at `off` lie inside the view
    /// (`bpf_dynptr_check_off_len`): -E2BIG if not.
    pub const fn check_off_len(&self, off: u32, len: u32) -> Result<(), i64> {
        let size = self.size();
        if len > size || off > size - len {
            Err(E2BIG)
        } else {
            Ok(())
        }
    }

    /// Narrows the view to its bytes `start..end` (`bpf_dynptr_adjust`):
    /// -EINVAL for a NULL dynptr or `start > end`, -ERANGE for an end
    /// beyond the view. The offset wraps as the kernel's u32 does.
    pub const fn adjust(&mut self, start: u32, end: u32) -> Result<(), i64> {
        if self.is_null() || start > end {
            return Err(EINVAL);
        }
        let size = self.size();
        if start > size || end > size {
            return Err(ERANGE);
        }
        self.offset = self.offset.wrapping_add(start);
        self.set_size(end - start);
        Ok(())
    }

    /// `bpf_dynptr_clone(p, clone)`: the clone and the kfunc's return
    /// value; cloning a NULL dynptr is -EINVAL and leaves a NULL clone.
    pub const fn clone_result(&self) -> (Dynptr, i64) {
        if self.is_null() {
            (Dynptr::NULL, EINVAL)
        } else {
            (*self, 0)
        }
    }

    /// The address of byte `off` of the view: `data + offset + off` in
    /// 64-bit arithmetic, as the kernel's pointer sums (wrapping, where a
    /// forged `data` may take it; the address is only ever used through
    /// fault-safe routines or handed back to the program).
    pub const fn addr(&self, off: u32) -> u64 {
        self.data
            .wrapping_add(self.offset as u64)
            .wrapping_add(off as u64)
    }

    /// `bpf_dynptr_read(dst, len, src, off, flags)`'s checks, in the
    /// kernel's order: where to copy `len` bytes from, or the errno. A
    /// NULL dynptr or any flag is -EINVAL, a range outside the view
    /// -E2BIG; skb and XDP dynptrs (which no sandbox has) are -EINVAL, any
    /// other kind -EFAULT (the kernel's "unknown dynptr type").
    pub const fn read_addr(&self, off: u32, len: u32, flags: u64) -> Result<u64, i64> {
        if self.is_null() || flags != 0 {
            return Err(EINVAL);
        }
        if let Err(errno) = self.check_off_len(off, len) {
            return Err(errno);
        }
        match self.kind() {
            DynptrKind::Local | DynptrKind::Ringbuf => Ok(self.addr(off)),
            DynptrKind::Skb | DynptrKind::Xdp => Err(EINVAL),
            DynptrKind::Invalid => Err(EFAULT),
        }
    }

    /// `bpf_dynptr_write(dst, off, src, len, flags)`'s checks, in the
    /// kernel's order: where to copy `len` bytes to, or the errno. A NULL
    /// or read-only dynptr is -EINVAL, a range outside the view -E2BIG,
    /// then (local and ring buffer dynptrs) any flag -EINVAL; kinds as in
    /// [`Dynptr::read_addr`].
    pub const fn write_addr(&self, off: u32, len: u32, flags: u64) -> Result<u64, i64> {
        if self.is_null() || self.is_rdonly() {
            return Err(EINVAL);
        }
        if let Err(errno) = self.check_off_len(off, len) {
            return Err(errno);
        }
        match self.kind() {
            DynptrKind::Local | DynptrKind::Ringbuf if flags != 0 => Err(EINVAL),
            DynptrKind::Local | DynptrKind::Ringbuf => Ok(self.addr(off)),
            DynptrKind::Skb | DynptrKind::Xdp => Err(EINVAL),
            DynptrKind::Invalid => Err(EFAULT),
        }
    }

    /// `bpf_dynptr_data(ptr, off, len)`: a writable pointer to `len`
    /// bytes at `off`, or `None` (NULL) for a NULL or read-only dynptr, a
    /// range outside the view, or memory that is not plain (skb and XDP
    /// data go through slices).
    pub const fn data_addr(&self, off: u32, len: u32) -> Option<u64> {
        if self.is_null() || self.check_off_len(off, len).is_err() || self.is_rdonly() {
            return None;
        }
        if self.kind().is_plain_memory() {
            Some(self.addr(off))
        } else {
            None
        }
    }

    /// `bpf_dynptr_slice(p, off, buffer, len)` (`writable` false) and
    /// `bpf_dynptr_slice_rdwr` (true, which refuses a read-only dynptr):
    /// a pointer to `len` bytes at `off`, or `None` (NULL). For plain
    /// memory the pointer is always direct, so the buffer is never used.
    pub const fn slice_addr(&self, off: u32, len: u32, writable: bool) -> Option<u64> {
        if self.is_null() || (writable && self.is_rdonly()) {
            return None;
        }
        if self.check_off_len(off, len).is_err() {
            return None;
        }
        if self.kind().is_plain_memory() {
            Some(self.addr(off))
        } else {
            None
        }
    }

    /// `bpf_dynptr_size(p)`: the view's size, or -EINVAL as a u32 for a
    /// NULL dynptr (the kfunc returns `__u32`).
    pub const fn size_result(&self) -> u32 {
        if self.is_null() {
            EINVAL as u32
        } else {
            self.size()
        }
    }

    /// `bpf_dynptr_is_rdonly(p)`: false for a NULL dynptr.
    pub const fn is_rdonly_result(&self) -> bool {
        !self.is_null() && self.is_rdonly()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DATA: u64 = 0x10_0000;

    fn local(size: u32) -> Dynptr {
        Dynptr::new(DATA, DynptrKind::Local, 0, size)
    }

    #[test]
    fn layout_is_the_kernels() {
        let d = Dynptr::new(0x1122_3344_5566_7788, DynptrKind::Ringbuf, 5, 100);
        let bytes = crate::pod::pod_bytes(&d);
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[..8], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(bytes[8..12], (100u32 | 2 << 28).to_le_bytes());
        assert_eq!(bytes[12..], 5u32.to_le_bytes());
        assert_eq!(crate::pod::read_pod::<Dynptr>(bytes), Some(d));
        assert_eq!(DYNPTR_MAX_SIZE, 0xff_ffff);
    }

    #[test]
    fn size_word_holds_size_kind_and_rdonly() {
        let mut d = Dynptr::new(DATA, DynptrKind::Xdp, 0, DYNPTR_MAX_SIZE);
        assert_eq!(d.kind(), DynptrKind::Xdp);
        assert_eq!(d.size(), DYNPTR_MAX_SIZE);
        assert!(!d.is_rdonly());
        d.set_rdonly();
        assert!(d.is_rdonly());
        assert_eq!(d.kind(), DynptrKind::Xdp, "rdonly is not part of the kind");
        assert_eq!(d.size(), DYNPTR_MAX_SIZE);
        assert_eq!(d.size, 0xc0ff_ffff);
        // A size too large for 24 bits does not reach the kind.
        let d = Dynptr::new(DATA, DynptrKind::Local, 0, 1 << 24 | 3);
        assert_eq!((d.kind(), d.size()), (DynptrKind::Local, 3));
    }

    #[test]
    fn kinds_are_numbered_as_the_kernel() {
        for (bits, kind) in [
            (0, DynptrKind::Invalid),
            (1, DynptrKind::Local),
            (2, DynptrKind::Ringbuf),
            (3, DynptrKind::Skb),
            (4, DynptrKind::Xdp),
        ] {
            assert_eq!(kind as u32, bits);
            assert_eq!(DynptrKind::from_bits(bits), kind);
        }
        for bits in 5..8 {
            assert_eq!(DynptrKind::from_bits(bits), DynptrKind::Invalid);
        }
    }

    #[test]
    fn null_is_all_zeros() {
        assert_eq!(Dynptr::NULL, Dynptr::default());
        assert!(Dynptr::NULL.is_null());
        assert_eq!(Dynptr::NULL.kind(), DynptrKind::Invalid);
        assert!(!local(4).is_null());
        // A dynptr over address 0 is NULL, whatever its size.
        assert!(Dynptr::new(0, DynptrKind::Local, 0, 8).is_null());
    }

    #[test]
    fn from_mem_checks_size_then_flags() {
        assert_eq!(Dynptr::from_mem(DATA, 16, 0), (local(16), 0));
        assert_eq!(Dynptr::from_mem(DATA, 0, 0), (local(0), 0));
        assert_eq!(
            Dynptr::from_mem(DATA, DYNPTR_MAX_SIZE, 0),
            (local(DYNPTR_MAX_SIZE), 0)
        );
        assert_eq!(
            Dynptr::from_mem(DATA, DYNPTR_MAX_SIZE + 1, 0),
            (Dynptr::NULL, E2BIG)
        );
        assert_eq!(Dynptr::from_mem(DATA, 16, 1), (Dynptr::NULL, EINVAL));
        assert_eq!(
            Dynptr::from_mem(DATA, u32::MAX, 1),
            (Dynptr::NULL, E2BIG),
            "size is checked first"
        );
    }

    #[test]
    fn check_size_and_off_len_have_the_kernel_bounds() {
        assert_eq!(Dynptr::check_size(DYNPTR_MAX_SIZE), Ok(()));
        assert_eq!(Dynptr::check_size(DYNPTR_MAX_SIZE + 1), Err(E2BIG));
        let d = local(16);
        assert_eq!(d.check_off_len(0, 16), Ok(()));
        assert_eq!(d.check_off_len(16, 0), Ok(()));
        assert_eq!(d.check_off_len(8, 8), Ok(()));
        assert_eq!(d.check_off_len(9, 8), Err(E2BIG));
        assert_eq!(d.check_off_len(17, 0), Err(E2BIG));
        assert_eq!(d.check_off_len(0, 17), Err(E2BIG));
        // No wrap-around: off + len overflowing u32 is refused.
        assert_eq!(d.check_off_len(u32::MAX, 2), Err(E2BIG));
        assert_eq!(d.check_off_len(2, u32::MAX), Err(E2BIG));
    }

    #[test]
    fn adjust_narrows_the_view() {
        let mut d = local(16);
        assert_eq!(d.adjust(4, 12), Ok(()));
        assert_eq!((d.offset, d.size(), d.kind()), (4, 8, DynptrKind::Local));
        assert_eq!(d.addr(0), DATA + 4);
        // Relative to the current view.
        assert_eq!(d.adjust(2, 8), Ok(()));
        assert_eq!((d.offset, d.size()), (6, 6));
        assert_eq!(d.adjust(0, 7), Err(ERANGE));
        assert_eq!(d.adjust(7, 7), Err(ERANGE));
        assert_eq!(d.adjust(3, 2), Err(EINVAL));
        assert_eq!(
            (d.offset, d.size()),
            (6, 6),
            "a failed adjust changes nothing"
        );
        assert_eq!(d.adjust(6, 6), Ok(()));
        assert_eq!((d.offset, d.size()), (12, 0));
        let mut null = Dynptr::NULL;
        assert_eq!(null.adjust(0, 0), Err(EINVAL));
        // Keeps the read-only bit.
        let mut d = local(16);
        d.set_rdonly();
        assert_eq!(d.adjust(1, 2), Ok(()));
        assert!(d.is_rdonly());
        assert_eq!(d.size(), 1);
    }

    #[test]
    fn clone_copies_or_nulls() {
        let mut d = local(9);
        d.set_rdonly();
        assert_eq!(d.clone_result(), (d, 0));
        assert_eq!(Dynptr::NULL.clone_result(), (Dynptr::NULL, EINVAL));
    }

    #[test]
    fn read_checks_in_the_kernel_order() {
        let d = Dynptr::new(DATA, DynptrKind::Local, 100, 16);
        assert_eq!(d.read_addr(4, 8, 0), Ok(DATA + 104));
        assert_eq!(d.read_addr(0, 0, 0), Ok(DATA + 100));
        assert_eq!(d.read_addr(4, 13, 0), Err(E2BIG));
        assert_eq!(d.read_addr(4, 13, 1), Err(EINVAL), "flags before range");
        assert_eq!(Dynptr::NULL.read_addr(0, 0, 0), Err(EINVAL));
        let mut ro = d;
        ro.set_rdonly();
        assert_eq!(ro.read_addr(0, 16, 0), Ok(DATA + 100));
        let ring = Dynptr::new(DATA, DynptrKind::Ringbuf, 0, 8);
        assert_eq!(ring.read_addr(0, 8, 0), Ok(DATA));
        let skb = Dynptr::new(DATA, DynptrKind::Skb, 0, 8);
        assert_eq!(skb.read_addr(0, 8, 0), Err(EINVAL));
        assert_eq!(skb.read_addr(0, 9, 0), Err(E2BIG));
        let bad = Dynptr::new(DATA, DynptrKind::Invalid, 0, 8);
        assert_eq!(bad.read_addr(0, 8, 0), Err(EFAULT));
        let forged = Dynptr {
            data: DATA,
            size: 7 << DYNPTR_TYPE_SHIFT | 8,
            offset: 0,
        };
        assert_eq!(forged.read_addr(0, 8, 0), Err(EFAULT));
    }

    #[test]
    fn write_checks_in_the_kernel_order() {
        let d = local(16);
        assert_eq!(d.write_addr(8, 8, 0), Ok(DATA + 8));
        assert_eq!(d.write_addr(8, 9, 0), Err(E2BIG));
        assert_eq!(d.write_addr(8, 9, 1), Err(E2BIG), "range before flags");
        assert_eq!(d.write_addr(8, 8, 1), Err(EINVAL));
        let mut ro = d;
        ro.set_rdonly();
        assert_eq!(ro.write_addr(0, 1, 0), Err(EINVAL));
        assert_eq!(ro.write_addr(0, 99, 0), Err(EINVAL), "rdonly before range");
        assert_eq!(Dynptr::NULL.write_addr(0, 0, 0), Err(EINVAL));
        let xdp = Dynptr::new(DATA, DynptrKind::Xdp, 0, 8);
        assert_eq!(xdp.write_addr(0, 8, 0), Err(EINVAL));
        let bad = Dynptr::new(DATA, DynptrKind::Invalid, 0, 8);
        assert_eq!(bad.write_addr(0, 8, 0), Err(EFAULT));
    }

    #[test]
    fn data_and_slices_give_direct_pointers_or_null() {
        let d = Dynptr::new(DATA, DynptrKind::Local, 2, 16);
        assert_eq!(d.data_addr(4, 4), Some(DATA + 6));
        assert_eq!(d.data_addr(4, 13), None);
        assert_eq!(d.slice_addr(0, 16, false), Some(DATA + 2));
        assert_eq!(d.slice_addr(0, 16, true), Some(DATA + 2));
        assert_eq!(d.slice_addr(1, 16, false), None);
        let mut ro = d;
        ro.set_rdonly();
        assert_eq!(ro.data_addr(0, 1), None, "bpf_dynptr_data is writable");
        assert_eq!(ro.slice_addr(0, 1, false), Some(DATA + 2));
        assert_eq!(ro.slice_addr(0, 1, true), None);
        for kind in [DynptrKind::Skb, DynptrKind::Xdp, DynptrKind::Invalid] {
            let d = Dynptr::new(DATA, kind, 0, 8);
            assert_eq!(d.data_addr(0, 8), None);
            assert_eq!(d.slice_addr(0, 8, false), None);
        }
        assert_eq!(Dynptr::NULL.data_addr(0, 0), None);
        assert_eq!(Dynptr::NULL.slice_addr(0, 0, false), None);
    }

    #[test]
    fn size_and_rdonly_of_null() {
        assert_eq!(local(7).size_result(), 7);
        assert_eq!(Dynptr::NULL.size_result(), 0xffff_ffea);
        let mut d = Dynptr {
            data: 0,
            ..local(7)
        };
        d.set_rdonly();
        assert!(!d.is_rdonly_result(), "NULL is never read-only");
        d.data = DATA;
        assert!(d.is_rdonly_result());
    }

    proptest! {
        #[test]
        fn any_bytes_give_ranges_inside_the_view(
            data in any::<u64>(), size in any::<u32>(), offset in any::<u32>(),
            off in any::<u32>(), len in any::<u32>(),
        ) {
            let d = Dynptr { data, size, offset };
            if let Ok(addr) = d.read_addr(off, len, 0) {
                prop_assert!(!d.is_null());
                prop_assert!(u64::from(off) + u64::from(len) <= u64::from(d.size()));
                prop_assert_eq!(addr, data.wrapping_add(u64::from(offset) + u64::from(off)));
            }
            if d.write_addr(off, len, 0).is_ok() {
                prop_assert!(!d.is_rdonly());
            }
            let mut adjusted = d;
            if adjusted.adjust(off, len).is_ok() {
                prop_assert!(adjusted.size() <= d.size());
                prop_assert_eq!(adjusted.size, d.size - d.size() + (len - off));
                // The kernel's u32 offset wraps; short of that, the view
                // starts where byte `off` of the old one was.
                if offset.checked_add(off).is_some() {
                    prop_assert_eq!(adjusted.addr(0), d.addr(off));
                }
            }
        }
    }
}
