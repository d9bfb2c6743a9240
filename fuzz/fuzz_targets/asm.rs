//! The assembler and disassembler: text (first byte even) or raw
//! instructions (first byte odd) in; whatever assembles and decodes must
//! disassemble, with and without labels, to text that assembles back to the
//! same instructions. Errors are fine; panics and mismatches are bugs.

#![no_main]

use guest_jit::asm::assemble;
use guest_jit::disasm::{disassemble, disassemble_labeled};
use guest_jit::insn::{Insn, Program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let insns = if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        match assemble(text) {
            Ok(insns) => insns,
            Err(err) => {
                let _ = err.to_string();
                return;
            }
        }
    } else {
        let whole = rest.len() - rest.len() % 8;
        match Insn::slice_from_bytes(&rest[..whole]) {
            Ok(insns) => insns,
            Err(_) => return,
        }
    };
    let Ok(program) = Program::decode(&insns) else {
        return;
    };
    for text in [disassemble(&program), disassemble_labeled(&program)] {
        match assemble(&text) {
            Ok(again) => assert_eq!(again, insns, "does not reassemble:\n{text}"),
            Err(err) => panic!("disassembly does not assemble: {err}\n{text}"),
        }
    }
});
