//! The JIT's tables against its code, decoded independently by iced-x86:
//! every access of BPF memory has an exception-table entry of the right
//! length and destination, nothing else has one, and the instruction →
//! offset table is monotonic, lands on instruction boundaries and ends
//! where the int3 padding starts.

#![allow(clippy::unwrap_used, reason = "tests")]

mod jit_forms;

use std::collections::{BTreeMap, BTreeSet};

use guest_jit::insn::{Op, Program};
use guest_jit::jit::{JitConfig, JitOutput, compile};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use jit_forms::random::{self, Rng};
use jit_forms::{ARENA_UPPER, CODE_ADDR, cases, helper_addr, kfunc_addr};
use shm::extable::NO_DST;

/// Distance below rbp of the JIT's own frame slots (the `may_goto`
/// counter and padding), which are not BPF memory: below the 512-byte BPF
/// stack.
const FRAME_SLOTS: std::ops::RangeInclusive<i64> = -528..=-513;

/// What an instruction's memory operand is, if it has one.
fn bpf_access(insn: &Instruction) -> Option<u8> {
    let memory = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
    // lea computes an address and a multi-byte nop (loop alignment)
    // only names one; gs: is the per-CPU block; r11 as a base is the JIT
    // reading its own helper table.
    if !memory
        || matches!(insn.mnemonic(), Mnemonic::Lea | Mnemonic::Nop)
        || insn.segment_prefix() == Register::GS
        || insn.memory_base() == Register::R11
    {
        return None;
    }
    let displacement = insn.memory_displacement64() as i64;
    if insn.memory_base() == Register::RBP && FRAME_SLOTS.contains(&displacement) {
        return None;
    }
    // A load writes its first operand, a register; a fetching atomic
    // (xadd, xchg) its second, which a fixed-up fault zeroes (the old value
    // reads as 0); stores and other atomics name no register to zero.
    if matches!(insn.mnemonic(), Mnemonic::Xadd | Mnemonic::Xchg)
        && insn.op1_kind() == OpKind::Register
    {
        return Some(insn.op1_register().full_register().number() as u8);
    }
    let is_load = matches!(
        insn.mnemonic(),
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd
    ) && insn.op0_kind() == OpKind::Register;
    Some(if is_load {
        insn.op0_register().full_register().number() as u8
    } else {
        NO_DST
    })
}

/// Checks `output` against its own decoding; `what` names it in failures.
fn check_tables(program: &Program, output: &JitOutput, what: &str) {
    let code = &output.code;
    let offsets = &output.insn_offsets;
    assert_eq!(offsets.len(), program.len() + 1, "{what}");
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "{what}: {offsets:?}"
    );
    let end = *offsets.last().unwrap() as usize;
    assert_eq!(code.len() % 16, 0, "{what}");
    // After the code: the helper table if a callx needs it, 8-byte aligned,
    // then int3 padding.
    let mut data = end;
    if program.iter().any(|(_, op)| matches!(op, Op::Callx { .. })) {
        data = end.next_multiple_of(8);
        assert!(code[end..data].iter().all(|&b| b == 0xcc), "{what}");
        for id in 0..256 {
            let entry = u64::from_le_bytes(code[data..data + 8].try_into().unwrap());
            assert_eq!(entry, helper_addr(id).unwrap_or(0), "{what}: entry {id}");
            data += 8;
        }
    }
    assert!(
        code.len() - data < 16,
        "{what}: padding of {}",
        code.len() - data
    );
    assert!(code[data..].iter().all(|&b| b == 0xcc), "{what}: padding");
    for (pc, op) in program.iter() {
        // Only the second slot of an ld_imm64 shares its offset.
        let next = offsets[pc + op.slots()];
        assert!(offsets[pc] < next, "{what}: slot {pc} ({op}) has no code");
        assert_eq!(output.insn_at(offsets[pc]), Some(pc), "{what}");
        assert_eq!(output.insn_at(next - 1), Some(pc), "{what}");
    }

    // A tail call reads its PROG_ARRAY's header and slot, runtime data
    // rather than memory the program names: a fault there traps at the
    // call, with no fixup (Note [Tail calls]).
    let tail_calls: Vec<std::ops::Range<u32>> = program
        .iter()
        .filter(|(_, op)| matches!(op, Op::CallHelper { id: 12 }))
        .map(|(pc, _)| offsets[pc]..offsets[pc + 1])
        .collect();
    let mut decoder = Decoder::with_ip(64, &code[..end], CODE_ADDR, DecoderOptions::NONE);
    let mut boundaries = BTreeSet::new();
    let mut accesses = BTreeMap::new();
    for insn in decoder.iter() {
        assert!(
            !insn.is_invalid(),
            "{what}: undecodable code at {:#x}",
            insn.ip()
        );
        let offset = (insn.ip() - CODE_ADDR) as u32;
        boundaries.insert(offset);
        let in_tail_call = tail_calls.iter().any(|r| r.contains(&offset));
        if let Some(dst) = bpf_access(&insn).filter(|_| !in_tail_call) {
            accesses.insert(offset, (insn.len() as u8, dst, insn));
        }
    }
    for (pc, _) in program.iter() {
        assert!(
            boundaries.contains(&offsets[pc]),
            "{what}: slot {pc} starts mid-instruction"
        );
    }
    let table: BTreeMap<u32, (u8, u8)> = output
        .extable
        .iter()
        .map(|e| (e.offset, (e.len, e.dst)))
        .collect();
    assert_eq!(
        table.len(),
        output.extable.len(),
        "{what}: duplicate entries"
    );
    assert!(
        output.extable.windows(2).all(|w| w[0].offset < w[1].offset),
        "{what}: extable not sorted"
    );
    for (offset, (len, dst, insn)) in &accesses {
        assert_eq!(
            table.get(offset),
            Some(&(*len, *dst)),
            "{what}: `{insn}` at {offset:#x} has no matching exception-table entry"
        );
    }
    for offset in table.keys() {
        assert!(
            accesses.contains_key(offset),
            "{what}: entry at {offset:#x} is not a BPF memory access"
        );
    }
    assert!(output.extable.iter().all(|e| e.reserved == 0), "{what}");
}

#[test]
fn every_form_has_consistent_tables() {
    let mut checked_accesses = 0;
    for case in cases() {
        let program = case.program();
        let output = case.compile();
        check_tables(&program, &output, &format!("{}", case.op));
        checked_accesses += output.extable.len();
    }
    // Loads, stores and atomics over every register pair: thousands.
    assert!(checked_accesses > 5000, "{checked_accesses}");
}

#[test]
fn random_programs_have_consistent_tables() {
    let config = JitConfig {
        code_addr: CODE_ADDR,
        helper_addr: &helper_addr,
        kfunc_addr: &kfunc_addr,
        percpu_loads: &[],
        arena_upper: ARENA_UPPER,
        may_goto_budget: 1000,
        map_headers: 0..0,
    };
    let mut rng = Rng::new(7);
    for seed in 0..200 {
        let program = random::program(&mut rng, 300, 1 + seed % 4);
        let output = compile(&program, &config).unwrap();
        check_tables(&program, &output, &format!("random program {seed}"));
    }
}

#[test]
fn fetch_op_loops_record_both_accesses() {
    // The loop's load gives 0 on an arena fault (dst rax); the cmpxchg is
    // dropped. Both must be in the table for the fixup to work.
    let case = cases()
        .into_iter()
        .find(|c| c.group == "atomic64_fetchand")
        .unwrap();
    let output = case.compile();
    let dsts: Vec<u8> = output.extable.iter().map(|e| e.dst).collect();
    assert_eq!(dsts, [0, NO_DST]);
}
