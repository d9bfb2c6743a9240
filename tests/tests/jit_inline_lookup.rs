//! The JIT's inline `bpf_map_lookup_elem` on arrays (Note [Inline array
//! lookups]) against the runtime's helper, in a real VM: for ARRAY and
//! PERCPU_ARRAY maps on every vCPU, every index in range and past it, the
//! inline code returns the address the helper returns; hashes and
//! pointers outside the maps region still reach the helper.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use guest_jit::asm::assemble;
use guest_jit::insn::Program;
use helpers_vm::*;
use integration_tests::kvm_available;
use shm::maps::{MapDef, MapType};
use std::time::Duration;
use vmm::program::unlinked;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox};

/// A program that looks up the u32 index in its context in the map whose
/// header is at `header`, and returns the pointer.
fn lookup_program(sandbox: &mut Sandbox, header: u64) -> vmm::ProgramId {
    let src = format!("mov %r2, %r1\nlddw %r1, {header:#x}\ncall 1\nexit");
    let program = Program::decode(&assemble(&src).unwrap()).unwrap();
    sandbox
        .load_program(unlinked("lookup", program), HelperSet::Standard)
        .unwrap()
}

/// A sandbox whose code region starts with a program never run: the
/// fixtures' raw helper calls are written over the start of the region
/// (`load`), and the programs under test are placed after it.
fn setup(cpus: usize) -> Sandbox {
    let mut sandbox = setup_sandbox(cpus);
    let src = "mov %r0, 0\n".repeat(512) + "exit";
    let program = Program::decode(&assemble(&src).unwrap()).unwrap();
    sandbox
        .load_program(unlinked("scratch_code", program), HelperSet::Standard)
        .unwrap();
    sandbox
}

fn run_lookup(sandbox: &Sandbox, id: vmm::ProgramId, cpu: usize, index: u32) -> u64 {
    let input = ProgramInput {
        data: &index.to_le_bytes(),
        repeat: 1,
        timeout: Some(Duration::from_secs(10)),
    };
    let run = sandbox.run_program(id, cpu, &input).unwrap();
    assert_eq!(run.report.exits, 1, "lookups stay in the guest");
    match run.report.outcome {
        Outcome::Returned(r0) => r0,
        other => panic!("expected a return, got {other:?}"),
    }
}

fn helper_lookup(sandbox: &Sandbox, cpu: usize, header: u64, index: u32) -> u64 {
    let key = scratch(sandbox, cpu) + 0x800;
    sandbox.memory().write(key, &index.to_le_bytes()).unwrap();
    call_helper(sandbox, cpu, "bpf_map_lookup_elem", &[header, key])
}

#[test]
fn inline_array_lookups_return_what_the_helper_returns() {
    if !kvm_available("inline_array_lookups_return_what_the_helper_returns") {
        return;
    }
    let cpus = 3;
    let mut sandbox = setup(cpus);
    let mut arena = MapArena::new(&sandbox);
    let maps = [
        (MapType::Array, 12),
        (MapType::PercpuArray, 20),
        (MapType::Array, 4096),
    ]
    .map(|(ty, value)| {
        let def = MapDef::new(ty as u32, 4, value, 5, 0, cpus as u32).unwrap();
        arena.create(&sandbox, def)
    });
    for map in &maps {
        let id = lookup_program(&mut sandbox, map.header);
        for cpu in 0..cpus {
            for index in [0, 1, 4, 5, 6, u32::MAX] {
                let inline = run_lookup(&sandbox, id, cpu, index);
                let helper = helper_lookup(&sandbox, cpu, map.header, index);
                assert_eq!(
                    inline,
                    helper,
                    "{:?} cpu {cpu} index {index}",
                    map.def.map_type()
                );
                assert_eq!(inline == 0, index >= 5, "index {index}");
            }
        }
    }
}

#[test]
fn other_maps_and_foreign_pointers_reach_the_helper() {
    if !kvm_available("other_maps_and_foreign_pointers_reach_the_helper") {
        return;
    }
    let mut sandbox = setup(1);
    let mut arena = MapArena::new(&sandbox);
    let hash = arena.create(
        &sandbox,
        MapDef::new(MapType::Hash as u32, 4, 8, 4, 0, 1).unwrap(),
    );
    let key = scratch(&sandbox, 0) + 0x800;
    sandbox.memory().write(key, &3u32.to_le_bytes()).unwrap();
    let value = key + 8;
    sandbox.memory().write(value, &7u64.to_le_bytes()).unwrap();
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_map_update_elem",
        &[hash.header, key, value, 0],
    );
    assert_eq!(r0, 0);
    let id = lookup_program(&mut sandbox, hash.header);
    let found = run_lookup(&sandbox, id, 0, 3);
    assert_eq!(found, helper_lookup(&sandbox, 0, hash.header, 3));
    assert_ne!(found, 0);
    assert_eq!(run_lookup(&sandbox, id, 0, 4), 0);
    // An ARRAY header copied outside the maps region is left to the
    // helper, which validates it and gives the same answer.
    let array = arena.create(
        &sandbox,
        MapDef::new(MapType::Array as u32, 4, 8, 4, 0, 1).unwrap(),
    );
    let outside = scratch(&sandbox, 0) + 0x1000;
    sandbox
        .memory()
        .write_pod(outside, &array.def.header(array.data))
        .unwrap();
    let id = lookup_program(&mut sandbox, outside);
    let found = run_lookup(&sandbox, id, 0, 1);
    assert_eq!(found, array.data + 8);
    assert_eq!(found, helper_lookup(&sandbox, 0, outside, 1));
    let id = lookup_program(&mut sandbox, 0);
    assert_eq!(run_lookup(&sandbox, id, 0, 1), 0);
}
