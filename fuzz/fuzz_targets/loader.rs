//! Any byte string through the loader: parse, link every program, verify
//! it, disassemble it. Errors are fine; panics, aborts and hangs are bugs.

#![no_main]

use guest_jit::disasm::disassemble;
use guest_jit::elf::Object;
use guest_jit::verify::{VerifyContext, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(object) = Object::parse(bytes) else {
        return;
    };
    let _ = object.find_program(None);
    for spec in object.programs() {
        let _ = object.find_program(Some(&spec.name));
        let Ok(linked) = object.link(spec, &|i| 0x1000_0000_u64.wrapping_mul(i as u64 + 1)) else {
            continue;
        };
        let ctx = VerifyContext {
            helper_known: &|id| id < 256,
            lines: Some(&linked.lines),
            functions: &linked.functions,
        };
        if let Err(err) = verify(&linked.program, &ctx) {
            // Rendering walks the line table and disassembles.
            let _ = err.to_string();
        }
        let _ = disassemble(&linked.program);
    }
});
