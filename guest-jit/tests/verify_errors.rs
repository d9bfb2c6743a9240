//! Every verifier check, on small assembled programs: what it accepts,
//! what it refuses, and the message a user sees.

#![allow(clippy::unwrap_used, reason = "tests")]

use guest_jit::asm::assemble;
use guest_jit::btf::{LineTable, SourceLine};
use guest_jit::elf::FunctionSymbol;
use guest_jit::insn::Insn;
use guest_jit::interp::MAX_CALL_FRAMES;
use guest_jit::verify::{
    FunctionInfo, VerifyContext, VerifyError, VerifyInfo, decode, decode_and_verify,
};

/// Helpers these tests pretend bpfvisor has: map_lookup_elem and
/// trace_printk.
fn known(id: u32) -> bool {
    matches!(id, 1 | 6)
}

fn verify_asm(source: &str) -> Result<VerifyInfo, VerifyError> {
    let insns = assemble(source).unwrap();
    decode_and_verify(&insns, &VerifyContext::new(&known)).map(|(_, info)| info)
}

fn message(source: &str) -> String {
    verify_asm(source).unwrap_err().to_string()
}

fn named(names: &[(&str, usize)]) -> Vec<FunctionSymbol> {
    names
        .iter()
        .map(|&(name, start)| FunctionSymbol {
            name: name.to_owned(),
            start,
        })
        .collect()
}

#[test]
fn accepts_a_program_with_calls_loops_and_stack() {
    let info = verify_asm(
        "mov %r1, 3
         stxdw [%r10-8], %r1
         call local f
         lddw %r2, func(f)
         ldxb %r3, [%r10-512]
         exit
         f:
         mov %r0, 0
         loop:
         add %r0, 1
         jlt %r0, 10, loop
         stw [%r10-16], 1
         ja done
         done:
         exit",
    )
    .unwrap();
    assert_eq!(
        info,
        VerifyInfo {
            functions: vec![
                FunctionInfo {
                    name: None,
                    start: 0,
                    end: 7,
                    stack_depth: 512,
                    frames: 2,
                },
                FunctionInfo {
                    name: None,
                    start: 7,
                    end: 13,
                    stack_depth: 16,
                    frames: 1,
                },
            ],
            max_frames: 2,
        }
    );
}

#[test]
fn refuses_jumps_outside_the_program() {
    assert_eq!(
        message("mov %r0, 0\nja +5\nexit"),
        "error: instruction 1 jumps to slot 7, outside the program (3 instructions)\n  1: ja +5"
    );
    assert_eq!(
        message("ja -2\nexit"),
        "error: instruction 0 jumps to slot -1, outside the program (2 instructions)\n  0: ja -2"
    );
    assert_eq!(
        message("jeq %r1, 0, +32767\nexit"),
        "error: instruction 0 jumps to slot 32768, outside the program (2 instructions)\n  \
         0: jeq %r1, 0, +32767"
    );
    assert!(matches!(
        verify_asm("ja32 -2147483648\nexit"),
        Err(VerifyError::JumpOutside { .. })
    ));
}

#[test]
fn refuses_jumps_into_the_middle_of_ld_imm64() {
    assert_eq!(
        message("ja +1\nlddw %r0, 5\nexit"),
        "error: instruction 0 jumps to slot 2, the second half of the ld_imm64 at slot 1\n  0: ja +1"
    );
    assert_eq!(
        message("call local +1\nlddw %r0, 5\nexit"),
        "error: instruction 0 calls slot 2, the second half of the ld_imm64 at slot 1\n  \
         0: call local +1"
    );
}

#[test]
fn refuses_calls_outside_the_program() {
    assert_eq!(
        message("call local -5\nexit"),
        "error: instruction 0 calls slot -4, outside the program (2 instructions)\n  \
         0: call local -5"
    );
    assert!(matches!(
        verify_asm("lddw %r1, func(+9)\nexit"),
        Err(VerifyError::CallOutside { target: 10, .. })
    ));
}

#[test]
fn refuses_jumps_between_functions() {
    let err = message("call local f\nja +1\nexit\nf:\nexit");
    assert_eq!(
        err,
        "error: instruction 1 jumps to slot 3, out of the function at slot 0 into the function at slot 3; \
         jumps stay inside their function\n  1: ja +1"
    );
    // Boundaries the loader names count even without a call.
    let insns = assemble("jeq %r1, 0, +1\nexit\nexit").unwrap();
    let functions = named(&[("main", 0), ("other", 2)]);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: instruction 0 jumps to slot 2, out of function `main` into function `other`; \
         jumps stay inside their function\n  0: jeq %r1, 0, +1"
    );
}

#[test]
fn refuses_falling_off_the_end() {
    assert_eq!(
        message("mov %r0, 0"),
        "error: the function at slot 0 can run past its end: its last instruction, 0, is neither exit nor ja\n  \
         0: mov %r0, 0"
    );
    // A conditional jump can fall through too.
    assert!(matches!(
        verify_asm("mov %r0, 0\njeq %r0, 0, -2"),
        Err(VerifyError::FallThrough { .. })
    ));
    // A subprogram that runs into the next one.
    let insns = assemble("call local f\nexit\nf:\nmov %r0, 1\ng:\nexit").unwrap();
    let functions = named(&[("main", 0), ("f", 2), ("g", 3)]);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: function `f` can run past its end: its last instruction, 2, is neither exit nor ja\n  \
         2: mov %r0, 1"
    );
    // Ending in a backward ja is fine.
    verify_asm("mov %r0, 0\nexit\nja -2").unwrap();
}

#[test]
fn refuses_helpers_bpfvisor_lacks() {
    assert_eq!(
        message("call 12\nexit"),
        "error: helper 12 (bpf_tail_call) is not available in bpfvisor\n  0: call 12"
    );
    assert_eq!(
        message("call 5000\nexit"),
        "error: helper 5000 is not available in bpfvisor\n  0: call 5000"
    );
    verify_asm("call 1\ncall 6\nexit").unwrap();
}

#[test]
fn refuses_kfuncs_bpfvisor_lacks_by_name() {
    // Without names (a bare program), the index; kfunc 0 is known.
    let kfunc_known = |i| i == 0;
    let names = ["bpf_iter_num_new".to_owned(), "bpf_obj_new".to_owned()];
    let ctx = VerifyContext {
        kfunc_known: &kfunc_known,
        ..VerifyContext::new(&known)
    };
    let insns = assemble("call kfunc 0\ncall kfunc 77\nexit").unwrap();
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: kfunc 77 is not available in bpfvisor\n  1: call kfunc 77"
    );
    let ctx = VerifyContext {
        kfuncs: &names,
        ..ctx
    };
    let insns = assemble("call kfunc 0\ncall kfunc 1\nexit").unwrap();
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: kfunc bpf_obj_new is not available in bpfvisor\n  1: call kfunc 1"
    );
    // A module's BTF is never ours, whatever the index.
    let insns = assemble("call kfunc 0, 2\nexit").unwrap();
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: kfunc 0 of module 2 is not available in bpfvisor\n  0: call kfunc 0, 2"
    );
    let insns = assemble("call kfunc 0\ncall kfunc 0\nexit").unwrap();
    decode_and_verify(&insns, &ctx).unwrap();
    // The default context knows none.
    assert_eq!(
        message("call kfunc 0\nexit"),
        "error: kfunc 0 is not available in bpfvisor\n  0: call kfunc 0"
    );
}

#[test]
fn refuses_unresolved_loads_but_not_callx() {
    // callx calls the helper whose id is in the register; which one is
    // known only at run time.
    verify_asm("mov %r2, 1\ncall %r2\nexit").unwrap();
    assert_eq!(
        message("lddw %r1, map_fd(3)\nexit"),
        "error: instruction 0 loads a map or kernel object that the loader has not resolved\n  \
         0: lddw %r1, map_fd(3)"
    );
    for load in [
        "map_value(3, 8)",
        "btf_id(5, 0)",
        "map_idx(0)",
        "map_idx_value(1, 4)",
    ] {
        let err = verify_asm(&format!("lddw %r1, {load}\nexit")).unwrap_err();
        assert!(
            matches!(err, VerifyError::ResolveLdImm64 { .. }),
            "{load}: {err}"
        );
    }
}

#[test]
fn refuses_recursion() {
    assert_eq!(
        message("call local f\nexit\nf:\ncall local f\nexit"),
        "error: recursive call: slot 2 -> slot 2; recursion is not allowed\n  2: call local -1"
    );
    let insns = assemble(
        "call local a\nexit\n\
         a:\ncall local b\nexit\n\
         b:\nmov %r0, 0\ncall local a\nexit",
    )
    .unwrap();
    let functions = named(&[("main", 0), ("a", 2), ("b", 4)]);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: recursive call: a -> b -> a; recursion is not allowed\n  5: call local -4"
    );
    // A callback that names its own caller is a cycle too.
    assert!(matches!(
        verify_asm("call local f\nexit\nf:\nlddw %r2, func(f)\nexit"),
        Err(VerifyError::CallRecursively { .. })
    ));
}

/// `main` calling `f1`, which calls `f2`, ... down to `f{depth}`.
fn chain(depth: usize) -> (Vec<Insn>, Vec<FunctionSymbol>) {
    let mut source = String::new();
    let mut functions = vec![("main".to_owned(), 0)];
    for i in 1..=depth {
        source.push_str(&format!("call local f{i}\nexit\nf{i}:\n"));
        functions.push((format!("f{i}"), 2 * i));
    }
    source.push_str("mov %r0, 7\nexit\n");
    let functions = functions
        .into_iter()
        .map(|(name, start)| FunctionSymbol { name, start })
        .collect();
    (assemble(&source).unwrap(), functions)
}

#[test]
fn limits_call_depth_to_the_kernels_frames() {
    let (insns, functions) = chain(MAX_CALL_FRAMES - 1);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    let (_, info) = decode_and_verify(&insns, &ctx).unwrap();
    assert_eq!(info.max_frames, MAX_CALL_FRAMES);

    let (insns, functions) = chain(MAX_CALL_FRAMES);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    assert_eq!(
        decode_and_verify(&insns, &ctx).unwrap_err().to_string(),
        "error: call chain main -> f1 -> f2 -> f3 -> f4 -> f5 -> f6 -> f7 -> f8 needs 9 frames; \
         at most 8 are allowed\n  14: call local +1"
    );
    // A long chain is named in part, and does not exhaust the host stack.
    let (insns, functions) = chain(20_000);
    let ctx = VerifyContext {
        functions: &functions,
        ..VerifyContext::new(&known)
    };
    let err = decode_and_verify(&insns, &ctx).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "error: call chain main -> f1 -> f2 -> f3 -> f4 -> f5 -> f6 -> f7 -> f8 -> f9 -> ... \
             needs 20001 frames"
        ),
        "{err}"
    );
}

#[test]
fn limits_direct_stack_accesses_to_the_frame() {
    assert_eq!(
        message("stxdw [%r10-520], %r1\nexit"),
        "error: instruction 0 accesses 8 bytes at r10-520, outside the 512-byte stack frame \
         [r10-512, r10)\n  0: stxdw [%r10-520], %r1"
    );
    assert_eq!(
        message("ldxw %r0, [%r10-2]\nexit"),
        "error: instruction 0 accesses 4 bytes at r10-2, outside the 512-byte stack frame \
         [r10-512, r10)\n  0: ldxw %r0, [%r10-2]"
    );
    assert!(matches!(
        verify_asm("stb [%r10+0], 1\nexit"),
        Err(VerifyError::AccessStack {
            off: 0,
            size: 1,
            ..
        })
    ));
    assert!(matches!(
        verify_asm("lock add [%r10-4], %r1\nexit"),
        Err(VerifyError::AccessStack { size: 8, .. })
    ));
    // Through other registers nothing is known: the VM is the sandbox.
    verify_asm("mov %r1, %r10\nstxdw [%r1-1000], %r1\nexit").unwrap();
    let info = verify_asm("stb [%r10-512], 1\nstxdw [%r10-8], %r1\nexit").unwrap();
    assert_eq!(info.functions[0].stack_depth, 512);
}

#[test]
fn decode_errors_read_like_verifier_errors() {
    let insns = [Insn::from_bytes([0x8c, 0, 0, 0, 0, 0, 0, 0])];
    let err = decode(&insns, &VerifyContext::new(&known)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: invalid opcode 0x8c at instruction 0\n  0: 8c 00 00 00 00 00 00 00 (raw bytes)"
    );
    let insns = assemble("mov %r0, 0\nexit").unwrap();
    let mut bad = insns.clone();
    bad[1] = Insn::new(0x07, 10, 0, 0, 1); // add r10, 1
    let err = decode(&bad, &VerifyContext::new(&known)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: instruction 1 writes the read-only frame pointer r10\n  1: 07 0a 00 00 01 00 00 00 (raw bytes)"
    );
    let err = decode(&[Insn::new(0x18, 1, 0, 0, 0)], &VerifyContext::new(&known)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: instruction 0 is an ld_imm64 without its second slot\n  0: 18 01 00 00 00 00 00 00 (raw bytes)"
    );
    assert_eq!(
        decode_and_verify(&[], &VerifyContext::new(&known))
            .unwrap_err()
            .to_string(),
        "error: the program has no instructions"
    );
}

#[test]
fn errors_show_the_source_line() {
    let insns = assemble("mov %r0, 0\nmov %r1, 0\nja +27\nexit").unwrap();
    let mut lines = LineTable::new();
    lines.insert(
        0,
        Some(SourceLine {
            file: "hello.bpf.c".to_owned(),
            line: 8,
            column: 2,
            text: "\tint x = 0;".to_owned(),
        }),
    );
    lines.insert(
        2,
        Some(SourceLine {
            file: "hello.bpf.c".to_owned(),
            line: 10,
            column: 5,
            text: "\treturn *p;".to_owned(),
        }),
    );
    let ctx = VerifyContext {
        lines: Some(&lines),
        ..VerifyContext::new(&known)
    };
    let err = decode_and_verify(&insns, &ctx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: instruction 2 jumps to slot 30, outside the program (4 instructions)\n  \
         2: ja +27\n  \
         --> hello.bpf.c:10:5\n   \
         |  return *p;"
    );
    assert_eq!(err.location().map(|at| at.slot), Some(2));
    // Decode errors show the line too.
    let mut bad = insns.clone();
    bad[1].off = 3;
    let err = decode(&bad, &ctx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: nonzero unused field off (3) in instruction 1 (opcode 0xb7)\n  \
         1: b7 01 03 00 00 00 00 00 (raw bytes)\n  \
         --> hello.bpf.c:8:2\n   \
         |  int x = 0;"
    );
}
