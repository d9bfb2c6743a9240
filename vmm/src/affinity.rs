//! Host CPUs a sandbox's vCPUs may run on (`SandboxConfig::vcpu_affinity`).
//!
//! A vCPU's thread is a pooled worker (`crate::vcpu_threads`): it takes
//! the sandbox's CPU set when it starts serving the vCPU and gives it
//! back when it stops, so the next sandbox the worker serves starts from
//! the affinity the worker was created with.

/// Host CPUs 0 to [`CpuSet::MAX`] - 1, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuSet {
    bits: [u64; CpuSet::WORDS],
}

impl CpuSet {
    const WORDS: usize = 16;
    /// Host CPUs a set can name (ids below this).
    pub const MAX: usize = 64 * CpuSet::WORDS;

    /// The set of `cpus`; ids of [`CpuSet::MAX`] and above are left out.
    pub fn of(cpus: impl IntoIterator<Item = usize>) -> CpuSet {
        let mut set = CpuSet::default();
        for cpu in cpus.into_iter().filter(|&c| c < CpuSet::MAX) {
            set.bits[cpu / 64] |= 1 << (cpu % 64);
        }
        set
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < CpuSet::MAX && self.bits[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// The CPUs in the set, in order.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..CpuSet::MAX).filter(|&c| self.contains(c))
    }

    /// Whether it names no CPU.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The CPUs this process may run on.
    pub fn allowed() -> std::io::Result<CpuSet> {
        let mask = get_affinity()?;
        Ok(CpuSet::of(
            // SAFETY: CPU_ISSET reads inside the set, for ids it can hold.
            (0..CpuSet::MAX).filter(|&c| unsafe { libc::CPU_ISSET(c, &mask) }),
        ))
    }

    fn to_libc(self) -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is the empty set.
        let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in self.cpus() {
            // SAFETY: CPU_SET writes inside the set (cpu < MAX = 1024,
            // the set's size).
            unsafe { libc::CPU_SET(cpu, &mut mask) };
        }
        mask
    }
}

fn get_affinity() -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid set for the kernel to fill.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size_of(mask)` bytes into it.
    let ret = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) };
    if ret == 0 {
        Ok(mask)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_affinity(mask: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: the kernel reads `size_of(mask)` bytes of it.
    let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), mask) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread pinned to a set, until dropped: then it runs where
/// it ran before.
#[derive(Debug)]
pub struct Pinned {
    before: libc::cpu_set_t,
}

impl Pinned {
    /// Pins the calling thread to `set`.
    pub fn to(set: &CpuSet) -> std::io::Result<Pinned> {
        let before = get_affinity()?;
        set_affinity(&set.to_libc())?;
        Ok(Pinned { before })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // Best effort: a worker left pinned only runs on fewer CPUs.
        let _ = set_affinity(&self.before);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sets_hold_what_they_were_given() {
        let set = CpuSet::of([0, 3, 64, 1023, 1024, 5000]);
        assert_eq!(set.cpus().collect::<Vec<_>>(), [0, 3, 64, 1023]);
        assert!(set.contains(3) && !set.contains(2) && !set.contains(5000));
        assert!(CpuSet::default().is_empty() && !set.is_empty());
    }

    #[test]
    fn pinning_is_undone_when_dropped() {
        let std::thread::Result::Ok(()) = std::thread::spawn(|| {
            let allowed = CpuSet::allowed().unwrap();
            let first = allowed.cpus().next().unwrap();
            let pinned = Pinned::to(&CpuSet::of([first])).unwrap();
            assert_eq!(CpuSet::allowed().unwrap(), CpuSet::of([first]));
            drop(pinned);
            assert_eq!(CpuSet::allowed().unwrap(), allowed);
        })
        .join() else {
            panic!("the pinning thread panicked");
        };
    }
}
