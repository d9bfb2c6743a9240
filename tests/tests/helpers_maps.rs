//! The map helpers in a real VM, over maps the test builds in the maps
//! region exactly as the host does (header + storage initialised by
//! `shm::maps`): raw x86 calls the helpers as JIT code would, and the host
//! checks the results through the same algorithms. No helper leaves the
//! guest.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod helpers_vm;

use helpers_vm::*;
use iced_x86::code_asm::*;
use integration_tests::kvm_available;
use shm::maps::{BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapDef, MapType};
use std::time::Duration;
use vmm::{Call, Outcome, Sandbox};

const ENOENT: i64 = -2;
const E2BIG: i64 = -7;
const EFAULT: i64 = -14;
const EEXIST: i64 = -17;
const EINVAL: i64 = -22;

fn def(ty: MapType, key: u32, value: u32, max: u32, cpus: u32) -> MapDef {
    MapDef::new(ty as u32, key, value, max, 0, cpus).unwrap()
}

/// Where keys and values go in CPU `cpu`'s scratch memory.
fn key_at(sandbox: &Sandbox, cpu: usize) -> u64 {
    scratch(sandbox, cpu)
}

fn value_at(sandbox: &Sandbox, cpu: usize) -> u64 {
    scratch(sandbox, cpu) + 0x1000
}

/// Calls `name(map, key, ...)` on `cpu` with `key` and `value` (if any)
/// written to scratch memory first; `rest` are the arguments after them.
fn call_map(
    sandbox: &Sandbox,
    cpu: usize,
    name: &str,
    map: u64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    rest: &[u64],
) -> u64 {
    let mut args = vec![map];
    if let Some(key) = key {
        sandbox.memory().write(key_at(sandbox, cpu), key).unwrap();
        args.push(key_at(sandbox, cpu));
    }
    if let Some(value) = value {
        sandbox
            .memory()
            .write(value_at(sandbox, cpu), value)
            .unwrap();
        args.push(value_at(sandbox, cpu));
    }
    args.extend_from_slice(rest);
    call_helper(sandbox, cpu, name, &args)
}

fn lookup(sandbox: &Sandbox, map: &TestMap, key: &[u8]) -> u64 {
    call_map(
        sandbox,
        0,
        "bpf_map_lookup_elem",
        map.header,
        Some(key),
        None,
        &[],
    )
}

fn update(sandbox: &Sandbox, map: &TestMap, key: &[u8], value: &[u8], flags: u64) -> i64 {
    call_map(
        sandbox,
        0,
        "bpf_map_update_elem",
        map.header,
        Some(key),
        Some(value),
        &[flags],
    ) as i64
}

fn delete(sandbox: &Sandbox, map: &TestMap, key: &[u8]) -> i64 {
    call_map(
        sandbox,
        0,
        "bpf_map_delete_elem",
        map.header,
        Some(key),
        None,
        &[],
    ) as i64
}

fn read(sandbox: &Sandbox, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    sandbox.memory().read(addr, &mut bytes).unwrap();
    bytes
}

#[test]
fn array_lookups_point_into_the_storage_and_updates_land_there() {
    if !kvm_available("array_lookups_point_into_the_storage_and_updates_land_there") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let map = MapArena::new(&sandbox).create(&sandbox, def(MapType::Array, 4, 12, 10, 1));
    let value = *b"twelve bytes";
    assert_eq!(
        update(&sandbox, &map, &3u32.to_le_bytes(), &value, BPF_ANY),
        0
    );
    // Value 3 at 3 * round_up(12, 8).
    let addr = lookup(&sandbox, &map, &3u32.to_le_bytes());
    assert_eq!(addr, map.data + 3 * 16);
    assert_eq!(read(&sandbox, addr, 12), value);
    assert_eq!(
        map.lookup_sys(&sandbox, &3u32.to_le_bytes()),
        Some(vec![value.to_vec()])
    );
    // Past the end: NULL, -E2BIG; every element exists: -EEXIST; no delete.
    assert_eq!(lookup(&sandbox, &map, &10u32.to_le_bytes()), 0);
    assert_eq!(
        update(&sandbox, &map, &10u32.to_le_bytes(), &value, BPF_ANY),
        E2BIG
    );
    assert_eq!(
        update(&sandbox, &map, &1u32.to_le_bytes(), &value, BPF_NOEXIST),
        EEXIST
    );
    assert_eq!(delete(&sandbox, &map, &1u32.to_le_bytes()), EINVAL);
    assert_eq!(
        update(&sandbox, &map, &1u32.to_le_bytes(), &value, 99),
        EINVAL
    );
}

#[test]
fn hash_updates_lookups_and_deletes_follow_the_flags() {
    if !kvm_available("hash_updates_lookups_and_deletes_follow_the_flags") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let map = MapArena::new(&sandbox).create(&sandbox, def(MapType::Hash, 8, 8, 64, 1));
    let key = |k: u64| k.to_le_bytes();
    for k in 0..64u64 {
        assert_eq!(
            update(&sandbox, &map, &key(k), &(k * k).to_le_bytes(), BPF_NOEXIST),
            0
        );
    }
    // Full: a new key is -E2BIG, an existing one may be replaced.
    assert_eq!(update(&sandbox, &map, &key(64), &[0; 8], BPF_ANY), E2BIG);
    assert_eq!(
        update(&sandbox, &map, &key(5), &[7; 8], BPF_NOEXIST),
        EEXIST
    );
    assert_eq!(update(&sandbox, &map, &key(5), &[7; 8], BPF_EXIST), 0);
    for k in 0..64u64 {
        let addr = lookup(&sandbox, &map, &key(k));
        assert_ne!(addr, 0, "key {k}");
        let want = if k == 5 {
            [7; 8]
        } else {
            (k * k).to_le_bytes()
        };
        assert_eq!(read(&sandbox, addr, 8), want, "key {k}");
        assert_eq!(map.lookup_sys(&sandbox, &key(k)), Some(vec![want.to_vec()]));
    }
    assert_eq!(delete(&sandbox, &map, &key(5)), 0);
    assert_eq!(delete(&sandbox, &map, &key(5)), ENOENT);
    assert_eq!(lookup(&sandbox, &map, &key(5)), 0);
    assert_eq!(map.lookup_sys(&sandbox, &key(5)), None);
    assert_eq!(update(&sandbox, &map, &key(5), &[1; 8], BPF_EXIST), ENOENT);
    // The freed element is reused.
    assert_eq!(update(&sandbox, &map, &key(100), &[1; 8], BPF_NOEXIST), 0);
}

#[test]
fn per_cpu_maps_keep_one_value_per_vcpu() {
    if !kvm_available("per_cpu_maps_keep_one_value_per_vcpu") {
        return;
    }
    let cpus = 3;
    let sandbox = setup_sandbox(cpus);
    let mut arena = MapArena::new(&sandbox);
    let array = arena.create(&sandbox, def(MapType::PercpuArray, 4, 8, 4, cpus as u32));
    let hash = arena.create(&sandbox, def(MapType::PercpuHash, 4, 8, 4, cpus as u32));
    let key = 2u32.to_le_bytes();
    for map in [&array, &hash] {
        for cpu in 0..cpus {
            let value = (100 + cpu as u64).to_le_bytes();
            let r0 = call_map(
                &sandbox,
                cpu,
                "bpf_map_update_elem",
                map.header,
                Some(&key),
                Some(&value),
                &[BPF_ANY],
            );
            assert_eq!(r0, 0, "cpu {cpu}");
        }
        let all = map.lookup_sys(&sandbox, &key).unwrap();
        let want: Vec<Vec<u8>> = (0..cpus)
            .map(|c| (100 + c as u64).to_le_bytes().to_vec())
            .collect();
        assert_eq!(all, want);
        for (cpu, want) in want.iter().enumerate() {
            // This vCPU's copy, and any vCPU's copy from vCPU 0.
            let mine = call_map(
                &sandbox,
                cpu,
                "bpf_map_lookup_elem",
                map.header,
                Some(&key),
                None,
                &[],
            );
            assert_eq!(&read(&sandbox, mine, 8), want, "cpu {cpu}");
            let theirs = call_map(
                &sandbox,
                0,
                "bpf_map_lookup_percpu_elem",
                map.header,
                Some(&key),
                None,
                &[cpu as u64],
            );
            assert_eq!(theirs, mine, "cpu {cpu}");
        }
        let past = call_map(
            &sandbox,
            0,
            "bpf_map_lookup_percpu_elem",
            map.header,
            Some(&key),
            None,
            &[cpus as u64],
        );
        assert_eq!(past, 0, "a CPU out of range is NULL");
    }
}

#[test]
fn queues_and_stacks_push_pop_and_peek_in_their_orders() {
    if !kvm_available("queues_and_stacks_push_pop_and_peek_in_their_orders") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    for (ty, order) in [(MapType::Queue, [1u32, 2, 3]), (MapType::Stack, [3, 2, 1])] {
        let map = arena.create(&sandbox, def(ty, 0, 4, 3, 1));
        let push = |v: u32, flags: u64| {
            call_map(
                &sandbox,
                0,
                "bpf_map_push_elem",
                map.header,
                None,
                Some(&v.to_le_bytes()),
                &[flags],
            ) as i64
        };
        let take = |name: &str| {
            sandbox
                .memory()
                .write(value_at(&sandbox, 0), &[0xee; 4])
                .unwrap();
            let r0 = call_helper(&sandbox, 0, name, &[map.header, value_at(&sandbox, 0)]) as i64;
            let v =
                u32::from_le_bytes(read(&sandbox, value_at(&sandbox, 0), 4).try_into().unwrap());
            (r0, v)
        };
        for v in 1..=3 {
            assert_eq!(push(v, BPF_ANY), 0);
        }
        assert_eq!(push(4, BPF_ANY), E2BIG, "{ty:?} full");
        assert_eq!(take("bpf_map_peek_elem"), (0, order[0]), "{ty:?}");
        for want in order {
            assert_eq!(take("bpf_map_pop_elem"), (0, want), "{ty:?}");
        }
        assert_eq!(take("bpf_map_pop_elem"), (ENOENT, 0), "{ty:?} empty");
        assert_eq!(take("bpf_map_peek_elem"), (ENOENT, 0), "{ty:?} empty");
        // A queue or stack has no lookup.
        assert_eq!(lookup(&sandbox, &map, &[]), 0);
    }
}

#[test]
fn a_map_of_maps_lookup_returns_the_inner_map() {
    if !kvm_available("a_map_of_maps_lookup_returns_the_inner_map") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    let inner = arena.create(&sandbox, def(MapType::Array, 4, 8, 2, 1));
    let outer = arena.create(&sandbox, def(MapType::ArrayOfMaps, 4, 4, 4, 1));
    let hash_outer = arena.create(&sandbox, def(MapType::HashOfMaps, 4, 4, 4, 1));
    // The host stores the inner header's address in the slot.
    let slot = 1u32.to_le_bytes();
    for map in [&outer, &hash_outer] {
        map.with_storage(&sandbox, |mem| {
            shm::maps::ops::update_sys(&map.def, mem, &slot, &inner.header.to_le_bytes(), BPF_ANY)
                .unwrap();
        });
        assert_eq!(lookup(&sandbox, map, &slot), inner.header);
        assert_eq!(lookup(&sandbox, map, &0u32.to_le_bytes()), 0, "empty slot");
        // Programs may only look maps of maps up.
        assert_eq!(
            update(&sandbox, map, &0u32.to_le_bytes(), &[0; 8], BPF_ANY),
            EINVAL
        );
        assert_eq!(delete(&sandbox, map, &slot), EINVAL);
    }
    // What the lookup returned is a map pointer for the next helper.
    let inner_ptr = lookup(&sandbox, &outer, &slot);
    let r0 = call_map(
        &sandbox,
        0,
        "bpf_map_update_elem",
        inner_ptr,
        Some(&1u32.to_le_bytes()),
        Some(&42u64.to_le_bytes()),
        &[BPF_ANY],
    );
    assert_eq!(r0, 0);
    assert_eq!(
        inner.lookup_sys(&sandbox, &1u32.to_le_bytes()),
        Some(vec![42u64.to_le_bytes().to_vec()])
    );
}

/// Loads code that runs `bpf_for_each_map_elem(map, callback, ctx, 0)`
/// with ctx at scratch + 0 holding {sum of values (u64), sum of keys
/// (u64)}; the callback reads the key and value as u32 / u64 and stops
/// (returns 1) after `stop_after` calls. Returns (r0, value sum, key sum).
fn for_each(sandbox: &Sandbox, map: u64, key_is_u32: bool, stop_after: u64) -> (i64, u64, u64) {
    let ctx = scratch(sandbox, 0);
    sandbox.memory().write(ctx, &[0; 24]).unwrap();
    let for_each = helper("bpf_for_each_map_elem");
    let entry = load(sandbox, |a| {
        let mut callback = a.create_label();
        let mut go_on = a.create_label();
        a.push(rbx).unwrap();
        a.mov(rdi, map).unwrap();
        a.lea(rsi, ptr(callback)).unwrap();
        a.mov(rdx, ctx).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, for_each).unwrap();
        a.call(rax).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
        // callback(map = rdi, key = rsi, value = rdx, ctx = rcx)
        a.set_label(&mut callback).unwrap();
        a.mov(rax, qword_ptr(rdx)).unwrap();
        a.add(qword_ptr(rcx), rax).unwrap();
        if key_is_u32 {
            a.mov(eax, dword_ptr(rsi)).unwrap();
        } else {
            a.mov(rax, qword_ptr(rsi)).unwrap();
        }
        a.add(qword_ptr(rcx + 8), rax).unwrap();
        a.inc(qword_ptr(rcx + 16)).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(rdx, stop_after).unwrap();
        a.cmp(qword_ptr(rcx + 16), rdx).unwrap();
        a.jb(go_on).unwrap();
        a.mov(eax, 1).unwrap();
        a.set_label(&mut go_on).unwrap();
        a.ret().unwrap();
    });
    let r0 = run(sandbox, 0, entry) as i64;
    let sums = read(sandbox, ctx, 16);
    let at = |k: usize| u64::from_le_bytes(sums[k..k + 8].try_into().unwrap());
    (r0, at(0), at(8))
}

#[test]
fn for_each_visits_every_element_with_its_key_and_value() {
    if !kvm_available("for_each_visits_every_element_with_its_key_and_value") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    let array = arena.create(&sandbox, def(MapType::Array, 4, 8, 10, 1));
    for i in 0..10u32 {
        let value = u64::from(i * i).to_le_bytes();
        assert_eq!(
            update(&sandbox, &array, &i.to_le_bytes(), &value, BPF_ANY),
            0
        );
    }
    // 0² + … + 9² = 285, keys 0 + … + 9 = 45.
    assert_eq!(
        for_each(&sandbox, array.header, true, u64::MAX),
        (10, 285, 45)
    );
    // Stopping after 4 calls: 0 + 1 + 4 + 9, keys 0..4.
    assert_eq!(for_each(&sandbox, array.header, true, 4), (4, 14, 6));
    let hash = arena.create(&sandbox, def(MapType::Hash, 8, 8, 32, 1));
    for k in [3u64, 17, 1000, 5] {
        assert_eq!(
            update(
                &sandbox,
                &hash,
                &k.to_le_bytes(),
                &(k * 2).to_le_bytes(),
                BPF_ANY
            ),
            0
        );
    }
    assert_eq!(
        for_each(&sandbox, hash.header, false, u64::MAX),
        (4, 2050, 1025)
    );
    // Flags, a queue, a callback outside JIT code.
    let queue = arena.create(&sandbox, def(MapType::Queue, 0, 8, 4, 1));
    assert_eq!(for_each(&sandbox, queue.header, false, u64::MAX).0, EINVAL);
    let fe = "bpf_for_each_map_elem";
    let code = sandbox.layout().code_start();
    assert_eq!(
        call_helper(&sandbox, 0, fe, &[array.header, code, 0, 1]) as i64,
        EINVAL
    );
    let outside = helper("bpf_ktime_get_ns");
    assert_eq!(
        call_helper(&sandbox, 0, fe, &[array.header, outside, 0, 0]) as i64,
        EINVAL
    );
}

#[test]
fn bad_map_and_key_pointers_give_null_or_errors_not_traps() {
    if !kvm_available("bad_map_and_key_pointers_give_null_or_errors_not_traps") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let map = MapArena::new(&sandbox).create(&sandbox, def(MapType::Hash, 4, 4, 8, 1));
    let unmapped = sandbox.layout().percpu_area(0);
    let not_a_map = scratch(&sandbox, 0) + 0x2000;
    sandbox.memory().write(not_a_map, &[0x55; 64]).unwrap();
    let key = key_at(&sandbox, 0);
    for bad in [0, 3, unmapped, not_a_map, 0x8000_0000_0000_0000] {
        assert_eq!(
            call_helper(&sandbox, 0, "bpf_map_lookup_elem", &[bad, key]),
            0
        );
        let r0 = call_helper(&sandbox, 0, "bpf_map_update_elem", &[bad, key, key, 0]) as i64;
        assert!(r0 == EINVAL || r0 == EFAULT, "map {bad:#x}: {r0}");
    }
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_map_lookup_elem", &[map.header, unmapped]),
        0
    );
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_map_update_elem",
        &[map.header, key, unmapped, 0],
    );
    assert_eq!(r0 as i64, EFAULT);
    let r0 = call_helper(&sandbox, 0, "bpf_map_delete_elem", &[map.header, unmapped]);
    assert_eq!(r0 as i64, EFAULT);
    // A header whose magic is right but geometry wrong is refused too.
    let mut header = map.def.header(map.data);
    header.data_size += 8;
    sandbox.memory().write_pod(not_a_map, &header).unwrap();
    assert_eq!(
        call_helper(&sandbox, 0, "bpf_map_lookup_elem", &[not_a_map, key]),
        0
    );
}

#[test]
fn values_larger_than_the_runtime_buffer_are_read_in_place() {
    if !kvm_available("values_larger_than_the_runtime_buffer_are_read_in_place") {
        return;
    }
    let sandbox = setup_sandbox(1);
    let mut arena = MapArena::new(&sandbox);
    let size = 10_000u32;
    let map = arena.create(&sandbox, def(MapType::Hash, 4, size, 2, 1));
    let value: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    assert_eq!(
        update(&sandbox, &map, &9u32.to_le_bytes(), &value, BPF_ANY),
        0
    );
    let addr = lookup(&sandbox, &map, &9u32.to_le_bytes());
    assert_eq!(read(&sandbox, addr, size as usize), value);
    // A value running into an unmapped page: -EFAULT, nothing stored.
    let end = scratch(&sandbox, 0) + sandbox.layout().ctx_size();
    let r0 = call_helper(
        &sandbox,
        0,
        "bpf_map_update_elem",
        &[map.header, key_at(&sandbox, 0), end - 100, BPF_ANY],
    );
    assert_eq!(r0 as i64, EFAULT);
    let queue = arena.create(&sandbox, def(MapType::Queue, 0, size, 2, 1));
    let push = call_map(
        &sandbox,
        0,
        "bpf_map_push_elem",
        queue.header,
        None,
        Some(&value),
        &[0],
    );
    assert_eq!(push, 0);
    sandbox
        .memory()
        .write(value_at(&sandbox, 0), &vec![0; size as usize])
        .unwrap();
    let pop = call_helper(
        &sandbox,
        0,
        "bpf_map_pop_elem",
        &[queue.header, value_at(&sandbox, 0)],
    );
    assert_eq!(pop, 0);
    assert_eq!(read(&sandbox, value_at(&sandbox, 0), size as usize), value);
}

#[test]
fn vcpus_update_one_hash_at_once() {
    if !kvm_available("vcpus_update_one_hash_at_once") {
        return;
    }
    let cpus = 4;
    let per_cpu = 500u64;
    let sandbox = setup_sandbox(cpus);
    let total = per_cpu * cpus as u64;
    let map = MapArena::new(&sandbox).create(
        &sandbox,
        def(MapType::Hash, 8, 8, total as u32, cpus as u32),
    );
    // Each vCPU inserts keys cpu, cpu + 4, cpu + 8, … with value key + 1,
    // its key and value in its own context buffer.
    let update = helper("bpf_map_update_elem");
    let ctx_buf = std::mem::offset_of!(shm::percpu::PerCpu, ctx_buf) as u64;
    let entry = load(&sandbox, |a| {
        let mut top = a.create_label();
        let mut failed = a.create_label();
        a.push(rbx).unwrap(); // key
        a.push(r12).unwrap(); // context buffer
        a.push(r13).unwrap(); // padding
        a.mov(r12, qword_ptr(ctx_buf).gs()).unwrap();
        a.mov(rbx, qword_ptr(shm::percpu::CPU_ID_OFFSET as u64).gs())
            .unwrap();
        a.set_label(&mut top).unwrap();
        a.mov(qword_ptr(r12), rbx).unwrap();
        a.lea(rax, qword_ptr(rbx + 1)).unwrap();
        a.mov(qword_ptr(r12 + 8), rax).unwrap();
        a.mov(rdi, map.header).unwrap();
        a.mov(rsi, r12).unwrap();
        a.lea(rdx, qword_ptr(r12 + 8)).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, update).unwrap();
        a.call(rax).unwrap();
        a.test(rax, rax).unwrap();
        a.jnz(failed).unwrap();
        a.add(rbx, cpus as i32).unwrap();
        a.mov(rax, total).unwrap();
        a.cmp(rbx, rax).unwrap();
        a.jb(top).unwrap();
        a.xor(eax, eax).unwrap();
        // Returns 0, or the first failing update's result.
        a.set_label(&mut failed).unwrap();
        a.pop(r13).unwrap();
        a.pop(r12).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    });
    let call = Call::new(entry).with_timeout(Duration::from_secs(30));
    for report in sandbox.call_on_all(&call) {
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::Returned(0));
        assert_eq!(report.exits, 1);
    }
    // Every key, checked on one copy of the storage.
    map.with_storage(&sandbox, |mem| {
        use shm::maps::MapMemory;
        for k in 0..total {
            let off = shm::maps::ops::lookup_sys(&map.def, mem, &k.to_le_bytes()).unwrap();
            let mut value = [0u8; 8];
            mem.read(off.expect("every key is there"), &mut value)
                .unwrap();
            assert_eq!(u64::from_le_bytes(value), k + 1, "key {k}");
        }
    });
}
