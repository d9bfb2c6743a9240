//! The host's end of a `RINGBUF`: records read in place from the host's
//! own mapping of the ring, in reservation order, discarded ones skipped.
//! The same consumer reads a ring buffer of the host kernel's, whose
//! record format and positions are the same (Note [Kernel ring mapping]
//! in `mapping`).

use super::mapping::RingMapping;
use super::{Attachment, RingBufError, wait_readable};
use shm::maps::{MapMemory, StorageView};
use shm::pod::Pod;
use shm::ringbuf::{self, Next, RingError, RingGeometry};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// A committed record, read where the program wrote it (no copy is made
/// until asked for). It borrows the consumer: its bytes are the
/// producer's to reuse once the consumer moves on.
///
/// The bytes are shared memory a hostile program could still be writing:
/// every read is a volatile copy, so at worst the copy is torn, never a
/// read outside the record.
#[derive(Debug)]
pub struct Record<'a> {
    view: &'a StorageView<'a>,
    off: usize,
    len: u32,
}

impl Record<'_> {
    /// The sample's length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies bytes from `offset` of the sample into `out`, as many as
    /// both have; returns how many.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> usize {
        let n = self.len().saturating_sub(offset).min(out.len());
        if n > 0 {
            // In bounds: offset + n <= len, and the record lies in the view
            // (checked when it was peeked).
            let _ = self.view.read(self.off + offset, &mut out[..n]);
        }
        n
    }

    /// The sample's bytes, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        self.read(0, &mut out);
        out
    }

    /// The `T` at `offset` of the sample, or `None` if it does not fit.
    pub fn read_pod<T: Pod>(&self, offset: usize) -> Option<T> {
        let end = offset.checked_add(size_of::<T>())?;
        if end > self.len() {
            return None;
        }
        let mut value = std::mem::MaybeUninit::<T>::zeroed();
        // SAFETY: the bytes of a zeroed `T`, which is Pod: any bytes are
        // a valid `T`, before and after the copy.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>())
        };
        self.read(offset, bytes);
        // SAFETY: as above.
        Some(unsafe { value.assume_init() })
    }
}

/// The consumer of one `RINGBUF` map. It keeps its own position (Note
/// [Trusting ring memory] in `shm::ringbuf`) and its own mapping of the
/// ring, so it may outlive the sandbox (to read the last records) and
/// move to another thread. A ring has at most one consumer at a time.
#[derive(Debug)]
pub struct RingBufConsumer {
    name: String,
    geom: RingGeometry,
    mapping: RingMapping,
    producer: Producer,
    pos: u64,
    wakeups: u64,
    /// What the consumer last told producers, if anything.
    state: Option<u32>,
}

/// Who produces into the ring, and so how the consumer is woken.
#[derive(Debug)]
enum Producer {
    /// Programs in a sandbox: the ring's wakeup eventfd, which KVM
    /// signals, and the mark that the ring has this consumer.
    Guest {
        wakeup: EventFd,
        _attached: Attachment,
    },
    /// Programs in the host kernel: its map fd, readable while records
    /// wait. The kernel knows nothing of Note [Consumer state]: its
    /// producers follow the kernel's rule alone.
    Kernel { map: OwnedFd },
}

impl Producer {
    fn wakeup_fd(&self) -> RawFd {
        match self {
            Producer::Guest { wakeup, .. } => wakeup.as_raw_fd(),
            Producer::Kernel { map } => map.as_raw_fd(),
        }
    }
}

impl RingBufConsumer {
    pub(super) fn new(
        name: String,
        geom: RingGeometry,
        mapping: RingMapping,
        wakeup: EventFd,
        attached: Attachment,
    ) -> Result<RingBufConsumer, RingBufError> {
        let producer = Producer::Guest {
            wakeup,
            _attached: attached,
        };
        RingBufConsumer::start(name, geom, mapping, producer)
    }

    /// The consumer of a `RINGBUF` map of the host kernel: `map` is its fd
    /// (which the consumer keeps, to map the ring and to wait on it),
    /// `max_entries` its data size. The kernel lets only one process
    /// position matter: two consumers of one ring would skip each
    /// other's records.
    pub fn for_kernel_map(
        name: &str,
        map: OwnedFd,
        max_entries: u32,
    ) -> Result<RingBufConsumer, RingBufError> {
        let geom = RingGeometry::new(u64::from(max_entries)).ok_or_else(|| {
            RingBufError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{max_entries} bytes is not a ring buffer's size"),
            ))
        })?;
        let mapping = RingMapping::kernel(map.as_fd(), &geom)?;
        RingBufConsumer::start(name.to_owned(), geom, mapping, Producer::Kernel { map })
    }

    fn start(
        name: String,
        geom: RingGeometry,
        mapping: RingMapping,
        producer: Producer,
    ) -> Result<RingBufConsumer, RingBufError> {
        let mut consumer = RingBufConsumer {
            name,
            geom,
            mapping,
            producer,
            pos: 0,
            wakeups: 0,
            state: None,
        };
        consumer.set_state(ringbuf::CONSUMER_KERNEL_RULE)?;
        // Start where the last consumer stopped, if that is plausible.
        let (cons, prod) = {
            let view = consumer.mapping.view();
            (
                view.load_u64(ringbuf::CONSUMER_POS_OFFSET)?,
                view.load_u64(ringbuf::PRODUCER_POS_OFFSET)?,
            )
        };
        consumer.pos = if cons <= prod && prod - cons <= geom.size() && cons.is_multiple_of(8) {
            cons
        } else {
            prod & !7
        };
        Ok(consumer)
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data bytes of the ring.
    pub fn size(&self) -> u64 {
        self.geom.size()
    }

    /// The consumer position: bytes consumed since the ring was created.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes produced and not yet consumed (0 if the producer position
    /// does not add up).
    pub fn available(&self) -> u64 {
        let prod = self
            .mapping
            .view()
            .load_u64(ringbuf::PRODUCER_POS_OFFSET)
            .unwrap_or(self.pos);
        prod.checked_sub(self.pos)
            .filter(|&n| n <= self.geom.size())
            .unwrap_or(0)
    }

    /// Wakeups the producers sent so far, as counted by the eventfd this
    /// consumer waited on: each was one VM exit handled inside KVM (0 for
    /// a kernel ring, whose wakeups are not counted).
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The eventfd the producers signal, for an event loop of the
    /// caller's own (read it, or use [`RingBufConsumer::poll`], before
    /// consuming); for a kernel ring, its map fd, readable while records
    /// wait.
    pub fn wakeup_fd(&self) -> RawFd {
        self.producer.wakeup_fd()
    }

    /// Hands every committed record to `f`, in order, until none is left
    /// or the next is still being written; returns how many `f` saw.
    pub fn consume(&mut self, mut f: impl FnMut(&Record<'_>)) -> Result<usize, RingBufError> {
        self.consume_until(|r| {
            f(r);
            ControlFlow::Continue(())
        })
    }

    /// As [`RingBufConsumer::consume`], stopping after the record for
    /// which `f` breaks (that record is consumed).
    ///
    /// One call consumes at most a ring's worth of records, so a producer
    /// faster than `f` cannot keep it from returning. If the guest
    /// scribbled over the ring, the error says what did not add up, and
    /// the consumer skips to the producer's position.
    pub fn consume_until(
        &mut self,
        mut f: impl FnMut(&Record<'_>) -> ControlFlow<()>,
    ) -> Result<usize, RingBufError> {
        let view = self.mapping.view();
        let mut seen = 0;
        let mut steps = self.geom.size() / ringbuf::HDR_SIZE;
        'batches: loop {
            // The producer position once per batch, the consumer's
            // published every PUBLISH_EVERY records: each is a cache line
            // the other side writes (Note [Trusting ring memory] for the
            // checks).
            let prod = match ringbuf::producer_position(&self.geom, &view, self.pos) {
                Ok(prod) => prod,
                Err(e) => return corrupt(&self.name, &mut self.pos, &view, e),
            };
            while steps > 0 {
                steps -= 1;
                match ringbuf::record_at(&self.geom, &view, self.pos, prod) {
                    Ok(Next::Empty | Next::Busy) => break,
                    Ok(Next::Discarded { total }) => self.pos += total,
                    Ok(Next::Record { off, len, total }) => {
                        let record = Record {
                            view: &view,
                            off,
                            len,
                        };
                        let flow = f(&record);
                        seen += 1;
                        self.pos += total;
                        if flow.is_break() {
                            break 'batches;
                        }
                        if seen % PUBLISH_EVERY == 0 {
                            view.store_u64(ringbuf::CONSUMER_POS_OFFSET, self.pos)?;
                        }
                    }
                    Err(e) => return corrupt(&self.name, &mut self.pos, &view, e),
                }
            }
            if steps == 0 {
                break;
            }
            // Caught up, or at a record still being written. Publish the
            // position, then look once more: a producer committing at
            // this position either reads it afterwards (and wakes a
            // sleeping consumer: Note [Consumer state]) or committed
            // before this look, which then sees the record.
            ringbuf::consumed(&view, self.pos)?;
            match ringbuf::peek(&self.geom, &view, self.pos) {
                Ok(Next::Record { .. } | Next::Discarded { .. }) => {}
                Ok(Next::Empty | Next::Busy) => return Ok(seen),
                Err(e) => return corrupt(&self.name, &mut self.pos, &view, e),
            }
        }
        ringbuf::consumed(&view, self.pos)?;
        Ok(seen)
    }

    /// Consumes what is there; if nothing, waits up to `timeout` (`None`:
    /// forever) for records and consumes them then. Returns how many
    /// records `f` saw (0 on timeout).
    ///
    /// While it polls, the consumer tells producers it is awake, so their
    /// commits cost no wakeup (a VM exit each: Note [Consumer state] in
    /// `shm::ringbuf`); it spins for `POLL_SPIN` (50 µs) before it sleeps on the
    /// eventfd, so a steady stream of records is followed without any.
    /// [`RingBufConsumer::consume`] alone leaves producers to the kernel's
    /// rule, for event loops that wait on [`RingBufConsumer::wakeup_fd`].
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<usize, RingBufError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.set_state(ringbuf::CONSUMER_AWAKE)?;
        loop {
            let n = self.consume(&mut f)?;
            if n > 0 {
                return Ok(n);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
            // Spin while nothing new comes. What is already there but not
            // consumed sits behind a record still being written: only a
            // change means news.
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
            self.set_state(ringbuf::CONSUMER_ASLEEP)?;
            let n = self.consume(&mut f)?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let woken = n == 0
                && left != Some(Duration::ZERO)
                && wait_readable(self.producer.wakeup_fd(), left)?;
            self.set_state(ringbuf::CONSUMER_AWAKE)?;
            if n > 0 {
                return Ok(n);
            }
            if !woken {
                return self.consume(&mut f);
            }
            self.clear_wakeup();
        }
    }

    /// Tells producers whether to wake this consumer (a store and a full
    /// barrier, so only when it changes: producers read the word on every
    /// commit).
    pub(super) fn set_state(&mut self, state: u32) -> Result<(), RingBufError> {
        if matches!(self.producer, Producer::Kernel { .. }) {
            // The kernel's producers do not read the word.
            return Ok(());
        }
        if self.state != Some(state) {
            ringbuf::set_consumer_state(&self.mapping.view(), state)?;
            self.state = Some(state);
        }
        Ok(())
    }

    /// Reads (and so resets) the wakeup eventfd, counting the wakeups.
    pub(super) fn clear_wakeup(&mut self) {
        if let Producer::Guest { wakeup, .. } = &self.producer
            && let Ok(n) = wakeup.read()
        {
            self.wakeups += n;
        }
    }

    /// An iterator over the records committed now, each copied out (an
    /// iterator's items cannot borrow the consumer; use
    /// [`RingBufConsumer::consume`] to read in place).
    pub fn records(&mut self) -> Records<'_> {
        Records { consumer: self }
    }
}

/// After ring `name` was found corrupt: the error to report, with the
/// consumer position `pos` moved to the producer's (and published).
fn corrupt(
    name: &str,
    pos: &mut u64,
    view: &StorageView<'_>,
    e: RingError,
) -> Result<usize, RingBufError> {
    let what = match e {
        RingError::Corrupt(what) => what,
        RingError::Memory(e) => return Err(e.into()),
    };
    let prod = view.load_u64(ringbuf::PRODUCER_POS_OFFSET)?;
    let skipped = prod.wrapping_sub(*pos);
    *pos = prod & !7;
    ringbuf::consumed(view, *pos)?;
    Err(RingBufError::Corrupt {
        ring: name.to_owned(),
        what,
        skipped,
    })
}

impl Drop for RingBufConsumer {
    fn drop(&mut self) {
        // The next consumer starts under the kernel's rule.
        let _ = self.set_state(ringbuf::CONSUMER_KERNEL_RULE);
    }
}

/// Waits a microsecond or so without touching the ring: a consumer that
/// read the producer's cache lines in a tight loop would slow every
/// record the producer writes.
pub(super) fn pause() {
    for _ in 0..64 {
        std::hint::spin_loop();
    }
}

/// Records consumed between two publications of the consumer position.
const PUBLISH_EVERY: usize = 16;

/// How long [`RingBufConsumer::poll`] spins, watching for records, before
/// it sleeps: a few wakeups' worth of producer time.
pub const POLL_SPIN: Duration = Duration::from_micros(50);

/// Records copied out one by one: see [`RingBufConsumer::records`]. Ends
/// when no committed record is left; an error is the last item.
#[derive(Debug)]
pub struct Records<'a> {
    consumer: &'a mut RingBufConsumer,
}

impl Iterator for Records<'_> {
    type Item = Result<Vec<u8>, RingBufError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut got = None;
        match self.consumer.consume_until(|r| {
            got = Some(r.to_vec());
            ControlFlow::Break(())
        }) {
            Ok(_) => got.map(Ok),
            Err(e) => Some(Err(e)),
        }
    }
}
