//! BPF helpers and kfuncs, each exported under its kernel name
//! (`bpf_trace_printk`, `bpf_iter_num_new`): the host resolves a program's
//! `call N` through the runtime's symbol table by the helper's name, and a
//! kfunc call by the kfunc's; JIT code reaches either with one `call rel32`
//! using the SysV ABI (r1..r5 in rdi, rsi, rdx, rcx, r8; r0 in rax).
//!
//! No helper leaves the guest: each runs in the calling vCPU, on its stack.

pub mod arena;
pub mod cpu;
pub mod cpus;
pub mod dynptr;
pub mod loops;
pub mod maps;
pub mod nofault;
pub mod probe;
pub mod ringbuf;
pub mod strings;
pub mod sync;
pub mod time;
pub mod trace;

/// The address of a helper or kfunc, whatever its signature.
#[repr(transparent)]
struct Kept(*const ());

// SAFETY: the pointers are code addresses, never dereferenced as data;
// sharing them between threads shares nothing mutable.
unsafe impl Sync for Kept {}

/// Keeps every helper and kfunc in the image: nothing in the runtime calls
/// them, and the linker drops what nothing references. `#[used]` keeps this
/// table, and so everything it names. A helper exists for the host exactly
/// when its symbol does.
#[used]
static HELPERS: [Kept; 62] = [
    Kept(trace::bpf_trace_printk as *const ()),
    Kept(maps::bpf_map_lookup_elem as *const ()),
    Kept(maps::bpf_map_update_elem as *const ()),
    Kept(maps::bpf_map_delete_elem as *const ()),
    Kept(maps::bpf_map_push_elem as *const ()),
    Kept(maps::bpf_map_pop_elem as *const ()),
    Kept(maps::bpf_map_peek_elem as *const ()),
    Kept(maps::bpf_map_lookup_percpu_elem as *const ()),
    Kept(maps::bpf_for_each_map_elem as *const ()),
    Kept(time::bpf_ktime_get_ns as *const ()),
    Kept(time::bpf_ktime_get_boot_ns as *const ()),
    Kept(time::bpf_ktime_get_coarse_ns as *const ()),
    Kept(cpu::bpf_get_prandom_u32 as *const ()),
    Kept(cpu::bpf_get_smp_processor_id as *const ()),
    Kept(cpu::bpf_get_numa_node_id as *const ()),
    Kept(cpu::bpf_per_cpu_ptr as *const ()),
    Kept(cpu::bpf_this_cpu_ptr as *const ()),
    Kept(loops::bpf_loop as *const ()),
    Kept(loops::bpf_iter_num_new as *const ()),
    Kept(loops::bpf_iter_num_next as *const ()),
    Kept(loops::bpf_iter_num_destroy as *const ()),
    Kept(cpus::bpfvisor_nr_cpus as *const ()),
    Kept(cpus::bpf_iter_bits_new as *const ()),
    Kept(cpus::bpf_iter_bits_next as *const ()),
    Kept(cpus::bpf_iter_bits_destroy as *const ()),
    Kept(strings::bpf_snprintf as *const ()),
    Kept(strings::bpf_strncmp as *const ()),
    Kept(probe::bpf_probe_read_kernel as *const ()),
    Kept(probe::bpf_probe_read_kernel_str as *const ()),
    Kept(probe::bpf_probe_read_user as *const ()),
    Kept(probe::bpf_probe_read_user_str as *const ()),
    Kept(probe::bpf_probe_read as *const ()),
    Kept(probe::bpf_probe_read_str as *const ()),
    Kept(sync::bpf_spin_lock as *const ()),
    Kept(sync::bpf_spin_unlock as *const ()),
    Kept(sync::bpf_rcu_read_lock as *const ()),
    Kept(sync::bpf_rcu_read_unlock as *const ()),
    Kept(sync::bpf_preempt_disable as *const ()),
    Kept(sync::bpf_preempt_enable as *const ()),
    Kept(arena::bpf_arena_alloc_pages as *const ()),
    Kept(arena::bpf_arena_free_pages as *const ()),
    Kept(arena::bpf_arena_reserve_pages as *const ()),
    Kept(ringbuf::bpf_ringbuf_reserve as *const ()),
    Kept(ringbuf::bpf_ringbuf_submit as *const ()),
    Kept(ringbuf::bpf_ringbuf_discard as *const ()),
    Kept(ringbuf::bpf_ringbuf_output as *const ()),
    Kept(ringbuf::bpf_ringbuf_query as *const ()),
    Kept(ringbuf::bpf_ringbuf_reserve_dynptr as *const ()),
    Kept(ringbuf::bpf_ringbuf_submit_dynptr as *const ()),
    Kept(ringbuf::bpf_ringbuf_discard_dynptr as *const ()),
    Kept(ringbuf::bpf_user_ringbuf_drain as *const ()),
    Kept(dynptr::bpf_dynptr_from_mem as *const ()),
    Kept(dynptr::bpf_dynptr_read as *const ()),
    Kept(dynptr::bpf_dynptr_write as *const ()),
    Kept(dynptr::bpf_dynptr_data as *const ()),
    Kept(dynptr::bpf_dynptr_adjust as *const ()),
    Kept(dynptr::bpf_dynptr_is_null as *const ()),
    Kept(dynptr::bpf_dynptr_is_rdonly as *const ()),
    Kept(dynptr::bpf_dynptr_size as *const ()),
    Kept(dynptr::bpf_dynptr_clone as *const ()),
    Kept(dynptr::bpf_dynptr_slice as *const ()),
    Kept(dynptr::bpf_dynptr_slice_rdwr as *const ()),
];
