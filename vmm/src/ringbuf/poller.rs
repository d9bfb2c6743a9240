//! Several ring buffers in one poll set, each with its callback: libbpf's
//! `ring_buffer__poll` over an epoll of the rings' wakeup eventfds.

use super::RingBufError;
use super::consumer::{POLL_SPIN, Record, RingBufConsumer, pause};
use shm::ringbuf;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What a poller calls for each record of one ring.
type Callback<'f> = Box<dyn FnMut(&Record<'_>) + Send + 'f>;

/// Consumers of several ring buffers, polled together.
///
/// A ring that fails (a guest scribbled over it) does not keep the others
/// from being consumed, and each failure is reported once: when several
/// rings fail in one round, the first error is returned and the others by
/// the next calls, before they consume again.
pub struct RingBufPoller<'f> {
    epoll: OwnedFd,
    rings: Vec<(RingBufConsumer, Callback<'f>)>,
    /// Errors of the last round not returned yet (at most one per ring).
    failed: VecDeque<RingBufError>,
}

impl std::fmt::Debug for RingBufPoller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBufPoller")
            .field(
                "rings",
                &self.rings.iter().map(|(c, _)| c.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'f> RingBufPoller<'f> {
    /// An empty poll set.
    pub fn new() -> Result<RingBufPoller<'f>, RingBufError> {
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(RingBufError::Io(std::io::Error::last_os_error()));
        }
        Ok(RingBufPoller {
            // SAFETY: a fresh descriptor nobody else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            rings: Vec::new(),
            failed: VecDeque::new(),
        })
    }

    /// Adds a ring; `f` sees each of its records.
    pub fn add(
        &mut self,
        consumer: RingBufConsumer,
        f: impl FnMut(&Record<'_>) + Send + 'f,
    ) -> Result<(), RingBufError> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: self.rings.len() as u64,
        };
        // SAFETY: both descriptors are open; `event` is valid for reads.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                consumer.wakeup_fd(),
                &raw mut event,
            )
        };
        if rc < 0 {
            return Err(RingBufError::Io(std::io::Error::last_os_error()));
        }
        self.rings.push((consumer, Box::new(f)));
        Ok(())
    }

    /// The consumers, in the order added.
    pub fn consumers(&self) -> impl Iterator<Item = &RingBufConsumer> {
        self.rings.iter().map(|(c, _)| c)
    }

    /// Consumes every ring's committed records; how many in all. If a
    /// ring fails, the others are still consumed, and the error is
    /// returned (with several, one per call: see [`RingBufPoller`]).
    pub fn consume(&mut self) -> Result<usize, RingBufError> {
        if let Some(e) = self.failed.pop_front() {
            return Err(e);
        }
        let mut total = 0;
        for (consumer, f) in &mut self.rings {
            match consumer.consume(&mut *f) {
                Ok(n) => total += n,
                Err(e) => self.failed.push_back(e),
            }
        }
        self.failed.pop_front().map_or(Ok(total), Err)
    }

    /// Consumes what is there; if nothing, waits up to `timeout` (`None`:
    /// forever) for any ring's records and consumes them then. How many
    /// records in all (0 on timeout). As [`RingBufConsumer::poll`], the
    /// rings' producers are told the consumer is awake while it polls.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<usize, RingBufError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.set_states(ringbuf::CONSUMER_AWAKE)?;
        loop {
            let n = self.consume()?;
            if n > 0 || self.rings.is_empty() {
                return Ok(n);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
            // As in RingBufConsumer::poll: only a change is news.
            let pending = self.available();
            let spin_until = deadline.map_or(Instant::now() + POLL_SPIN, |d| {
                d.min(Instant::now() + POLL_SPIN)
            });
            while self.available() == pending && Instant::now() < spin_until {
                pause();
            }
            if self.available() != pending {
                continue;
            }
            self.set_states(ringbuf::CONSUMER_ASLEEP)?;
            let n = self.consume()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ready = if n == 0 && left != Some(Duration::ZERO) {
                self.wait(left)?
            } else {
                0
            };
            self.set_states(ringbuf::CONSUMER_AWAKE)?;
            if n > 0 {
                return Ok(n);
            }
            if ready == 0 {
                return self.consume();
            }
        }
    }

    /// Bytes produced and not consumed, all rings together.
    fn available(&self) -> u64 {
        self.rings
            .iter()
            .map(|(c, _)| c.available())
            .fold(0, u64::wrapping_add)
    }

    fn set_states(&mut self, state: u32) -> Result<(), RingBufError> {
        for (consumer, _) in &mut self.rings {
            consumer.set_state(state)?;
        }
        Ok(())
    }

    /// Waits on the epoll set; clears the eventfds of the rings that woke
    /// it, and returns how many did.
    fn wait(&mut self, left: Option<Duration>) -> Result<usize, RingBufError> {
        let ms = left.map_or(-1, |d| d.as_millis().clamp(1, i32::MAX as u128) as i32);
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: the buffer holds `events.len()` entries.
        let got = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(RingBufError::Io(e))
            };
        }
        for event in &events[..got as usize] {
            if let Some((consumer, _)) = self.rings.get_mut(event.u64 as usize) {
                consumer.clear_wakeup();
            }
        }
        Ok(got as usize)
    }
}
