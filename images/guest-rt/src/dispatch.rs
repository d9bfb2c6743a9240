//! The per-vCPU dispatch loop: serve the mailbox request, answer, exit.

use crate::percpu::{gs_read, request_ptr, response_ptr};
use crate::port::exit_to_host;
use crate::program::call_program;
use shm::mailbox::{
    REQUEST_CALL, REQUEST_PING, Request, Response, STATUS_BAD_REQUEST, STATUS_RETURNED,
};
use shm::percpu::CPU_ID_OFFSET;
use shm::ports::RUN_DONE_PORT;

/// Serves requests forever. Entered from `bpfvisor_dispatch_entry` on a
/// fresh stack; each iteration handles the request the host left in the
/// mailbox before resuming the vCPU.
pub extern "C" fn dispatch_loop() -> ! {
    loop {
        // SAFETY: the mailbox page is mapped read-write for this vCPU; the
        // host wrote the request before resuming us and does not touch it
        // while we run.
        let request = unsafe { request_ptr().read_volatile() };
        let response = serve(&request);
        // SAFETY: as above, for the response half of the page.
        unsafe { response_ptr().write_volatile(response) };
        exit_to_host(RUN_DONE_PORT);
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
