//! The rows of the table: which program, in which group.

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

/// Every workload of the suite, in table order.
pub fn workloads() -> Vec<Workload> {
    Vec::new()
}
