//! Which CPU, which node, and per-CPU random numbers:
//! `bpf_get_smp_processor_id` (8), `bpf_get_numa_node_id` (42),
//! `bpf_get_prandom_u32` (7).

use crate::percpu::gs_read;
use shm::percpu::{CPU_ID_OFFSET, PRNG_STATE_OFFSET};

/// `u32 bpf_get_smp_processor_id(void)`: this vCPU's index. (The JIT
/// may inline it as the kernel does; this is the called form.)
#[unsafe(no_mangle)]
pub extern "C" fn bpf_get_smp_processor_id() -> u64 {
    // The id is a u32 in the kernel; the block holds it in a u64.
    u64::from(gs_read(CPU_ID_OFFSET) as u32)
}

/// `long bpf_get_numa_node_id(void)`: a sandbox is one NUMA node, 0.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_get_numa_node_id() -> i64 {
    0
}

/// `u32 bpf_get_prandom_u32(void)`: the next number of this vCPU's
/// generator (`shm::random`: xorshift64*, where the kernel uses a
/// Tausworthe generator; neither is cryptographic).
#[unsafe(no_mangle)]
pub extern "C" fn bpf_get_prandom_u32() -> u64 {
    let mut state = gs_read(PRNG_STATE_OFFSET);
    let value = shm::random::next_u32(&mut state);
    gs_write(PRNG_STATE_OFFSET, state);
    u64::from(value)
}

/// Writes the u64 at `gs:[offset]`.
fn gs_write(offset: usize, value: u64) {
    // SAFETY: GS points at this vCPU's per-CPU block, mapped read-write,
    // which only this vCPU writes while it runs; callers pass offsets of
    // `shm::percpu::PerCpu` fields.
    unsafe {
        core::arch::asm!("mov gs:[{}], {}", in(reg) offset, in(reg) value,
            options(nostack, preserves_flags));
    }
}
