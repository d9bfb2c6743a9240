//! The kernel's cells of the system rows: the same objects loaded into
//! the host kernel (`kernel-bpf`), timed on the host as a user of the
//! kernel's BPF would see them.

use super::{ringbuf, timed};
use crate::engine::{BenchError, Prepared, Sample, Unsupported};
use crate::engines::error_chain;
use crate::engines::kernel::{global_u64, refusal};
use guest_jit::elf::Object;
use kernel_bpf::{KernelError, KernelObject, LoadOptions, ProgramType};
use std::time::Duration;
use vmm::RingBufConsumer;

fn failed(e: KernelError) -> BenchError {
    BenchError::Failed(error_chain(&e))
}

fn parse(bytes: &[u8]) -> Result<Object, BenchError> {
    Object::parse(bytes).map_err(|e| BenchError::Failed(e.to_string()))
}

fn load_xdp(object: &Object, program: &str) -> Result<KernelObject, BenchError> {
    let options = LoadOptions {
        program_type: Some(ProgramType::Xdp),
        programs: vec![program.to_owned()],
    };
    KernelObject::load(object, &options).map_err(refusal)
}

/// One `BPF_PROG_TEST_RUN` of `nop` per call.
pub(super) struct NopCalls {
    object: KernelObject,
}

impl NopCalls {
    pub(super) fn prepare() -> Result<Box<dyn Prepared>, BenchError> {
        let object = load_xdp(&parse(super::invocation::NOP)?, "nop")?;
        Ok(Box::new(NopCalls { object }))
    }
}

impl Prepared for NopCalls {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        let nop = self.object.program("nop").map_err(failed)?;
        timed(repeat, || {
            let run = nop.test_run(&[], 1).map_err(failed)?;
            Ok(u64::from(run.retval))
        })
    }
}

/// The start row's object loaded into the kernel: maps created, every
/// program verified and JIT-compiled; unloaded after each run.
pub(super) struct Load {
    object: Object,
}

impl Load {
    pub(super) fn prepare() -> Result<Box<dyn Prepared>, BenchError> {
        let object = parse(super::startup::OBJECT)?;
        KernelObject::load(&object, &LoadOptions::default()).map_err(refusal)?;
        Ok(Box::new(Load { object }))
    }
}

impl Prepared for Load {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        timed(repeat, || {
            KernelObject::load(&self.object, &LoadOptions::default())
                .map(|_| 0)
                .map_err(failed)
        })
    }
}

/// Producers on host threads running `produce` in the kernel, our
/// consumer reading the kernel's ring.
pub(super) struct Ring {
    object: KernelObject,
    consumer: RingBufConsumer,
    /// One per producer thread, the CPU it runs on.
    cpus: Vec<usize>,
    mode: ringbuf::Consumer,
}

impl Ring {
    pub(super) fn prepare(
        producers: usize,
        mode: ringbuf::Consumer,
    ) -> Result<Box<dyn Prepared>, BenchError> {
        // Note [Ring rows' CPUs].
        let cpus = ringbuf::producer_cpus();
        if producers > cpus.len() {
            return Err(Unsupported(format!(
                "{producers} kernel producers need {} CPUs: the kernel runs them without \
                 preemption, so a consumer sharing a producer's CPU never runs",
                producers + 1
            ))
            .into());
        }
        let object = load_xdp(&ringbuf::object(mode)?, "produce")?;
        let consumer = object.ring_buffer("rb").map_err(failed)?;
        Ok(Box::new(Ring {
            object,
            consumer,
            cpus: cpus[..producers].to_vec(),
            mode,
        }))
    }

    fn batch(&mut self) -> Result<(u64, u64, Duration), String> {
        let before = global_u64(&self.object, "produced")?;
        let (object, consumer) = (&self.object, &mut self.consumer);
        let cpus = &self.cpus;
        let produce = || {
            let program = object.program("produce").map_err(|e| error_chain(&e))?;
            std::thread::scope(|s| {
                let runs: Vec<_> = cpus
                    .iter()
                    .map(|&cpu| {
                        s.spawn(move || {
                            let _pinned = ringbuf::pin_to(cpu);
                            program.test_run(&[], 1)
                        })
                    })
                    .collect();
                for run in runs {
                    run.join()
                        .map_err(|_| "a producer thread panicked".to_owned())?
                        .map_err(|e| error_chain(&e))?;
                }
                Ok::<(), String>(())
            })?;
            ringbuf::produced_since(before, global_u64(object, "produced")?, cpus.len())
        };
        let mode = self.mode;
        ringbuf::batch(produce, |each: &mut dyn FnMut(u64)| {
            mode.consume(consumer, each)
        })
    }
}

impl Prepared for Ring {
    fn run(&mut self, repeat: u32) -> Result<Sample, BenchError> {
        ringbuf::repeat_batches(repeat, || self.batch())
    }
}
