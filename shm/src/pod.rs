//! Plain-old-data: types that may be copied to and from raw guest memory.

/// A type made only of integers, with no padding, for which every bit pattern
/// is a valid value.
///
/// The host copies such values out of guest memory and reads them without
/// trusting them: a hostile guest can write any bytes, and any bytes are a
/// valid (if meaningless) value of a `Pod` type.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]`, contain only integer fields (or arrays
/// of them, or other `Pod` types) and have no padding bytes.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: integers have no padding and every bit pattern is valid.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: an array of `Pod` values has no padding between elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Reads a `T` from the start of `bytes`, or `None` if `bytes` is too short.
pub fn read_pod<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() bytes, the read is
    // unaligned-safe, and `T: Pod` makes any bit pattern a valid `T`.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of a `Pod` value.
pub fn pod_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all size_of::<T>() bytes behind the
    // reference are initialized; the slice borrows `value`.
    unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_pod_round_trips_and_rejects_short_input() {
        let v: u64 = 0x1122_3344_5566_7788;
        assert_eq!(read_pod::<u64>(pod_bytes(&v)), Some(v));
        assert_eq!(read_pod::<u64>(&[0u8; 7]), None);
    }
}
