//! Stopping a vCPU that is inside `KVM_RUN`.
//!
//! Note [Kicking a vCPU]
//! A vCPU thread blocked in `KVM_RUN` returns only on a guest exit or a
//! signal. To stop it, the host stores the sequence number of the request to
//! stop in `stop_seq`, then sends the kick signal to the vCPU thread. The
//! signal handler sets `kvm_run.immediate_exit`, so even if the signal lands
//! just before the thread enters `KVM_RUN`, that call returns `EINTR` at once
//! instead of running the guest. The vCPU thread publishes the request it is
//! running in `running_seq` before it checks `stop_seq`; the kicker stores
//! `stop_seq` before it reads `running_seq` (both sequentially consistent),
//! so either the thread sees the stop before entering the guest or the
//! kicker sees the thread running and signals it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, or null when the thread runs
    /// no vCPU. Written only by the owning thread; read by the signal handler
    /// on the same thread.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The real-time signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn handle_kick(_signal: libc::c_int) {
    // `try_with` because the handler may run while the thread is exiting.
    let _ = IMMEDIATE_EXIT.try_with(|ptr| {
        let ptr = ptr.get();
        if !ptr.is_null() {
            // SAFETY: the pointer was set by this thread to its live kvm_run
            // mapping and is cleared before that mapping goes away.
            unsafe { ptr.write_volatile(1) };
        }
    });
}

/// Installs the kick signal handler once per process.
pub fn install_handler() -> Result<(), std::io::Error> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: zeroed sigaction is a valid "no flags, empty mask" value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handle_kick as *const () as usize;
        // No SA_RESTART: KVM_RUN must return EINTR.
        action.sa_flags = 0;
        // SAFETY: `action` is fully initialised and the handler only does
        // async-signal-safe work (a thread-local read and a byte store).
        let rc = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    (*result).map_err(std::io::Error::from_raw_os_error)
}

/// Registers the calling thread's `immediate_exit` byte with the handler.
pub fn register_immediate_exit(ptr: *mut u8) {
    IMMEDIATE_EXIT.with(|cell| cell.set(ptr));
}

/// Unregisters it; must be called before the `kvm_run` mapping is dropped.
pub fn unregister_immediate_exit() {
    IMMEDIATE_EXIT.with(|cell| cell.set(std::ptr::null_mut()));
}

/// Shared between a vCPU thread and whoever may need to stop it.
#[derive(Debug, Default)]
pub struct KickState {
    /// Sequence number of the request the thread is running; 0 when idle.
    pub running_seq: AtomicU64,
    /// Highest sequence number the host asked to stop.
    pub stop_seq: AtomicU64,
    /// Number of kicks sent; lets an abort in progress notice a second kick.
    pub kicks: AtomicU64,
    /// Returns from `KVM_RUN` so far, counted by the vCPU thread: a call
    /// answered in the guest without the thread (Note [Polling invocation]
    /// in `shm::mailbox`) reports how many happened while it ran.
    pub exits: AtomicU64,
}

impl KickState {
    /// Asks the thread `thread` to stop request `seq`
    /// (Note [Kicking a vCPU]).
    pub fn kick(&self, thread: libc::pthread_t, seq: u64) {
        self.stop_seq.fetch_max(seq, Ordering::SeqCst);
        self.kicks.fetch_add(1, Ordering::SeqCst);
        if self.running_seq.load(Ordering::SeqCst) == seq {
            // SAFETY: `thread` is a live vCPU thread: the handle that owns
            // its JoinHandle is borrowed by the caller, and the thread only
            // exits after that handle is dropped.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }

    /// Stops every request, now and later, of a thread about to be joined.
    pub fn stop_all(&self, thread: libc::pthread_t) {
        self.stop_seq.store(u64::MAX, Ordering::SeqCst);
        self.kicks.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller holds the thread's JoinHandle and has not joined it.
        unsafe { libc::pthread_kill(thread, kick_signal()) };
    }

    /// Whether request `seq` was asked to stop.
    pub fn should_stop(&self, seq: u64) -> bool {
        self.stop_seq.load(Ordering::SeqCst) >= seq
    }
}
