//! The per-vCPU dispatch loop: serve the mailbox request, answer, and either
//! exit or wait in the guest for the next request (Note [Polling
//! invocation] in `shm::mailbox`).

use crate::percpu::{gs_read, mailbox_word, publish_response, request_ptr};
use crate::port::exit_to_host;
use crate::program::call_program;
use core::sync::atomic::Ordering;
use shm::mailbox::{
    POLL_CLAIMED, POLL_IDLE, POLL_STATE_OFFSET, POLL_WAITING, REQUEST_CALL, REQUEST_PING,
    REQUEST_SEQ_OFFSET, Request, Response, STATUS_BAD_REQUEST, STATUS_RETURNED, WAITER_ASLEEP,
    WAITER_OFFSET,
};
use shm::percpu::CPU_ID_OFFSET;
use shm::ports::{DOORBELL_PORT, IDLE_PORT, RUN_DONE_PORT};

/// Serves requests forever. Entered from `bpfvisor_dispatch_entry` on a
/// fresh stack; each iteration handles the request the host left in the
/// mailbox, either before resuming the vCPU or while the vCPU waited for it.
pub extern "C" fn dispatch_loop() -> ! {
    loop {
        // SAFETY: the mailbox page is mapped read-write for this vCPU; the
        // host wrote the request before resuming us (or before publishing
        // its `seq`, which `wait_for_request` read with acquire) and does
        // not touch it until we answer.
        let request = unsafe { request_ptr().read_volatile() };
        let response = serve(&request);
        if request.poll_cycles == 0 {
            publish_response(&response);
            exit_to_host(RUN_DONE_PORT);
            continue;
        }
        mailbox_word(POLL_STATE_OFFSET).store(POLL_WAITING, Ordering::Relaxed);
        publish_response(&response);
        ring_if_host_sleeps();
        if !wait_for_request(request.seq, request.poll_cycles) {
            // The host resumes us with the next request in the mailbox.
            exit_to_host(IDLE_PORT);
        }
    }
}

/// Spins until the request after `seq` arrives (true) or the budget of
/// `cycles` runs out and the runtime goes idle (false): Note [Polling
/// invocation]. A host that claimed the vCPU has its request waited for
/// without limit; the host bounds that wait with its deadline.
fn wait_for_request(seq: u64, cycles: u64) -> bool {
    let request_seq = mailbox_word(REQUEST_SEQ_OFFSET);
    let state = mailbox_word(POLL_STATE_OFFSET);
    let start = rdtsc();
    loop {
        // Acquire pairs with the host's release store of the seq, which
        // follows its writes of the request's body.
        if request_seq.load(Ordering::Acquire) != seq {
            return true;
        }
        match state.load(Ordering::Relaxed) {
            POLL_WAITING if rdtsc().wrapping_sub(start) >= cycles => {
                match state.compare_exchange(
                    POLL_WAITING,
                    POLL_IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return false,
                    Err(POLL_CLAIMED) => {}
                    // The host told us to stop, or the word is garbage.
                    Err(_) => return false,
                }
            }
            POLL_WAITING | POLL_CLAIMED => {}
            _ => return false,
        }
        core::hint::spin_loop();
    }
}

/// Rings the doorbell when the host went to sleep waiting for an answer.
/// The sequentially consistent load pairs with the host's store of the
/// waiter word: after our (sequentially consistent) store of the response's
/// seq, either we see it asleep or it sees the seq.
fn ring_if_host_sleeps() {
    if mailbox_word(WAITER_OFFSET).load(Ordering::SeqCst) == WAITER_ASLEEP {
        // SAFETY: the doorbell port is granted to CPL 3; KVM signals the
        // host's eventfd and resumes the vCPU.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") DOORBELL_PORT,
                in("al") gs_read(CPU_ID_OFFSET) as u8, options(nostack, nomem));
        }
    }
}

fn serve(request: &Request) -> Response {
    match request.kind {
        REQUEST_CALL => call(request),
        REQUEST_PING => Response {
            seq: request.seq,
            status: STATUS_RETURNED,
            retval: gs_read(CPU_ID_OFFSET),
            ..Response::default()
        },
        _ => Response {
            seq: request.seq,
            status: STATUS_BAD_REQUEST,
            ..Response::default()
        },
    }
}

/// Calls `request.entry` `repeat` times (at least once), timing the calls
/// with the TSC.
fn call(request: &Request) -> Response {
    let repeat = request.repeat.max(1);
    let mut retval = 0;
    let start = rdtsc();
    for _ in 0..repeat {
        // SAFETY: the host put JIT code at `entry`, which follows the SysV
        // calling convention. If it does not, the CPU faults and the trap
        // path reports it.
        retval = unsafe { call_program(request.entry, request.ctx, request.ctx_len) };
    }
    let cycles = rdtsc().wrapping_sub(start);
    Response {
        seq: request.seq,
        status: STATUS_RETURNED,
        retval,
        cycles,
        runs: repeat,
        ..Response::default()
    }
}

/// Reads the TSC after every earlier instruction has completed.
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence; rdtsc` only reads the time-stamp counter.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi,
            options(nostack, nomem, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
