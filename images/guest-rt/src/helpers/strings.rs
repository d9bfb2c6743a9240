//! `bpf_snprintf` (165) and `bpf_strncmp` (182).
//!
//! Both read program memory through the fault-safe probes (Note
//! [Fault-safe reads] in `super::nofault`): a pointer the program got
//! wrong gives -EFAULT, never a trap in the runtime.

use super::nofault::{self, NoFault};
use shm::errno::{EFAULT, EINVAL};
use shm::trace::printk::{MAX_SNPRINTF_ARGS, Output, bpf_snprintf as format, snprintf_arg_count};

/// Bytes `bpf_snprintf` gathers before copying them out.
const CHUNK_SIZE: usize = 128;

/// `bpf_snprintf`'s destination in program memory: `bstr_printf` writes
/// front to back (and may rewrite its last byte with the NUL), so bytes
/// are gathered in a chunk and copied out with one fault-safe copy each.
struct ProgramOutput {
    base: u64,
    size: usize,
    chunk: [u8; CHUNK_SIZE],
    /// Offset in the destination of `chunk[0]`.
    start: usize,
    len: usize,
    faulted: bool,
}

impl ProgramOutput {
    fn new(base: u64, size: u32) -> ProgramOutput {
        ProgramOutput {
            base,
            size: size as usize,
            chunk: [0; CHUNK_SIZE],
            start: 0,
            len: 0,
            faulted: false,
        }
    }

    /// Copies the gathered bytes out; after a fault, nothing more is.
    fn flush(&mut self) {
        if self.len > 0 && !self.faulted {
            let dst = self.base.wrapping_add(self.start as u64);
            let src = self.chunk.as_ptr() as u64;
            self.faulted = nofault::copy(dst, src, self.len as u64).is_err();
        }
        self.start += self.len;
        self.len = 0;
    }

    /// Flushes what is left; whether every byte reached the destination.
    fn finish(mut self) -> bool {
        self.flush();
        !self.faulted
    }
}

impl Output for ProgramOutput {
    fn capacity(&self) -> usize {
        self.size
    }

    fn put(&mut self, pos: usize, byte: u8) {
        if let Some(slot) = pos
            .checked_sub(self.start)
            .filter(|&offset| offset < self.len)
            .and_then(|offset| self.chunk.get_mut(offset))
        {
            *slot = byte;
            return;
        }
        if pos != self.start + self.len || self.len == CHUNK_SIZE {
            self.flush();
            self.start = pos;
        }
        self.chunk[self.len] = byte;
        self.len += 1;
    }
}

/// `long bpf_snprintf(char *str, u32 str_size, const char *fmt, u64 *data,
/// u32 data_len)`: formats as `bpf_trace_printk` does, with up to 12
/// arguments taken from the u64 array `data`, into `str_size` bytes at
/// `str`, NUL-terminated; returns the length of the whole text plus one
/// (the NUL), -EINVAL as the kernel, or -EFAULT when `fmt`, `data` or
/// `str` cannot be accessed.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_snprintf(str: u64, str_size: u64, fmt: u64, data: u64, data_len: u64) -> i64 {
    // u32 parameters: BPF_CALL_5 truncates r2 and r5.
    let Some(count) = snprintf_arg_count(data, data_len as u32) else {
        return EINVAL;
    };
    let mut args = [0u64; MAX_SNPRINTF_ARGS];
    if count > 0 && nofault::copy(args.as_mut_ptr() as u64, data, count as u64 * 8).is_err() {
        return EFAULT;
    }
    let mut out = ProgramOutput::new(str, str_size as u32);
    match format(&mut NoFault, fmt, &args[..count], &mut out) {
        Ok(total) if out.finish() => total as i64 + 1,
        Ok(_) => EFAULT,
        Err(err) => err.errno(),
    }
}

/// `long bpf_strncmp(const char *s1, u32 s1_sz, const char *s2)`: the
/// kernel's `strncmp(s1, s2, s1_sz)`, -1, 0 or 1 (`shm::strings`), or
/// -EFAULT.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_strncmp(s1: u64, s1_sz: u64, s2: u64) -> i64 {
    shm::strings::strncmp(&mut NoFault, s1, s1_sz as u32, s2)
}
