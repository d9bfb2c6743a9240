//! `bpfvisor run`'s ring buffers (docs/cli.md): a consumer on every
//! `RINGBUF` map from before the first call and, after the last, each
//! ring's records as a hex dump or in JSON. With `--follow`, a thread
//! polls every ring while the programs run and prints each record as it
//! comes; what is printed after the runs then only counts them.
//!
//! Without `--follow` nothing consumes while the programs run: a ring that
//! fills up makes reserves fail, as in a kernel whose consumer reads only
//! afterwards. What is kept for printing is then bounded by the rings'
//! sizes, and what is printed by `--max-records` per ring in both modes:
//! records past it are consumed and counted, not shown.
//!
//! Every word of a ring is the guest's to scribble on (Note [Trusting
//! ring memory] in `shm::ringbuf`): a ring that does not add up gets its
//! error after the records read before it, the other rings are printed as
//! usual, and the exit code does not change.

use crate::failure::render_chain;
use serde_json::{Map, Value, json};
use shm::maps::MapType;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;
use vmm::{Record, RingBufConsumer, RingBufError, RingBufPoller, Sandbox};

/// How long the follower waits for a ring's wakeup before it looks for
/// the main thread's requests: what the end of a call waits at most
/// before its records are all printed.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Why the ring buffers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RingBufsError {
    /// The host's end of a ring could not be set up.
    #[error("Cannot attach to ring buffer `{0}`")]
    Attach(String, #[source] RingBufError),
    /// Polling failed for a reason no guest can cause.
    #[error("Cannot follow the ring buffers")]
    Follow(#[source] RingBufError),
    /// The thread that follows the rings panicked.
    #[error("The thread following the ring buffers stopped")]
    Thread,
}

/// What one ring gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingDump {
    /// The map's name.
    pub name: String,
    /// The records to show, oldest first: the first `--max-records`
    /// (none with `--follow`, which printed them as they came).
    pub records: Vec<Vec<u8>>,
    /// Records consumed in all, shown or not.
    pub consumed: u64,
    /// Records consumed past `--max-records`, not shown.
    pub not_shown: u64,
    /// Whether the records were printed as they came (`--follow`).
    pub followed: bool,
    /// The first error the ring gave, and how many times it gave one.
    pub error: Option<(String, u64)>,
}

impl RingDump {
    fn new(name: &str, followed: bool) -> RingDump {
        RingDump {
            name: name.to_owned(),
            records: Vec::new(),
            consumed: 0,
            not_shown: 0,
            followed,
            error: None,
        }
    }
}

/// Counts an error of a ring; its message, if it is the first.
fn note_error(slot: &mut Option<(String, u64)>, error: &RingBufError) -> Option<String> {
    match slot {
        Some((_, times)) => {
            *times += 1;
            None
        }
        None => {
            let message = render_chain(error);
            *slot = Some((message.clone(), 1));
            Some(message)
        }
    }
}

/// A consumer on every `RINGBUF` map of `sandbox`, in creation order.
pub fn attach(sandbox: &Sandbox) -> Result<Vec<RingBufConsumer>, RingBufsError> {
    sandbox
        .ring_buffers()
        .filter(|&(_, _, map_type)| map_type == MapType::RingBuf)
        .map(|(_, name, _)| {
            sandbox
                .ring_buffer(name)
                .map_err(|e| RingBufsError::Attach(name.to_owned(), e))
        })
        .collect()
}

/// Consumes every ring once the programs are done, keeping the first
/// `max` records of each.
pub fn collect(consumers: Vec<RingBufConsumer>, max: u64) -> Vec<RingDump> {
    consumers
        .into_iter()
        .map(|mut consumer| {
            let mut dump = RingDump::new(consumer.name(), false);
            // Ends: with no program running, each round consumes at least
            // one record of those the ring holds, or stops.
            loop {
                let round = consumer.consume(|record| {
                    dump.consumed += 1;
                    if (dump.records.len() as u64) < max {
                        dump.records.push(record.to_vec());
                    } else {
                        dump.not_shown += 1;
                    }
                });
                match round {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        // The consumer skipped what it could not read.
                        note_error(&mut dump.error, &e);
                        break;
                    }
                }
            }
            dump
        })
        .collect()
}

/// What `--follow` saw.
#[derive(Debug)]
pub struct Followed {
    /// Each ring's counts and errors (its records were printed).
    pub rings: Vec<RingDump>,
    /// Why following stopped early, if it did.
    pub error: Option<RingBufsError>,
}

/// Runs `body` while a thread prints every ring's records as they come,
/// at most `max` per ring. `body` gets a function that returns once every
/// record committed so far has been printed (call it after each call);
/// when `body` returns, the thread prints what is left and stops.
pub fn follow<R>(
    consumers: Vec<RingBufConsumer>,
    max: u64,
    json: bool,
    body: impl FnOnce(&mut dyn FnMut()) -> R,
) -> Result<(R, Followed), RingBufsError> {
    if consumers.is_empty() {
        // Nothing to follow (and a poller without rings never waits).
        let followed = Followed {
            rings: Vec::new(),
            error: None,
        };
        return Ok((body(&mut || {}), followed));
    }
    let names: Vec<String> = consumers.iter().map(|c| c.name().to_owned()).collect();
    let counts: Vec<AtomicU64> = names.iter().map(|_| AtomicU64::new(0)).collect();
    let live = Live { json, max };
    let mut poller = RingBufPoller::new().map_err(RingBufsError::Follow)?;
    for ((consumer, name), count) in consumers.into_iter().zip(&names).zip(&counts) {
        let live = &live;
        poller
            .add(consumer, move |record| live.record(name, count, record))
            .map_err(RingBufsError::Follow)?;
    }
    let (requests, inbox) = mpsc::channel::<Sender<()>>();
    let follower = Follower {
        poller,
        inbox,
        live: &live,
        names: &names,
        counts: &counts,
        errors: vec![None; names.len()],
    };
    let (result, joined) = std::thread::scope(|scope| {
        let thread = scope.spawn(move || follower.run());
        let mut drain = || {
            let (done, wait) = mpsc::channel();
            // A follower that stopped takes no requests: nothing to wait
            // for then.
            if requests.send(done).is_ok() {
                let _ = wait.recv();
            }
        };
        let result = body(&mut drain);
        drop(requests);
        (result, thread.join())
    });
    let (errors, error) = match joined {
        Ok((errors, failure)) => (errors, failure.map(RingBufsError::Follow)),
        Err(_) => (vec![None; names.len()], Some(RingBufsError::Thread)),
    };
    let rings = names
        .iter()
        .zip(counts)
        .zip(errors)
        .map(|((name, count), error)| {
            let consumed = count.into_inner();
            RingDump {
                consumed,
                not_shown: consumed.saturating_sub(max),
                error,
                ..RingDump::new(name, true)
            }
        })
        .collect();
    Ok((result, Followed { rings, error }))
}

/// The thread that follows the rings.
struct Follower<'a> {
    poller: RingBufPoller<'a>,
    /// Requests to print every record committed so far, answered on the
    /// sender each carries; closed when the runs are over.
    inbox: Receiver<Sender<()>>,
    live: &'a Live,
    names: &'a [String],
    /// Records each ring's callback saw.
    counts: &'a [AtomicU64],
    errors: Vec<Option<(String, u64)>>,
}

impl Follower<'_> {
    /// Polls until the runs are over, then prints what is left; each
    /// ring's errors, and the error that stopped it early, if any.
    fn run(mut self) -> (Vec<Option<(String, u64)>>, Option<RingBufError>) {
        let failure = loop {
            match self.inbox.try_recv() {
                Ok(done) => match self.drain() {
                    Ok(()) => {
                        let _ = done.send(());
                        continue;
                    }
                    Err(e) => break Some(e),
                },
                Err(TryRecvError::Disconnected) => break self.drain().err(),
                Err(TryRecvError::Empty) => {}
            }
            if let Err(e) = self.poller.poll(Some(POLL_INTERVAL)) {
                if let Err(e) = self.note(e) {
                    break Some(e);
                }
                // A ring the guest keeps breaking fails every poll at
                // once: wait as a poll would rather than spin.
                std::thread::sleep(POLL_INTERVAL);
            }
        };
        (self.errors, failure)
    }

    /// Prints every record committed so far, with no program running.
    ///
    /// Ends: a round that is not one of the poller's queued errors
    /// consumes every ring to where it stops (a ring's worth at most, which
    /// is all it holds now), so it returns no record only when nothing is
    /// left but rings that fail at once; the rounds after it return its
    /// queued errors, one per ring at most.
    fn drain(&mut self) -> Result<(), RingBufError> {
        let mut idle_failures = 0;
        loop {
            let before = self.consumed();
            match self.poller.consume() {
                Ok(0) => return Ok(()),
                Ok(_) => idle_failures = 0,
                Err(e) => {
                    self.note(e)?;
                    if self.consumed() != before {
                        idle_failures = 0;
                    } else {
                        idle_failures += 1;
                        if idle_failures > self.names.len() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    fn consumed(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Notes a ring's error, printing it the first time; an error that is
    /// no ring's is returned.
    fn note(&mut self, error: RingBufError) -> Result<(), RingBufError> {
        let RingBufError::Corrupt { ring, .. } = &error else {
            return Err(error);
        };
        let Some(i) = self.names.iter().position(|name| name == ring) else {
            return Err(error);
        };
        if let Some(message) = note_error(&mut self.errors[i], &error) {
            self.live.error(ring, &message);
        }
        Ok(())
    }
}

/// Prints records as they come.
#[derive(Debug)]
struct Live {
    json: bool,
    max: u64,
}

impl Live {
    /// Prints `record` of `ring`, unless `count` (the ring's records so
    /// far) is past the cap.
    fn record(&self, ring: &str, count: &AtomicU64, record: &Record<'_>) {
        // Only the follower's thread counts; the main thread reads the
        // counts after joining it.
        if count.fetch_add(1, Ordering::Relaxed) >= self.max {
            return;
        }
        let bytes = record.to_vec();
        let line = if self.json {
            json!({ "ring": ring, "len": bytes.len(), "hex": hex::encode(&bytes) }).to_string()
        } else if bytes.is_empty() {
            format!("ring {}: 0 bytes", super::printable(ring))
        } else {
            format!(
                "ring {}: {} bytes: {}",
                super::printable(ring),
                bytes.len(),
                hex::encode(&bytes)
            )
        };
        emit(&line);
    }

    /// Prints the first error of `ring`.
    fn error(&self, ring: &str, message: &str) {
        let line = if self.json {
            json!({ "ring": ring, "error": message }).to_string()
        } else {
            format!("ring {}: error: {message}", super::printable(ring))
        };
        emit(&line);
    }
}

/// Writes a line to stdout at once, in one piece.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // A reader that went away (`| head`) must not stop the consumer, or
    // panic it: the records are still consumed and counted.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The rings as text: a header line each, then its records as hex dumps,
/// then its error.
pub fn to_text(rings: &[RingDump], max: u64) -> String {
    let mut out = String::new();
    for ring in rings {
        let plural = if ring.consumed == 1 { "" } else { "s" };
        let _ = write!(
            out,
            "ring buffer {}: {} record{plural}",
            super::printable(&ring.name),
            ring.consumed
        );
        if ring.followed && ring.consumed > 0 {
            out.push_str(" (printed as they came)");
        }
        if ring.not_shown > 0 {
            let _ = write!(out, ", {} not shown (--max-records {max})", ring.not_shown);
        }
        out.push('\n');
        for (i, record) in ring.records.iter().enumerate() {
            let _ = writeln!(out, "  [{i}] {} bytes:", record.len());
            hex_dump(&mut out, "    ", record);
        }
        if let Some((message, times)) = &ring.error {
            let _ = write!(out, "  error: {message}");
            if *times > 1 {
                let _ = write!(out, " ({times} times)");
            }
            out.push('\n');
        }
    }
    out
}

/// `bytes` as `xxd` shows them: rows of 16, the offset, the bytes in hex
/// by pairs, and the printable ones as ASCII (`.` for the others).
fn hex_dump(out: &mut String, indent: &str, bytes: &[u8]) {
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::with_capacity(39);
        for (i, pair) in chunk.chunks(2).enumerate() {
            if i > 0 {
                hex.push(' ');
            }
            for b in pair {
                let _ = write!(hex, "{b:02x}");
            }
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b == b' ' || b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(out, "{indent}{:08x}: {hex:<39}  {ascii}", row * 16);
    }
}

/// The JSON members for the rings (docs/cli.md): `ringbufs`, each ring's
/// records (`None` with `--follow`, which printed them), and
/// `ringbuf_summary`, each ring's counts and error.
pub fn to_json(rings: &[RingDump]) -> (Option<Value>, Value) {
    let mut records = Map::new();
    let mut summary = Map::new();
    for ring in rings {
        let list: Vec<Value> = ring
            .records
            .iter()
            .map(|r| json!({ "len": r.len(), "hex": hex::encode(r) }))
            .collect();
        records.insert(ring.name.clone(), Value::Array(list));
        let (error, errors) = match &ring.error {
            Some((message, times)) => (json!(message), *times),
            None => (Value::Null, 0),
        };
        summary.insert(
            ring.name.clone(),
            json!({
                "records": ring.consumed,
                "not_shown": ring.not_shown,
                "error": error,
                "errors": errors,
            }),
        );
    }
    let followed = rings.iter().any(|r| r.followed);
    (
        (!followed).then_some(Value::Object(records)),
        Value::Object(summary),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dumps_read_as_xxd_shows_them() {
        // `printf 'hello world, this is a ring\0\1\377' | xxd`
        let mut out = String::new();
        hex_dump(&mut out, "", b"hello world, this is a ring\x00\x01\xff");
        assert_eq!(
            out,
            "00000000: 6865 6c6c 6f20 776f 726c 642c 2074 6869  hello world, thi\n\
             00000010: 7320 6973 2061 2072 696e 6700 01ff       s is a ring...\n"
        );
        let mut out = String::new();
        hex_dump(&mut out, "  ", b"hello");
        assert_eq!(
            out,
            "  00000000: 6865 6c6c 6f                             hello\n"
        );
        let mut out = String::new();
        hex_dump(&mut out, "", b"\x1b[31m0123456789\x7f");
        assert_eq!(
            out,
            "00000000: 1b5b 3331 6d30 3132 3334 3536 3738 397f  .[31m0123456789.\n"
        );
    }

    fn setup_ring(name: &str, records: &[&[u8]]) -> RingDump {
        RingDump {
            records: records.iter().map(|r| r.to_vec()).collect(),
            consumed: records.len() as u64,
            ..RingDump::new(name, false)
        }
    }

    #[test]
    fn rings_as_text_and_json_with_caps_and_errors() {
        let mut capped = setup_ring("capped", &[b"ab"]);
        capped.consumed = 3;
        capped.not_shown = 2;
        let mut broken = setup_ring("broken", &[b""]);
        broken.error = Some(("Ring buffer `broken`: bad".into(), 4));
        let rings = [setup_ring("none", &[]), capped, broken];
        assert_eq!(
            to_text(&rings, 1),
            "ring buffer none: 0 records\n\
             ring buffer capped: 3 records, 2 not shown (--max-records 1)\n  \
             [0] 2 bytes:\n    \
             00000000: 6162                                     ab\n\
             ring buffer broken: 1 record\n  \
             [0] 0 bytes:\n  \
             error: Ring buffer `broken`: bad (4 times)\n"
        );
        let (records, summary) = to_json(&rings);
        assert_eq!(
            records,
            Some(json!({
                "none": [],
                "capped": [{ "len": 2, "hex": "6162" }],
                "broken": [{ "len": 0, "hex": "" }],
            }))
        );
        assert_eq!(
            summary,
            json!({
                "none": { "records": 0, "not_shown": 0, "error": null, "errors": 0 },
                "capped": { "records": 3, "not_shown": 2, "error": null, "errors": 0 },
                "broken": {
                    "records": 1, "not_shown": 0,
                    "error": "Ring buffer `broken`: bad", "errors": 4,
                },
            })
        );
    }

    #[test]
    fn followed_rings_are_counted_not_repeated() {
        let mut ring = RingDump::new("events", true);
        ring.consumed = 12;
        ring.not_shown = 2;
        assert_eq!(
            to_text(std::slice::from_ref(&ring), 10),
            "ring buffer events: 12 records (printed as they came), \
             2 not shown (--max-records 10)\n"
        );
        let (records, summary) = to_json(&[ring]);
        assert_eq!(records, None);
        assert_eq!(summary["events"]["records"], 12);
    }
}
