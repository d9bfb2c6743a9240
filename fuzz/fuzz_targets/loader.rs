//! Any byte string through the loader: parse, check every map, set every
//! variable, link every program, verify it, disassemble it. Errors are
//! fine; panics, aborts and hangs are bugs.

#![no_main]

use guest_jit::disasm::disassemble;
use guest_jit::elf::{Object, Placed};
use guest_jit::verify::{VerifyContext, verify};
use libfuzzer_sys::fuzz_target;

/// Where data sections and maps go: every one placed, at distinct
/// addresses.
fn place(what: Placed) -> Option<u64> {
    Some(match what {
        Placed::Data(i) => 0x1000_0000_u64.wrapping_mul(i as u64 + 1),
        Placed::Map(i) => 0x8000_0000_u64.wrapping_add(0x1000_u64.wrapping_mul(i as u64)),
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut object) = Object::parse(bytes) else {
        return;
    };
    for map in object.maps() {
        let _ = map.check();
        let _ = object.find_map(&map.name);
    }
    for data in object.data_sections() {
        let _ = data.map_spec().check();
    }
    let variables = object.variables().to_vec();
    for v in &variables {
        // Capped: a hostile size must not make the harness allocate.
        let size = usize::try_from(v.size).unwrap_or(0).min(1 << 16);
        let _ = object.set_variable(&v.name, &vec![0xa5; size]);
        let _ = object.set_variable(&v.name, &vec![0; size + 1]);
    }
    let _ = object.find_program(None);
    for spec in object.programs() {
        let _ = object.find_program(Some(&spec.name));
        let Ok(linked) = object.link(spec, &place) else {
            continue;
        };
        let ctx = VerifyContext {
            helper_known: &|id| id < 256,
            kfunc_known: &|_| true,
            kfuncs: &linked.kfuncs,
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
