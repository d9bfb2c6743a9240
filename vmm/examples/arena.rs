//! A BPF arena shared with the host: a program builds a linked list out of
//! pages it allocates, and the host follows the same pointers, at the same
//! addresses, without copying or translating them; then the host edits
//! the list and the program sees the edits (`images/progs/arena_list.bpf.c`).
//!
//! Run it with `cargo run -p vmm --example arena`. It checks every result
//! against the sample's header comment and exits non-zero if one differs.

use guest_jit::elf::Object;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, ProgramRun, Sandbox, SandboxConfig};

const ARENA_LIST: &[u8] = include_bytes!("../../images/progs/arena_list.bpf.o");

/// `struct list_node` of the sample: `{ next, value }`, 16 bytes.
const NODE_NEXT: u64 = 0;
const NODE_VALUE: u64 = 8;

/// `struct list_args`: `{ u32 n; u32 pages; u64 head; u64 sum }`.
fn list_args(n: u32) -> [u8; 24] {
    let mut args = [0; 24];
    args[0..4].copy_from_slice(&n.to_le_bytes());
    args
}

/// The example; an error if a result is not what the samples say.
fn run() -> Result<(), Box<dyn Error>> {
    let object = Object::parse(ARENA_LIST)?;
    let mut sandbox = Sandbox::new(SandboxConfig::default())?;
    // An object with a BPF_MAP_TYPE_ARENA map gets the sandbox's arena.
    sandbox.load_object(&object, HelperSet::Standard)?;

    // Build a list of 1,000 nodes in the guest.
    let n = 1000u32;
    let run = run_program(&sandbox, "list_build", &list_args(n))?;
    let built = returned(&run)?;
    let head = u64_at(&run.data_out, 8)?;
    let pages = u32::from_le_bytes(run.data_out[4..8].try_into()?);
    println!(
        "list_build made {built} nodes in {pages} pages; head at {head:#x}; \
         the arena holds {} pages in all",
        run.report.arena_pages
    );
    ensure(built == u64::from(n), "list_build returns n")?;

    let arena = sandbox.arena().ok_or("the sandbox has no arena")?;
    println!(
        "arena `{}`: {} MiB at {:#x} (the same address in the guest and here)",
        arena.name(),
        arena.len() >> 20,
        arena.base()
    );
    ensure(
        (arena.base()..arena.base() + arena.len()).contains(&head),
        "the head is an arena address",
    )?;

    // Walk it with `read`: checked accesses that copy bytes out. An
    // address outside the arena is an error, not a crash, so pointers a
    // program wrote can be followed without trusting them.
    let (count, sum) = walk_with_read(&sandbox, head, n)?;
    println!("host walk with read(): {count} nodes, sum {sum}");
    let expected_sum = u64::from(n) * u64::from(n + 1) / 2;
    ensure(
        (count, sum) == (u64::from(n), expected_sum),
        "the host sees n nodes summing to n(n+1)/2",
    )?;

    // Walk it with plain dereferences, as C code in the host would.
    let (count, sum) = walk_with_pointers(&sandbox, head, n)?;
    println!("host walk through pointers: {count} nodes, sum {sum}");
    ensure(
        (count, sum) == (u64::from(n), expected_sum),
        "pointers give the same",
    )?;

    // Now the other way: the host doubles every value...
    let mut node = head;
    for _ in 0..n {
        let value = read_u64(&sandbox, node + NODE_VALUE)?;
        arena.write(node + NODE_VALUE, &value.wrapping_mul(2).to_le_bytes())?;
        node = read_u64(&sandbox, node + NODE_NEXT)?;
    }
    // ...and unlinks the first node, by pointing the program's `list_head`
    // (an `__arena` global) at the second. Globals of the arena live at its
    // end, where libbpf puts them.
    let list_head = arena_global(&sandbox, &object, "list_head")?;
    ensure(
        read_u64(&sandbox, list_head)? == head,
        "list_head holds the head",
    )?;
    let second = read_u64(&sandbox, head + NODE_NEXT)?;
    arena.write(list_head, &second.to_le_bytes())?;

    // list_sum walks the list in the guest.
    let run = run_program(&sandbox, "list_sum", &list_args(0))?;
    let (count, sum) = (returned(&run)?, u64_at(&run.data_out, 16)?);
    println!("list_sum after the host's edits: {count} nodes, sum {sum}");
    ensure(
        (count, sum) == (u64::from(n) - 1, 2 * (expected_sum - u64::from(n))),
        "the program sees the host's edits",
    )?;
    Ok(())
}

/// Follows `next` from `head` with [`vmm::arena::ArenaHandle::read`], at
/// most `limit` nodes; (nodes, sum of values).
fn walk_with_read(sandbox: &Sandbox, head: u64, limit: u32) -> Result<(u64, u64), Box<dyn Error>> {
    let (mut node, mut count, mut sum) = (head, 0, 0u64);
    // Bounded: a hostile program could make the list a cycle.
    while node != 0 && count < u64::from(limit) {
        sum = sum.wrapping_add(read_u64(sandbox, node + NODE_VALUE)?);
        node = read_u64(sandbox, node + NODE_NEXT)?;
        count += 1;
    }
    Ok((count, sum))
}

/// The same walk through raw pointers into the arena mapping
/// ([`vmm::arena::ArenaHandle::as_ptr`] and its safety rules).
fn walk_with_pointers(
    sandbox: &Sandbox,
    head: u64,
    limit: u32,
) -> Result<(u64, u64), Box<dyn Error>> {
    let arena = sandbox.arena().ok_or("the sandbox has no arena")?;
    let (mut node, mut count, mut sum) = (head, 0, 0u64);
    while node != 0 && count < u64::from(limit) {
        // Only allocated pages may be touched: anything else in the window
        // is a hole (touching it would allocate it behind the program's
        // back) or PROT_NONE. A node is 16-byte aligned, so it does not
        // straddle a page.
        if !arena.is_allocated(node) || node % 16 != 0 {
            return Err(format!("node {node:#x} is not in an allocated page").into());
        }
        let p = node as *const u64;
        // SAFETY: `node .. node + 16` lies in one allocated arena page
        // (checked above), mapped while the sandbox lives; were a program
        // on another vCPU to free the page meanwhile, it would read as
        // zeros, never fault. Programs may write it at any time, so the
        // reads are volatile and no reference to the memory is formed.
        let (value, next) = unsafe { (p.add(1).read_volatile(), p.read_volatile()) };
        sum = sum.wrapping_add(value);
        node = next;
        count += 1;
    }
    Ok((count, sum))
}

/// The address of `__arena` global `name` of `object`.
fn arena_global(sandbox: &Sandbox, object: &Object, name: &str) -> Result<u64, Box<dyn Error>> {
    let arena = sandbox.arena().ok_or("the sandbox has no arena")?;
    let var = object
        .variables()
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| format!("no global `{name}`"))?;
    let section_len = object
        .data_sections()
        .get(var.data)
        .ok_or("no section")?
        .bytes
        .len() as u64;
    let pages = u32::try_from(arena.len() / 4096)?;
    let offset = guest_jit::elf::arena_globals_offset(pages, section_len)
        .ok_or("the arena globals do not fit")?;
    Ok(arena.base() + offset + var.offset)
}

fn read_u64(sandbox: &Sandbox, addr: u64) -> Result<u64, Box<dyn Error>> {
    let arena = sandbox.arena().ok_or("the sandbox has no arena")?;
    let mut bytes = [0; 8];
    arena.read(addr, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn run_program(sandbox: &Sandbox, name: &str, ctx: &[u8]) -> Result<ProgramRun, Box<dyn Error>> {
    let id = sandbox
        .find_program(name)
        .ok_or_else(|| format!("no program `{name}`"))?;
    let input = ProgramInput {
        data: ctx,
        repeat: 1,
        timeout: Some(Duration::from_secs(5)),
    };
    Ok(sandbox.run_program(id, 0, &input)?)
}

fn returned(run: &ProgramRun) -> Result<u64, Box<dyn Error>> {
    match run.report.outcome {
        Outcome::Returned(r0) => Ok(r0),
        other => Err(format!("{other:?} at {:?}", run.trap_site).into()),
    }
}

fn u64_at(bytes: &[u8], offset: usize) -> Result<u64, Box<dyn Error>> {
    let field = bytes.get(offset..offset + 8).ok_or("context too short")?;
    Ok(u64::from_le_bytes(field.try_into()?))
}

/// An error saying which expectation failed, unless `ok`.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}").into())
    }
}

/// Runs the example, or says why not. (`pub`: vmm/tests/examples.rs runs
/// it, with KVM and without.)
pub fn main() -> ExitCode {
    if !vmm::kvm::is_available() {
        println!("Skipped: /dev/kvm is not usable here, and bpfvisor needs KVM.");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
