//! `bpf_tail_call` in the interpreter: the JIT's inline sequence (Note
//! [Tail calls] in [`crate::jit::tail_call`]) over the interpreter's
//! memory, so that differential tests cover the header and slot reads too.

use super::mem::stack_start;
use super::{ExecError, Machine};
use crate::insn::{Reg, Size};
use crate::jit::tail_call::{DATA_OFFSET, MAX_ENTRIES_OFFSET, SLOT_SIZE};

impl Machine<'_> {
    /// `bpf_tail_call(r1 = ctx, r2 = PROG_ARRAY header, r3 = index)`: the
    /// JIT's checks, in its order, so that a bad header faults at the same
    /// access (Note [Tail calls]).
    pub(super) fn tail_call(&mut self, pc: usize) -> Result<(), ExecError> {
        let header = self.reg(Reg::R2);
        let index = u64::from(self.reg(Reg::R3) as u32);
        let max_entries = header.wrapping_add(MAX_ENTRIES_OFFSET as u64);
        if index >= self.load(pc, max_entries, Size::W)? {
            return Ok(());
        }
        if self.tail_calls >= shm::percpu::MAX_TAIL_CALLS {
            return Ok(());
        }
        let data = header.wrapping_add(DATA_OFFSET as u64);
        let slot = self
            .load(pc, data, Size::DW)?
            .wrapping_add(index * SLOT_SIZE);
        let entry = self.load(pc, slot, Size::DW)?;
        if entry == 0 {
            return Ok(());
        }
        let program = self
            .programs
            .iter()
            .find(|&&(start, _)| start == entry)
            .map(|&(_, program)| program)
            .ok_or(ExecError::FindTailCallTarget { pc, entry })?;
        self.tail_calls += 1;
        // The target takes over this frame, as its prologue builds a new
        // one where the JIT tore this one down: same depth, same caller.
        let depth = self.frames.len();
        self.memory.unmap(stack_start(depth));
        self.push_stack(depth)?;
        for reg in [0, 3, 4, 5, 6, 7, 8, 9] {
            self.regs[reg] = 0;
        }
        self.may_goto_budget = self.options.may_goto_budget;
        self.program = program;
        self.pc = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use crate::insn::Program;
    use crate::interp::mem::CTX_START;
    use crate::interp::{
        Exit, Memory, NoHelpers, Region, RegionKind, RunOptions, run_with_programs,
    };
    use shm::percpu::MAX_TAIL_CALLS;

    /// Guest address of the PROG_ARRAY header the tests map.
    const HEADER: u64 = 0x3000_0000;
    /// Guest address of its slots.
    const SLOTS: u64 = 0x3000_1000;
    /// Entry addresses the tests give programs 0, 1, 2...
    const fn entry(i: u64) -> u64 {
        0x60_0000 + i * 0x1000
    }

    fn program(src: &str) -> Program {
        Program::decode(&assemble(src).unwrap()).unwrap()
    }

    /// A context of `ctx` bytes and a PROG_ARRAY header whose slots hold
    /// `slots`; `max_entries` is `slots.len()`.
    fn memory(ctx: &[u8], slots: &[u64]) -> Memory {
        let mut header = vec![0u8; 64];
        let max = MAX_ENTRIES_OFFSET as usize;
        header[max..max + 4].copy_from_slice(&(slots.len() as u32).to_le_bytes());
        let data = DATA_OFFSET as usize;
        header[data..data + 8].copy_from_slice(&SLOTS.to_le_bytes());
        let bytes = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut memory = Memory::with_context(ctx.to_vec());
        memory
            .map(Region::new(RegionKind::Other, HEADER, header, false))
            .unwrap();
        memory
            .map(Region::new(RegionKind::Other, SLOTS, bytes, false))
            .unwrap();
        memory
    }

    /// Runs `programs[0]` with `programs[i]` at [`entry`]`(i)`.
    fn run_all(memory: &mut Memory, programs: &[&str]) -> Result<Exit, ExecError> {
        let programs: Vec<Program> = programs.iter().map(|src| program(src)).collect();
        let table: Vec<(u64, &Program)> = (0..).map(entry).zip(&programs).collect();
        let args = [CTX_START, 8, 0, 0, 0];
        run_with_programs(
            &programs[0],
            memory,
            &mut NoHelpers,
            args,
            &RunOptions::default(),
            &table,
        )
    }

    /// `lddw %r2, HEADER` and `mov %r3, index`, then the tail call.
    fn tail_call(index: i64) -> String {
        format!("lddw %r2, {HEADER:#x}\nlddw %r3, {index:#x}\ncall 12")
    }

    fn ret(result: Result<Exit, ExecError>) -> u64 {
        result.unwrap().return_value
    }

    #[test]
    fn a_chain_of_tail_calls_ends_in_the_last_program() {
        // Each program appends its number to the context's low byte
        // positions, then tail-calls the next slot.
        let step = |n: u64, next: i64| {
            format!(
                "ldxb %r6, [%r1]\nmov %r7, %r1\nadd %r7, %r6\nstb [%r7+1], {n}\n\
                 add %r6, 1\nstxb [%r1], %r6\n{}\nmov %r0, {n}\nexit",
                tail_call(next)
            )
        };
        let mut memory = memory(&[0; 8], &[entry(1), entry(2), 0]);
        let result = run_all(&mut memory, &[&step(10, 0), &step(11, 1), &step(12, 2)]);
        // Slot 2 is empty: the last program falls through and returns.
        assert_eq!(ret(result), 12);
        let ctx = memory.region(RegionKind::Context).unwrap().bytes();
        assert_eq!(ctx[..4], [3, 10, 11, 12]);
    }

    #[test]
    fn the_target_starts_as_an_entry_with_ctx_and_the_map() {
        let caller = format!(
            "mov %r0, 1\nmov %r4, 4\nmov %r6, 6\nmov %r9, 9\nstdw [%r10-8], 5\n{}\nexit",
            tail_call(0)
        );
        // r1 and r2 survive; r0, r3–r9 are zero; the stack is fresh.
        let target = "mov %r0, %r0\nor %r0, %r3\nor %r0, %r4\nor %r0, %r5\nor %r0, %r6\n\
                      or %r0, %r7\nor %r0, %r8\nor %r0, %r9\nldxdw %r5, [%r10-8]\nor %r0, %r5\n\
                      jne %r1, 0x10000000, bad\nlddw %r5, 0x30000000\njne %r2, %r5, bad\nexit\n\
                      bad:\nmov %r0, -1\nexit";
        let mut memory = memory(&[0; 8], &[entry(1)]);
        assert_eq!(ret(run_all(&mut memory, &[&caller, target])), 0);
    }

    #[test]
    fn calls_that_fall_through_change_no_register() {
        // Out of range (max_entries 2), empty, and the index's upper half
        // ignored (0x1_0000_0001 is index 1, empty).
        for index in [2, 1, 0x1_0000_0001, -1] {
            let src = format!(
                "mov %r0, 7\nmov %r4, 4\nmov %r5, 5\n{}\n\
                 add %r0, %r4\nadd %r0, %r5\nexit",
                tail_call(index)
            );
            let mut memory = memory(&[0; 8], &[entry(1), 0]);
            let result = run_all(&mut memory, &[&src, "mov %r0, 100\nexit"]);
            assert_eq!(ret(result), 16, "index {index:#x}");
        }
        // Index 0x1_0000_0000 is slot 0: taken.
        let src = format!("{}\nexit", tail_call(0x1_0000_0000));
        let mut memory = memory(&[0; 8], &[entry(1), 0]);
        assert_eq!(
            ret(run_all(&mut memory, &[&src, "mov %r0, 100\nexit"])),
            100
        );
    }

    #[test]
    fn at_most_33_tail_calls_are_taken_and_empty_slots_do_not_count() {
        // Counts its runs in the context, calls the empty slot 1 three
        // times, then itself through slot 0.
        let src = format!(
            "ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\n{empty}\n{empty}\n{empty}\n\
             {again}\nldxdw %r0, [%r1]\nexit",
            empty = tail_call(1),
            again = tail_call(0)
        );
        let mut memory = memory(&[0; 8], &[entry(0), 0]);
        assert_eq!(ret(run_all(&mut memory, &[&src])), MAX_TAIL_CALLS + 1);
    }

    #[test]
    fn a_tail_call_from_a_subprogram_returns_to_its_caller() {
        // main keeps r6 across the call; the target replaces f and returns
        // to main, whose r6 is intact.
        let main = format!(
            "mov %r6, 7\nstdw [%r10-8], 30\ncall local f\nadd %r0, %r6\n\
             ldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n\
             f:\nmov %r6, 1000\n{}\nmov %r0, -1\nexit",
            tail_call(0)
        );
        let target = "mov %r6, 2000\nmov %r0, 100\nexit";
        let mut memory = memory(&[0; 8], &[entry(1)]);
        assert_eq!(ret(run_all(&mut memory, &[&main, target])), 137);
    }

    #[test]
    fn a_slot_that_names_no_program_is_an_error() {
        let src = format!("mov %r0, 0\n{}\nexit", tail_call(0));
        let mut memory = memory(&[0; 8], &[0x1234]);
        let err = run_all(&mut memory, &[&src]).unwrap_err();
        assert_eq!(
            err,
            ExecError::FindTailCallTarget {
                pc: 5,
                entry: 0x1234
            }
        );
        assert_eq!(
            err.to_string(),
            "Instruction 5 tail-calls 0x1234, where no program starts"
        );
        // A header the program cannot read faults at the call.
        let src = "mov %r2, 8\ncall 12\nexit";
        let err = run_all(&mut memory, &[src]).unwrap_err();
        assert!(
            matches!(err, ExecError::AccessMemory { pc: 1, .. }),
            "{err}"
        );
    }
}
