//! `bpf_tail_call` in the VM, against the reference interpreter: chains of
//! tail calls, the limit of 33 per run, indices out of range, empty slots,
//! and tail calls from subprograms (Note [Tail calls] in
//! `guest_jit::jit::tail_call`). Also the JIT's other inline helper,
//! `bpf_get_smp_processor_id`.
//!
//! Until the sandbox creates maps, the PROG_ARRAY is built by hand in the
//! writable data region: a `shm::maps::MapHeader` and its slots, holding
//! the entry addresses of programs loaded as bare instructions.
#![allow(clippy::unwrap_used, reason = "tests")]

use guest_jit::asm::assemble;
use guest_jit::insn::Program;
use guest_jit::interp::{
    self, ExecError, Memory, NoHelpers, Region, RegionKind, RunOptions, mem::CTX_START,
};
use guest_jit::jit::tail_call::{DATA_OFFSET, MAX_ENTRIES_OFFSET, SLOT_SIZE};
use integration_tests::kvm_available;
use shm::maps::{MapDef, MapType};
use shm::percpu::MAX_TAIL_CALLS;
use shm::pod::pod_bytes;
use std::time::Duration;
use vmm::program::unlinked;
use vmm::{HelperSet, Outcome, ProgramId, ProgramInput, Sandbox, SandboxConfig, TrapKind};

/// Bytes of the map header block (the storage follows it).
const HEADER_SIZE: u64 = 0x100;
/// Most slots a test uses.
const MAX_SLOTS: usize = 8;

/// A sandbox with programs loaded and a PROG_ARRAY-shaped block.
struct TailCalls {
    sandbox: Sandbox,
    /// Guest address of the header.
    header: u64,
    /// The loaded programs: id, entry address, instructions.
    programs: Vec<(ProgramId, u64, Program)>,
    /// The slots as last written (for the interpreter's copy).
    slots: Vec<u64>,
}

impl TailCalls {
    fn new(cpus: usize) -> TailCalls {
        let sandbox = Sandbox::new(SandboxConfig {
            cpus,
            ..SandboxConfig::default()
        })
        .unwrap();
        let header = sandbox.layout().data_start();
        TailCalls {
            sandbox,
            header,
            programs: Vec::new(),
            slots: Vec::new(),
        }
    }

    fn storage(&self) -> u64 {
        self.header + HEADER_SIZE
    }

    /// Loads `src`, where `{map}` stands for the header's address; returns
    /// its index in `programs`.
    fn load(&mut self, src: &str) -> usize {
        let src = src.replace("{map}", &format!("{:#x}", self.header));
        let program = Program::decode(&assemble(&src).unwrap()).unwrap();
        let id = self
            .sandbox
            .load_program(unlinked("tail", program.clone()), HelperSet::Standard)
            .unwrap();
        let entry = self.sandbox.program(id).unwrap().entry();
        self.programs.push((id, entry, program));
        self.programs.len() - 1
    }

    fn entry(&self, program: usize) -> u64 {
        self.programs[program].1
    }

    /// Writes the header (`max_entries` = `slots.len()`) and the slots.
    fn set_slots(&mut self, slots: &[u64]) {
        assert!(slots.len() <= MAX_SLOTS);
        let (header, bytes) = block(self.storage(), slots);
        let memory = self.sandbox.memory();
        memory.write(self.header, &header).unwrap();
        memory.write(self.storage(), &bytes).unwrap();
        self.slots = slots.to_vec();
    }

    /// Runs program `program` in the VM on `cpu`: r0 and the context.
    fn run_vm(&self, program: usize, cpu: usize, ctx: &[u8], repeat: u64) -> (u64, Vec<u8>) {
        let input = ProgramInput {
            data: ctx,
            repeat,
            timeout: Some(Duration::from_secs(10)),
        };
        let run = self
            .sandbox
            .run_program(self.programs[program].0, cpu, &input)
            .unwrap();
        match run.report.outcome {
            Outcome::Returned(value) => (value, run.data_out),
            other => panic!("{other:?} at {:?}", run.trap_site),
        }
    }

    /// Runs program `program` in the interpreter, with the same block at
    /// the same address and the same entry addresses.
    fn run_interp(&self, program: usize, ctx: &[u8]) -> (u64, Vec<u8>) {
        let (header, bytes) = block(self.storage(), &self.slots);
        let mut memory = Memory::with_context(ctx.to_vec());
        let region = |start, bytes| Region::new(RegionKind::Other, start, bytes, true);
        memory.map(region(self.header, header)).unwrap();
        memory.map(region(self.storage(), bytes)).unwrap();
        let table: Vec<(u64, &Program)> = self.programs.iter().map(|(_, e, p)| (*e, p)).collect();
        let exit = interp::run_with_programs(
            &self.programs[program].2,
            &mut memory,
            &mut NoHelpers,
            [CTX_START, ctx.len() as u64, 0, 0, 0],
            &RunOptions::default(),
            &table,
        )
        .unwrap();
        let ctx = memory.region(RegionKind::Context).unwrap().bytes().to_vec();
        (exit.return_value, ctx)
    }

    /// Runs in both engines on CPU 0, checks they agree, returns the result.
    fn run_both(&self, program: usize, ctx: &[u8]) -> (u64, Vec<u8>) {
        let vm = self.run_vm(program, 0, ctx, 1);
        let interp = self.run_interp(program, ctx);
        assert_eq!(vm, interp, "VM and interpreter disagree");
        vm
    }
}

/// The header block (sized [`HEADER_SIZE`]: a `shm::maps::MapHeader` of
/// a PROG_ARRAY with `slots.len()` entries, then zeros) and the storage
/// bytes of a PROG_ARRAY holding `slots`, its storage at `storage`.
fn block(storage: u64, slots: &[u64]) -> (Vec<u8>, Vec<u8>) {
    let max_entries = u32::try_from(slots.len()).unwrap();
    let def = MapDef::new(MapType::ProgArray as u32, 4, 4, max_entries, 0, 1).unwrap();
    let mut header = pod_bytes(&def.header(storage)).to_vec();
    header.resize(HEADER_SIZE as usize, 0);
    assert_eq!(
        header[MAX_ENTRIES_OFFSET as usize..][..4],
        max_entries.to_le_bytes()
    );
    assert_eq!(header[DATA_OFFSET as usize..][..8], storage.to_le_bytes());
    let mut bytes = vec![0u8; MAX_SLOTS * SLOT_SIZE as usize];
    for (i, slot) in slots.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&slot.to_le_bytes());
    }
    (header, bytes)
}

/// `r2 = map`, `r3 = index`, `call 12`.
fn tail_call(index: i64) -> String {
    format!("lddw %r2, {{map}}\nlddw %r3, {index:#x}\ncall 12")
}

#[test]
fn a_chain_of_tail_calls_runs_each_program_once() {
    if !kvm_available("a_chain_of_tail_calls_runs_each_program_once") {
        return;
    }
    let mut t = TailCalls::new(1);
    // Program n appends n to the context's list (count in byte 0), then
    // tail-calls slot n; the last slot is empty, so the last program falls
    // through and returns its own number plus the count.
    for n in 0..4 {
        t.load(&format!(
            "ldxb %r6, [%r1]\nmov %r7, %r1\nadd %r7, %r6\nstb [%r7+1], {}\n\
             add %r6, 1\nstxb [%r1], %r6\n{}\nmov %r0, {}\nadd %r0, %r6\nexit",
            10 + n,
            tail_call(n),
            100 + n
        ));
    }
    let slots = [t.entry(1), t.entry(2), t.entry(3), 0];
    t.set_slots(&slots);
    let (r0, ctx) = t.run_both(0, &[0; 8]);
    assert_eq!(r0, 103 + 4);
    assert_eq!(ctx[..5], [4, 10, 11, 12, 13]);
    // Entering the chain in the middle runs its tail.
    let (r0, ctx) = t.run_both(2, &[0; 8]);
    assert_eq!(r0, 103 + 2);
    assert_eq!(ctx[..3], [2, 12, 13]);
}

#[test]
fn at_most_33_tail_calls_per_run_and_each_run_starts_afresh() {
    if !kvm_available("at_most_33_tail_calls_per_run_and_each_run_starts_afresh") {
        return;
    }
    let mut t = TailCalls::new(1);
    // Counts its runs in the context; calls the empty slot 1 twice (which
    // must not count), then itself through slot 0.
    let forever = t.load(&format!(
        "ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\n{empty}\n{empty}\n\
         {again}\nldxdw %r0, [%r1]\nexit",
        empty = tail_call(1),
        again = tail_call(0)
    ));
    t.set_slots(&[t.entry(forever), 0]);
    let (r0, ctx) = t.run_both(forever, &[0; 8]);
    assert_eq!(r0, MAX_TAIL_CALLS + 1);
    assert_eq!(ctx[..8], (MAX_TAIL_CALLS + 1).to_le_bytes());
    // The runtime zeroes the count before each run: three runs in one call
    // into the guest keep counting in the same context.
    let (r0, _) = t.run_vm(forever, 0, &[0; 8], 3);
    assert_eq!(r0, 3 * (MAX_TAIL_CALLS + 1));
}

#[test]
fn out_of_range_and_empty_slots_fall_through_with_registers_intact() {
    if !kvm_available("out_of_range_and_empty_slots_fall_through_with_registers_intact") {
        return;
    }
    let mut t = TailCalls::new(1);
    let target = t.load("mov %r0, 1000\nexit");
    // r0, r1 and r3–r5 are what they were before the call; r2 and r3 as
    // loaded. Returns a mix of them so that any change shows.
    let mut probes = Vec::new();
    for index in [2, 3, 1, -1, 0x1_0000_0001, 0x1_0000_0000] {
        let program = t.load(&format!(
            "mov %r0, 7\nmov %r4, 40\nmov %r5, 500\nmov %r6, %r1\n{}\n\
             add %r0, %r4\nadd %r0, %r5\nsub %r1, %r6\nadd %r0, %r1\n\
             lddw %r6, {{map}}\nsub %r2, %r6\nadd %r0, %r2\n\
             lddw %r6, {index:#x}\nsub %r3, %r6\nadd %r0, %r3\nexit",
            tail_call(index)
        ));
        probes.push((index, program));
    }
    // max_entries 2: slot 1 is empty, 2 and 3 and u32::MAX are out of
    // range; only the low 32 bits of r3 count.
    t.set_slots(&[t.entry(target), 0]);
    for (index, program) in probes {
        let expect = if index == 0x1_0000_0000 { 1000 } else { 547 };
        let (r0, _) = t.run_both(program, &[0; 8]);
        assert_eq!(r0, expect, "index {index:#x}");
    }
}

#[test]
fn a_tail_call_from_a_subprogram_returns_to_its_caller() {
    if !kvm_available("a_tail_call_from_a_subprogram_returns_to_its_caller") {
        return;
    }
    let mut t = TailCalls::new(1);
    // The target replaces f: its exit returns to main with main's r6 and
    // stack intact; the target runs with a fresh frame of its own (its
    // stack slot is its own), and its own subprogram works.
    let main = t.load(&format!(
        "mov %r6, 7\nstdw [%r10-8], 30\ncall local f\nadd %r0, %r6\n\
         ldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n\
         f:\nmov %r6, 1000\nstdw [%r10-8], 99\ncall local g\nexit\n\
         g:\n{}\nmov %r0, -1\nexit",
        tail_call(0)
    ));
    let target = t.load(
        "mov %r6, 2000\nstdw [%r10-8], 100\ncall local h\nldxdw %r1, [%r10-8]\n\
         add %r0, %r1\nexit\nh:\nmov %r0, 400\nexit",
    );
    t.set_slots(&[t.entry(target)]);
    // g's tail call replaces g: target returns 500 to f, f to main.
    let (r0, _) = t.run_both(main, &[0; 8]);
    assert_eq!(r0, 500 + 7 + 30);
}

#[test]
fn tail_calls_from_subprograms_nest_and_share_the_budget() {
    if !kvm_available("tail_calls_from_subprograms_nest_and_share_the_budget") {
        return;
    }
    let mut t = TailCalls::new(1);
    // main calls f, which tail-calls main: each tail call replaces f with
    // a main one frame deeper, 34 frames in all, and the 33 of them count
    // against the one budget of the run.
    let main = t.load(&format!(
        "call local f
exit
         f:
ldxdw %r0, [%r1]
add %r0, 1
stxdw [%r1], %r0
{}
ldxdw %r0, [%r1]
exit",
        tail_call(0)
    ));
    t.set_slots(&[t.entry(main)]);
    let (r0, _) = t.run_vm(main, 0, &[0; 8], 1);
    assert_eq!(r0, MAX_TAIL_CALLS + 1);
    // The interpreter stops at the kernel's 8 frames (Note [Tail calls]).
    let (header, bytes) = block(t.storage(), &t.slots);
    let mut memory = Memory::with_context(vec![0; 8]);
    let region = |start, bytes| Region::new(RegionKind::Other, start, bytes, true);
    memory.map(region(t.header, header)).unwrap();
    memory.map(region(t.storage(), bytes)).unwrap();
    let program = &t.programs[main].2;
    let err = interp::run_with_programs(
        program,
        &mut memory,
        &mut NoHelpers,
        [CTX_START, 8, 0, 0, 0],
        &RunOptions::default(),
        &[(t.entry(main), program)],
    )
    .unwrap_err();
    assert_eq!(err, ExecError::ExceedCallDepth { pc: 0 });
}

#[test]
fn a_header_the_program_cannot_read_traps_at_the_call() {
    if !kvm_available("a_header_the_program_cannot_read_traps_at_the_call") {
        return;
    }
    let mut t = TailCalls::new(1);
    let program = t.load("mov %r2, 8\nmov %r3, 0\ncall 12\nexit");
    let input = ProgramInput {
        data: &[],
        repeat: 1,
        timeout: Some(Duration::from_secs(10)),
    };
    let run = t
        .sandbox
        .run_program(t.programs[program].0, 0, &input)
        .unwrap();
    let Outcome::Trapped(trap) = run.report.outcome else {
        panic!("{:?}", run.report.outcome);
    };
    assert_eq!(trap.kind, TrapKind::PageFault);
    assert_eq!(trap.fault_addr, Some(8 + MAX_ENTRIES_OFFSET as u64));
    assert_eq!(run.trap_site.unwrap().slot, 2);
}

#[test]
fn smp_processor_id_is_the_vcpu_index() {
    if !kvm_available("smp_processor_id_is_the_vcpu_index") {
        return;
    }
    let mut t = TailCalls::new(3);
    // Inline: r1 survives the call (a runtime call would clobber it).
    let program = t.load("mov %r1, 5\ncall 8\nlsh %r0, 8\nadd %r0, %r1\nexit");
    let code = t
        .sandbox
        .program(t.programs[program].0)
        .unwrap()
        .disassemble();
    assert!(code.contains("mov     eax, gs:["), "{code}");
    for cpu in 0..3 {
        let (r0, _) = t.run_vm(program, cpu, &[], 1);
        assert_eq!(r0, (cpu as u64) << 8 | 5, "cpu {cpu}");
    }
}
