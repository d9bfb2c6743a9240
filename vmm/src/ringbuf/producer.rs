//! The host's end of a `USER_RINGBUF`: samples written straight into the
//! ring, which a program drains with `bpf_user_ringbuf_drain` — how a
//! host passes requests into a sandbox without a VM exit per request.

use super::mapping::RingMapping;
use super::{Attachment, RingBufError, wait_readable};
use shm::maps::{MapMemory, StorageView};
use shm::ringbuf::{self, RingGeometry, UserReserveError};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// The producer of one `USER_RINGBUF` map (at most one at a time, as
/// libbpf's). It keeps its own producer position and checks the
/// program's consumer position against it before trusting it.
#[derive(Debug)]
pub struct UserRingBufProducer {
    name: String,
    geom: RingGeometry,
    mapping: RingMapping,
    wakeup: EventFd,
    pos: u64,
    _attached: Attachment,
}

impl UserRingBufProducer {
    pub(super) fn new(
        name: String,
        geom: RingGeometry,
        mapping: RingMapping,
        wakeup: EventFd,
        attached: Attachment,
    ) -> Result<UserRingBufProducer, RingBufError> {
        let pos = mapping.view().load_u64(ringbuf::PRODUCER_POS_OFFSET)?;
        if !pos.is_multiple_of(8) {
            return Err(RingBufError::Corrupt {
                ring: name,
                what: "producer position not 8-byte aligned",
                skipped: 0,
            });
        }
        Ok(UserRingBufProducer {
            name,
            geom,
            mapping,
            wakeup,
            pos,
            _attached: attached,
        })
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data bytes of the ring.
    pub fn size(&self) -> u64 {
        self.geom.size()
    }

    /// Reserves room for a `len`-byte sample, to fill and then submit or
    /// discard (dropping it discards). Errors: `TooBig` if it can never
    /// fit, `Full` until the program drains more.
    pub fn reserve(&mut self, len: usize) -> Result<UserSample<'_>, RingBufError> {
        let len32 = u32::try_from(len).map_err(|_| RingBufError::TooBig {
            ring: self.name.clone(),
            len,
        })?;
        let view = self.mapping.view();
        match ringbuf::user_reserve(&self.geom, &view, self.pos, len32) {
            Ok((off, pos)) => {
                self.pos = pos;
                Ok(UserSample {
                    view,
                    off,
                    len: len32,
                    done: false,
                })
            }
            Err(UserReserveError::TooBig) => Err(RingBufError::TooBig {
                ring: self.name.clone(),
                len,
            }),
            Err(UserReserveError::Full) => Err(RingBufError::Full {
                ring: self.name.clone(),
            }),
            Err(UserReserveError::Ring(ringbuf::RingError::Corrupt(what))) => {
                Err(RingBufError::Corrupt {
                    ring: self.name.clone(),
                    what,
                    skipped: 0,
                })
            }
            Err(UserReserveError::Ring(ringbuf::RingError::Memory(e))) => Err(e.into()),
        }
    }

    /// Copies `bytes` into the ring as one sample.
    pub fn submit(&mut self, bytes: &[u8]) -> Result<(), RingBufError> {
        let mut sample = self.reserve(bytes.len())?;
        sample.write(0, bytes);
        sample.submit();
        Ok(())
    }

    /// Bytes free for samples now (each takes its length plus 8, rounded
    /// up to 8).
    pub fn free(&self) -> u64 {
        let cons = self
            .mapping
            .view()
            .load_u64(ringbuf::CONSUMER_POS_OFFSET)
            .unwrap_or(self.pos);
        match self.pos.checked_sub(cons) {
            Some(used) if used <= self.geom.size() => self.geom.size() - used,
            _ => 0,
        }
    }

    /// Waits up to `timeout` (`None`: forever) until `len` bytes of
    /// sample fit; whether they do. A drain that consumed samples wakes
    /// this up (unless the program asked for `BPF_RB_NO_WAKEUP`).
    pub fn wait_for_room(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<bool, RingBufError> {
        let need = (len as u64 + ringbuf::HDR_SIZE).next_multiple_of(8);
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.free() >= need {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) || !wait_readable(self.wakeup.as_raw_fd(), left)? {
                return Ok(self.free() >= need);
            }
            let _ = self.wakeup.read();
        }
    }

    /// The eventfd a draining program signals.
    pub fn wakeup_fd(&self) -> RawFd {
        self.wakeup.as_raw_fd()
    }
}

/// A reserved sample of a user ring buffer. Dropping it without
/// submitting discards it (the program skips it).
#[derive(Debug)]
pub struct UserSample<'a> {
    view: StorageView<'a>,
    off: usize,
    len: u32,
    done: bool,
}

impl UserSample<'_> {
    /// The sample's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` to `offset` of the sample, as many as fit; returns
    /// how many.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> usize {
        let n = self.len().saturating_sub(offset).min(bytes.len());
        if n > 0 {
            let _ = self.view.write(self.off + offset, &bytes[..n]);
        }
        n
    }

    /// Hands the sample to the program.
    pub fn submit(mut self) {
        self.finish(false);
    }

    /// Withdraws the sample.
    pub fn discard(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, discard: bool) {
        if !self.done {
            self.done = true;
            let _ = ringbuf::user_commit(&self.view, self.off, self.len, discard);
        }
    }
}

impl Drop for UserSample<'_> {
    fn drop(&mut self) {
        self.finish(true);
    }
}
