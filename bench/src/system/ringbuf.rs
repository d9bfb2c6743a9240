//! Ring buffer throughput: producers (1 or 2 vCPUs, or host CPUs running
//! the kernel's BPF) each put a batch of 8-byte records into a 512 KiB
//! ring while one host thread consumes them; one run is one record, from
//! the start of the batch until the consumer has every record.
//!
//! The program is images/progs/bench/ringbuf.bpf.o (see its comment); its
//! records are each producer's sequence numbers, so the consumer's sum of
//! them is the row's checksum, equal in every engine when no record was
//! lost or repeated.

use super::global_u64;
use crate::engine::{BenchError, Prepared, Sample};
use crate::row::{Cell, CellState, Row};
use crate::suite::Group;
use guest_jit::elf::Object;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmm::{HelperSet, Outcome, ProgramId, RingBufConsumer, Sandbox, SandboxConfig};

pub(crate) const RINGBUF: &[u8] = include_bytes!("../../../images/progs/bench/ringbuf.bpf.o");
/// `records` in ringbuf.bpf.c: records per producer per run.
pub(crate) const RECORDS: u64 = 65536;
/// `total` before the producers have finished.
const UNKNOWN: u64 = u64::MAX;

pub(super) fn rows() -> Vec<Row> {
    [1usize, 2]
        .into_iter()
        .map(|producers| Row {
            name: format!(
                "ringbuf, {producers} producer{}",
                if producers > 1 { "s" } else { "" }
            ),
            group: Group::RingBuf,
            what: format!(
                "one 8-byte record reserved, written and submitted (BPF_RB_NO_WAKEUP) by one of \
                 {producers} producers and read by a spinning host consumer; batches of {RECORDS} \
                 records per producer"
            ),
            checked: true,
            cells: vec![
                Cell {
                    column: "vm",
                    state: CellState::from_prepared(VmRing::prepare(producers)),
                },
                Cell {
                    column: "kernel",
                    state: CellState::from_prepared(super::kernel::Ring::prepare(producers)),
                },
            ],
        })
        .collect()
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
        let consumer = s.spawn(move || consume_all(consume, total));
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
}

impl VmRing {
    fn prepare(producers: usize) -> Result<Box<dyn Prepared>, BenchError> {
        let failed = |e: &dyn std::fmt::Display| BenchError::Failed(e.to_string());
        let object = Object::parse(RINGBUF).map_err(|e| failed(&e))?;
        let mut sandbox = Sandbox::new(SandboxConfig {
            cpus: producers,
            ..SandboxConfig::default()
        })
        .map_err(|e| failed(&e))?;
        sandbox
            .load_object(&object, HelperSet::Standard)
            .map_err(|e| failed(&e))?;
        let produce = sandbox
            .find_program("produce")
            .ok_or_else(|| BenchError::Failed("ringbuf.bpf.o has no `produce`".to_owned()))?;
        let consumer = sandbox.ring_buffer("rb").map_err(|e| failed(&e))?;
        Ok(Box::new(VmRing {
            sandbox,
            object,
            produce,
            consumer,
            cpus: (0..producers).collect(),
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
            Ok(global_u64(sandbox, &self.object, "produced")? - before)
        };
        let consume = |each: &mut dyn FnMut(u64)| {
            consumer
                .consume(|r| each(r.read_pod::<u64>(0).unwrap_or(0)))
                .map_err(|e| e.to_string())
        };
        batch(produce, consume)
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
