//! The rows of the table: which program, in which group.

use crate::native;

/// Where a row sits in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Pure computation over global data: no helpers, no maps.
    Compute,
    /// Array and hash map lookups and updates.
    Maps,
    /// Per-CPU counters.
    PerCpu,
    /// Arena list build and walk.
    Arena,
    /// Ring buffer records from producers to a host consumer.
    RingBuf,
    /// One invocation, host to program and back.
    Invocation,
    /// Making a sandbox ready to run an object.
    Startup,
}

impl Group {
    /// Its name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Group::Compute => "compute",
            Group::Maps => "maps",
            Group::PerCpu => "per-cpu",
            Group::Arena => "arena",
            Group::RingBuf => "ringbuf",
            Group::Invocation => "invocation",
            Group::Startup => "startup",
        }
    }
}

/// One row: a program of a clang-built object in `images/progs/bench/`.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Row name (`hash`, `sort`, ...).
    pub name: &'static str,
    /// Its group.
    pub group: Group,
    /// What one run does, for the table's legend.
    pub what: &'static str,
    /// The object file's bytes.
    pub object: &'static [u8],
    /// The program (function) to run; an XDP program (`SEC("xdp")`) that
    /// reads its inputs from global data, writes its checksum to the
    /// global `__u64 result` and returns `XDP_PASS`. The checksum depends
    /// on the inputs only, not on how many runs came before, so every
    /// engine's batch of any size ends with the same one.
    pub program: &'static str,
    /// The same computation in native Rust, returning the same checksum,
    /// for compute rows.
    pub native: Option<fn() -> u64>,
}

/// The bytes of `images/progs/bench/NAME.bpf.o`.
macro_rules! bench_object {
    ($name:literal) => {
        include_bytes!(concat!("../../images/progs/bench/", $name, ".bpf.o"))
    };
}

/// Every workload of the suite, in table order. Each object's header
/// comment says exactly what its program computes.
pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "hash",
            group: Group::Compute,
            what: "FNV-1a over 4 KiB, 4 times",
            object: bench_object!("hash"),
            program: "hash",
            native: Some(native::hash),
        },
        Workload {
            name: "sort",
            group: Group::Compute,
            what: "bitonic sort of 256 u32",
            object: bench_object!("sort"),
            program: "sort",
            native: Some(native::sort),
        },
        Workload {
            name: "sieve",
            group: Group::Compute,
            what: "primes below 32768 (odd-only sieve)",
            object: bench_object!("sieve"),
            program: "sieve",
            native: Some(native::sieve),
        },
        Workload {
            name: "matmul",
            group: Group::Compute,
            what: "32x32 u32 matrix product",
            object: bench_object!("matmul"),
            program: "matmul",
            native: Some(native::matmul),
        },
        Workload {
            name: "array_map",
            group: Group::Maps,
            what: "256 updates + 4096 lookups, ARRAY",
            object: bench_object!("array_map"),
            program: "array_map",
            native: None,
        },
        Workload {
            name: "hash_map",
            group: Group::Maps,
            what: "256 updates + 1024 lookups, HASH",
            object: bench_object!("hash_map"),
            program: "hash_map",
            native: None,
        },
        Workload {
            name: "percpu_counter",
            group: Group::PerCpu,
            what: "4096 increments over 16 PERCPU_ARRAY counters",
            object: bench_object!("percpu_counter"),
            program: "percpu_counter",
            native: None,
        },
        Workload {
            name: "arena_list",
            group: Group::Arena,
            what: "build and walk a 4096-node list in an arena",
            object: bench_object!("arena_list"),
            program: "arena_list",
            native: None,
        },
    ]
}
