//! The interpreter on arbitrary programs: it never panics, never touches
//! memory it was not given, always stops within its step limit, and is
//! deterministic.

mod common;

use common::{encode, op, raw_insn};
use guest_jit::asm::assemble;
use guest_jit::conformance::ConformanceHelpers;
use guest_jit::insn::{Insn, Op, Program};
use guest_jit::interp::mem::CTX_START;
use guest_jit::interp::{ExecError, Exit, Memory, RegionKind, RunOptions, run};
use proptest::collection::vec;
use proptest::prelude::*;

/// Points r3–r9 into the context and the stack, so that random loads and
/// stores often land in mapped memory.
const PROLOGUE: &str = "mov %r3, %r10\nadd %r3, -64\nmov %r4, %r1\nmov %r5, %r10\n\
                        add %r5, -8\nmov %r6, %r1\nadd %r6, 4\nmov %r7, %r10\n\
                        add %r7, -512\nmov %r8, %r2\nmov %r9, %r1\n";

fn run_once(
    program: &Program,
    ctx: &[u8],
    options: &RunOptions,
) -> (Result<Exit, ExecError>, Memory) {
    let mut memory = Memory::with_context(ctx.to_vec());
    let args = [CTX_START, ctx.len() as u64, 0, 0, 0];
    let result = run(program, &mut memory, &mut ConformanceHelpers, args, options);
    (result, memory)
}

fn check(program: &Program, ctx: &[u8], arena_upper: u32) -> Result<(), TestCaseError> {
    let options = RunOptions {
        step_limit: 3000,
        arena_upper,
        may_goto_budget: 5,
    };
    let (first, memory) = run_once(program, ctx, &options);
    if let Ok(exit) = &first {
        prop_assert!(exit.steps <= options.step_limit);
    }
    // Only the context is left, the same size as given.
    prop_assert_eq!(memory.regions().len(), 1);
    let region = memory
        .region(RegionKind::Context)
        .expect("context stays mapped");
    prop_assert_eq!(region.bytes().len(), ctx.len());
    // Deterministic: the same run gives the same outcome and memory.
    let (second, memory_again) = run_once(program, ctx, &options);
    prop_assert_eq!(first, second);
    prop_assert_eq!(memory, memory_again);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn typed_programs(
        ops in vec(op(), 1..40),
        offs in vec(-6i16..8, 40),
        ctx in vec(any::<u8>(), 0..64),
        arena_upper in any::<u32>(),
    ) {
        // Short jumps, so that control stays inside the program mostly.
        let ops: Vec<Op> = ops
            .into_iter()
            .zip(offs)
            .map(|(op, o)| match op {
                Op::Ja { .. } => Op::Ja { off: o },
                Op::Jmp { width, cond, dst, src, .. } => Op::Jmp { width, cond, dst, src, off: o },
                Op::MayGoto { .. } => Op::MayGoto { off: o },
                Op::CallLocal { .. } => Op::CallLocal { off: o.into() },
                Op::Gotol { .. } => Op::Gotol { off: o.into() },
                op => op,
            })
            .collect();
        let mut insns = assemble(PROLOGUE).expect("prologue assembles");
        insns.extend(encode(&ops));
        let program = Program::decode(&insns).expect("valid ops decode");
        check(&program, &ctx, arena_upper)?;
    }

    #[test]
    fn programs_from_random_slots(
        slots in vec(raw_insn(), 1..40),
        ctx in vec(any::<u8>(), 0..64),
    ) {
        let mut insns = assemble(PROLOGUE).expect("prologue assembles");
        insns.extend(slots);
        // Decode as far as the slots form a valid program.
        let valid = (0..=insns.len())
            .rev()
            .find_map(|n| Program::decode(&insns[..n]).ok())
            .unwrap_or_default();
        check(&valid, &ctx, 0)?;
    }
}

#[test]
fn empty_program_stops_at_slot_zero() {
    let program = Program::decode(&[] as &[Insn]).expect("empty decodes");
    let (result, _) = run_once(&program, &[], &RunOptions::default());
    assert_eq!(result, Err(ExecError::FetchInstruction { pc: 0 }));
}
