//! BPF helpers, each exported under its kernel name (`bpf_trace_printk`):
//! the host resolves a program's `call N` through the runtime's symbol
//! table by that name, and JIT code reaches it with one `call rel32` using
//! the SysV ABI (r1..r5 in rdi, rsi, rdx, rcx, r8; r0 in rax).

pub mod nofault;
pub mod trace;

/// A helper's signature: five u64 arguments, one result.
type Helper = extern "C" fn(u64, u64, u64, u64, u64) -> i64;

/// Keeps every helper in the image: nothing in the runtime calls them, and
/// the linker drops what nothing references. `#[used]` keeps this table.
#[used]
static HELPERS: [Helper; 1] = [trace::bpf_trace_printk];
