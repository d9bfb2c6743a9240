//! String helpers over program memory read through a fault-safe probe:
//! `bpf_strncmp`.

use crate::errno::EFAULT;
use crate::trace::printk::ProbeRead;

/// `long bpf_strncmp(const char *s1, u32 s1_sz, const char *s2)`: the
/// kernel's `strncmp(s1, s2, s1_sz)` (lib/string.c, which x86-64 uses):
/// compares at most `s1_sz` bytes, stopping after a NUL common to both,
/// and returns -1, 0 or 1 as the first differing byte (unsigned) is lower
/// or higher in `s1`. A byte that cannot be read gives -EFAULT (the
/// kernel's verifier rules that out; here the program may pass anything).
pub fn strncmp<M: ProbeRead>(mem: &mut M, s1: u64, s1_sz: u32, s2: u64) -> i64 {
    for i in 0..u64::from(s1_sz) {
        let (Some(c1), Some(c2)) = (
            mem.probe_read_u8(s1.wrapping_add(i)),
            mem.probe_read_u8(s2.wrapping_add(i)),
        ) else {
            return EFAULT;
        };
        if c1 != c2 {
            return if c1 < c2 { -1 } else { 1 };
        }
        if c1 == 0 {
            break;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Memory made of readable regions; everything else faults.
    #[derive(Default)]
    struct RegionMemory {
        regions: Vec<(u64, Vec<u8>)>,
    }

    impl RegionMemory {
        fn map(&mut self, addr: u64, bytes: &[u8]) -> u64 {
            self.regions.push((addr, bytes.to_vec()));
            addr
        }
    }

    impl ProbeRead for RegionMemory {
        fn probe_read_u8(&mut self, addr: u64) -> Option<u8> {
            self.regions.iter().find_map(|(base, bytes)| {
                let offset = usize::try_from(addr.checked_sub(*base)?).ok()?;
                bytes.get(offset).copied()
            })
        }
    }

    fn cmp(s1: &[u8], n: u32, s2: &[u8]) -> i64 {
        let mut mem = RegionMemory::default();
        let a = mem.map(0x1000, s1);
        let b = mem.map(0x8000, s2);
        strncmp(&mut mem, a, n, b)
    }

    #[test]
    fn compares_like_the_kernels_strncmp() {
        assert_eq!(cmp(b"abc\0", 4, b"abc\0"), 0);
        assert_eq!(cmp(b"abd\0", 4, b"abc\0"), 1);
        assert_eq!(cmp(b"abc\0", 4, b"abd\0"), -1);
        // Only s1_sz bytes count.
        assert_eq!(cmp(b"abX", 2, b"abY\0"), 0);
        assert_eq!(cmp(b"", 0, b"x\0"), 0);
        // A shorter string is lower; bytes compare unsigned.
        assert_eq!(cmp(b"ab\0", 3, b"abc\0"), -1);
        assert_eq!(cmp(b"\xff\0", 2, b"a\0"), 1);
        // Nothing after a common NUL is read.
        assert_eq!(cmp(b"a\0", 100, b"a\0"), 0);
    }

    #[test]
    fn an_unreadable_byte_is_efault() {
        // s1 ends (unmapped) before the comparison does.
        assert_eq!(cmp(b"ab", 3, b"abc\0"), EFAULT);
        assert_eq!(cmp(b"abc\0", 4, b"ab"), EFAULT);
        // A difference found first wins.
        assert_eq!(cmp(b"ax", 3, b"ab"), 1);
    }

    proptest! {
        #[test]
        fn matches_the_c_definition(
            a in proptest::collection::vec(any::<u8>(), 0..12),
            b in proptest::collection::vec(any::<u8>(), 0..12),
            n in 0u32..16,
        ) {
            let (mut a, mut b) = (a, b);
            a.push(0);
            b.push(0);
            // Reference: C strings cut at their first NUL, padded with NULs.
            let cut = |s: &[u8]| s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())].to_vec();
            let (ca, cb) = (cut(&a), cut(&b));
            let n = n as usize;
            let pa: Vec<u8> = ca.iter().copied().chain(std::iter::repeat(0)).take(n).collect();
            let pb: Vec<u8> = cb.iter().copied().chain(std::iter::repeat(0)).take(n).collect();
            let want = match pa.cmp(&pb) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 1,
            };
            // Pad s1's mapping so that reads up to n stay in bounds.
            a.resize(a.len().max(n), 0xaa);
            let got = cmp(&a, n as u32, &b);
            prop_assert_eq!(got, want);
        }
    }
}
