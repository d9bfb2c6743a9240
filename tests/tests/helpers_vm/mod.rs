//! Fixtures for the helper tests: raw x86 code in a real VM calls the
//! runtime's helpers the way JIT code does (SysV registers, one `call`).
#![allow(dead_code, reason = "each test file uses part of the fixtures")]

use iced_x86::code_asm::*;
use integration_tests::assemble;
use std::time::Duration;
use vmm::runtime::RuntimeImage;
use vmm::{Call, Outcome, RunReport, Sandbox, SandboxConfig};

/// A sandbox with `cpus` vCPUs and default sizes.
pub fn setup_sandbox(cpus: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cpus,
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

/// Guest address of the runtime function `name`.
pub fn helper(name: &str) -> u64 {
    RuntimeImage::embedded()
        .unwrap()
        .symbol(name)
        .unwrap_or_else(|| panic!("the runtime exports {name}"))
}

/// Writable guest memory for test data: `cpu`'s context buffer.
pub fn scratch(sandbox: &Sandbox, cpu: usize) -> u64 {
    sandbox.layout().ctx_buffer(cpu)
}

/// Assembles `build` at the start of the code region and loads it;
/// returns its entry. `build` is the body of a function entered with rsp
/// 8 off 16-byte alignment, as JIT code is.
pub fn load(sandbox: &Sandbox, build: impl FnOnce(&mut CodeAssembler)) -> u64 {
    let code = assemble(sandbox.layout().code_start(), build);
    sandbox.write_code(0, &code).unwrap()
}

/// Moves `args` into the SysV argument registers and calls `addr`; the
/// stack must be 16-byte aligned here.
pub fn emit_call(a: &mut CodeAssembler, addr: u64, args: &[u64]) {
    let regs = [rdi, rsi, rdx, rcx, r8];
    assert!(args.len() <= regs.len());
    for (&reg, &arg) in regs.iter().zip(args) {
        a.mov(reg, arg).unwrap();
    }
    a.mov(rax, addr).unwrap();
    a.call(rax).unwrap();
}

/// Loads code that calls helper `name` with `args` `times` times and
/// returns the last result.
pub fn load_helper_calls(sandbox: &Sandbox, name: &str, args: &[u64], times: u32) -> u64 {
    let addr = helper(name);
    load(sandbox, |a| {
        let mut top = a.create_label();
        // The push realigns the stack for the helper, which may use SSE.
        a.push(rbx).unwrap();
        a.mov(ebx, times).unwrap();
        a.set_label(&mut top).unwrap();
        emit_call(a, addr, args);
        a.dec(ebx).unwrap();
        a.jnz(top).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
    })
}

/// Runs `entry` once on `cpu` and returns its report.
pub fn run_report(sandbox: &Sandbox, cpu: usize, entry: u64) -> RunReport {
    let call = Call::new(entry).with_timeout(Duration::from_secs(20));
    sandbox.call(cpu, &call).unwrap()
}

/// Runs `entry` once on `cpu`, checks that the helpers it called made no
/// VM exit (the run's own is the only one), and returns r0.
pub fn run(sandbox: &Sandbox, cpu: usize, entry: u64) -> u64 {
    let report = run_report(sandbox, cpu, entry);
    assert_eq!(report.exits, 1, "helpers stay in the guest: {report:?}");
    match report.outcome {
        Outcome::Returned(r0) => r0,
        other => panic!("expected a return, got {other:?}"),
    }
}

/// Calls helper `name` once with `args` on `cpu`; returns r0.
pub fn call_helper(sandbox: &Sandbox, cpu: usize, name: &str, args: &[u64]) -> u64 {
    let entry = load_helper_calls(sandbox, name, args, 1);
    run(sandbox, cpu, entry)
}

/// A map built by the test in the sandbox's maps region, as the host
/// will build maps: its `MapHeader` on a page, its storage after it.
pub struct TestMap {
    /// Its validated definition.
    pub def: shm::maps::MapDef,
    /// Guest address of its header (what a program's map pointer is).
    pub header: u64,
    /// Guest address of its storage.
    pub data: u64,
}

/// Hands out page-aligned room in the maps region for [`TestMap`]s.
pub struct MapArena {
    next: u64,
    end: u64,
}

impl MapArena {
    /// The whole maps region of `sandbox`.
    pub fn new(sandbox: &Sandbox) -> MapArena {
        let layout = sandbox.layout();
        MapArena {
            next: layout.maps_start(),
            end: layout.maps_start() + layout.maps_size(),
        }
    }

    /// Creates a map: header, then storage initialised by
    /// `shm::maps::ops::init`, as the host does.
    pub fn create(&mut self, sandbox: &Sandbox, def: shm::maps::MapDef) -> TestMap {
        let header = self.next;
        let data = header + shm::layout::PAGE_SIZE;
        let size = def.storage_size() as u64;
        self.next = (data + size).next_multiple_of(shm::layout::PAGE_SIZE);
        assert!(self.next <= self.end, "maps region too small");
        sandbox
            .memory()
            .write_pod(header, &def.header(data))
            .unwrap();
        let map = TestMap { def, header, data };
        map.with_storage(sandbox, |mem| {
            shm::maps::ops::init(&map.def, mem).unwrap();
        });
        map
    }
}

impl TestMap {
    /// Runs `f` over a copy of the storage, then writes the copy back:
    /// host-side reads and writes through the same algorithms (no vCPU
    /// may be running).
    pub fn with_storage<T>(
        &self,
        sandbox: &Sandbox,
        f: impl FnOnce(&shm::maps::StorageView<'_>) -> T,
    ) -> T {
        use std::sync::atomic::AtomicU64;
        let size = self.def.storage_size();
        let mut bytes = vec![0u8; size.next_multiple_of(8)];
        sandbox
            .memory()
            .read(self.data, &mut bytes[..size])
            .unwrap();
        let words: Vec<AtomicU64> = bytes
            .chunks(8)
            .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap())))
            .collect();
        let view = shm::maps::StorageView::from_atomic(&words, self.data);
        let result = f(&view);
        let bytes: Vec<u8> = words
            .iter()
            .flat_map(|w| w.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes())
            .collect();
        sandbox.memory().write(self.data, &bytes[..size]).unwrap();
        result
    }

    /// The host's lookup: every CPU's copy of the value (one for maps that
    /// are not per-CPU), or `None`.
    pub fn lookup_sys(&self, sandbox: &Sandbox, key: &[u8]) -> Option<Vec<Vec<u8>>> {
        use shm::maps::MapMemory;
        self.with_storage(sandbox, |mem| {
            let off = shm::maps::ops::lookup_sys(&self.def, mem, key).unwrap()?;
            let cpus = if self.def.map_type().is_percpu() {
                self.def.nr_cpus()
            } else {
                1
            };
            let values = (0..cpus)
                .map(|cpu| {
                    let at = self.def.percpu_value_off(off, cpu).unwrap();
                    let mut value = vec![0u8; self.def.value_len()];
                    mem.read(at, &mut value).unwrap();
                    value
                })
                .collect();
            Some(values)
        })
    }
}
