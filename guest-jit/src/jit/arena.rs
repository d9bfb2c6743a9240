//! Arena pointers: what `addr_space_cast` computes and which accesses
//! reach the arena, in the JIT and the interpreter alike.
//!
//! Note [Arena pointers]
//! In the kernel (Linux 6.9+), a BPF program holds arena pointers as user
//! addresses (clang's address space 1, `__arena`): what
//! `bpf_arena_alloc_pages` returns, what an `ld_imm64` of an `__arena`
//! global loads (`user_vm_start` + offset), what the program stores in arena
//! memory, so that user space can follow them. clang (18+, with
//! `__BPF_FEATURE_ADDR_SPACE_CAST`) emits `rX = addr_space_cast(rY, 0, 1)`
//! (`cast_kern`) before each access through such a pointer and
//! `addr_space_cast(rY, 1, 0)` (`cast_user`) where a generic pointer becomes
//! an arena one; a program built without the feature calls both itself.
//! Arithmetic happens on either side of a cast: on the `__arena` pointer
//! (the full user address) before it, and, when clang shares one cast
//! among several accesses, on its result (`r1 = cast_kern(r0); r3 = r1;
//! r3 += 0xa000`, arena_fault.bpf.c).
//!
//! The verifier types the result of `cast_kern` PTR_TO_ARENA and rewrites
//! the cast into `wX = wY` (the low 32 bits: an offset in a 4 GiB range);
//! it makes 64-bit arithmetic on a PTR_TO_ARENA 32-bit (offsets wrap at
//! 4 GiB) and turns every load, store and atomic through one into
//! `BPF_PROBE_MEM32` (`BPF_PROBE_ATOMIC`). The x86-64 JIT loads r12 =
//! `kern_vm_start` in the prologue and emits such an access as
//! `[src + r12 + off]` with an exception-table entry: a fault loads 0 or
//! drops the store, and the program goes on. `kern_vm_start` is the start
//! of a 4 GiB + 64 KiB kernel range whose byte `x` aliases the user address
//! `(user_vm_start & ~0xffff_ffff) + x`: an arena lies inside one 4 GiB-
//! aligned range (`arena_map_alloc` checks it), so the low 32 bits of a
//! user address name its page. `cast_user` is `(u32)src ? (user_vm_start
//! >> 32) << 32 | (u32)src : 0`, or `wX = wY` with `BPF_F_NO_USER_CONV`.
//!
//! In bpfvisor the guest maps the arena at the host's own address, inside
//! a 4 GiB-aligned window `W = user_vm_start & ~0xffff_ffff`, so the
//! kernel's two addresses are one: `kern_vm_start + (u32)p` is `W |
//! (u32)p`. Without a verifier that tracks PTR_TO_ARENA we cannot tell which
//! loads are arena accesses, so the address arithmetic moves from the
//! access into the cast:
//!
//! * `cast_kern(p) = (arena_upper << 32) | (u32)p`, `arena_upper = W >> 32`
//!   ([`crate::jit::JitConfig::arena_upper`],
//!   [`crate::interp::RunOptions::arena_upper`]): the full address the
//!   kernel's access would reach. Accesses stay plain `[src + off]`. No
//!   register holds the arena base: `W` is known when the program is
//!   compiled (one arena per sandbox), so it is an immediate, and r12 stays
//!   reserved and untouched ([`crate::jit::regs::ARENA_BASE`]).
//! * `cast_user(p) = (u32)p ? (arena_upper << 32) | (u32)p : 0`, the
//!   kernel's: NULL stays NULL. With `BPF_F_NO_USER_CONV` the linker turns
//!   it into `wX = wY`, as the kernel's verifier does
//!   ([`crate::elf::Object::link`]).
//! * Every load, store and atomic already has an exception-table entry, so
//!   "an arena access" is simply an access whose address lies in the fixup
//!   window the runtime gives the trap handler (`shm::extable::decide`): a
//!   fault there loads 0 into the destination, drops a store, and makes a
//!   fetch-op return 0 without writing (Note [Fetch-op loop under fixup]).
//!   For the kernel's behaviour the window should be all of `[W - 32 KiB,
//!   W + 4 GiB + 32 KiB)`, not only the arena's pages: the kernel's range
//!   covers every 32-bit offset plus a signed 16-bit `off`. Any other fault
//!   stays a trap.
//! * A NULL arena pointer dereferenced: `cast_kern(0) = W`, as the kernel
//!   reaches `kern_vm_start + 0`: offset 0 of the window, which is the
//!   arena's page 0 when `user_vm_start` is 4 GiB-aligned (then it reads
//!   that page, or 0 if it is not allocated). libbpf 1.7 keeps page 0 free
//!   of globals for programs that reserve it as a NULL guard.
//! * A value with only an offset in its low 32 bits works as an arena
//!   pointer both ways, as in the kernel: the casts put `W` above it.
//! * Without an arena (`arena_upper` 0) both casts keep the low 32 bits;
//!   the kernel refuses `addr_space_cast` then.
//!
//! Where bpfvisor differs from the kernel, and why:
//!
//! * Arithmetic on a `cast_kern` result is 64-bit, so it does not wrap at
//!   4 GiB: an offset that would wrap around to the arena's start instead
//!   leaves the window, past its guard, and traps. Wrapping needs to know
//!   which registers hold arena pointers. Only a step that crosses a 4 GiB
//!   boundary tells: offsets within one arena never wrap.
//! * 32-bit arithmetic on a `cast_kern` result (`w1 += 8`, which the kernel
//!   accepts since a PTR_TO_ARENA is 32 bits) drops `W`: the access then
//!   reaches low guest memory and traps or reads the guest's own data, not
//!   the arena. clang never emits it for pointers.
//! * An access through a user address that was never cast works here (it
//!   is the same address); the kernel refuses to dereference a scalar.
//! * The kernel (6.17+) reports each arena fault to the program's BPF
//!   stream; bpfvisor fixes it up silently.
//! * The interpreter has no arena memory: it implements the casts, and an
//!   access outside its regions stops the run, fixed up by nothing.
