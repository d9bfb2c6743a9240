//! Which CPU, which node, per-CPU random numbers, and other CPUs' copies
//! of `.percpu` data: `bpf_get_smp_processor_id` (8),
//! `bpf_get_numa_node_id` (42), `bpf_get_prandom_u32` (7),
//! `bpf_per_cpu_ptr` (153), `bpf_this_cpu_ptr` (154).

use crate::percpu::gs_read;
use shm::layout::area;
use shm::percpu::{
    CPU_ID_OFFSET, CTX_BUF_OFFSET, CTX_SIZE_OFFSET, NR_CPUS_OFFSET, PRNG_STATE_OFFSET,
    THIS_CPU_OFF_OFFSET, per_cpu_ptr,
};

/// `void *bpf_per_cpu_ptr(const void *ptr, u32 cpu)`: `ptr` points into
/// a vCPU's copy of the `.percpu` data (an `ld_imm64` of a `.percpu`
/// variable gives the running vCPU's copy); returns the same byte of
/// `cpu`'s copy, NULL for a pointer into no copy or a CPU that does not
/// exist. Pure arithmetic on this vCPU's block: nothing is read through
/// `ptr`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_per_cpu_ptr(ptr: u64, cpu: u64) -> u64 {
    let ctx_size = gs_read(CTX_SIZE_OFFSET);
    let mine = gs_read(CTX_BUF_OFFSET) + area::percpu_data_from_ctx(ctx_size);
    let data0 = mine.wrapping_sub(gs_read(THIS_CPU_OFF_OFFSET));
    let nr_cpus = gs_read(NR_CPUS_OFFSET);
    per_cpu_ptr(
        ptr,
        data0,
        area::size(ctx_size),
        nr_cpus,
        u64::from(cpu as u32),
    )
    .unwrap_or(0)
}

/// `void *bpf_this_cpu_ptr(const void *ptr)`: [`bpf_per_cpu_ptr`] for the
/// running vCPU.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_this_cpu_ptr(ptr: u64) -> u64 {
    bpf_per_cpu_ptr(ptr, gs_read(CPU_ID_OFFSET))
}

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
