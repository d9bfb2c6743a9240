//! The sandbox: one KVM VM with its guest memory, runtime and vCPU threads.

use crate::affinity::CpuSet;
use crate::arch::regs::boot_sregs;
use crate::clock::ClockSync;
use crate::kick::install_handler;
use crate::kvm::{KvmError, kvm};
use crate::machine::{MachineError, write_boot_image};
use crate::memory::{GuestMemory, MemoryError};
use crate::poll::{Polling, duration_to_cycles};
use crate::program::Loaded;
use crate::program::{BootState, Seeds};
use crate::runtime::{RuntimeError, RuntimeImage};
use crate::trap::Trap;
use crate::vcpu::{CallEnd, CallReport, VcpuError, VcpuHandle, VcpuSetup};
use crate::vcpu_threads;
use crossbeam_channel::Receiver;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use shm::layout::{Layout, LayoutConfig, LayoutError};
use shm::mailbox::{REQUEST_CALL, REQUEST_PING, Request};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A ping runs no user code; if it takes this long, the vCPU is stuck.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Default room for programs' global data of each kind. Guest memory is
/// sparse: pages no program data lands on cost nothing.
const DEFAULT_DATA_SIZE: u64 = 0x10_0000;

/// Default room for maps. Like global data, pages no map uses cost nothing.
const DEFAULT_MAPS_SIZE: u64 = 0x100_0000;

/// Where KVM keeps the TSS it needs on Intel hosts; outside guest memory.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// How to build a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Number of vCPUs, 1..=64.
    pub cpus: usize,
    /// Bytes reserved for JIT code.
    pub code_size: u64,
    /// Bytes of context buffer per vCPU.
    pub ctx_size: u64,
    /// Bytes for programs' read-only global data (`.rodata`).
    pub rodata_size: u64,
    /// Bytes for programs' writable global data (`.data`, `.bss`).
    pub data_size: u64,
    /// Bytes for maps: each map's header and storage, page-aligned.
    pub maps_size: u64,
    /// What the sandbox enforces (nothing, by default).
    pub limits: Limits,
    /// Polling invocation (`crate::poll`): after answering, a vCPU waits
    /// this long in the guest for the next call, which then costs no VM
    /// exit, before it exits and its thread sleeps. A waiting vCPU keeps a
    /// host CPU busy. `None` exits after every call. Needs a known TSC
    /// rate; without one polling stays off.
    pub poll: Option<Duration>,
    /// Host CPUs the vCPUs' threads may run on (`None`: wherever the host
    /// schedules them). Pinning them away from other busy threads (a
    /// ring buffer's consumer, say) keeps the scheduler from putting both
    /// on one CPU. Some CPU of the set must be one this process may use.
    pub vcpu_affinity: Option<CpuSet>,
}

/// How a sandbox's vCPUs are served: [`SandboxConfig::poll`] and
/// [`SandboxConfig::vcpu_affinity`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct VcpuPolicy {
    pub(crate) poll: Option<Duration>,
    pub(crate) affinity: Option<CpuSet>,
}

/// Limits a sandbox enforces; `None` is no limit. Exceeding one is a clear
/// error when the sandbox is made or an object loaded, never a failure at
/// run time — except the run time itself, which ends in
/// [`Outcome::DeadlineExceeded`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Longest any invocation may run: a call without a deadline, or with
    /// a later one, gets this one.
    pub max_run_time: Option<Duration>,
    /// Most bytes of guest memory: the address map's, plus the arena's.
    pub max_memory: Option<u64>,
    /// Most pages an arena may have.
    pub max_arena_pages: Option<u32>,
    /// Most bytes of storage one map may have (a ring buffer: its data).
    pub max_map_bytes: Option<u64>,
}

impl Limits {
    /// `timeout` cut to [`Limits::max_run_time`].
    pub fn run_time(&self, timeout: Option<Duration>) -> Option<Duration> {
        match (timeout, self.max_run_time) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (t, max) => t.or(max),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let layout = LayoutConfig::default();
        SandboxConfig {
            cpus: 1,
            code_size: layout.code_size,
            ctx_size: layout.ctx_size,
            rodata_size: DEFAULT_DATA_SIZE,
            data_size: DEFAULT_DATA_SIZE,
            maps_size: DEFAULT_MAPS_SIZE,
            limits: Limits::default(),
            poll: None,
            vcpu_affinity: None,
        }
    }
}

impl SandboxConfig {
    /// The address map of a sandbox built with this configuration.
    pub fn layout(&self) -> Result<Layout, LayoutError> {
        Layout::new(LayoutConfig {
            nr_cpus: self.cpus,
            code_size: self.code_size,
            ctx_size: self.ctx_size,
            rodata_size: self.rodata_size,
            data_size: self.data_size,
            maps_size: self.maps_size,
            ..LayoutConfig::default()
        })
    }
}

/// Why a sandbox could not be built or reset.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The configuration is invalid.
    #[error("Invalid sandbox configuration: {0}")]
    Config(LayoutError),
    /// The vCPU affinity set cannot be used.
    #[error("Cannot pin the vCPUs to the CPUs asked for")]
    Affinity(#[source] std::io::Error),
    /// KVM is unavailable.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The guest runtime image is broken.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Guest memory could not be created.
    #[error("Failed to create guest memory")]
    CreateMemory(#[source] MemoryError),
    /// The boot image could not be written.
    #[error("Failed to prepare the guest machine")]
    PrepareMachine(#[source] MachineError),
    /// `KVM_CREATE_VM` failed.
    #[error("Failed to create the VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// `KVM_SET_TSS_ADDR` failed.
    #[error("Failed to set the VM's TSS address")]
    SetTssAddress(#[source] kvm_ioctls::Error),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("Failed to register guest memory with KVM")]
    SetUserMemoryRegion(#[source] kvm_ioctls::Error),
    /// The kick signal handler could not be installed.
    #[error("Failed to install the vCPU kick signal handler")]
    InstallSignalHandler(#[source] std::io::Error),
    /// A vCPU could not be set up or reset.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The arena's page tables could not be put back after a reset.
    #[error("Failed to map the arena again")]
    InstallArena(#[source] crate::arena::ArenaSetupError),
    /// A limit of [`SandboxConfig::limits`] was exceeded.
    #[error("The sandbox's {what} would be {value} bytes, above its limit of {limit}")]
    Limit {
        /// What.
        what: &'static str,
        /// How much it would be.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The ring buffers' page tables could not be put back after a reset.
    #[error("Failed to map the ring buffers again")]
    InstallRings(#[source] crate::ringbuf::RingSetupError),
}

/// What to run: a function in guest memory, called as
/// `entry(ctx, ctx_len) -> u64` (a BPF program's r1 and r2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// Guest address of the code.
    pub entry: u64,
    /// First argument.
    pub ctx: u64,
    /// Second argument.
    pub ctx_len: u64,
    /// Times to call it inside the guest, without leaving (at least 1).
    pub repeat: u64,
    /// Wall-clock budget for the whole invocation; `None` waits forever.
    pub timeout: Option<Duration>,
}

impl Call {
    /// One call of `entry` with no arguments and no deadline.
    pub fn new(entry: u64) -> Call {
        Call {
            entry,
            ctx: 0,
            ctx_len: 0,
            repeat: 1,
            timeout: None,
        }
    }

    /// The same call with a deadline.
    pub fn with_timeout(self, timeout: Duration) -> Call {
        Call {
            timeout: Some(timeout),
            ..self
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every run returned; the last returned this value (the full r0).
    Returned(u64),
    /// A CPU exception stopped the program.
    Trapped(Trap),
    /// The program ran past its budget and was stopped; the sandbox is
    /// poisoned until [`Sandbox::reset`].
    DeadlineExceeded(Duration),
}

/// The result of an invocation, with its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Runs that completed.
    pub runs: u64,
    /// Guest TSC cycles those runs took.
    pub cycles: u64,
    /// The same, in time.
    pub duration: Duration,
    /// VM exits taken (a run that stays in the guest costs one).
    pub exits: u64,
    /// Host wall-clock time from request to answer.
    pub wall: Duration,
    /// Arena pages allocated after the invocation (0 without an arena),
    /// as the arena's own count says.
    pub arena_pages: u64,
    /// Ring buffer reserves that failed (a full ring) during the
    /// invocation, all rings and vCPUs of the sandbox together.
    pub ringbuf_drops: u64,
}

/// Why an invocation has no outcome.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox must be reset first.
    #[error("Sandbox is poisoned by an earlier stopped or failed run; reset it first")]
    Poisoned,
    /// No such vCPU.
    #[error("vCPU {cpu} does not exist; the sandbox has {nr_cpus}")]
    NoSuchCpu {
        /// The vCPU asked for.
        cpu: usize,
        /// vCPUs in the sandbox.
        nr_cpus: usize,
    },
    /// The same vCPU was named twice in one request.
    #[error("vCPU {0} was named twice")]
    DuplicateCpu(usize),
    /// The vCPU failed; the sandbox is poisoned.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// No program has that id in this sandbox.
    #[error("No such program in this sandbox")]
    NoSuchProgram,
    /// The input does not fit the context buffer.
    #[error("Input of {len} bytes does not fit the context buffer of {max} bytes")]
    ContextTooLarge {
        /// Bytes given.
        len: u64,
        /// Bytes the buffer holds.
        max: u64,
    },
    /// The context buffer could not be read or written.
    #[error("Failed to access the context buffer")]
    Memory(#[source] MemoryError),
}

/// Exclusive use of one vCPU for one invocation.
pub(crate) type VcpuGuard<'a> = MutexGuard<'a, VcpuHandle>;

/// A KVM micro-VM running the guest runtime on its own vCPU threads.
///
/// Dropping it stops every vCPU, joins its thread and releases every file
/// descriptor and mapping.
#[derive(Debug)]
pub struct Sandbox {
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
    /// [`SandboxConfig::poll`].
    pub(crate) poll: Option<Duration>,
    /// [`SandboxConfig::vcpu_affinity`].
    pub(crate) vcpu_affinity: Option<CpuSet>,
    pub(crate) runtime: &'static RuntimeImage,
    // Field order is drop order: vCPU threads first, then the VM, then memory.
    vcpus: Vec<Mutex<VcpuHandle>>,
    pub(crate) vm: Arc<VmFd>,
    pub(crate) memory: Arc<GuestMemory>,
    pub(crate) loaded: Loaded,
    tsc_khz: u32,
    pub(crate) clock: ClockSync,
    pub(crate) next_seq: AtomicU64,
    poisoned: AtomicBool,
}

impl Sandbox {
    /// Builds a sandbox and starts its vCPU threads; every vCPU is ready to
    /// run at the dispatch loop, with no exit taken yet.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let layout = config.layout().map_err(SandboxError::Config)?;
        if let Some(limit) = config
            .limits
            .max_memory
            .filter(|&max| layout.memory_size() > max)
        {
            return Err(SandboxError::Limit {
                what: "guest memory",
                value: layout.memory_size(),
                limit,
            });
        }
        let runtime = RuntimeImage::embedded()?;
        let memory =
            Arc::new(GuestMemory::new(layout.memory_size()).map_err(SandboxError::CreateMemory)?);
        write_boot_image(&memory, &layout, runtime).map_err(SandboxError::PrepareMachine)?;
        if let Some(set) = &config.vcpu_affinity {
            let allowed = CpuSet::allowed().map_err(SandboxError::Affinity)?;
            if !set.cpus().any(|cpu| allowed.contains(cpu)) {
                return Err(SandboxError::Affinity(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no CPU of the vCPU affinity set is one this process may run on",
                )));
            }
        }
        Sandbox::boot(
            layout,
            config.limits,
            VcpuPolicy {
                poll: config.poll,
                affinity: config.vcpu_affinity,
            },
            memory,
            Loaded::default(),
            1,
            Seeds::Missing,
        )
    }

    /// The VM and its vCPUs over `memory`, which holds a boot image for
    /// `layout` (written, or a snapshot's), with `loaded` already in it;
    /// calls are numbered from `next_seq`.
    ///
    /// Note [Parallel boot]
    /// Each step of making a VM is an ioctl or a page fault that costs
    /// tens of microseconds on a nested host, and most do not depend on
    /// each other. A worker thread (`crate::vcpu_threads`), woken first so
    /// that its wakeup overlaps `KVM_CREATE_VM`, writes the boot state (the
    /// first write to each page of a clone copies it) and then registers
    /// guest memory with the VM this thread hands it; other workers create
    /// vCPUs 1.., and this thread creates vCPU 0 (which also measures the
    /// clock). Then the clock is written, into a page the worker has
    /// already made the clone's own, and each vCPU goes to a worker to be
    /// served; nobody waits for that worker to start.
    pub(crate) fn boot(
        layout: Layout,
        limits: Limits,
        VcpuPolicy {
            poll,
            affinity: vcpu_affinity,
        }: VcpuPolicy,
        memory: Arc<GuestMemory>,
        loaded: Loaded,
        next_seq: u64,
        seeds: Seeds,
    ) -> Result<Sandbox, SandboxError> {
        install_handler().map_err(SandboxError::InstallSignalHandler)?;
        let kvm = kvm()?;
        let runtime = RuntimeImage::embedded()?;
        let cr3 = shm::layout::PAGE_TABLES_START;

        let (vm_tx, vm_rx) = crossbeam_channel::bounded::<Arc<VmFd>>(1);
        let prepare = {
            let memory = Arc::clone(&memory);
            let state = loaded.boot_state(ClockSync::default());
            vcpu_threads::spawn(move || prepare_memory(vm_rx, &memory, &layout, state, seeds))
                .map_err(|e| SandboxError::Vcpu(VcpuError::SpawnThread(0, e)))?
        };
        let vm = create_vm(kvm);
        // The worker waits for the VM, and dropping `prepare` (on any early
        // return below) waits for the worker: hand it the VM, or drop the
        // sender so that it stops waiting, before anything can return.
        if let Ok(vm) = &vm {
            // It cannot be full: this is the only send.
            let _ = vm_tx.send(Arc::clone(vm));
        }
        drop(vm_tx);
        let vm = vm?;
        let setup = |cpu: usize| -> Result<VcpuSetup, SandboxError> {
            Ok(VcpuSetup {
                vm: Arc::clone(&vm),
                cpu,
                memory: Arc::clone(&memory),
                mailbox: layout.mailbox(cpu),
                sregs: boot_sregs(&layout, cpu, cr3),
                dispatch_entry: runtime.dispatch_entry,
                abort_entry: runtime.abort_entry,
                stack_top: layout.stack_top(cpu),
                measure_clock: cpu == 0,
            })
        };
        let mut others = Vec::with_capacity(layout.nr_cpus());
        for cpu in 1..layout.nr_cpus() {
            let setup = setup(cpu)?;
            others.push(
                vcpu_threads::spawn(move || setup.create())
                    .map_err(|e| SandboxError::Vcpu(VcpuError::SpawnThread(cpu, e)))?,
            );
        }
        let (first, ready) = setup(0)?.create()?;
        let mut created = vec![first];
        for (cpu, other) in (1..).zip(others) {
            let (vcpu, _) = other.join().ok_or(VcpuError::ThreadGone(cpu))??;
            created.push(vcpu);
        }
        prepare.join().ok_or(VcpuError::ThreadGone(0))??;
        let clock = ready.clock.unwrap_or_default();
        loaded
            .boot_state(clock)
            .write(&memory, &layout, Seeds::Missing)
            .map_err(|e| SandboxError::PrepareMachine(MachineError::WriteMemory(e)))?;

        let tsc_khz = ready.tsc_khz;
        let mut vcpus = Vec::with_capacity(created.len());
        for vcpu in created {
            let polling = match poll {
                Some(budget) if tsc_khz != 0 => Some(Polling::new(
                    &vm,
                    vcpu.cpu,
                    duration_to_cycles(budget, tsc_khz),
                )?),
                _ => None,
            };
            vcpus.push(Mutex::new(VcpuHandle::spawn(vcpu, polling, vcpu_affinity)?));
        }
        Ok(Sandbox {
            layout,
            limits,
            poll,
            vcpu_affinity,
            runtime,
            vcpus,
            vm,
            memory,
            loaded,
            tsc_khz,
            clock,
            next_seq: AtomicU64::new(next_seq),
            poisoned: AtomicBool::new(false),
        })
    }

    /// The sandbox's address map.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What the sandbox enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of vCPUs.
    pub fn nr_cpus(&self) -> usize {
        self.layout.nr_cpus()
    }

    /// Guest memory, for reading and writing guest data.
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    /// Whether a stopped or failed run left the sandbox needing a reset.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Runs `call` on vCPU `cpu` and waits for it.
    pub fn call(&self, cpu: usize, call: &Call) -> Result<RunReport, RunError> {
        self.call_on(&[cpu], call)
            .pop()
            .unwrap_or(Err(RunError::NoSuchCpu {
                cpu,
                nr_cpus: self.nr_cpus(),
            }))
    }

    /// Runs `call` on every vCPU at the same time; results in CPU order.
    pub fn call_on_all(&self, call: &Call) -> Vec<Result<RunReport, RunError>> {
        let cpus: Vec<usize> = (0..self.nr_cpus()).collect();
        self.call_on(&cpus, call)
    }

    /// Asks vCPU `cpu` to answer with its id without running any loaded
    /// code: a liveness check, and the floor of what an invocation costs.
    pub fn ping(&self, cpu: usize) -> Result<RunReport, RunError> {
        let call = Call::new(0).with_timeout(PING_TIMEOUT);
        self.invoke(&[cpu], REQUEST_PING, &call)
            .pop()
            .unwrap_or(Err(RunError::NoSuchCpu {
                cpu,
                nr_cpus: self.nr_cpus(),
            }))
    }

    /// Runs `call` on each of `cpus` at the same time, all under the same
    /// deadline; results in the order of `cpus`.
    pub fn call_on(&self, cpus: &[usize], call: &Call) -> Vec<Result<RunReport, RunError>> {
        self.invoke(cpus, REQUEST_CALL, call)
    }

    fn invoke(&self, cpus: &[usize], kind: u64, call: &Call) -> Vec<Result<RunReport, RunError>> {
        match self.lock_cpus(cpus) {
            Ok(guards) => self.invoke_locked(&guards, kind, call),
            Err(e) => cpus.iter().map(|_| Err(clone_run_error(&e))).collect(),
        }
    }

    /// Locks the vCPUs `cpus` for one invocation; the guards are in the
    /// order of `cpus`.
    pub(crate) fn lock_cpus(&self, cpus: &[usize]) -> Result<Vec<VcpuGuard<'_>>, RunError> {
        self.check_cpus(cpus)?;
        // Lock in CPU order so concurrent callers cannot deadlock.
        let mut order: Vec<usize> = (0..cpus.len()).collect();
        order.sort_by_key(|&i| cpus[i]);
        let mut guards: Vec<_> = order
            .iter()
            .map(|&i| {
                (
                    i,
                    self.vcpus[cpus[i]]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                )
            })
            .collect();
        guards.sort_by_key(|(i, _)| *i);
        Ok(guards.into_iter().map(|(_, guard)| guard).collect())
    }

    /// Runs one request on every locked vCPU at the same time, all under
    /// the same deadline; results in the order of `guards`.
    pub(crate) fn invoke_locked(
        &self,
        guards: &[VcpuGuard<'_>],
        kind: u64,
        call: &Call,
    ) -> Vec<Result<RunReport, RunError>> {
        self.invoke_locked_each(guards, kind, &vec![*call; guards.len()])
    }

    /// As [`Sandbox::invoke_locked`], with `calls[i]` on `guards[i]` (each
    /// vCPU its own context), all started before any is waited for.
    pub(crate) fn invoke_locked_each(
        &self,
        guards: &[VcpuGuard<'_>],
        kind: u64,
        calls: &[Call],
    ) -> Vec<Result<RunReport, RunError>> {
        let drops_before = self.ring_drops();
        let start = Instant::now();
        let started: Vec<Result<u64, RunError>> = guards
            .iter()
            .zip(calls)
            .map(|(handle, call)| {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                let request = Request {
                    seq,
                    kind,
                    entry: call.entry,
                    ctx: call.ctx,
                    ctx_len: call.ctx_len,
                    repeat: call.repeat.max(1),
                    // Set by the handle of a polling vCPU.
                    poll_cycles: 0,
                };
                handle
                    .start_call(request)
                    .map(|()| seq)
                    .map_err(RunError::from)
            })
            .collect();
        let reports = guards
            .iter()
            .zip(calls)
            .zip(started)
            .map(|((handle, call), seq)| {
                let deadline = self.limits.run_time(call.timeout).map(|t| start + t);
                let report = handle.wait_call(seq?, deadline);
                self.report(report, call, start)
            })
            .collect::<Vec<_>>();
        self.release_arena_pages();
        let (arena_pages, ring_drops) = (self.arena_pages(), self.ring_drops());
        reports
            .into_iter()
            .map(|report| {
                report.map(|r| RunReport {
                    arena_pages,
                    ringbuf_drops: ring_drops.wrapping_sub(drops_before),
                    ..r
                })
            })
            .collect()
    }

    fn check_cpus(&self, cpus: &[usize]) -> Result<(), RunError> {
        if self.is_poisoned() {
            return Err(RunError::Poisoned);
        }
        let mut seen = [false; shm::layout::MAX_CPUS];
        for &cpu in cpus {
            if cpu >= self.nr_cpus() {
                return Err(RunError::NoSuchCpu {
                    cpu,
                    nr_cpus: self.nr_cpus(),
                });
            }
            if std::mem::replace(&mut seen[cpu], true) {
                return Err(RunError::DuplicateCpu(cpu));
            }
        }
        Ok(())
    }

    fn report(
        &self,
        report: Result<CallReport, VcpuError>,
        call: &Call,
        start: Instant,
    ) -> Result<RunReport, RunError> {
        let wall = start.elapsed();
        let report = report.inspect_err(|_| self.poisoned.store(true, Ordering::SeqCst))?;
        let outcome = match report.end {
            CallEnd::Returned(value) => Outcome::Returned(value),
            CallEnd::Trapped(record) => Outcome::Trapped(Trap::from_record(&record)),
            CallEnd::Stopped => {
                self.poisoned.store(true, Ordering::SeqCst);
                Outcome::DeadlineExceeded(self.limits.run_time(call.timeout).unwrap_or_default())
            }
        };
        Ok(RunReport {
            outcome,
            runs: report.runs,
            cycles: report.cycles,
            duration: cycles_to_duration(report.cycles, self.tsc_khz),
            exits: report.exits,
            wall,
            arena_pages: 0,
            ringbuf_drops: 0,
        })
    }

    /// Returns the sandbox to its boot state: runtime image, descriptor and
    /// page tables, per-CPU blocks and every vCPU's registers are rebuilt,
    /// and the poisoned mark is cleared. Loaded programs stay, and so does
    /// their global data, as the kernel keeps global data across runs.
    /// A sandbox cloned from a [`crate::Snapshot`] returns to the snapshot
    /// instead, global data, maps and arena included (its rings keep their
    /// records).
    pub fn reset(&mut self) -> Result<(), SandboxError> {
        // Polling vCPUs leave the guest before its memory is rewritten.
        for vcpu in &self.vcpus {
            vcpu.lock().unwrap_or_else(|p| p.into_inner()).park()?;
        }
        if self.memory.is_copy_on_write() {
            // A clone: its snapshot again (Note [Snapshots and clones]).
            self.memory
                .revert()
                .map_err(|e| SandboxError::PrepareMachine(MachineError::WriteMemory(e)))?;
            self.overlay_rings().map_err(SandboxError::InstallRings)?;
            if let Some(arena) = &self.loaded.arena {
                arena.revert().map_err(SandboxError::InstallArena)?;
            }
        } else {
            write_boot_image(&self.memory, &self.layout, self.runtime)
                .map_err(SandboxError::PrepareMachine)?;
        }
        if let Some(arena) = &self.loaded.arena {
            arena
                .install(&self.memory, &self.layout)
                .and_then(|()| arena.unlock_after_reset(&self.memory))
                .map_err(SandboxError::InstallArena)?;
        }
        self.reinstall_rings().map_err(SandboxError::InstallRings)?;
        self.publish_boot_state()
            .map_err(|e| SandboxError::PrepareMachine(MachineError::WriteMemory(e)))?;
        for vcpu in &self.vcpus {
            vcpu.lock().unwrap_or_else(|p| p.into_inner()).reset()?;
        }
        self.poisoned.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Copies `code` into the JIT code region at `offset` and returns its
    /// guest address. For tests that run raw x86-64 code before the JIT
    /// exists; not a user feature.
    #[cfg(feature = "test-utils")]
    pub fn write_code(&self, offset: u64, code: &[u8]) -> Result<u64, MemoryError> {
        let fits = offset
            .checked_add(code.len() as u64)
            .is_some_and(|end| end <= self.layout.code_size());
        if !fits {
            return Err(MemoryError::OutOfBounds {
                addr: self.layout.code_start() + offset,
                len: code.len(),
            });
        }
        let addr = self.layout.code_start() + offset;
        self.memory.write(addr, code)?;
        Ok(addr)
    }
}

pub(crate) fn clone_run_error(e: &RunError) -> RunError {
    match e {
        RunError::Poisoned => RunError::Poisoned,
        RunError::NoSuchCpu { cpu, nr_cpus } => RunError::NoSuchCpu {
            cpu: *cpu,
            nr_cpus: *nr_cpus,
        },
        RunError::DuplicateCpu(cpu) => RunError::DuplicateCpu(*cpu),
        RunError::ContextTooLarge { len, max } => RunError::ContextTooLarge {
            len: *len,
            max: *max,
        },
        RunError::NoSuchProgram => RunError::NoSuchProgram,
        RunError::Vcpu(_) | RunError::Memory(_) => RunError::Poisoned,
    }
}

fn create_vm(kvm: &Kvm) -> Result<Arc<VmFd>, SandboxError> {
    let vm = kvm.create_vm().map_err(SandboxError::CreateVm)?;
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(SandboxError::SetTssAddress)?;
    Ok(Arc::new(vm))
}

/// Writes the boot state into `memory`, then registers it as guest memory
/// of the VM that comes through `vm` (a worker's part of Note [Parallel
/// boot]). `Ok` without a VM if none comes: the boot failed before.
fn prepare_memory(
    vm: Receiver<Arc<VmFd>>,
    memory: &GuestMemory,
    layout: &Layout,
    state: BootState,
    seeds: Seeds,
) -> Result<(), SandboxError> {
    state
        .write(memory, layout, seeds)
        .map_err(|e| SandboxError::PrepareMachine(MachineError::WriteMemory(e)))?;
    let Ok(vm) = vm.recv() else {
        return Ok(());
    };
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: memory.size(),
        userspace_addr: memory.host_base(),
    };
    // SAFETY: the region is the mapping owned by `memory`, which outlives
    // the VM: the Sandbox drops `vm` before `memory`, and vCPU threads
    // (which hold their own Arc) are done before either.
    unsafe { vm.set_user_memory_region(region) }.map_err(SandboxError::SetUserMemoryRegion)
}

fn cycles_to_duration(cycles: u64, tsc_khz: u32) -> Duration {
    if tsc_khz == 0 {
        return Duration::ZERO;
    }
    let nanos = u128::from(cycles) * 1_000_000 / u128::from(tsc_khz);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_convert_at_the_tsc_rate() {
        assert_eq!(
            cycles_to_duration(2_000_000, 2_000_000),
            Duration::from_millis(1)
        );
        assert_eq!(cycles_to_duration(5, 0), Duration::ZERO);
        assert_eq!(
            cycles_to_duration(u64::MAX, 1),
            Duration::from_nanos(u64::MAX)
        );
    }
}
