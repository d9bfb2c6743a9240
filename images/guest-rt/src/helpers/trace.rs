//! `bpf_trace_printk` (helper 6, what libbpf's `bpf_printk` calls).
//!
//! The line is formatted here, in the guest, by `shm::trace::printk` and
//! appended to this vCPU's trace buffer; the host reads the buffer after
//! the run. No VM exit per call.

use super::nofault::NoFault;
use crate::percpu::gs_read;
use core::mem::offset_of;
use shm::layout::area::TRACE_SIZE;
use shm::percpu::PerCpu;
use shm::trace::TraceWriter;
use shm::trace::printk::{LINE_BUF_SIZE, bpf_trace_printk as format};

const TRACE_BUF_OFFSET: usize = offset_of!(PerCpu, trace_buf);
const TRACE_SIZE_OFFSET: usize = offset_of!(PerCpu, trace_size);

/// `long bpf_trace_printk(const char *fmt, u32 fmt_size, ...)`: formats up
/// to three arguments as the kernel does and returns the length of the
/// text, or -EINVAL / -ENOSPC as the kernel, or -EFAULT when `fmt` cannot
/// be read up to its NUL.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_trace_printk(
    fmt: u64,
    fmt_size: u64,
    arg1: u64,
    arg2: u64,
    arg3: u64,
) -> i64 {
    let mut line = [0u8; LINE_BUF_SIZE];
    // The kernel's helper takes its size as a u32 (BPF_CALL_5 truncates r2).
    match format(
        &mut NoFault,
        fmt,
        fmt_size as u32,
        [arg1, arg2, arg3],
        &mut line,
    ) {
        Ok(printed) => {
            append(&line[..printed.len]);
            printed.ret
        }
        Err(err) => err.errno(),
    }
}

/// Appends a line to this vCPU's trace buffer (or counts it dropped).
fn append(line: &[u8]) {
    // The per-CPU block is writable by the program: a size is clamped to
    // the real buffer's, and a misaligned address loses the line.
    let base = gs_read(TRACE_BUF_OFFSET);
    let size = gs_read(TRACE_SIZE_OFFSET).min(TRACE_SIZE);
    if !base.is_multiple_of(8) {
        return;
    }
    // SAFETY: the host points `trace_buf` at this vCPU's 8-aligned trace
    // buffer of `trace_size` bytes, mapped read-write, which only this vCPU
    // writes and the host reads between runs. A program that rewrote the
    // pointer can at worst make these writes fault like its own would,
    // which the trap path reports.
    let mut writer = unsafe { TraceWriter::new(base as *mut u8, size as usize) };
    writer.append(line);
}
