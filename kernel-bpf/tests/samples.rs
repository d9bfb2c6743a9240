//! The samples of `images/progs` loaded into the host kernel with raw
//! bpf() calls: return values, map contents, global data, the arena and
//! ring buffers read back, checked against each sample's header comment;
//! and malformed objects refused with an error, never a panic. Skipped
//! loudly without bpf() (root), failed then under BPFVISOR_REQUIRE_KVM=1.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use guest_jit::elf::Object;
use integration_tests::bpf_available;
use kernel_bpf::{KernelError, KernelObject, LoadOptions, ProgramType};

fn sample(name: &str) -> Object {
    let path = format!(
        "{}/../images/progs/{name}.bpf.o",
        env!("CARGO_MANIFEST_DIR")
    );
    Object::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn load(name: &str, programs: &[&str]) -> KernelObject {
    let options = LoadOptions {
        programs: programs.iter().map(|p| (*p).to_owned()).collect(),
        ..LoadOptions::default()
    };
    KernelObject::load(&sample(name), &options).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn hello_returns_42() {
    if !bpf_available("hello_returns_42") {
        return;
    }
    let object = load("hello", &[]);
    let hello = object.program("hello").unwrap();
    assert_eq!(hello.program_type(), ProgramType::Syscall);
    let run = hello.test_run(&[], 1).unwrap();
    assert_eq!(run.retval, 42);
    assert!(!run.timed_by_kernel);
}

#[test]
fn map_counters_count_and_read_back() {
    if !bpf_available("map_counters_count_and_read_back") {
        return;
    }
    let object = load("maps", &[]);
    let count = object.program("count").unwrap();
    // count increments counters[arg & 15] and returns the new value.
    for expected in 1..=3u32 {
        let run = count.test_run(&5u32.to_le_bytes(), 1).unwrap();
        assert_eq!(run.retval, expected);
    }
    assert_eq!(count.test_run(&21u32.to_le_bytes(), 1).unwrap().retval, 4);
    let counters = object.map("counters").unwrap();
    assert_eq!(
        counters.lookup(&5u32.to_le_bytes()).unwrap(),
        Some(4u64.to_le_bytes().to_vec())
    );
    assert_eq!(
        counters.lookup(&6u32.to_le_bytes()).unwrap(),
        Some(vec![0; 8])
    );
    // The host writes, the program sees it.
    counters
        .update(
            &7u32.to_le_bytes(),
            &41u64.to_le_bytes(),
            kernel_bpf::UPDATE_ANY,
        )
        .unwrap();
    assert_eq!(count.test_run(&7u32.to_le_bytes(), 1).unwrap().retval, 42);
    assert_eq!(counters.keys().unwrap().len(), 16);
    let e = counters.lookup(&[0; 3]).unwrap_err();
    assert_eq!(e.to_string(), "Map `counters` takes keys of 4 bytes, not 3");
    // A program that reads its context needs one.
    let e = count.test_run(&[], 1).unwrap_err();
    assert!(
        matches!(e, KernelError::ContextTooShort { given: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn globals_live_in_their_sections_maps() {
    if !bpf_available("globals_live_in_their_sections_maps") {
        return;
    }
    let mut object = sample("globals");
    object.set_variable("scale", &5u32.to_le_bytes()).unwrap();
    let loaded = KernelObject::load(&object, &LoadOptions::default()).unwrap();
    let globals = loaded.program("globals").unwrap();
    // sum = 1*10 + 2*20 + 3*30 + 4*40 = 300; total += x * scale + sum.
    let run = globals.test_run(&2u32.to_le_bytes(), 1).unwrap();
    assert_eq!(run.retval, 310);
    let run = globals.test_run(&1u32.to_le_bytes(), 1).unwrap();
    assert_eq!(run.retval, 615);
    assert_eq!(loaded.read_global("total").unwrap(), 615u64.to_le_bytes());
    assert_eq!(loaded.read_global("calls").unwrap(), 102u64.to_le_bytes());
    assert_eq!(loaded.read_global("scale").unwrap(), 5u32.to_le_bytes());
    assert_eq!(u64_at(&loaded.read_section(".bss").unwrap(), 0), 615);
    // .rodata is frozen: the host cannot write it either.
    let rodata = loaded.map(".rodata").unwrap();
    let value = rodata.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    assert!(rodata.update(&0u32.to_le_bytes(), &value, 0).is_err());
    let e = loaded.read_global("nope").unwrap_err();
    assert_eq!(
        e.to_string(),
        "The object has no global variable named `nope`"
    );
}

#[test]
fn an_arena_list_is_built_and_summed_in_the_kernel() {
    if !bpf_available("an_arena_list_is_built_and_summed_in_the_kernel") {
        return;
    }
    let object = match KernelObject::load(&sample("arena_list"), &LoadOptions::default()) {
        Ok(object) => object,
        Err(KernelError::Unsupported(why)) if why.contains("refuses BPF_MAP_TYPE_ARENA") => {
            // bpf() works (bpf_available) but this kernel refuses ARENA
            // maps to this process: a property of the host, not of ours.
            assert_eq!(
                why,
                "Cannot create ARENA map `arena`: this kernel refuses BPF_MAP_TYPE_ARENA maps (EPERM)"
            );
            eprintln!("SKIPPED an_arena_list_is_built_and_summed_in_the_kernel: {why}");
            return;
        }
        Err(e) => panic!("arena_list: {e:?}"),
    };
    // struct list_args { u32 n; u32 pages; u64 head; u64 sum; }
    let mut args = [0u8; 24];
    args[..4].copy_from_slice(&1000u32.to_le_bytes());
    let build = object
        .program("list_build")
        .unwrap()
        .test_run(&args, 1)
        .unwrap();
    assert_eq!(build.retval, 1000);
    let sum = object
        .program("list_sum")
        .unwrap()
        .test_run(&build.output, 1)
        .unwrap();
    assert_eq!(sum.retval, 1000);
    assert_eq!(u64_at(&sum.output, 16), 500_500);
    // The list's head is an __arena global, in the arena's last page.
    let head = u64_at(&object.read_global("list_head").unwrap(), 0);
    assert_eq!(head, u64_at(&build.output, 8));
    assert_eq!(
        object.read_global("list_len").unwrap(),
        1000u64.to_le_bytes()
    );
}

#[test]
fn kernel_ring_buffers_are_read_by_our_consumer() {
    if !bpf_available("kernel_ring_buffers_are_read_by_our_consumer") {
        return;
    }
    let object = load("ringbuf_hello", &["hello", "count"]);
    let mut events = object.ring_buffer("events").unwrap();
    assert_eq!(
        object
            .program("hello")
            .unwrap()
            .test_run(&[], 1)
            .unwrap()
            .retval,
        3
    );
    let records: Vec<Vec<u8>> = events.records().map(Result::unwrap).collect();
    assert_eq!(records, [&b"hello"[..], b"ring", b"buffer"]);
    // More than the 4 KiB ring holds at once (256 records of 16 bytes),
    // consumed between runs: the positions wrap around the ring.
    let mut seen = Vec::new();
    for batch in 0..4u32 {
        let mut span = [0u8; 8];
        span[..4].copy_from_slice(&(batch * 200).to_le_bytes());
        span[4..].copy_from_slice(&200u32.to_le_bytes());
        let run = object.program("count").unwrap().test_run(&span, 1).unwrap();
        assert_eq!(run.retval, 200);
        events
            .consume(|r| seen.push(r.read_pod::<u32>(0).unwrap()))
            .unwrap();
    }
    assert_eq!(seen, (0..800).collect::<Vec<u32>>());
    assert_eq!(events.available(), 0);
    let e = object.ring_buffer("nope").unwrap_err();
    assert_eq!(e.to_string(), "The object has no map named `nope`");
}

#[test]
fn the_ring_buffer_benchmark_loads_and_produces() {
    if !bpf_available("the_ring_buffer_benchmark_loads_and_produces") {
        return;
    }
    // Its producer loop is a bpf_loop: the kernel loads it only with BTF
    // func_info. As the bench loads it: XDP, 100 records per run.
    let mut object = sample("bench/ringbuf");
    object
        .set_variable("records", &100u64.to_le_bytes())
        .unwrap();
    let options = LoadOptions {
        program_type: Some(ProgramType::Xdp),
        programs: vec!["produce".into()],
    };
    let loaded = KernelObject::load(&object, &options).unwrap();
    let mut ring = loaded.ring_buffer("rb").unwrap();
    let produce = loaded.program("produce").unwrap();
    assert_eq!(produce.test_run(&[], 1).unwrap().retval, 2, "XDP_PASS");
    let mut seen = Vec::new();
    ring.consume(|r| seen.push(r.read_pod::<u64>(0).unwrap()))
        .unwrap();
    assert_eq!(seen, (0..100).collect::<Vec<u64>>());
    assert_eq!(
        loaded.read_global("produced").unwrap(),
        100u64.to_le_bytes()
    );
    assert_eq!(loaded.read_global("full").unwrap(), 0u64.to_le_bytes());
}

#[test]
fn a_short_context_is_named_as_the_cause() {
    if !bpf_available("a_short_context_is_named_as_the_cause") {
        return;
    }
    // loops reads a 4-byte count from its context.
    let object = load("callbacks", &[]);
    let e = object
        .program("loops")
        .unwrap()
        .test_run(&[1], 1)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Cannot run program `loops` with BPF_PROG_TEST_RUN: the kernel refuses a context shorter than what the program reads, and it was given 1 bytes (pass a longer context: --data)"
    );
}

#[test]
fn xdp_runs_honour_repeat_and_are_timed_by_the_kernel() {
    if !bpf_available("xdp_runs_honour_repeat_and_are_timed_by_the_kernel") {
        return;
    }
    // hello as XDP: 42 is not an XDP action, but TEST_RUN reports it.
    let options = LoadOptions {
        program_type: Some(ProgramType::Xdp),
        ..LoadOptions::default()
    };
    let object = KernelObject::load(&sample("hello"), &options);
    // bpf_trace_printk is allowed in XDP: the load succeeds.
    let object = object.unwrap();
    let run = object
        .program("hello")
        .unwrap()
        .test_run(&[], 1000)
        .unwrap();
    assert_eq!(run.retval, 42);
    assert_eq!(run.runs, 1000);
    assert!(run.timed_by_kernel);
    assert_eq!(run.output.len(), 64, "the minimal packet comes back");
}

#[test]
fn the_verifier_says_why_it_refuses() {
    if !bpf_available("the_verifier_says_why_it_refuses") {
        return;
    }
    // null_read dereferences NULL: the kernel's verifier refuses it.
    let e = KernelObject::load(&sample("null_read"), &LoadOptions::default()).unwrap_err();
    let KernelError::LoadProgram { reason, log, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(!log.is_empty());
    assert!(log.contains(reason.as_str()));
    assert!(
        e.to_string().starts_with("The kernel refused program `"),
        "{e}"
    );
}

#[test]
fn malformed_objects_are_errors_not_panics() {
    let bytes = std::fs::read(format!(
        "{}/../images/progs/maps.bpf.o",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    // Parsing refuses truncated files before the kernel sees anything.
    for cut in [0, 16, 64, bytes.len() / 2, bytes.len() - 1] {
        assert!(Object::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    if !bpf_available("malformed_objects_are_errors_not_panics") {
        return;
    }
    // Bytes flipped all over the file: code, relocations, BTF, map
    // definitions. Whatever still parses goes to the kernel, which loads
    // it or refuses it; nothing panics, and loads that fail say why.
    let (mut parsed, mut refused) = (0, 0);
    for at in (0..bytes.len()).step_by(5) {
        let mut bad = bytes.clone();
        bad[at] ^= 0xa5;
        let Ok(object) = Object::parse(&bad) else {
            continue;
        };
        parsed += 1;
        if let Err(e) = KernelObject::load(&object, &LoadOptions::default()) {
            assert!(!e.is_unavailable(), "{e}");
            assert!(!e.to_string().is_empty());
            refused += 1;
        }
    }
    assert!(
        parsed > 0 && refused > 0,
        "parsed {parsed}, refused {refused}"
    );
    // Asking for a program the object does not have.
    let options = LoadOptions {
        programs: vec!["nope".into()],
        ..LoadOptions::default()
    };
    let e = KernelObject::load(&sample("maps"), &options).unwrap_err();
    assert!(
        e.to_string().starts_with("Cannot link program `nope`"),
        "{e}"
    );
}
