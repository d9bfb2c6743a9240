//! BPF side of bpfvisor: from BPF instructions to x86-64 code for the guest.

/// Assembler for the bpf_conformance text syntax.
pub mod asm;
/// BTF and `.BTF.ext`: types, strings and source line info.
pub mod btf;
/// The bpf_conformance suite's `.data` files, parsed and run.
pub mod conformance;
/// Disassembler to the bpf_conformance text syntax.
pub mod disasm;
/// Loading clang-built BPF ELF objects and linking their programs.
pub mod elf;
/// The kernel's helper function ids and names.
pub mod helpers;
/// BPF instructions: raw slots, opcodes and the decoded view.
pub mod insn;
/// Reference interpreter with RFC 9669 semantics.
pub mod interp;
/// BPF → x86-64 JIT for the guest, and x86 disassembly of its output.
pub mod jit;
/// The structural verifier: what the JIT and interpreter rely on.
pub mod verify;
