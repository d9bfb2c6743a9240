//! Property tests: instructions survive encode → decode and
//! disassemble → assemble unchanged, whether built as typed [`Op`]s or
//! found among random bytes.

mod common;

use common::{encode, op, raw_insn};
use guest_jit::asm::assemble;
use guest_jit::disasm::{disassemble, disassemble_labeled};
use guest_jit::insn::{Imm64, Insn, Op, Program, decode};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ops_encode_and_decode_back(op in op()) {
        let insns = encode(&[op]);
        prop_assert_eq!(insns.len(), op.slots());
        prop_assert_eq!(decode(&insns, 0), Ok(op));
    }

    #[test]
    fn ops_disassemble_and_assemble_back(op in op()) {
        let text = op.to_string();
        prop_assert_eq!(assemble(&text), Ok(encode(&[op])), "text: {}", text);
    }

    #[test]
    fn decodable_bytes_round_trip(first in raw_insn(), second in raw_insn(), plain in any::<bool>()) {
        // The second slot of an ld_imm64 is usually clean; make it so
        // half of the time so that ld_imm64 decodes often enough.
        let second = if plain { Insn::new(0, 0, 0, 0, second.imm) } else { second };
        let insns = [first, second];
        if let Ok(op) = decode(&insns, 0) {
            let slots = &insns[..op.slots()];
            prop_assert_eq!(encode(&[op]), slots);
            let text = op.to_string();
            prop_assert_eq!(assemble(&text), Ok(slots.to_vec()), "text: {}", text);
        }
    }

    #[test]
    fn programs_round_trip_with_and_without_labels(
        ops in proptest::collection::vec(op(), 1..40),
        // Offsets small enough to often land inside the program.
        offs in proptest::collection::vec(-8i16..8, 40),
    ) {
        let ops: Vec<Op> = ops
            .into_iter()
            .zip(offs)
            .map(|(op, o)| match op {
                Op::Ja { .. } => Op::Ja { off: o },
                Op::Jmp { width, cond, dst, src, .. } => Op::Jmp { width, cond, dst, src, off: o },
                Op::CallLocal { .. } => Op::CallLocal { off: o.into() },
                Op::Gotol { .. } => Op::Gotol { off: o.into() },
                Op::LdImm64 { dst, value: Imm64::Func { .. } } => {
                    Op::LdImm64 { dst, value: Imm64::Func { off: o.into() } }
                }
                op => op,
            })
            .collect();
        let insns = encode(&ops);
        let program = Program::decode(&insns).expect("valid ops decode");
        let plain = disassemble(&program);
        prop_assert_eq!(assemble(&plain), Ok(insns.clone()), "text:\n{}", plain);
        let labeled = disassemble_labeled(&program);
        prop_assert_eq!(assemble(&labeled), Ok(insns), "text:\n{}", labeled);
    }
}

#[test]
fn random_slots_decode_often_enough_to_mean_something() {
    // The byte round trip only checks the slots that decode: make sure the
    // strategy produces enough of them.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = raw_insn();
    let samples = 4000;
    let mut decoded = 0;
    for _ in 0..samples {
        let insn = strategy
            .new_tree(&mut runner)
            .expect("strategy never rejects")
            .current();
        decoded += usize::from(decode(&[insn, Insn::default()], 0).is_ok());
    }
    assert!(decoded * 10 > samples, "only {decoded} of {samples} decode");
}
