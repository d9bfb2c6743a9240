//! vCPU threads and the handles that command them.
//!
//! Each vCPU lives on its own thread, which owns its `VcpuFd` and serves
//! [`VcpuCommand`]s (in the style of Firecracker's `VcpuHandle`). The
//! thread that issued a command waits for the matching [`VcpuEvent`] with a
//! deadline; when the deadline passes it kicks the vCPU (Note [Kicking a
//! vCPU]) and the vCPU thread sends the guest to the runtime's abort entry.
//! A vCPU with polling on answers most calls without its thread at all
//! (`crate::poll`).

use crate::arch::regs::{boot_fpu, entry_regs};
use crate::clock::ClockSync;
use crate::exit::{VmExit, decode};
use crate::kick::{KickState, register_immediate_exit, unregister_immediate_exit};
use crate::memory::{GuestMemory, MemoryError};
use crate::poll::{MailboxView, PollLink, Polling, SessionEnd};
use crate::vcpu_threads;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use kvm_bindings::kvm_sregs;
use kvm_ioctls::VcpuFd;
use kvm_ioctls::VmFd;
use shm::mailbox::{
    RESPONSE_OFFSET, Request, Response, STATUS_RETURNED, STATUS_TRAPPED, TrapRecord,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a stopped vCPU gets to reach the abort entry before it is kicked
/// again and given up on.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Why a vCPU could not complete a command.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// `KVM_CREATE_VCPU` failed.
    #[error("Failed to create vCPU {0}")]
    Create(usize, #[source] kvm_ioctls::Error),
    /// A vCPU register ioctl failed.
    #[error("Failed to set vCPU {0} registers")]
    SetRegisters(usize, #[source] kvm_ioctls::Error),
    /// Guest memory could not be accessed.
    #[error("Failed to access the mailbox of vCPU {0}")]
    Mailbox(usize, #[source] MemoryError),
    /// The guest left in a way the runtime never does.
    #[error("vCPU {cpu} stopped unexpectedly: {exit:?}")]
    UnexpectedExit {
        /// The vCPU.
        cpu: usize,
        /// What KVM reported.
        exit: VmExit,
    },
    /// The guest's answer does not belong to the request.
    #[error("vCPU {cpu} answered request {got} with status {status} while running request {want}")]
    BadResponse {
        /// The vCPU.
        cpu: usize,
        /// The request sent.
        want: u64,
        /// The sequence number in the response.
        got: u64,
        /// The status in the response.
        status: u64,
    },
    /// A stopped vCPU did not reach the abort entry.
    #[error("vCPU {0} did not stop within {ABORT_GRACE:?} of its deadline")]
    AbortFailed(usize),
    /// The vCPU thread is gone (it panicked or was never started).
    #[error("vCPU {0} thread is not running")]
    ThreadGone(usize),
    /// The vCPU thread could not be started.
    #[error("Failed to start the thread of vCPU {0}")]
    SpawnThread(usize, #[source] std::io::Error),
    /// The doorbell of a polling vCPU could not be set up.
    #[error("Failed to set up the doorbell of vCPU {0}")]
    Doorbell(usize, #[source] std::io::Error),
}

/// What a vCPU thread is asked to do.
#[derive(Debug)]
pub enum VcpuCommand {
    /// Write `request` into the mailbox and run the guest until it answers.
    Call(Request),
    /// Open a polling session with `request` (`crate::poll`); the caller
    /// runs on host CPU `caller_cpu` (-1 if unknown).
    Poll {
        /// The first request of the session; `poll_cycles > 0`.
        request: Request,
        /// Where the caller that will spin on the answer runs.
        caller_cpu: i32,
    },
    /// Put the vCPU back in its boot state.
    Reset,
    /// Leave the thread.
    Exit,
}

/// How a call ended, before the host interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// Every run returned; the last returned this.
    Returned(u64),
    /// A CPU exception stopped the program.
    Trapped(TrapRecord),
    /// The host stopped the program at its deadline.
    Stopped,
}

/// A finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallReport {
    /// How it ended.
    pub end: CallEnd,
    /// Runs completed.
    pub runs: u64,
    /// Guest TSC cycles spent in them.
    pub cycles: u64,
    /// Returns from `KVM_RUN`.
    pub exits: u64,
}

/// What a vCPU thread answers.
#[derive(Debug)]
pub enum VcpuEvent {
    /// Answer to [`VcpuCommand::Call`] with that sequence number.
    Called(u64, Result<CallReport, VcpuError>),
    /// Answer to [`VcpuCommand::Reset`].
    Reset(Result<(), VcpuError>),
    /// Answer to a [`VcpuCommand::Call`] with `poll_cycles > 0`, sent when
    /// the polling session it opened ends (`crate::poll`).
    Session(u64, Result<SessionEnd, VcpuError>),
}

/// Everything a vCPU thread needs.
pub struct Vcpu {
    /// Index of this vCPU.
    pub cpu: usize,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    /// Guest memory (for the mailbox).
    pub memory: Arc<GuestMemory>,
    /// Guest address of this vCPU's mailbox.
    pub mailbox: u64,
    /// Special registers at boot.
    pub sregs: kvm_sregs,
    /// Where the vCPU starts.
    pub dispatch_entry: u64,
    /// Where a stopped vCPU is sent.
    pub abort_entry: u64,
    /// Initial stack pointer.
    pub stack_top: u64,
    /// Shared with the handle, to be stopped.
    pub kick: Arc<KickState>,
}

impl std::fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcpu")
            .field("cpu", &self.cpu)
            .finish_non_exhaustive()
    }
}

impl Vcpu {
    /// Loads the boot state: every register as the runtime expects at
    /// `rip`, with a fresh stack.
    pub fn load_boot_state(&self, rip: u64) -> Result<(), VcpuError> {
        self.fd
            .set_fpu(&boot_fpu())
            .map_err(|e| VcpuError::SetRegisters(self.cpu, e))?;
        self.load_boot_registers(rip)
    }

    /// The boot state but the FPU's, which a new vCPU already has: KVM
    /// starts it as the CPU's reset does (`boot_fpu`).
    fn load_boot_registers(&self, rip: u64) -> Result<(), VcpuError> {
        let err = |e| VcpuError::SetRegisters(self.cpu, e);
        self.fd.set_sregs(&self.sregs).map_err(err)?;
        self.fd
            .set_regs(&entry_regs(rip, self.stack_top))
            .map_err(err)
    }

    fn run(
        mut self,
        commands: Receiver<VcpuCommand>,
        events: Sender<VcpuEvent>,
        doorbell: Option<Arc<vmm_sys_util::eventfd::EventFd>>,
    ) {
        register_immediate_exit(&mut self.fd.get_kvm_run().immediate_exit);
        for command in commands.iter() {
            let event = match command {
                VcpuCommand::Poll {
                    request,
                    caller_cpu,
                } => VcpuEvent::Session(request.seq, self.session(&request, caller_cpu)),
                VcpuCommand::Call(request) => VcpuEvent::Called(request.seq, self.call(&request)),
                VcpuCommand::Reset => VcpuEvent::Reset(self.load_boot_state(self.dispatch_entry)),
                VcpuCommand::Exit => break,
            };
            let session = matches!(event, VcpuEvent::Session(..));
            if events.send(event).is_err() {
                break;
            }
            // A caller may sleep on the doorbell rather than the channel.
            if let (true, Some(doorbell)) = (session, &doorbell) {
                let _ = doorbell.write(1);
            }
        }
        // The kvm_run mapping goes away with `self.fd`.
        unregister_immediate_exit();
    }

    fn call(&mut self, request: &Request) -> Result<CallReport, VcpuError> {
        let seq = request.seq;
        self.memory
            .write_pod(self.mailbox, request)
            .map_err(|e| VcpuError::Mailbox(self.cpu, e))?;
        self.kick.running_seq.store(seq, Ordering::SeqCst);
        let result = self.run_until_answer(seq);
        self.kick.running_seq.store(0, Ordering::SeqCst);
        result
    }

    fn run_until_answer(&mut self, seq: u64) -> Result<CallReport, VcpuError> {
        let mut exits = 0;
        loop {
            if self.kick.should_stop(seq) {
                return self.abort(exits);
            }
            let exit = self.run_guest();
            exits += 1;
            match exit {
                VmExit::RunDone | VmExit::Trapped => return self.read_answer(seq, exit, exits),
                // A kick, or a stray signal: `should_stop` decides.
                VmExit::Interrupted => self.fd.set_kvm_immediate_exit(0),
                VmExit::StrayWakeup | VmExit::StrayDoorbell => {}
                exit => {
                    return Err(VcpuError::UnexpectedExit {
                        cpu: self.cpu,
                        exit,
                    });
                }
            }
        }
    }

    fn read_answer(&self, seq: u64, exit: VmExit, exits: u64) -> Result<CallReport, VcpuError> {
        let response: Response = self
            .memory
            .read_pod(self.mailbox + RESPONSE_OFFSET)
            .map_err(|e| VcpuError::Mailbox(self.cpu, e))?;
        let end = match (exit, response.status) {
            (VmExit::RunDone, STATUS_RETURNED) if response.seq == seq => {
                CallEnd::Returned(response.retval)
            }
            (VmExit::Trapped, STATUS_TRAPPED) if response.seq == seq => {
                CallEnd::Trapped(response.trap)
            }
            _ => {
                return Err(VcpuError::BadResponse {
                    cpu: self.cpu,
                    want: seq,
                    got: response.seq,
                    status: response.status,
                });
            }
        };
        Ok(CallReport {
            end,
            runs: response.runs,
            cycles: response.cycles,
            exits,
        })
    }

    /// Enters the guest once and decodes why it came back, counting the
    /// exit in `kick.exits`.
    pub(crate) fn run_guest(&mut self) -> VmExit {
        let exit = decode(self.fd.run());
        self.kick.exits.fetch_add(1, Ordering::SeqCst);
        exit
    }

    /// Sends the guest to the runtime's abort entry with every register in
    /// its boot state, so nothing the program did to them matters.
    pub(crate) fn abort(&mut self, mut exits: u64) -> Result<CallReport, VcpuError> {
        let kicks = self.kick.kicks.load(Ordering::SeqCst);
        self.fd.set_kvm_immediate_exit(0);
        self.load_boot_state(self.abort_entry)?;
        loop {
            let exit = self.run_guest();
            exits += 1;
            match exit {
                VmExit::Aborted => {
                    return Ok(CallReport {
                        end: CallEnd::Stopped,
                        runs: 0,
                        cycles: 0,
                        exits,
                    });
                }
                VmExit::Interrupted if self.kick.kicks.load(Ordering::SeqCst) == kicks => {
                    self.fd.set_kvm_immediate_exit(0);
                }
                VmExit::Interrupted => return Err(VcpuError::AbortFailed(self.cpu)),
                exit => {
                    return Err(VcpuError::UnexpectedExit {
                        cpu: self.cpu,
                        exit,
                    });
                }
            }
        }
    }
}

/// The host's side of one vCPU thread.
#[derive(Debug)]
pub struct VcpuHandle {
    pub(crate) cpu: usize,
    pub(crate) commands: Sender<VcpuCommand>,
    pub(crate) events: Receiver<VcpuEvent>,
    pub(crate) kick: Arc<KickState>,
    thread: Option<vcpu_threads::Running>,
    /// The caller side of polling, when the vCPU polls.
    poll: Option<PollLink>,
}

/// What it takes to create a vCPU in its boot state.
///
/// Note [Guest CPUID]
/// vCPUs get no CPUID (no `KVM_SET_CPUID2`, which costs ~45 µs per vCPU on
/// a nested host, a third of a clone's own work). Nothing in the guest asks:
/// its code is the runtime's and the JIT's, which use the x86-64 baseline
/// with SSE2 and `rdtsc`, and none of the instructions KVM gates on the
/// guest's CPUID (`rdtscp`, `rdpid`, XSAVE and AVX, `rdrand`, ...); tests
/// decode the runtime and every JIT form to keep it so
/// (`guest_jit::jit::beyond_baseline`). Without CPUID, KVM gives the vCPU
/// a MAXPHYADDR of 36 bits, which guest-physical memory stays below
/// (`crate::arena::MAX_PHYS_BITS`).
#[derive(Debug)]
pub struct VcpuSetup {
    /// The VM to create the vCPU in.
    pub vm: Arc<VmFd>,
    /// Index of this vCPU.
    pub cpu: usize,
    /// Guest memory (for the mailbox).
    pub memory: Arc<GuestMemory>,
    /// Guest address of this vCPU's mailbox.
    pub mailbox: u64,
    /// Special registers at boot.
    pub sregs: kvm_sregs,
    /// Where the vCPU starts.
    pub dispatch_entry: u64,
    /// Where a stopped vCPU is sent.
    pub abort_entry: u64,
    /// Initial stack pointer.
    pub stack_top: u64,
    /// Whether to read the TSC rate and tie the vCPU's TSC to the host's
    /// clock (one vCPU per sandbox does: they share the VM's TSC).
    pub measure_clock: bool,
}

/// What creating a vCPU found out.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuReady {
    /// The guest TSC rate, 0 if unknown or not measured.
    pub tsc_khz: u32,
    /// The guest TSC against the host clock, if measured.
    pub clock: Option<ClockSync>,
}

impl VcpuSetup {
    /// Creates the vCPU and loads its boot state.
    pub fn create(self) -> Result<(Vcpu, VcpuReady), VcpuError> {
        let cpu = self.cpu;
        let fd = self
            .vm
            .create_vcpu(cpu as u64)
            .map_err(|e| VcpuError::Create(cpu, e))?;
        let mut ready = VcpuReady::default();
        if self.measure_clock {
            ready.tsc_khz = cached_tsc_khz(&fd);
            ready.clock = ClockSync::measure(&fd, ready.tsc_khz);
        }
        let vcpu = Vcpu {
            cpu,
            fd,
            memory: self.memory,
            mailbox: self.mailbox,
            sregs: self.sregs,
            dispatch_entry: self.dispatch_entry,
            abort_entry: self.abort_entry,
            stack_top: self.stack_top,
            kick: Arc::default(),
        };
        vcpu.load_boot_registers(vcpu.dispatch_entry)?;
        Ok((vcpu, ready))
    }
}

/// The guest TSC rate, read once per process (every VM gets the host's).
fn cached_tsc_khz(vcpu: &VcpuFd) -> u32 {
    static TSC_KHZ: OnceLock<u32> = OnceLock::new();
    *TSC_KHZ.get_or_init(|| vcpu.get_tsc_khz().unwrap_or(0))
}

impl VcpuHandle {
    /// Starts serving `vcpu` on a thread (from `crate::vcpu_threads`);
    /// with `polling`, calls are answered in the guest while it waits for
    /// them (`crate::poll`).
    pub fn spawn(
        vcpu: Vcpu,
        polling: Option<Polling>,
        affinity: Option<crate::CpuSet>,
    ) -> Result<VcpuHandle, VcpuError> {
        let cpu = vcpu.cpu;
        let kick = Arc::clone(&vcpu.kick);
        let poll = match &polling {
            Some(polling) => {
                let mailbox = MailboxView::new(Arc::clone(&vcpu.memory), vcpu.mailbox).ok_or(
                    VcpuError::Mailbox(
                        cpu,
                        MemoryError::OutOfBounds {
                            addr: vcpu.mailbox,
                            len: shm::layout::PAGE_SIZE as usize,
                        },
                    ),
                )?;
                Some(PollLink::new(polling, mailbox))
            }
            None => None,
        };
        let doorbell = polling.map(|p| p.doorbell);
        let (commands, command_rx) = crossbeam_channel::bounded(1);
        let (event_tx, events) = crossbeam_channel::bounded(1);
        let thread = vcpu_threads::run(move || {
            // Checked when the sandbox was made (some CPU of the set is
            // allowed); pinning can only fail if the process lost them
            // since, and then the vCPU runs unpinned.
            let _pinned = affinity.and_then(|set| crate::affinity::Pinned::to(&set).ok());
            vcpu.run(command_rx, event_tx, doorbell)
        })
        .map_err(|e| VcpuError::SpawnThread(cpu, e))?;
        Ok(VcpuHandle {
            cpu,
            commands,
            events,
            kick,
            thread: Some(thread),
            poll,
        })
    }

    /// Sends a call; answer it with [`VcpuHandle::wait_call`].
    pub fn start_call(&self, request: Request) -> Result<(), VcpuError> {
        if let Some(link) = &self.poll {
            return self.start_polled(link, request);
        }
        self.commands
            .send(VcpuCommand::Call(request))
            .map_err(|_| VcpuError::ThreadGone(self.cpu))
    }

    /// Waits for the answer to call `seq`, stopping it at `deadline`.
    pub fn wait_call(&self, seq: u64, deadline: Option<Instant>) -> Result<CallReport, VcpuError> {
        if let Some(link) = &self.poll {
            return self.wait_polled(link, seq, deadline);
        }
        let first = match deadline {
            Some(deadline) => self.events.recv_deadline(deadline),
            None => self
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let event = match first {
            Ok(event) => event,
            Err(RecvTimeoutError::Disconnected) => return Err(VcpuError::ThreadGone(self.cpu)),
            Err(RecvTimeoutError::Timeout) => self.stop(seq)?,
        };
        match event {
            VcpuEvent::Called(got, result) if got == seq => result,
            _ => Err(VcpuError::ThreadGone(self.cpu)),
        }
    }

    /// Kicks the vCPU out of call `seq` and collects its answer; kicks again
    /// (which makes the thread give up) if the abort does not finish in time.
    fn stop(&self, seq: u64) -> Result<VcpuEvent, VcpuError> {
        let pthread = self.pthread().ok_or(VcpuError::ThreadGone(self.cpu))?;
        self.kick.kick(pthread, seq);
        match self.events.recv_timeout(ABORT_GRACE) {
            Ok(event) => Ok(event),
            Err(RecvTimeoutError::Timeout) => {
                self.kick.kick(pthread, seq);
                self.events
                    .recv()
                    .map_err(|_| VcpuError::ThreadGone(self.cpu))
            }
            Err(RecvTimeoutError::Disconnected) => Err(VcpuError::ThreadGone(self.cpu)),
        }
    }

    /// Brings a polling vCPU's thread out of `KVM_RUN` (the runtime stops
    /// waiting for requests), so that guest memory and registers can be
    /// rewritten; the next call goes through `KVM_RUN`. A no-op without
    /// polling. Every command other than a call must come after it.
    pub fn park(&self) -> Result<(), VcpuError> {
        match &self.poll {
            Some(link) => self.park_polled(link),
            None => Ok(()),
        }
    }

    /// Puts the vCPU back into its boot state.
    pub fn reset(&self) -> Result<(), VcpuError> {
        self.park()?;
        self.commands
            .send(VcpuCommand::Reset)
            .map_err(|_| VcpuError::ThreadGone(self.cpu))?;
        match self.events.recv() {
            Ok(VcpuEvent::Reset(result)) => result,
            _ => Err(VcpuError::ThreadGone(self.cpu)),
        }
    }

    pub(crate) fn pthread(&self) -> Option<libc::pthread_t> {
        self.thread.as_ref().map(|t| t.pthread())
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Stop whatever the guest may still be running (a call whose answer
        // nobody waited for), then close both channels so the thread leaves
        // its loop whether it is idle or about to answer.
        self.kick.stop_all(thread.pthread());
        let _ = self.commands.try_send(VcpuCommand::Exit);
        self.commands = crossbeam_channel::bounded(0).0;
        self.events = crossbeam_channel::never();
        thread.wait();
    }
}
