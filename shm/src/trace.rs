//! The per-vCPU trace buffer `bpf_printk` writes into, and its formatter.
//!
//! `bpf_trace_printk` formats its line inside the guest ([`printk`]) and
//! appends it to the calling vCPU's trace buffer ([`TraceWriter`]); no VM
//! exit per call. The host resets the buffer before a run ([`reset`]) and
//! reads it after ([`read_trace`]).
//!
//! ```text
//!  trace buffer (shm::layout::area::TRACE_SIZE bytes, per vCPU)
//!  ┌──────────────────────────────┬──────────────────────────────────┐
//!  │ TraceHeader                  │ text                             │
//!  │  used: u64     (text bytes)  │ "line 1\nline 2\n…"  ─── unused ─ │
//!  │  dropped: u64  (lost lines)  │ ◄────── used ──────►             │
//!  └──────────────────────────────┴──────────────────────────────────┘
//!  0                              TRACE_HEADER_SIZE                   size
//! ```
//!
//! Each call appends one record: the formatted message and a `\n`, unless
//! the message already ends with one. (The kernel's trace_pipe prints a blank
//! line after such a message; one line per call is what a reader wants.) A
//! message may itself contain newlines: it then reads back as several lines,
//! as it would from trace_pipe. A record that does not fit in the space left
//! is not written; `dropped` counts it instead.
//!
//! The buffer is writable by the program that runs on the vCPU, so neither
//! side trusts what it finds there: the writer clamps `used` to the buffer
//! and the reader clamps it to the bytes it was given.

pub mod printk;

use crate::pod::{Pod, read_pod};
use core::mem::{offset_of, size_of};

/// What the first bytes of a trace buffer hold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceHeader {
    /// Bytes of text after the header.
    pub used: u64,
    /// Records that did not fit and were dropped.
    pub dropped: u64,
}

// SAFETY: repr(C), two u64 fields, no padding.
unsafe impl Pod for TraceHeader {}

/// Size of [`TraceHeader`]; the text starts here.
pub const TRACE_HEADER_SIZE: usize = size_of::<TraceHeader>();

const USED_OFFSET: usize = offset_of!(TraceHeader, used);
const DROPPED_OFFSET: usize = offset_of!(TraceHeader, dropped);

/// Empties a trace buffer: the host calls this (or writes
/// `TraceHeader::default()` at the buffer's start) before each run. The text
/// area is left as it is; only `used` bytes of it are ever read.
pub fn reset(buffer: &mut [u8]) {
    let len = buffer.len().min(TRACE_HEADER_SIZE);
    buffer[..len].fill(0);
}

/// Where the next record goes, or `None` if `len` bytes do not fit.
///
/// `used` comes from guest-writable memory: a value past the text area
/// means the buffer is full, whatever wrote it.
fn reserve(used: u64, capacity: usize, len: usize) -> Option<usize> {
    let used = usize::try_from(used).ok().filter(|&u| u <= capacity)?;
    let end = used.checked_add(len)?;
    (end <= capacity).then_some(used)
}

/// Appends records to one trace buffer in guest memory (the guest side).
#[derive(Debug)]
pub struct TraceWriter {
    base: *mut u8,
    size: usize,
}

impl TraceWriter {
    /// A writer for the `size` bytes at `base`.
    ///
    /// # Safety
    ///
    /// * `base..base + size` must be valid for reads and writes for as long as
    ///   the writer lives, and `base` aligned to 8 bytes.
    /// * Nothing else may access the buffer while a method of the writer
    ///   runs (in the guest: the buffer belongs to the vCPU running it, and
    ///   the host reads it only between runs).
    pub unsafe fn new(base: *mut u8, size: usize) -> TraceWriter {
        TraceWriter { base, size }
    }

    /// Appends `message` as one record (adding a `\n` unless it ends with
    /// one), or counts it in `dropped` if it does not fit. Returns whether
    /// it was written. A buffer too small for its header is left alone.
    pub fn append(&mut self, message: &[u8]) -> bool {
        let Some(capacity) = self.size.checked_sub(TRACE_HEADER_SIZE) else {
            return false;
        };
        let newline = message.last() != Some(&b'\n');
        let len = message.len().saturating_add(usize::from(newline));
        let used = self.read_u64(USED_OFFSET);
        let Some(start) = reserve(used, capacity, len) else {
            let dropped = self.read_u64(DROPPED_OFFSET).saturating_add(1);
            self.write_u64(DROPPED_OFFSET, dropped);
            return false;
        };
        let text = TRACE_HEADER_SIZE + start;
        for (i, &byte) in message.iter().enumerate() {
            // SAFETY: reserve() checked start + len <= capacity, so
            // text + i < size; `new`'s contract makes the byte writable.
            unsafe { self.base.add(text + i).write_volatile(byte) };
        }
        if newline {
            // SAFETY: as above, for the last reserved byte.
            unsafe { self.base.add(text + message.len()).write_volatile(b'\n') };
        }
        // Widening: `len` fits in the buffer, so it fits in a u64.
        self.write_u64(USED_OFFSET, (start + len) as u64);
        true
    }

    fn read_u64(&self, offset: usize) -> u64 {
        // SAFETY: callers pass a header field offset; append() checked the
        // buffer holds the header, and `new` guarantees alignment and access.
        unsafe { self.base.add(offset).cast::<u64>().read_volatile() }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        // SAFETY: as in read_u64.
        unsafe { self.base.add(offset).cast::<u64>().write_volatile(value) }
    }
}

/// A trace buffer's contents as the host read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceLog<'a> {
    text: &'a [u8],
    dropped: u64,
}

/// Interprets a copy of a trace buffer (the host side).
///
/// Every header field is treated as hostile: `used` is clamped to the bytes
/// given, and a buffer shorter than the header reads as empty. Lines are raw
/// bytes; decoding them (lossy UTF-8, escaping) is the caller's job.
pub fn read_trace(bytes: &[u8]) -> TraceLog<'_> {
    let Some(header) = read_pod::<TraceHeader>(bytes) else {
        return TraceLog {
            text: &[],
            dropped: 0,
        };
    };
    let area = &bytes[TRACE_HEADER_SIZE..];
    let used = usize::try_from(header.used).map_or(area.len(), |u| u.min(area.len()));
    TraceLog {
        text: &area[..used],
        dropped: header.dropped,
    }
}

impl<'a> TraceLog<'a> {
    /// The text, `\n`-terminated lines.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// Records the guest could not fit in the buffer.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The lines, without their `\n`. A last line without one (only a
    /// program scribbling on the buffer leaves one) is returned as it is.
    pub fn lines(&self) -> TraceLines<'a> {
        TraceLines { rest: self.text }
    }
}

/// Iterator over the lines of a [`TraceLog`].
#[derive(Clone, Debug)]
pub struct TraceLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TraceLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                Some(line)
            }
            None => Some(core::mem::take(&mut self.rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::pod_bytes;
    use proptest::prelude::*;

    /// A guard pattern after the buffer, to catch writes past its end.
    const GUARD: u8 = 0xa5;

    /// A trace buffer of `size` bytes in a u64-aligned allocation, followed
    /// by guard bytes.
    pub(crate) fn setup_buffer(size: usize) -> Vec<u64> {
        let words = (size + 64).div_ceil(8);
        let mut storage = vec![u64::from_ne_bytes([GUARD; 8]); words];
        reset(&mut as_bytes(&mut storage)[..size]);
        storage
    }

    fn as_bytes(storage: &mut [u64]) -> &mut [u8] {
        // SAFETY: u8 has no alignment or validity requirement; the slice
        // covers exactly the words' bytes and borrows them mutably.
        unsafe { core::slice::from_raw_parts_mut(storage.as_mut_ptr().cast(), storage.len() * 8) }
    }

    fn append(storage: &mut [u64], size: usize, message: &[u8]) -> bool {
        // SAFETY: `storage` holds at least `size` bytes, is u64-aligned and
        // is borrowed mutably for the writer's whole life.
        let mut writer = unsafe { TraceWriter::new(storage.as_mut_ptr().cast(), size) };
        writer.append(message)
    }

    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        read_trace(bytes).lines().collect()
    }

    #[test]
    fn records_read_back_one_line_each() {
        let mut storage = setup_buffer(256);
        assert!(append(&mut storage, 256, b"hello 42"));
        assert!(append(&mut storage, 256, b"already terminated\n"));
        assert!(append(&mut storage, 256, b""));
        assert!(append(&mut storage, 256, b"two\nlines"));
        let bytes = &as_bytes(&mut storage)[..256];
        let log = read_trace(bytes);
        assert_eq!(log.text(), b"hello 42\nalready terminated\n\ntwo\nlines\n");
        assert_eq!(
            lines(bytes),
            [
                &b"hello 42"[..],
                b"already terminated",
                b"",
                b"two",
                b"lines"
            ]
        );
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_record_that_does_not_fit_is_dropped_and_counted() {
        let size = TRACE_HEADER_SIZE + 10;
        let mut storage = setup_buffer(size);
        assert!(append(&mut storage, size, b"12345678")); // 9 bytes
        assert!(!append(&mut storage, size, b"ab")); // 3 bytes, 1 left
        assert!(append(&mut storage, size, b"")); // 1 byte fits exactly
        assert!(!append(&mut storage, size, b""));
        let bytes = as_bytes(&mut storage);
        assert_eq!(lines(&bytes[..size]), [&b"12345678"[..], b""]);
        assert_eq!(read_trace(&bytes[..size]).dropped(), 2);
        assert!(bytes[size..].iter().all(|&b| b == GUARD));
    }

    #[test]
    fn garbage_used_in_the_header_means_full_not_out_of_bounds() {
        let size = 64;
        for used in [u64::MAX, (size - TRACE_HEADER_SIZE + 1) as u64, 1 << 40] {
            let mut storage = setup_buffer(size);
            storage[0] = used;
            storage[1] = u64::MAX;
            assert!(!append(&mut storage, size, b"x"));
            assert_eq!(storage[1], u64::MAX, "dropped saturates");
            let bytes = as_bytes(&mut storage);
            assert!(bytes[size..].iter().all(|&b| b == GUARD));
            // The reader clamps the same value to what it was given.
            let log = read_trace(&bytes[..size]);
            assert_eq!(log.text().len(), size - TRACE_HEADER_SIZE);
        }
    }

    #[test]
    fn a_buffer_smaller_than_its_header_is_never_written_nor_read() {
        let mut storage = setup_buffer(8);
        as_bytes(&mut storage)[..8].fill(0);
        assert!(!append(&mut storage, 8, b"x"));
        let bytes = as_bytes(&mut storage);
        assert!(bytes[8..].iter().all(|&b| b == GUARD));
        let log = read_trace(&bytes[..8]);
        assert_eq!((log.text(), log.dropped()), (&b""[..], 0));
    }

    #[test]
    fn reset_clears_the_header_only() {
        let mut bytes = vec![0xffu8; 40];
        reset(&mut bytes);
        assert_eq!(
            read_pod::<TraceHeader>(&bytes),
            Some(TraceHeader::default())
        );
        assert!(bytes[TRACE_HEADER_SIZE..].iter().all(|&b| b == 0xff));
        let mut short = [0xffu8; 3];
        reset(&mut short);
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn an_unterminated_last_line_is_returned_as_is() {
        let header = TraceHeader {
            used: 6,
            dropped: 3,
        };
        let mut bytes = pod_bytes(&header).to_vec();
        bytes.extend_from_slice(b"ab\ncdeXYZ");
        assert_eq!(lines(&bytes), [&b"ab"[..], b"cde"]);
        assert_eq!(read_trace(&bytes).dropped(), 3);
    }

    proptest! {
        #[test]
        fn writes_never_leave_the_buffer(
            size in 0usize..200,
            used in prop_oneof![0u64..200, any::<u64>()],
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..8),
        ) {
            let mut storage = setup_buffer(size);
            if size >= TRACE_HEADER_SIZE {
                storage[0] = used;
            }
            let before = read_trace(&as_bytes(&mut storage)[..size]);
            let (before_len, before_dropped) = (before.text().len(), before.dropped());
            let mut written = 0;
            for message in &messages {
                written += usize::from(append(&mut storage, size, message));
            }
            let bytes = as_bytes(&mut storage);
            prop_assert!(bytes[size..].iter().all(|&b| b == GUARD));
            let log = read_trace(&bytes[..size]);
            prop_assert!(log.text().len() <= size.saturating_sub(TRACE_HEADER_SIZE));
            if size >= TRACE_HEADER_SIZE {
                let dropped = log.dropped() - before_dropped;
                prop_assert_eq!(written + dropped as usize, messages.len());
                prop_assert!(log.text().len() >= before_len);
            }
        }

        #[test]
        fn reading_any_bytes_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let log = read_trace(&bytes);
            let total: usize = log.lines().map(|l| l.len() + 1).sum();
            prop_assert!(total <= log.text().len() + 1);
            prop_assert!(log.text().len() <= bytes.len().saturating_sub(TRACE_HEADER_SIZE));
        }
    }
}
