//! Ring buffer throughput: producers (1 or 2 vCPUs, or host CPUs running
//! the kernel's BPF) each put a batch of 8-byte records into a 512 KiB
//! ring while one host thread consumes them; one run is one record, from
//! the start of the batch until the consumer has every record.
//!
//! The program is images/progs/bench/ringbuf.bpf.o (see its comment); its
//! records are each producer's sequence numbers, so the consumer's sum of
//! them is the row's checksum, equal in every engine when no record was
//! lost or repeated.

use super::{failed, loaded};
use crate::engine::{BenchError, Prepared, Sample};
use crate::engines::vm::global_u64;
use crate::row::{Cell, CellState, Row};
use crate::suite::Group;
use guest_jit::elf::Object;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmm::affinity::Pinned;
use vmm::{CpuSet, Outcome, ProgramId, RingBufConsumer, Sandbox, SandboxConfig};

pub(crate) const RINGBUF: &[u8] = include_bytes!("../../../images/progs/bench/ringbuf.bpf.o");
/// `records` in ringbuf.bpf.c: records per producer per run.
pub(crate) const RECORDS: u64 = 65536;
/// How many records `producers` produced in a batch, from the program's
/// `produced` before and after it: at most a batch's worth each. The
/// count lives in memory the programs write, and the consumer waits for
/// that many records, so a count no batch could reach is an error rather
/// than a wait for records that never come.
pub(crate) fn produced_since(before: u64, after: u64, producers: usize) -> Result<u64, String> {
    let produced = after.wrapping_sub(before);
    let most = RECORDS.saturating_mul(producers as u64);
    if produced > most {
        return Err(format!(
            "`produced` moved by {produced}, more than {producers} producer(s) make"
        ));
    }
    Ok(produced)
}

/// `total` before the producers have finished.
const UNKNOWN: u64 = u64::MAX;

/// How the consumer waits for records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consumer {
    /// Producers commit with BPF_RB_NO_WAKEUP and the consumer spins on
    /// `consume`: the ring alone.
    Spins,
    /// Producers commit with no flags (the kernel's wakeup rule) and the
    /// consumer waits in `poll`, as libbpf's `ring_buffer__poll`.
    Polls,
}

impl Consumer {
    /// The program's `commit_flags` for this mode.
    fn commit_flags(self) -> u64 {
        match self {
            Consumer::Spins => shm::ringbuf::RB_NO_WAKEUP,
            Consumer::Polls => 0,
        }
    }

    /// Consumes what there is from `consumer` (waiting a little for it
    /// when polling), handing each record's value to `each`.
    pub(crate) fn consume(
        self,
        consumer: &mut RingBufConsumer,
        each: &mut dyn FnMut(u64),
    ) -> Result<usize, String> {
        let each = |r: &vmm::Record<'_>| each(r.read_pod::<u64>(0).unwrap_or(0));
        match self {
            Consumer::Spins => consumer.consume(each),
            Consumer::Polls => consumer.poll(Some(Duration::from_millis(1)), each),
        }
        .map_err(|e| e.to_string())
    }
}

/// The ring program with its commit flags set for `mode`.
pub(crate) fn object(mode: Consumer) -> Result<Object, BenchError> {
    let mut object = Object::parse(RINGBUF).map_err(|e| failed(&e))?;
    object
        .set_variable("commit_flags", &mode.commit_flags().to_le_bytes())
        .map_err(|e| failed(&e))?;
    Ok(object)
}

pub(super) fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for mode in [Consumer::Spins, Consumer::Polls] {
        for producers in [1usize, 2] {
            let (suffix, how) = match mode {
                Consumer::Spins => ("", "submitted with BPF_RB_NO_WAKEUP, read by a spinning"),
                Consumer::Polls => (", poll", "submitted, read by a polling"),
            };
            rows.push(Row {
                name: format!(
                    "ringbuf, {producers} producer{}{suffix}",
                    if producers > 1 { "s" } else { "" }
                ),
                group: Group::RingBuf,
                what: format!(
                    "one 8-byte record reserved, written and {how} host consumer; batches of \
                     {RECORDS} records per producer"
                ),
                checked: true,
                pin: None,
                cells: vec![
                    Cell {
                        column: "vm",
                        state: CellState::from_prepared(VmRing::prepare(producers, mode)),
                    },
                    Cell {
                        column: "kernel",
                        state: CellState::from_prepared(super::kernel::Ring::prepare(
                            producers, mode,
                        )),
                    },
                ],
            });
        }
    }
    rows
}

/// Consumes records until `total` (set once the producers are done) have
/// come; returns their sum. Gives up when `total` never comes.
pub(crate) fn consume_all(
    mut consume: impl FnMut(&mut dyn FnMut(u64)) -> Result<usize, String>,
    total: &AtomicU64,
) -> Result<u64, String> {
    let mut got = 0u64;
    let mut sum = 0u64;
    loop {
        let n = consume(&mut |value| sum = sum.wrapping_add(value))?;
        got += n as u64;
        let wanted = total.load(Ordering::Acquire);
        if wanted != UNKNOWN && got >= wanted {
            return if got == wanted {
                Ok(sum)
            } else {
                Err(format!("consumed {got} records, {wanted} were produced"))
            };
        }
        if n == 0 {
            // Leave the producer's cache lines alone for a moment.
            (0..64).for_each(|_| std::hint::spin_loop());
        }
    }
}

/// The CPUs this process may run on, in order: the consumer takes the
/// last, producers the others (Note [Ring rows' CPUs]).
pub(crate) fn cpus() -> Vec<usize> {
    match CpuSet::allowed() {
        Ok(set) if !set.is_empty() => set.cpus().collect(),
        _ => vec![0],
    }
}

/// The CPU the consumer runs on.
fn consumer_cpu() -> usize {
    cpus().last().copied().unwrap_or(0)
}

/// The CPUs left to producers.
pub(crate) fn producer_cpus() -> Vec<usize> {
    let mut cpus = cpus();
    cpus.pop();
    cpus
}

// Note [Ring rows' CPUs]
// ~~~~~~~~~~~~~~~~~~~~~~
// The kernel runs an XDP program's BPF_PROG_TEST_RUN without preemption:
// a producer thread holds its CPU for the whole batch. A consumer the
// scheduler happened to put on the same CPU would not run until the
// producer gave up on a full ring, and the row would measure that
// accident. So the consumer thread is pinned to the last CPU and each
// kernel producer thread to one of the others, and a kernel row needs a
// CPU per producer besides the consumer's (on a 2-CPU machine, one
// producer). The VM's vCPUs are pinned likewise, to the CPUs other than
// the consumer's (`SandboxConfig::vcpu_affinity`), when there are CPUs
// enough; unpinned, the scheduler put a vCPU beside the spinning consumer
// often enough to double the VM's time per record. With more producers
// than other CPUs they float: the host may preempt a vCPU, so they still
// make progress.

/// Pins the calling thread to `cpu` until the guard is dropped (best
/// effort: unpinned, the figures are only noisier).
pub(crate) fn pin_to(cpu: usize) -> Option<Pinned> {
    Pinned::to(&CpuSet::of([cpu])).ok()
}

/// Runs `produce` (which returns how many records it produced) beside a
/// consumer thread running `consume`; returns (records, their sum, time).
pub(crate) fn batch(
    produce: impl FnOnce() -> Result<u64, String>,
    consume: impl FnMut(&mut dyn FnMut(u64)) -> Result<usize, String> + Send,
) -> Result<(u64, u64, Duration), String> {
    let total = AtomicU64::new(UNKNOWN);
    let start = Instant::now();
    std::thread::scope(|s| {
        let total = &total;
        let consumer = s.spawn(move || {
            let _pinned = pin_to(consumer_cpu());
            consume_all(consume, total)
        });
        let produced = produce();
        // Tell the consumer how many to wait for, or that none will come.
        total.store(*produced.as_ref().unwrap_or(&0), Ordering::Release);
        let sum = consumer
            .join()
            .map_err(|_| "the consumer thread panicked".to_owned())??;
        Ok((produced?, sum, start.elapsed()))
    })
}

struct VmRing {
    sandbox: Sandbox,
    object: Object,
    produce: ProgramId,
    consumer: RingBufConsumer,
    cpus: Vec<usize>,
    mode: Consumer,
}

impl VmRing {
    fn prepare(producers: usize, mode: Consumer) -> Result<Box<dyn Prepared>, BenchError> {
        let object = object(mode)?;
        // Note [Ring rows' CPUs]: the vCPUs keep off the consumer's CPU
        // when there are CPUs enough for both.
        let others = producer_cpus();
        let vcpu_affinity = (producers <= others.len()).then(|| CpuSet::of(others));
        let config = SandboxConfig {
            cpus: producers,
            vcpu_affinity,
            ..SandboxConfig::default()
        };
        let (sandbox, produce) = loaded(&object, config, "produce")?;
        let consumer = sandbox.ring_buffer("rb").map_err(|e| failed(&e))?;
        Ok(Box::new(VmRing {
            sandbox,
            object,
            produce,
            consumer,
            cpus: (0..producers).collect(),
            mode,
        }))
    }

    fn produced(&self) -> Result<u64, String> {
        global_u64(&self.sandbox, &self.object, "produced")
    }

    fn batch(&mut self) -> Result<(u64, u64, Duration), String> {
        let before = self.produced()?;
        let (sandbox, consumer) = (&self.sandbox, &mut self.consumer);
        let (id, cpus) = (self.produce, &self.cpus);
        let produce = || {
            let input = vmm::ProgramInput::new(&[]).with_timeout(Duration::from_secs(30));
            for run in sandbox.run_program_on(id, cpus, &input) {
                let run = run.map_err(|e| e.to_string())?;
                if !matches!(run.report.outcome, Outcome::Returned(_)) {
                    return Err(format!("a producer ended with {:?}", run.report.outcome));
                }
            }
            let after = global_u64(sandbox, &self.object, "produced")?;
            produced_since(before, after, cpus.len())
        };
        let mode = self.mode;
        batch(produce, |each: &mut dyn FnMut(u64)| {
            mode.consume(consumer, each)
        })
    }
}

impl Prepared for VmRing {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        repeat_batches(repeat, || self.batch())
    }
}

/// `repeat` batches; one run is one record.
pub(crate) fn repeat_batches(
    repeat: u32,
    mut batch: impl FnMut() -> Result<(u64, u64, Duration), String>,
) -> Result<Sample, BenchError> {
    let (mut records, mut sum, mut took) = (0u64, 0u64, Duration::ZERO);
    for _ in 0..repeat.max(1) {
        let (n, s, t) = batch().map_err(BenchError::Failed)?;
        records += n;
        sum = s;
        took += t;
    }
    Ok(Sample {
        per_run: took / u32::try_from(records.max(1)).unwrap_or(u32::MAX),
        result: sum,
    })
}
