//! `bpf_tail_call` (helper 12): what the JIT emits inline and the
//! interpreter executes itself, and the memory it reads.
//!
//! Note [Tail calls]
//! `bpf_tail_call(ctx, prog_array, index)` replaces the running function
//! with the entry of the program in slot `index` of a PROG_ARRAY map, as
//! the kernel's x86-64 JIT does (`emit_bpf_tail_call_indirect`); r1 = ctx
//! stays in rdi, r2 is the guest address of the map's header, r3 the index:
//!
//! ```text
//!   if (u32)r3 >= header.max_entries            goto out
//!   if gs:[tail_call_cnt] >= MAX_TAIL_CALLS      goto out
//!   target = ((u64 *)header.data)[(u32)r3]
//!   if target == 0                               goto out     (empty slot)
//!   gs:[tail_call_cnt] += 1
//!   pop r15, r14, r13, rbx; leave                 (the frame, as `exit` does)
//!   jmp target                                    (its prologue runs anew)
//! out:                                            (execution continues)
//! ```
//!
//! * The count grows only when the call is taken, as in the kernel's
//!   current x86-64 JIT ("Inc tail_call_cnt if the slot is populated";
//!   older JITs and the kernel's interpreter counted a call to an empty
//!   slot too): 33 tail calls ([`shm::percpu::MAX_TAIL_CALLS`]) succeed
//!   in one run, the 34th falls through. It lives in the per-CPU block, not in the frame: the runtime
//!   zeroes it before each run, and a tail call from a subprogram counts
//!   against the same budget, as the kernel's `tail_call_cnt_ptr` makes
//!   it.
//! * The target's entry prologue builds a new frame where the caller's
//!   was, and zeroes R0 and R3–R9 as every entry does (r1 = ctx, r2 = the
//!   map header survive). From a subprogram, the tail-called program
//!   replaces the subprogram: its `exit` returns to the subprogram's caller
//!   with the caller's R6–R9, which the torn-down frame restored and the
//!   new prologue saves again. A chain of tail calls between entry
//!   functions does not grow the stack.
//! * Falling through leaves every BPF register as it was, r0 included. The
//!   kernel's verifier marks r0 unreadable after `bpf_tail_call` (its
//!   proto returns void), so no kernel-accepted program can tell, and the
//!   kernel's JIT leaves rax as whatever its sequence put there (unchanged
//!   after the bounds check, the count pointer after the others); the
//!   kernel's interpreter leaves R0 alone, and so do both engines here.
//!   Unlike a helper call, R1–R5 are not clobbered either.
//! * The header and the slots are guest memory the program could have
//!   written (there is no verifier to stop it): a wrong `max_entries` or
//!   `data`, or a slot holding any address, send the program somewhere the
//!   guest's page tables still confine — a fault is a trap at the
//!   `bpf_tail_call`, a jump into the middle of code runs guest code at
//!   CPL 3. The VM is the boundary, as for any wild pointer.
//! * A chain of tail calls from subprograms nests frames (each target may
//!   call further): the JIT stops only at the guard page below the 32 KiB
//!   stack (a trap), the interpreter at [`crate::interp::MAX_CALL_FRAMES`]
//!   frames in all. The kernel bounds it with a 256-byte stack limit per
//!   frame instead.

/// `BPF_FUNC_tail_call`.
pub const HELPER_ID: u32 = 12;

/// Byte offset of `max_entries` (a `u32`) in a map header
/// ([`shm::maps::MapHeader`]), as a displacement.
pub const MAX_ENTRIES_OFFSET: i32 = shm::maps::def::MAX_ENTRIES_OFFSET as i32;
/// Byte offset of `data` (a `u64`: guest address of the map's storage,
/// where slot 0 is) in a map header, as a displacement.
pub const DATA_OFFSET: i32 = shm::maps::def::DATA_OFFSET as i32;
const _: () = assert!(MAX_ENTRIES_OFFSET as usize == shm::maps::def::MAX_ENTRIES_OFFSET);
const _: () = assert!(DATA_OFFSET as usize == shm::maps::def::DATA_OFFSET);
/// Bytes per PROG_ARRAY slot: the guest address of a program's entry, 0
/// when empty (`shm::maps::array`: slot i at `data + i * 8`).
pub const SLOT_SIZE: u64 = 8;
