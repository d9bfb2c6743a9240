//! The ring algorithms over a ring whose second data copy is emulated:
//! [`Ring`] is a `MapMemory` that folds offsets past the data back onto
//! it, as the real double mapping does. Threads stand in for vCPUs.

use super::*;
use crate::maps::StorageView;
use proptest::prelude::*;
use std::sync::atomic::AtomicU64;

/// A ring of `size` data bytes in host memory, with the data "mapped
/// twice".
struct Ring {
    words: Vec<AtomicU64>,
    geom: RingGeometry,
}

impl Ring {
    fn new(size: u64) -> Ring {
        let geom = RingGeometry::new(size).unwrap();
        let words = (0..(DATA_OFFSET as u64 + size) / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        Ring { words, geom }
    }

    fn view(&self) -> Alias<'_> {
        Alias {
            inner: StorageView::from_atomic(&self.words, 0),
            geom: self.geom,
        }
    }
}

/// The double mapping: offsets in the second copy fold onto the first.
struct Alias<'a> {
    inner: StorageView<'a>,
    geom: RingGeometry,
}

impl Alias<'_> {
    fn fold(&self, off: usize) -> usize {
        let end = DATA_OFFSET + self.geom.size() as usize;
        if off >= end {
            off - self.geom.size() as usize
        } else {
            off
        }
    }

    /// Runs `f` on each piece of `off..off + len` on either side of the
    /// end of the first copy: (offset folded, start in the buffer, len).
    fn pieces(
        &self,
        off: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, usize) -> Result<(), MapError>,
    ) -> Result<(), MapError> {
        let end = off.checked_add(len).ok_or(MapError::OutOfBounds)?;
        if end > self.len() {
            return Err(MapError::OutOfBounds);
        }
        let split = DATA_OFFSET + self.geom.size() as usize;
        if off < split && end > split {
            f(off, 0, split - off)?;
            f(self.fold(split), split - off, end - split)
        } else {
            f(self.fold(off), 0, len)
        }
    }
}

impl MapMemory for Alias<'_> {
    fn len(&self) -> usize {
        self.geom.span() as usize
    }
    fn read(&self, off: usize, out: &mut [u8]) -> Result<(), MapError> {
        self.pieces(off, out.len(), |at, from, n| {
            self.inner.read(at, &mut out[from..from + n])
        })
    }
    fn write(&self, off: usize, data: &[u8]) -> Result<(), MapError> {
        self.pieces(off, data.len(), |at, from, n| {
            self.inner.write(at, &data[from..from + n])
        })
    }
    fn load_u32(&self, off: usize) -> Result<u32, MapError> {
        self.inner.load_u32(self.fold(off))
    }
    fn load_u64(&self, off: usize) -> Result<u64, MapError> {
        self.inner.load_u64(self.fold(off))
    }
    fn store_u32(&self, off: usize, value: u32) -> Result<(), MapError> {
        self.inner.store_u32(self.fold(off), value)
    }
    fn store_u64(&self, off: usize, value: u64) -> Result<(), MapError> {
        self.inner.store_u64(self.fold(off), value)
    }
    fn cas_u32(&self, off: usize, current: u32, new: u32) -> Result<Result<u32, u32>, MapError> {
        self.inner.cas_u32(self.fold(off), current, new)
    }
    fn cas_u64(&self, off: usize, current: u64, new: u64) -> Result<Result<u64, u64>, MapError> {
        self.inner.cas_u64(self.fold(off), current, new)
    }
    fn addr(&self, off: usize) -> u64 {
        off as u64
    }
    fn spin_wait(&self, tries: u32) -> bool {
        std::hint::spin_loop();
        tries < 1 << 20
    }
}

/// Reserves, fills with `tag`-derived bytes and commits a `len`-byte sample.
fn produce(r: &Ring, len: u32, tag: u8, discard: bool) -> Option<bool> {
    let mem = r.view();
    let off = reserve(&r.geom, &mem, u64::from(len)).unwrap()?;
    let bytes: Vec<u8> = (0..len).map(|i| tag.wrapping_add(i as u8)).collect();
    mem.write(off, &bytes).unwrap();
    Some(commit(&r.geom, &mem, off, discard, 0).unwrap())
}

/// Consumes everything committed from `cons`: the samples, in order.
fn consume(r: &Ring, cons: &mut u64) -> Result<Vec<Vec<u8>>, RingError> {
    let mem = r.view();
    let mut out = vec![];
    loop {
        match peek(&r.geom, &mem, *cons)? {
            Next::Empty | Next::Busy => return Ok(out),
            Next::Record { off, len, total } => {
                let mut buf = vec![0; len as usize];
                mem.read(off, &mut buf).unwrap();
                out.push(buf);
                *cons += total;
            }
            Next::Discarded { total } => *cons += total,
        }
        consumed(&mem, *cons).unwrap();
    }
}

fn sample(len: u32, tag: u8) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn records_cross_the_end_intact_and_in_order_discards_skipped() {
    let r = Ring::new(4096);
    let mut cons = 0;
    let mut expected = vec![];
    // Sizes that are not multiples of 8 walk the records across the end
    // at every alignment.
    for i in 0..2000u32 {
        let len = 1 + (i * 37) % 300;
        let discard = i % 7 == 3;
        if produce(&r, len, i as u8, discard).is_none() {
            assert_eq!(consume(&r, &mut cons).unwrap(), expected);
            expected.clear();
            produce(&r, len, i as u8, discard).expect("room after consuming");
        }
        if !discard {
            expected.push(sample(len, i as u8));
        }
    }
    assert_eq!(consume(&r, &mut cons).unwrap(), expected);
    assert_eq!(
        query(&r.geom, &r.view(), RB_CONS_POS).unwrap(),
        query(&r.geom, &r.view(), RB_PROD_POS).unwrap()
    );
}

#[test]
fn a_full_ring_refuses_and_never_overwrites() {
    let r = Ring::new(4096);
    // 4096 - 8 is the most the producer may be ahead: 63 records of 64.
    let mut n = 0;
    while produce(&r, 56, n as u8, false).is_some() {
        n += 1;
    }
    assert_eq!(n, 63);
    assert_eq!(query(&r.geom, &r.view(), RB_AVAIL_DATA).unwrap(), 63 * 64);
    assert!(
        reserve(&r.geom, &r.view(), 4096).unwrap().is_none(),
        "larger than the ring"
    );
    assert!(
        reserve(&r.geom, &r.view(), MAX_RECORD_SIZE + 1)
            .unwrap()
            .is_none()
    );
    // The one that found it full and the two too large.
    assert_eq!(r.view().load_u64(DROPS_OFFSET), Ok(3));
    let mut cons = 0;
    let got = consume(&r, &mut cons).unwrap();
    assert_eq!(got.len(), 63);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, s)| *s == sample(56, i as u8))
    );
    assert!(produce(&r, 56, 0, false).is_some());
}

#[test]
fn producers_read_the_consumer_position_only_when_the_ring_looks_full() {
    // Note [Consumer position seen]: a consumer position that refuses
    // every reserve goes unread while the position seen leaves room.
    let r = Ring::new(4096);
    let mem = r.view();
    mem.store_u64(CONSUMER_POS_OFFSET, 1 << 62).unwrap();
    let mut n = 0;
    while produce(&r, 56, n as u8, false).is_some() {
        n += 1;
    }
    assert_eq!(n, 63, "all the room the position seen (0) leaves");
    assert_eq!(
        mem.load_u64(CONSUMER_SEEN_OFFSET),
        Ok(1 << 62),
        "read when full"
    );
    assert!(produce(&r, 56, 0, false).is_none());
    // The consumer has read everything: the next reserve sees it.
    mem.store_u64(CONSUMER_POS_OFFSET, 63 * 64).unwrap();
    assert!(produce(&r, 56, 0, false).is_some());
    assert_eq!(mem.load_u64(CONSUMER_SEEN_OFFSET), Ok(63 * 64));
}

#[test]
fn the_consumer_stops_at_a_busy_record_and_space_waits_for_it() {
    let r = Ring::new(4096);
    let mem = r.view();
    let a = reserve(&r.geom, &mem, 8).unwrap().unwrap();
    let b = reserve(&r.geom, &mem, 8).unwrap().unwrap();
    commit(&r.geom, &mem, b, false, 0).unwrap();
    let mut cons = 0;
    assert_eq!(consume(&r, &mut cons).unwrap().len(), 0, "a is still busy");
    assert_eq!(peek(&r.geom, &mem, cons).unwrap(), Next::Busy);
    // The producer cannot run more than size - 1 past the oldest busy record.
    while produce(&r, 100, 1, false).is_some() {}
    commit(&r.geom, &mem, a, false, 0).unwrap();
    assert!(consume(&r, &mut cons).unwrap().len() > 2);
    // Pages offsets in the headers lead back to the ring's start.
    let hdr = a - 8;
    assert_eq!(mem.load_u32(hdr + 4).unwrap() as usize, hdr / 4096);
}

#[test]
fn abandoned_records_are_discarded_and_the_consumer_moves_on() {
    let r = Ring::new(4096);
    let mem = r.view();
    let stuck = reserve(&r.geom, &mem, 24).unwrap().unwrap();
    produce(&r, 8, 1, false).unwrap();
    let mut cons = 0;
    assert!(consume(&r, &mut cons).unwrap().is_empty());
    assert_eq!(abandon_busy(&r.geom, &mem), Ok(1));
    assert_eq!(consume(&r, &mut cons).unwrap(), vec![sample(8, 1)]);
    assert_eq!(abandon_busy(&r.geom, &mem), Ok(0));
    let _ = stuck;
    mem.store_u64(PRODUCER_POS_OFFSET, 1 << 40).unwrap();
    assert!(matches!(
        abandon_busy(&r.geom, &mem),
        Err(RingError::Corrupt(_))
    ));
}

#[test]
fn wakeups_follow_the_consumer_and_the_flags() {
    let r = Ring::new(4096);
    let mem = r.view();
    let commit_one = |flags| {
        let off = reserve(&r.geom, &mem, 8).unwrap().unwrap();
        commit(&r.geom, &mem, off, false, flags).unwrap()
    };
    assert!(commit_one(0), "the consumer waits at this record");
    assert!(!commit_one(0), "the consumer has a record before this one");
    assert!(commit_one(RB_FORCE_WAKEUP));
    let mut cons = 0;
    consume(&r, &mut cons).unwrap();
    assert!(!commit_one(RB_NO_WAKEUP));
    assert!(!commit_one(0));
    consume(&r, &mut cons).unwrap();
    assert!(commit_one(0));
    // A consumer that says it is awake is not woken (unless forced); one
    // that says it sleeps, by the kernel's rule.
    consume(&r, &mut cons).unwrap();
    set_consumer_state(&mem, CONSUMER_AWAKE).unwrap();
    assert!(!commit_one(0));
    assert!(commit_one(RB_FORCE_WAKEUP));
    consume(&r, &mut cons).unwrap();
    set_consumer_state(&mem, CONSUMER_ASLEEP).unwrap();
    assert!(commit_one(0));
    assert!(!commit_one(0));
}

#[test]
fn commit_refuses_offsets_outside_the_data_and_survives_double_submit() {
    let r = Ring::new(4096);
    let mem = r.view();
    for bad in [0, 7, DATA_OFFSET, DATA_OFFSET + 9, DATA_OFFSET + 4096 + 8] {
        assert_eq!(
            commit(&r.geom, &mem, bad, false, 0),
            Err(MapError::OutOfBounds)
        );
    }
    let off = reserve(&r.geom, &mem, 16).unwrap().unwrap();
    commit(&r.geom, &mem, off, false, 0).unwrap();
    commit(&r.geom, &mem, off, false, 0).unwrap();
    let mut cons = 0;
    assert_eq!(consume(&r, &mut cons).unwrap().len(), 1);
}

#[test]
fn four_producers_and_a_consumer_lose_and_duplicate_nothing() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 20_000;
    /// Counts its producer out when dropped, panicking or not.
    struct Leaving<'a> {
        done: &'a AtomicU64,
        panicked: &'a std::sync::atomic::AtomicBool,
    }
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.panicked.store(true, Ordering::SeqCst);
            }
            self.done.fetch_add(1, Ordering::SeqCst);
        }
    }
    let r = Ring::new(16 * 4096);
    let done = AtomicU64::new(0);
    let panicked = std::sync::atomic::AtomicBool::new(false);
    let mut seen = vec![0u64; PRODUCERS as usize];
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (r, done, panicked) = (&r, &done, &panicked);
            s.spawn(move || {
                let _leaving = Leaving { done, panicked };
                let mem = r.view();
                let mut i = 0;
                while i < EACH {
                    // Full, or the lock's holder was descheduled for longer
                    // than the spin budget (threads, unlike vCPUs, share a
                    // busy host's CPUs): try again.
                    let Ok(Some(off)) = reserve(&r.geom, &mem, 16) else {
                        std::hint::spin_loop();
                        continue;
                    };
                    mem.store_u64(off, p).unwrap();
                    mem.store_u64(off + 8, i).unwrap();
                    commit(&r.geom, &mem, off, false, 0).unwrap();
                    i += 1;
                }
            });
        }
        let mem = r.view();
        let mut cons = 0;
        // A producer that panicked stops the wait (it may have left a
        // record busy for good); the scope then fails the test with its
        // panic.
        while !panicked.load(Ordering::SeqCst) {
            let finished = done.load(Ordering::SeqCst) == PRODUCERS;
            match peek(&r.geom, &mem, cons).unwrap() {
                Next::Record { off, len, total } => {
                    assert_eq!(len, 16);
                    let p = mem.load_u64(off).unwrap() as usize;
                    let i = mem.load_u64(off + 8).unwrap();
                    assert_eq!(i, seen[p], "producer {p}: records in order, once");
                    seen[p] += 1;
                    cons += total;
                    consumed(&mem, cons).unwrap();
                }
                Next::Empty if finished => break,
                _ => std::hint::spin_loop(),
            }
        }
    });
    assert_eq!(seen, vec![EACH; PRODUCERS as usize]);
}

#[test]
fn user_ring_samples_reach_the_consumer_in_order() {
    let r = Ring::new(4096);
    let mem = r.view();
    let mut prod = 0;
    let mut drained = vec![];
    for i in 0..500u32 {
        let len = 1 + (i * 13) % 200;
        let (off, next) = match user_reserve(&r.geom, &mem, prod, len) {
            Ok(got) => got,
            Err(UserReserveError::Full) => {
                drain(&r, &mut drained);
                user_reserve(&r.geom, &mem, prod, len).unwrap()
            }
            Err(e) => panic!("{e:?}"),
        };
        prod = next;
        mem.write(off, &sample(len, i as u8)).unwrap();
        user_commit(&mem, off, len, i % 5 == 4).unwrap();
    }
    drain(&r, &mut drained);
    let expected: Vec<Vec<u8>> = (0..500u32)
        .filter(|i| i % 5 != 4)
        .map(|i| sample(1 + (i * 13) % 200, i as u8))
        .collect();
    assert_eq!(drained, expected);
    assert_eq!(
        user_reserve(&r.geom, &mem, prod, 4096),
        Err(UserReserveError::TooBig)
    );
}

fn drain(r: &Ring, out: &mut Vec<Vec<u8>>) {
    let mem = r.view();
    loop {
        match user_peek(&r.geom, &mem).unwrap() {
            UserNext::Empty => return,
            UserNext::Discarded => {}
            UserNext::Sample { off, len, total } => {
                let mut buf = vec![0; len as usize];
                mem.read(off, &mut buf).unwrap();
                out.push(buf);
                user_release(&mem, total).unwrap();
            }
        }
    }
}

#[test]
fn a_scribbled_consumer_position_is_refused_by_the_host_producer() {
    let r = Ring::new(4096);
    let mem = r.view();
    for cons in [8, 1 << 40, u64::MAX] {
        mem.store_u64(CONSUMER_POS_OFFSET, cons).unwrap();
        assert!(matches!(
            user_reserve(&r.geom, &mem, 0, 8),
            Err(UserReserveError::Ring(RingError::Corrupt(_)))
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the guest wrote into the positions and the data, the
    /// consumer ends within a bounded number of steps, each inside the
    /// view, with records that lie inside what was produced.
    #[test]
    fn the_consumer_survives_any_ring_contents(
        words in proptest::collection::vec(any::<u64>(), 64),
        spots in proptest::collection::vec(0usize..512, 64),
        prod in any::<u64>(),
        cons in any::<u64>(),
        small in any::<bool>(),
    ) {
        let r = Ring::new(4096);
        let mem = r.view();
        for (w, at) in words.iter().zip(&spots) {
            mem.store_u64(DATA_OFFSET + at * 8, *w).unwrap();
        }
        let prod = if small { cons.wrapping_add(prod % 5000) } else { prod };
        mem.store_u64(PRODUCER_POS_OFFSET, prod).unwrap();
        let mut pos = cons;
        for _ in 0..4096 / 8 + 1 {
            match peek(&r.geom, &mem, pos) {
                Ok(Next::Record { off, len, total }) => {
                    prop_assert!(off + len as usize <= mem.len());
                    prop_assert!(pos + total <= prod);
                    pos += total;
                }
                Ok(Next::Discarded { total }) => {
                    prop_assert!(pos + total <= prod);
                    pos += total;
                }
                Ok(Next::Empty | Next::Busy) | Err(RingError::Corrupt(_)) => return Ok(()),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        prop_assert!(false, "more steps than the ring has records");
    }

    /// The same for a program draining a user ring buffer whose positions
    /// and headers the host (or the program itself) garbled.
    #[test]
    fn a_drain_survives_any_ring_contents(
        words in proptest::collection::vec(any::<u64>(), 64),
        spots in proptest::collection::vec(0usize..512, 64),
        prod in any::<u64>(),
        cons in any::<u64>(),
    ) {
        let r = Ring::new(4096);
        let mem = r.view();
        for (w, at) in words.iter().zip(&spots) {
            mem.store_u64(DATA_OFFSET + at * 8, *w).unwrap();
        }
        mem.store_u64(PRODUCER_POS_OFFSET, prod).unwrap();
        mem.store_u64(CONSUMER_POS_OFFSET, cons).unwrap();
        for _ in 0..4096 / 8 + 1 {
            match user_peek(&r.geom, &mem) {
                Ok(UserNext::Sample { off, len, total }) => {
                    prop_assert!(off + len as usize <= mem.len());
                    user_release(&mem, total).unwrap();
                }
                Ok(UserNext::Discarded) => {}
                Ok(UserNext::Empty) | Err(_) => return Ok(()),
            }
        }
        prop_assert!(false, "more steps than the ring has samples");
    }
}
