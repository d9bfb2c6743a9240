//! Polling invocation, host side: calls into a warm vCPU that cost no VM
//! exit (Note [Polling invocation] in `shm::mailbox` has the protocol).
//!
//! ```text
//!  caller thread (holds the vCPU's lock)      vCPU thread        guest runtime
//!  ─────────────────────────────────────      ───────────        ─────────────
//!  no session open, or claim fails:
//!    Poll(request) ──────────────────────────► moves off the
//!                                               caller's CPU,
//!                                               writes request,
//!                                               KVM_RUN ─────────► serves it,
//!  sleeps on the doorbell ◄───── ioeventfd ◄────────────────────── publishes,
//!                                               (still inside      rings, spins
//!                                                KVM_RUN)          on request seq
//!  session open and claim WAITING→CLAIMED:
//!    writes request, seq last ─────────────────────────────────────► serves it,
//!  spins on response seq ◄──────────────────────────────────────── publishes
//!                                                                  ... budget out:
//!                                               KVM_RUN returns ◄─ WAITING→IDLE,
//!  next call: Session event (try_recv) ◄─────── Session(seq, end)   IDLE_PORT
//! ```
//!
//! A vCPU thread that receives [`VcpuCommand::Poll`] runs a *session*: it stays inside `KVM_RUN` until the runtime leaves (idle,
//! trap, deadline abort) and only then answers its command, with a
//! [`VcpuEvent::Session`]. Meanwhile callers talk to the runtime through the
//! mailbox alone. The caller side tracks which sessions it opened and has
//! not heard the end of (`open`, and `stale` when a call had to go through
//! `KVM_RUN` while the previous session was ending); a claim is tried only
//! while a session is open, so a guest-forged `POLL_WAITING` on a vCPU whose
//! thread is not in `KVM_RUN` is never believed. A claimed request that the
//! session ends without answering (only a program scribbling on the
//! mailbox can cause it) is a failed vCPU, like a response that does not
//! match its request.
//!
//! Waiting (Note [Spinning callers]): a claimed call spins on the
//! response's `seq`, then sleeps on the vCPU's doorbell eventfd, which the
//! runtime rings through an ioeventfd (no exit to this process) and the
//! vCPU thread writes after each session event; a call that opens a
//! session sleeps at once. Every wait is bounded by the call's deadline; at
//! the deadline the vCPU thread is kicked as in the exit path (Note
//! [Kicking a vCPU]) and the runtime sent to its abort entry.

use crate::memory::GuestMemory;
use crate::vcpu::{CallEnd, CallReport, Vcpu, VcpuCommand, VcpuError, VcpuEvent, VcpuHandle};
use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use kvm_ioctls::{IoEventAddress, VmFd};
use shm::layout::PAGE_SIZE;
use shm::mailbox::{
    POLL_CLAIMED, POLL_IDLE, POLL_STATE_OFFSET, POLL_WAITING, REQUEST_SEQ_OFFSET, RESPONSE_OFFSET,
    RESPONSE_SEQ_OFFSET, Request, Response, STATUS_RETURNED, STATUS_TRAPPED, TrapRecord,
    WAITER_ASLEEP, WAITER_AWAKE, WAITER_OFFSET,
};
use shm::ports::DOORBELL_PORT;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

/// How long a caller spins on the response before it sleeps on the
/// doorbell: about what a sleep and a wakeup cost together on the
/// development machine, so a call that ends sooner is never slept through.
pub const HOST_SPIN: Duration = Duration::from_micros(50);

/// The shortest spin (Note [Spinning callers]).
const MIN_HOST_SPIN: Duration = Duration::from_micros(2);

// Note [Spinning callers]
// A caller that spins on the answer helps only while the vCPU thread runs
// on another host CPU. A call that opens a session wakes the vCPU thread,
// and the scheduler likes to put a woken thread on its waker's CPU. Two
// things follow. First, the caller of such a call sleeps on the doorbell
// at once: spinning there kept the vCPU from running until the spin ran
// out (measured on the 2-CPU development machine: about 390 µs for the
// first call of a session, against 120–140 µs sleeping). Second, once
// there, the pair stays: the caller sleeps while the vCPU answers and the
// vCPU waits while the caller runs, so the scheduler never sees two
// runnable threads to spread, and every claimed call cost a spin and a
// doorbell (58 µs instead of 0.4). So the vCPU thread, at the start of a
// session, moves itself off the caller's CPU (`move_off_cpu`). A claimed
// call spins for `HOST_SPIN` at first; each spin that runs out halves the
// next (down to `MIN_HOST_SPIN`), and an answer that arrives while
// spinning restores it: on a host with fewer free CPUs than spinning
// threads, callers soon stop wasting their CPU.

/// Longest single sleep on the doorbell. An honest runtime always rings;
/// this only bounds how long a program that overwrote the waiter word can
/// delay the answer's discovery.
const SLEEP_CAP: Duration = Duration::from_millis(20);

/// How long ending a session (before a reset) may take before the vCPU is
/// kicked: a waiting runtime notices within microseconds.
const PARK_GRACE: Duration = Duration::from_millis(200);

/// The same grace the exit path gives a stopped vCPU.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Spins between two looks at the clock and the vCPU thread's events.
const SPINS_PER_CHECK: u32 = 64;

/// How a session ended, as the vCPU thread saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The runtime left through `IDLE_PORT` (or `RUN_DONE_PORT`).
    Left,
    /// The runtime left through `TRAP_PORT`, the trap in the mailbox.
    Trapped,
    /// The host stopped it (deadline or drop); the runtime aborted.
    Stopped,
}

/// The polling setup of one vCPU: its budget and its doorbell.
#[derive(Debug)]
pub struct Polling {
    /// TSC cycles the runtime waits for the next request.
    pub cycles: u64,
    /// Signalled by the runtime (through an ioeventfd) and by the vCPU
    /// thread; a sleeping caller waits on it.
    pub doorbell: Arc<EventFd>,
}

impl Polling {
    /// Creates vCPU `cpu`'s doorbell and registers it with KVM for the
    /// runtime's `out` of `cpu` to [`DOORBELL_PORT`].
    pub fn new(vm: &VmFd, cpu: usize, cycles: u64) -> Result<Polling, VcpuError> {
        let err = |e| VcpuError::Doorbell(cpu, e);
        let doorbell = EventFd::new(EFD_CLOEXEC | EFD_NONBLOCK).map_err(err)?;
        let id =
            u8::try_from(cpu).map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        vm.register_ioevent(
            &doorbell,
            &IoEventAddress::Pio(u64::from(DOORBELL_PORT)),
            id,
        )
        .map_err(|e| err(std::io::Error::from_raw_os_error(e.errno())))?;
        Ok(Polling {
            cycles: cycles.max(1),
            doorbell: Arc::new(doorbell),
        })
    }
}

/// `duration` in TSC cycles at `tsc_khz`, saturating.
pub fn duration_to_cycles(duration: Duration, tsc_khz: u32) -> u64 {
    let cycles = duration.as_nanos() * u128::from(tsc_khz) / 1_000_000;
    u64::try_from(cycles).unwrap_or(u64::MAX)
}

/// Host view of one vCPU's mailbox page, for the words the host and the
/// runtime share while the vCPU runs. Every access is atomic: the guest may
/// write any of these words at any time (Note [Polling invocation]).
pub struct MailboxView {
    // Keeps the mapping alive.
    _memory: Arc<GuestMemory>,
    host_addr: usize,
}

impl std::fmt::Debug for MailboxView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxView")
            .field("host_addr", &format_args!("{:#x}", self.host_addr))
            .finish()
    }
}

impl MailboxView {
    /// The mailbox page at guest address `mailbox`, which must be a whole
    /// page inside `memory`.
    pub fn new(memory: Arc<GuestMemory>, mailbox: u64) -> Option<MailboxView> {
        let inside = mailbox.is_multiple_of(PAGE_SIZE)
            && mailbox
                .checked_add(PAGE_SIZE)
                .is_some_and(|end| end <= memory.size());
        if !inside {
            return None;
        }
        let host_addr = usize::try_from(memory.host_base().checked_add(mailbox)?).ok()?;
        Some(MailboxView {
            _memory: memory,
            host_addr,
        })
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset < PAGE_SIZE);
        // SAFETY: the page lies inside guest memory (checked in `new`),
        // which stays mapped while `_memory` lives; `offset` is an 8-aligned
        // offset inside it. The guest touches these words with its own
        // instructions and the host only through atomics.
        unsafe { AtomicU64::from_ptr((self.host_addr + offset as usize) as *mut u64) }
    }

    /// Claims a waiting runtime (`POLL_WAITING` → `POLL_CLAIMED`).
    pub fn claim(&self) -> bool {
        self.word(POLL_STATE_OFFSET)
            .compare_exchange(
                POLL_WAITING,
                POLL_CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Tells a waiting runtime to leave (`POLL_WAITING` → `POLL_IDLE`).
    pub fn release(&self) {
        let _ = self.word(POLL_STATE_OFFSET).compare_exchange(
            POLL_WAITING,
            POLL_IDLE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Writes `request`, its `seq` last with release (pairs with the
    /// runtime's acquire load of the seq).
    pub fn write_request(&self, request: &Request) {
        let words = [
            request.kind,
            request.entry,
            request.ctx,
            request.ctx_len,
            request.repeat,
            request.poll_cycles,
        ];
        for (i, word) in words.iter().enumerate() {
            self.word(REQUEST_SEQ_OFFSET + 8 * (i as u64 + 1))
                .store(*word, Ordering::Relaxed);
        }
        self.word(REQUEST_SEQ_OFFSET)
            .store(request.seq, Ordering::Release);
    }

    /// The response's `seq`; acquire pairs with the runtime's store of it,
    /// which follows the response's body.
    pub fn response_seq(&self) -> u64 {
        self.word(RESPONSE_SEQ_OFFSET).load(Ordering::Acquire)
    }

    /// The response, word by word: data only, never trusted.
    pub fn response(&self) -> Response {
        let w = |i: u64| self.word(RESPONSE_OFFSET + 8 * i).load(Ordering::Relaxed);
        Response {
            seq: w(0),
            status: w(1),
            retval: w(2),
            cycles: w(3),
            runs: w(4),
            trap: TrapRecord {
                vector: w(5),
                error_code: w(6),
                rip: w(7),
                cr2: w(8),
                rsp: w(9),
            },
        }
    }

    /// Says whether the host sleeps on the doorbell; sequentially
    /// consistent, paired with the runtime's load after its seq store.
    pub fn set_waiter(&self, asleep: bool) {
        let value = if asleep { WAITER_ASLEEP } else { WAITER_AWAKE };
        self.word(WAITER_OFFSET).store(value, Ordering::SeqCst);
    }

    /// As [`MailboxView::response_seq`], sequentially consistent: the look
    /// after announcing sleep.
    fn response_seq_seqcst(&self) -> u64 {
        self.word(RESPONSE_SEQ_OFFSET).load(Ordering::SeqCst)
    }

    /// Puts the state word to `POLL_IDLE` (the runtime is stopped: before
    /// a request goes through `KVM_RUN`).
    pub fn set_idle(&self) {
        self.word(POLL_STATE_OFFSET)
            .store(POLL_IDLE, Ordering::Release);
    }
}

const _: () = assert!(std::mem::size_of::<Response>() == 80);
const _: () = assert!(std::mem::size_of::<Request>() == 56);

/// The caller side of polling, kept in the [`VcpuHandle`] (used under the
/// vCPU's lock only; atomics so the handle stays `Sync`).
#[derive(Debug)]
pub struct PollLink {
    /// Budget copied into every request.
    cycles: u64,
    doorbell: Arc<EventFd>,
    mailbox: MailboxView,
    /// Seq of the command that opened the session the thread runs (or is
    /// ending); 0 when none.
    open: AtomicU64,
    /// Seq of an earlier session whose end event is still to come; 0 when
    /// none.
    stale: AtomicU64,
    /// `kick.exits` when the current call started.
    exits_at_start: AtomicU64,
    /// Whether the current call was claimed in place (else it went
    /// through `KVM_RUN`).
    claimed: AtomicBool,
    /// How long the next claimed call spins, in nanoseconds (Note
    /// [Spinning callers]).
    spin_ns: AtomicU64,
}

impl PollLink {
    /// The caller side for `polling` on the vCPU with mailbox `mailbox`.
    pub fn new(polling: &Polling, mailbox: MailboxView) -> PollLink {
        PollLink {
            cycles: polling.cycles,
            doorbell: Arc::clone(&polling.doorbell),
            mailbox,
            open: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            exits_at_start: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            spin_ns: AtomicU64::new(duration_nanos(HOST_SPIN)),
        }
    }
}

impl Vcpu {
    /// Runs a polling session opened by `request` (Note [Polling
    /// invocation]): the request goes into the mailbox and the vCPU stays in
    /// `KVM_RUN` until the runtime leaves.
    pub(crate) fn session(
        &mut self,
        request: &Request,
        caller_cpu: i32,
    ) -> Result<SessionEnd, VcpuError> {
        let seq = request.seq;
        move_off_cpu(caller_cpu);
        let mailbox = |e| VcpuError::Mailbox(self.cpu, e);
        self.memory
            .write_pod(self.mailbox + POLL_STATE_OFFSET, &POLL_IDLE)
            .map_err(mailbox)?;
        self.memory
            .write_pod(self.mailbox, request)
            .map_err(mailbox)?;
        self.kick.running_seq.store(seq, Ordering::SeqCst);
        let end = self.run_session(seq);
        self.kick.running_seq.store(0, Ordering::SeqCst);
        end
    }

    fn run_session(&mut self, seq: u64) -> Result<SessionEnd, VcpuError> {
        use crate::exit::VmExit;
        loop {
            if self.kick.should_stop(seq) {
                return self.abort(0).map(|_| SessionEnd::Stopped);
            }
            match self.run_guest() {
                VmExit::Idle | VmExit::RunDone => return Ok(SessionEnd::Left),
                VmExit::Trapped => return Ok(SessionEnd::Trapped),
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
}

impl VcpuHandle {
    /// Starts `request` on a polling vCPU: in place when a session is open
    /// and the runtime can be claimed, else through `KVM_RUN`.
    pub(crate) fn start_polled(&self, link: &PollLink, request: Request) -> Result<(), VcpuError> {
        let request = Request {
            poll_cycles: link.cycles,
            ..request
        };
        self.absorb_events(link)?;
        link.exits_at_start
            .store(self.kick.exits.load(Ordering::SeqCst), Ordering::Relaxed);
        let open = link.open.load(Ordering::Relaxed);
        let claimed = open != 0 && link.mailbox.claim();
        link.claimed.store(claimed, Ordering::Relaxed);
        if claimed {
            link.mailbox.write_request(&request);
            return Ok(());
        }
        // Asleep before the runtime can answer (Note [Spinning callers]).
        link.mailbox.set_waiter(true);
        // SAFETY: no arguments, no memory effects.
        let caller_cpu = unsafe { libc::sched_getcpu() };
        self.commands
            .send(VcpuCommand::Poll {
                request,
                caller_cpu,
            })
            .map_err(|_| VcpuError::ThreadGone(self.cpu))?;
        if open != 0 {
            link.stale.store(open, Ordering::Relaxed);
        }
        link.open.store(request.seq, Ordering::Relaxed);
        Ok(())
    }

    /// Takes the session events that have arrived, without waiting.
    fn absorb_events(&self, link: &PollLink) -> Result<(), VcpuError> {
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    // An ended session with no call waiting for it.
                    if let Some((_, end)) = self.note_session_end(link, event)? {
                        end?;
                    }
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(VcpuError::ThreadGone(self.cpu)),
            }
        }
    }

    /// Books a session event; returns the end of the open session (with
    /// its seq), or `None` for the end of a stale one.
    #[allow(clippy::type_complexity, reason = "a private two-level answer")]
    fn note_session_end(
        &self,
        link: &PollLink,
        event: VcpuEvent,
    ) -> Result<Option<(u64, Result<SessionEnd, VcpuError>)>, VcpuError> {
        let VcpuEvent::Session(seq, end) = event else {
            return Err(VcpuError::ThreadGone(self.cpu));
        };
        if seq != 0 && link.stale.load(Ordering::Relaxed) == seq {
            link.stale.store(0, Ordering::Relaxed);
            end?;
            return Ok(None);
        }
        if seq != 0 && link.open.load(Ordering::Relaxed) == seq {
            link.open.store(0, Ordering::Relaxed);
            return Ok(Some((seq, end)));
        }
        Err(VcpuError::ThreadGone(self.cpu))
    }

    /// Waits for the answer to the polled call `seq`, stopping it at
    /// `deadline`.
    pub(crate) fn wait_polled(
        &self,
        link: &PollLink,
        seq: u64,
        deadline: Option<Instant>,
    ) -> Result<CallReport, VcpuError> {
        let result = self.wait_polled_inner(link, seq, deadline);
        link.mailbox.set_waiter(false);
        result
    }

    fn wait_polled_inner(
        &self,
        link: &PollLink,
        seq: u64,
        deadline: Option<Instant>,
    ) -> Result<CallReport, VcpuError> {
        let claimed = link.claimed.load(Ordering::Relaxed);
        let spin = match claimed {
            true => Duration::from_nanos(link.spin_ns.load(Ordering::Relaxed)),
            false => Duration::ZERO,
        };
        let spin_until = Instant::now() + spin;
        let mut spun_out = false;
        let mut spins = 0u32;
        loop {
            if link.mailbox.response_seq() == seq {
                if claimed && !spun_out {
                    link.spin_ns
                        .store(duration_nanos(HOST_SPIN), Ordering::Relaxed);
                }
                return self.answer(link, seq);
            }
            spins += 1;
            if spins < SPINS_PER_CHECK {
                std::hint::spin_loop();
                continue;
            }
            spins = 0;
            if let Some(report) = self.take_event(link, seq)? {
                return Ok(report);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return self.stop_polled(link, seq);
            }
            if now < spin_until {
                continue;
            }
            if claimed && !spun_out {
                spun_out = true;
                let shorter = (spin / 2).max(MIN_HOST_SPIN);
                link.spin_ns
                    .store(duration_nanos(shorter), Ordering::Relaxed);
            }
            // Sleep until the doorbell, the deadline, or a cap.
            link.mailbox.set_waiter(true);
            if link.mailbox.response_seq_seqcst() == seq {
                return self.answer(link, seq);
            }
            let mut timeout = SLEEP_CAP;
            if let Some(d) = deadline {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            sleep_on(&link.doorbell, timeout);
            link.mailbox.set_waiter(false);
        }
    }

    /// Takes one session event if there is one; the report when it ends
    /// the call.
    fn take_event(&self, link: &PollLink, seq: u64) -> Result<Option<CallReport>, VcpuError> {
        let event = match self.events.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => return Err(VcpuError::ThreadGone(self.cpu)),
        };
        match self.note_session_end(link, event)? {
            None => Ok(None),
            Some((_, end)) => self.after_session(link, seq, end?).map(Some),
        }
    }

    /// The call's report once the session it ran in has ended.
    fn after_session(
        &self,
        link: &PollLink,
        seq: u64,
        end: SessionEnd,
    ) -> Result<CallReport, VcpuError> {
        if link.mailbox.response_seq() == seq {
            return self.answer(link, seq);
        }
        if end == SessionEnd::Stopped {
            return Ok(CallReport {
                end: CallEnd::Stopped,
                runs: 0,
                cycles: 0,
                exits: self.exits_since(link),
            });
        }
        let response = link.mailbox.response();
        Err(VcpuError::BadResponse {
            cpu: self.cpu,
            want: seq,
            got: response.seq,
            status: response.status,
        })
    }

    fn exits_since(&self, link: &PollLink) -> u64 {
        self.kick
            .exits
            .load(Ordering::SeqCst)
            .wrapping_sub(link.exits_at_start.load(Ordering::Relaxed))
    }

    /// Reads the answer to `seq` from the mailbox.
    fn answer(&self, link: &PollLink, seq: u64) -> Result<CallReport, VcpuError> {
        let response = link.mailbox.response();
        let exits = self.exits_since(link);
        let end = match response.status {
            STATUS_RETURNED if response.seq == seq => CallEnd::Returned(response.retval),
            // The trap handler always leaves through TRAP_PORT, maybe
            // after this thread read the counter.
            STATUS_TRAPPED if response.seq == seq => {
                return Ok(CallReport {
                    end: CallEnd::Trapped(response.trap),
                    runs: response.runs,
                    cycles: response.cycles,
                    exits: exits.max(1),
                });
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

    /// Stops the session running call `seq` at its deadline, as the exit
    /// path does (Note [Kicking a vCPU]), and collects every outstanding
    /// session event.
    fn stop_polled(&self, link: &PollLink, seq: u64) -> Result<CallReport, VcpuError> {
        // The call runs in the open session, whether it opened it or was
        // claimed into it.
        let ours = link.open.load(Ordering::Relaxed);
        let mut result = None;
        self.end_sessions(link, ABORT_GRACE, true, |this, session, end| {
            if session == ours {
                result = Some(end.and_then(|end| this.after_session(link, seq, end)));
            }
            Ok(())
        })?;
        result.unwrap_or(Ok(CallReport {
            end: CallEnd::Stopped,
            runs: 0,
            cycles: 0,
            exits: self.exits_since(link),
        }))
    }

    /// Ends any open session before a command other than a call (reset):
    /// the waiting runtime is told to leave, and kicked if it does not
    /// within [`PARK_GRACE`].
    pub(crate) fn park_polled(&self, link: &PollLink) -> Result<(), VcpuError> {
        self.absorb_events(link)?;
        if link.open.load(Ordering::Relaxed) == 0 && link.stale.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        link.mailbox.release();
        let mut failure = None;
        self.end_sessions(link, PARK_GRACE, false, |_, _, end| {
            if let Err(e) = end {
                failure.get_or_insert(e);
            }
            Ok(())
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Receives the end of every outstanding session, kicking them first
    /// when `kick_now`, or after `grace`; after a second grace the
    /// sessions are kicked again (which makes an abort in progress give up)
    /// and waited for.
    fn end_sessions(
        &self,
        link: &PollLink,
        grace: Duration,
        kick_now: bool,
        mut each: impl FnMut(&Self, u64, Result<SessionEnd, VcpuError>) -> Result<(), VcpuError>,
    ) -> Result<(), VcpuError> {
        let pthread = self.pthread().ok_or(VcpuError::ThreadGone(self.cpu))?;
        let kick = || {
            for session in [
                link.stale.load(Ordering::Relaxed),
                link.open.load(Ordering::Relaxed),
            ] {
                if session != 0 {
                    self.kick.kick(pthread, session);
                }
            }
        };
        if kick_now {
            kick();
        }
        let mut kicks = usize::from(kick_now);
        let mut until = Instant::now() + grace;
        while link.open.load(Ordering::Relaxed) != 0 || link.stale.load(Ordering::Relaxed) != 0 {
            let event = match self.events.recv_deadline(until) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) if kicks < 2 => {
                    kick();
                    kicks += 1;
                    until = Instant::now() + ABORT_GRACE;
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => self
                    .events
                    .recv()
                    .map_err(|_| VcpuError::ThreadGone(self.cpu))?,
                Err(RecvTimeoutError::Disconnected) => return Err(VcpuError::ThreadGone(self.cpu)),
            };
            let VcpuEvent::Session(session, end) = event else {
                return Err(VcpuError::ThreadGone(self.cpu));
            };
            for slot in [&link.stale, &link.open] {
                if slot.load(Ordering::Relaxed) == session {
                    slot.store(0, Ordering::Relaxed);
                }
            }
            each(self, session, end)?;
        }
        Ok(())
    }
}

/// Moves the calling thread to another host CPU if it runs on `cpu` and
/// its affinity allows another (Note [Spinning callers]): its affinity
/// loses `cpu` for a moment, which migrates it at once, and is then put
/// back, which leaves it where it now is.
fn move_off_cpu(cpu: i32) {
    // SAFETY: no arguments, no memory effects.
    if cpu < 0 || unsafe { libc::sched_getcpu() } != cpu {
        return;
    }
    let Ok(cpu) = usize::try_from(cpu) else {
        return;
    };
    // SAFETY: a zeroed cpu_set_t is the empty set.
    let mut original: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `original` is a valid cpu_set_t of `size` bytes; 0 is this
    // thread.
    if unsafe { libc::sched_getaffinity(0, size, &mut original) } != 0 {
        return;
    }
    let mut elsewhere = original;
    // SAFETY: CPU_ISSET/CPU_CLR/CPU_COUNT only touch the set, and `cpu`
    // is checked against its capacity.
    unsafe {
        if cpu >= 8 * size || !libc::CPU_ISSET(cpu, &original) {
            return;
        }
        libc::CPU_CLR(cpu, &mut elsewhere);
        if libc::CPU_COUNT(&elsewhere) == 0 {
            return;
        }
    }
    // SAFETY: both sets are valid cpu_set_t values of `size` bytes.
    unsafe {
        if libc::sched_setaffinity(0, size, &elsewhere) == 0 {
            libc::sched_setaffinity(0, size, &original);
        }
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Waits until `doorbell` is signalled or `timeout` passes, and resets it.
fn sleep_on(doorbell: &EventFd, timeout: Duration) {
    let mut fds = libc::pollfd {
        fd: doorbell.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is one valid pollfd and `timeout` a valid timespec for
    // the duration of the call; no signal mask is passed.
    unsafe { libc::ppoll(&mut fds, 1, &timeout, std::ptr::null()) };
    // Non-blocking: fails with EAGAIN when nothing was signalled.
    let _ = doorbell.read();
}
