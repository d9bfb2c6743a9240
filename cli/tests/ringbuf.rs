//! Ring buffer records through the real `bpfvisor run`: printed after the
//! runs (text and JSON, exact bytes), as they come with `--follow` (each
//! once, in order, over `--call` sequences and several vCPUs, also when
//! producers fill the ring), capped by `--max-records`, kept after a trap,
//! and a ring a program broke reported without hiding the others.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::{bpfvisor, sample};

use integration_tests::kvm_available;
use serde_json::{Value, json};

/// `bpfvisor run SAMPLE ARGS`, which must exit with `code`: its stdout
/// and stderr.
fn run(name: &str, args: &[&str], code: i32) -> (String, String) {
    let object = sample(name);
    let mut all = vec!["run", object.as_str()];
    all.extend(args);
    let out = bpfvisor(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{all:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// The JSON lines of a `--follow --json` run: the records and errors,
/// then the run's object.
fn json_lines(stdout: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let top = lines.pop().unwrap();
    assert!(top.get("ring").is_none(), "{top}");
    assert!(lines.iter().all(|l| l.get("ring").is_some()), "{stdout}");
    (lines, top)
}

/// A `count` context: records `first ..= first + count - 1`.
fn span(first: u32, count: u32) -> String {
    let mut bytes = first.to_le_bytes().to_vec();
    bytes.extend(count.to_le_bytes());
    hex::encode(bytes)
}

/// A `count` record's {seq, cpu}.
fn seq_cpu(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(bytes.len(), 8, "{bytes:?}");
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(0), word(4))
}

/// The bytes of each `ring NAME: N bytes: HEX` line of `ring`, in order.
fn followed_text(stdout: &str, ring: &str) -> Vec<Vec<u8>> {
    let prefix = format!("ring {ring}: ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| !l.starts_with("error: "))
        .map(|l| {
            let (len, hex) = l.split_once(" bytes: ").unwrap();
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), bytes.len(), "{l}");
            bytes
        })
        .collect()
}

const HELLO_RINGS: &str = "\
ring buffer events: 3 records
  [0] 5 bytes:
    00000000: 6865 6c6c 6f                             hello
  [1] 4 bytes:
    00000000: 7269 6e67                                ring
  [2] 6 bytes:
    00000000: 6275 6666 6572                           buffer
ring buffer logs: 0 records
";

#[test]
fn records_are_printed_after_the_run_as_hex_dumps() {
    if !kvm_available("records_are_printed_after_the_run_as_hex_dumps") {
        return;
    }
    let (stdout, _) = run("ringbuf_hello", &["--prog", "hello", "--dump-maps"], 0);
    assert!(stdout.starts_with("hello returned 3 (0x3)\n"), "{stdout}");
    // The rings after the run's lines, then the maps, which refer to them.
    let maps = stdout.find("map events (RINGBUF)").unwrap();
    assert!(stdout[..maps].ends_with(HELLO_RINGS), "{stdout}");
    assert!(
        stdout[maps..].starts_with(
            "map events (RINGBUF): key 0 bytes, value 0 bytes, max_entries 4096\n  \
             ring buffer of 4096 bytes (records above)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn json_has_each_record_with_its_exact_bytes() {
    if !kvm_available("json_has_each_record_with_its_exact_bytes") {
        return;
    }
    let (stdout, _) = run("ringbuf_hello", &["--prog", "hello", "--json"], 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["ringbufs"],
        json!({
            "events": [
                { "len": 5, "hex": hex::encode("hello") },
                { "len": 4, "hex": hex::encode("ring") },
                { "len": 6, "hex": hex::encode("buffer") },
            ],
            "logs": [],
        })
    );
    assert_eq!(
        json["ringbuf_summary"]["events"],
        json!({ "records": 3, "not_shown": 0, "error": null, "errors": 0 })
    );
    // An object without ring buffers has neither member.
    let (stdout, _) = run("hello", &["--json"], 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert!(json.get("ringbufs").is_none() && json.get("ringbuf_summary").is_none());
}

#[test]
fn records_submitted_before_a_trap_are_printed() {
    if !kvm_available("records_submitted_before_a_trap_are_printed") {
        return;
    }
    let (stdout, stderr) = run("ringbuf_hello", &["--prog", "trap"], 4);
    assert!(
        stderr.contains("error: trap trapped: Page fault"),
        "{stderr}"
    );
    assert_eq!(
        stdout,
        "ring buffer events: 1 record\n  \
         [0] 15 bytes:\n    \
         00000000: 6265 666f 7265 2074 6865 2074 7261 70    before the trap\n\
         ring buffer logs: 0 records\n"
    );
    let (stdout, _) = run("ringbuf_hello", &["--prog", "trap", "--json"], 4);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["outcome"], "trapped");
    assert_eq!(
        json["ringbufs"]["events"],
        json!([{ "len": 15, "hex": hex::encode("before the trap") }])
    );
}

#[test]
fn follow_prints_each_record_once_in_order_before_its_calls_result() {
    if !kvm_available("follow_prints_each_record_once_in_order_before_its_calls_result") {
        return;
    }
    let calls = [
        format!("count={}", span(0, 5)),
        format!("count@0-1={}", span(5, 3)),
        format!("count={}", span(8, 4)),
    ];
    let mut args: Vec<&str> = calls.iter().flat_map(|c| ["--call", c.as_str()]).collect();
    args.push("--follow");
    let (stdout, _) = run("ringbuf_hello", &args, 0);

    let records: Vec<(u32, u32)> = followed_text(&stdout, "events")
        .iter()
        .map(|r| seq_cpu(r))
        .collect();
    let mut expected: Vec<(u32, u32)> = (0..5).map(|s| (s, 0)).collect();
    expected.extend((5..8).flat_map(|s| [(s, 0), (s, 1)]));
    expected.extend((8..12).map(|s| (s, 0)));
    // The vCPUs of the second call interleave; each vCPU's records are in
    // order, and every record is there once.
    for cpu in [0, 1] {
        let of_cpu = |list: &[(u32, u32)]| -> Vec<u32> {
            list.iter().filter(|r| r.1 == cpu).map(|r| r.0).collect()
        };
        assert_eq!(of_cpu(&records), of_cpu(&expected), "{stdout}");
    }
    assert_eq!(records.len(), expected.len(), "{stdout}");

    // Each call's records come before its result lines, and after the
    // previous call's.
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l)).unwrap();
    let record = |seq: u32| {
        let hex = hex::encode(seq.to_le_bytes());
        move |l: &str| l.starts_with("ring events: 8 bytes: ") && l.contains(&format!(": {hex}"))
    };
    let results: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("count returned"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(results.len(), 4, "{stdout}");
    assert!(at(&record(4)) < results[0], "{stdout}");
    assert!(
        results[0] < at(&record(5)) && at(&record(7)) < results[1],
        "{stdout}"
    );
    assert!(
        results[2] < at(&record(8)) && at(&record(11)) < results[3],
        "{stdout}"
    );

    // The sections after the runs count the records, not repeat them.
    assert!(
        stdout.ends_with(
            "ring buffer events: 15 records (printed as they came)\n\
             ring buffer logs: 0 records\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("00000000:"), "{stdout}");
}

#[test]
fn follow_with_json_prints_a_line_per_record_then_the_run() {
    if !kvm_available("follow_with_json_prints_a_line_per_record_then_the_run") {
        return;
    }
    let first = format!("count={}", span(0, 3));
    let args = ["--call", &first, "--call", "hello", "--follow", "--json"];
    let (stdout, _) = run("ringbuf_hello", &args, 0);
    let (lines, top) = json_lines(&stdout);
    let record =
        |bytes: &[u8]| json!({ "ring": "events", "len": bytes.len(), "hex": hex::encode(bytes) });
    let le = |seq: u32| {
        let mut bytes = seq.to_le_bytes().to_vec();
        bytes.extend([0; 4]);
        bytes
    };
    assert_eq!(
        lines,
        [
            record(&le(0)),
            record(&le(1)),
            record(&le(2)),
            record(b"hello"),
            record(b"ring"),
            record(b"buffer"),
        ]
    );
    assert_eq!(top["retval"], 3);
    assert!(top.get("ringbufs").is_none(), "{top}");
    assert_eq!(top["ringbuf_summary"]["events"]["records"], 6);
    assert_eq!(top["ringbuf_summary"]["logs"]["records"], 0);
}

#[test]
fn follow_keeps_up_with_producers_that_wait_for_room() {
    if !kvm_available("follow_keeps_up_with_producers_that_wait_for_room") {
        return;
    }
    // ringbuf.bpf.c's burst: 16-byte records (24 in the ring, which holds
    // 682 of them), each vCPU numbering its own, retrying while the ring
    // is full; without a consumer that keeps up, 6000 cannot all get in.
    const EACH: u32 = 3000;
    let call = format!("burst@0-1={}", hex::encode(EACH.to_le_bytes()));
    let (stdout, _) = run("ringbuf", &["--call", &call, "--follow", "--json"], 0);
    let (lines, top) = json_lines(&stdout);
    let mut next = [0u64; 2];
    for line in &lines {
        assert_eq!(line["ring"], "events", "{line}");
        assert_eq!(line["len"], 16, "{line}");
        let bytes = hex::decode(line["hex"].as_str().unwrap()).unwrap();
        let seq = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let cpu = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(&bytes[8..], &0x600du64.to_le_bytes());
        assert_eq!(
            u64::from(seq),
            next[cpu],
            "vCPU {cpu}'s records in order, once"
        );
        next[cpu] += 1;
    }
    // Every record a vCPU did not give up on arrived.
    for result in top["results"].as_array().unwrap() {
        let cpu = result["cpu"].as_u64().unwrap() as usize;
        let lost = result["retval"].as_u64().unwrap();
        assert_eq!(next[cpu] + lost, u64::from(EACH), "{top}");
    }
    assert!(lines.len() > 682, "consumed while running: {}", lines.len());
    assert_eq!(
        top["ringbuf_summary"]["events"]["records"],
        lines.len() as u64
    );
}

#[test]
fn max_records_caps_what_is_printed_and_counts_the_rest() {
    if !kvm_available("max_records_caps_what_is_printed_and_counts_the_rest") {
        return;
    }
    let call = format!("count={}", span(0, 30));
    let capped = ["--call", &call, "--max-records", "10"];

    let (stdout, _) = run("ringbuf_hello", &capped, 0);
    assert!(
        stdout.contains("ring buffer events: 30 records, 20 not shown (--max-records 10)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  [9] 8 bytes:\n    00000000: 0900 0000 0000 0000"),
        "{stdout}"
    );
    assert!(!stdout.contains("[10]"), "{stdout}");

    let (stdout, _) = run("ringbuf_hello", &[&capped[..], &["--json"]].concat(), 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let shown: Vec<(u32, u32)> = json["ringbufs"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| seq_cpu(&hex::decode(r["hex"].as_str().unwrap()).unwrap()))
        .collect();
    assert_eq!(shown, (0..10).map(|s| (s, 0)).collect::<Vec<_>>());
    assert_eq!(
        json["ringbuf_summary"]["events"],
        json!({ "records": 30, "not_shown": 20, "error": null, "errors": 0 })
    );

    let (stdout, _) = run("ringbuf_hello", &[&capped[..], &["--follow"]].concat(), 0);
    let followed: Vec<(u32, u32)> = followed_text(&stdout, "events")
        .iter()
        .map(|r| seq_cpu(r))
        .collect();
    assert_eq!(followed, (0..10).map(|s| (s, 0)).collect::<Vec<_>>());
    assert!(
        stdout.contains(
            "ring buffer events: 30 records (printed as they came), \
             20 not shown (--max-records 10)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn a_corrupt_record_is_reported_after_the_records_before_it() {
    if !kvm_available("a_corrupt_record_is_reported_after_the_records_before_it") {
        return;
    }
    let (stdout, _) = run("ringbuf_hello", &["--prog", "corrupt"], 0);
    assert!(
        stdout.ends_with(
            "ring buffer events: 1 record\n  \
             [0] 2 bytes:\n    \
             00000000: 6f6b                                     ok\n  \
             error: Ring buffer `events`: record longer than what was produced; \
             skipped 16 bytes to the producer's position\n\
             ring buffer logs: 1 record\n  \
             [0] 6 bytes:\n    \
             00000000: 696e 7461 6374                           intact\n"
        ),
        "{stdout}"
    );
    let (stdout, _) = run("ringbuf_hello", &["--prog", "corrupt", "--json"], 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["ringbuf_summary"]["events"]["error"],
        "Ring buffer `events`: record longer than what was produced; \
         skipped 16 bytes to the producer's position"
    );
    assert_eq!(json["ringbufs"]["logs"][0]["hex"], hex::encode("intact"));
}

#[test]
fn a_ring_that_stays_broken_does_not_hide_the_others_when_following() {
    if !kvm_available("a_ring_that_stays_broken_does_not_hide_the_others_when_following") {
        return;
    }
    // `events`, polled first, fails at every look after misalign; `logs`
    // still gets each record printed, and the error is printed once.
    let args = ["--call", "misalign", "--call", "corrupt", "--follow"];
    let (stdout, _) = run("ringbuf_hello", &args, 0);
    assert_eq!(
        followed_text(&stdout, "logs"),
        [b"still here".to_vec(), b"intact".to_vec()],
        "{stdout}"
    );
    assert_eq!(followed_text(&stdout, "events"), Vec::<Vec<u8>>::new());
    let error = "ring events: error: Ring buffer `events`: position not 8-byte aligned; \
                 skipped 17 bytes to the producer's position\n";
    assert_eq!(stdout.matches(error).count(), 1, "{stdout}");
    assert!(
        stdout.contains(
            "ring buffer events: 0 records\n  error: Ring buffer `events`: position not \
             8-byte aligned; skipped 17 bytes to the producer's position"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("ring buffer logs: 2 records (printed as they came)\n"),
        "{stdout}"
    );

    let (stdout, _) = run("ringbuf_hello", &[&args[..], &["--json"]].concat(), 0);
    let (lines, top) = json_lines(&stdout);
    assert_eq!(
        lines.iter().filter(|l| l.get("error").is_some()).count(),
        1,
        "{stdout}"
    );
    let summary = &top["ringbuf_summary"]["events"];
    assert_eq!(summary["records"], 0);
    assert!(summary["errors"].as_u64().unwrap() >= 1, "{summary}");
}
