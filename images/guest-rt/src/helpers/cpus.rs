//! Iterating CPUs from a program: the number of vCPUs (kfunc
//! `bpfvisor_nr_cpus`) and the kernel's bit iterator over a CPU mask
//! (kfuncs `bpf_iter_bits_new`, `_next`, `_destroy`; the rules are
//! `shm::bits`'s).
//!
//! Kernel programs learn the CPU count from a `const volatile` global the
//! loader sets before load (libbpf skeletons: `rodata->nr_cpus =
//! libbpf_num_possible_cpus()`); that works here unchanged with
//! `Object::set_variable`. `bpfvisor_nr_cpus` needs no loader step.

use super::nofault;
use crate::percpu::gs_read;
use shm::bits::{ITER_BITS_BIT_OFFSET, IterBits};
use shm::errno::EFAULT;
use shm::percpu::NR_CPUS_OFFSET;

/// kfunc `u32 bpfvisor_nr_cpus(void)`: the number of vCPUs in the sandbox,
/// the same on every vCPU for the sandbox's life (read-only: it comes from
/// this vCPU's per-CPU block, which the host fills).
#[unsafe(no_mangle)]
pub extern "C" fn bpfvisor_nr_cpus() -> u64 {
    // At most `shm::layout::MAX_CPUS`; a u32 for the program.
    u64::from(gs_read(NR_CPUS_OFFSET) as u32)
}

/// The iterator a program keeps in its stack (16 bytes, `struct
/// bpf_iter_bits`). As for `bpf_iter_num` (super::loops), the kernel's
/// verifier makes `it` a stack slot of the program: a bad `it` faults like
/// the program's own access, and the trap path reports it. The mask
/// pointer is another matter (`unsafe_ptr__ign`: the kernel reads it with
/// `bpf_probe_read_kernel`), so every read of the mask is fault-safe.
fn load(it: u64) -> IterBits {
    // SAFETY: see above; volatile because program memory is not Rust
    // memory.
    unsafe { (it as *const IterBits).read_volatile() }
}

fn store(it: u64, value: IterBits) {
    // SAFETY: as in `load`.
    unsafe { (it as *mut IterBits).write_volatile(value) }
}

/// Word `index` of the mask at `base`, or `None` if it cannot be read.
fn read_word(base: u64, index: u32) -> Option<u64> {
    let src = base.checked_add(u64::from(index) * 8)?;
    let mut word = 0u64;
    nofault::copy(&raw mut word as u64, src, 8).ok()?;
    Some(word)
}

/// kfunc `int bpf_iter_bits_new(struct bpf_iter_bits *it, const u64
/// *unsafe_ptr__ign, u32 nr_words)`: starts an iteration over the set bits
/// of `nr_words` words at `unsafe_ptr__ign`; 0, -EINVAL (NULL or no
/// words), -E2BIG (more than 511 words) or -EFAULT (a word cannot be
/// read). A one-word mask is copied, as in the kernel.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_bits_new(it: u64, unsafe_ptr: u64, nr_words: u64) -> i64 {
    store(it, IterBits::done());
    // u32 argument: the low 32 bits of r3.
    let nr_words = nr_words as u32;
    let nr_bits = match IterBits::check(unsafe_ptr, nr_words) {
        Ok(nr_bits) => nr_bits,
        Err(refusal) => return refusal.errno(),
    };
    // The kernel copies every word here; check they can all be read.
    let mut first = 0;
    for index in 0..nr_words {
        match read_word(unsafe_ptr, index) {
            Some(word) if index == 0 => first = word,
            Some(_) => {}
            None => return EFAULT,
        }
    }
    let bits = if nr_words == 1 { first } else { unsafe_ptr };
    store(
        it,
        IterBits {
            bits,
            nr_bits,
            bit: -1,
        },
    );
    0
}

/// kfunc `int *bpf_iter_bits_next(struct bpf_iter_bits *it)`: a pointer to
/// the next set bit's index (inside `it`), or NULL when none is left.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_bits_next(it: u64) -> u64 {
    let mut iter = load(it);
    let base = iter.bits;
    let found = iter.advance(|index| read_word(base, index));
    store(it, iter);
    if found.is_some() {
        it + ITER_BITS_BIT_OFFSET as u64
    } else {
        0
    }
}

/// kfunc `void bpf_iter_bits_destroy(struct bpf_iter_bits *it)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_iter_bits_destroy(it: u64) {
    store(it, IterBits::done());
}
